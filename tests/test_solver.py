"""Inner solvers: fast WGF vs naive reference, rotation flow (App. D.9), fixed rows, torchdeq paths."""

import math

import pytest
import torch

from ddeqs.config import load_config
from ddeqs.models import build_model
from ddeqs.models.ddeq.fmap import FMap
from ddeqs.solver import build_deq, naive_wgf_solve, wgf_gradient, wgf_solve
from ddeqs.solver.deq import solver_kwargs

TINY = ["model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32", "model.cross_layers=1",
        "model.coupling_width=8", "model.z_particles=5"]


def _rotation(theta: float) -> torch.Tensor:
    return torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)


def _rotation_setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(2, 30, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5], dtype=torch.float64)
    return z0, torch.ones(2, 30, dtype=torch.bool), _rotation(2 * math.pi / 5)


def test_flow_decreases_mmd_to_rotated_particles():
    z0, m, R = _rotation_setup()
    z, info = wgf_solve(lambda z: z @ R.T, z0, m, iters=60, step=0.1)
    obj = info["objective"]
    assert obj.shape == (2, 60) and info["iters"] == 60
    assert (obj[:, 1:] <= obj[:, :-1] + 1e-12).all()  # monotone for a small step
    assert (obj[:, -1] < 0.2 * obj[:, 0]).all()
    assert not torch.allclose(z, z0)


def test_flow_result_independent_of_particle_order():
    z0, m, R = _rotation_setup(1)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(3))
    z_a, _ = wgf_solve(lambda z: z @ R.T, z0, m, iters=20, step=0.5, momentum=0.5)
    z_b, _ = wgf_solve(lambda z: z @ R.T, z0[:, perm], m, iters=20, step=0.5, momentum=0.5)
    assert torch.allclose(z_a[:, perm], z_b, atol=1e-10)


def test_fixed_and_padded_rows_do_not_move():
    z0, m, R = _rotation_setup(2)
    m = m.clone()
    m[1, 25:] = False
    z0[1, 25:] = 7.0
    movable = m.clone()
    movable[:, :5] = False
    z, _ = wgf_solve(lambda z: torch.where(movable[..., None], z @ R.T, z), z0, m, movable, iters=10, step=0.5)
    assert torch.equal(z[:, :5], z0[:, :5])
    assert torch.equal(z[1, 25:], z0[1, 25:])
    assert not torch.allclose(z[:, 5:25], z0[:, 5:25])


def _fmap_problem(pushforward: bool):
    torch.manual_seed(0)
    f = FMap(2, z_dim=16, bilinear_dim=4, heads=4, ffn_dim=32, cross_layers=2, pushforward=pushforward).double().eval()
    x = torch.randn(3, 12, 2, dtype=torch.float64)
    xm = torch.ones(3, 12, dtype=torch.bool)
    xm[0, 8:] = False
    z0 = torch.randn(3, 9, 16, dtype=torch.float64)
    zm = torch.ones(3, 9, dtype=torch.bool)
    zm[2, 6:] = False
    movable = zm.clone()
    movable[:, :2] = False  # completion-style fixed particles
    mv = movable[..., None]
    ctx = f.prepare(x, xm)
    fast = lambda z: torch.where(mv, f.apply(z, zm, ctx), z)  # noqa: E731
    full = lambda z: torch.where(mv, f(z, zm, x, xm), z)  # noqa: E731
    return f, fast, full, z0, zm, movable


@pytest.mark.parametrize("pushforward", [False, True])
@pytest.mark.parametrize("opts", [dict(tol=0.0, momentum=0.5, nesterov=True), dict(tol=1e-2)])
def test_fast_and_naive_give_the_same_fixed_point(pushforward: bool, opts: dict):
    f, fast, full, z0, zm, movable = _fmap_problem(pushforward)
    z_fast, i_fast = wgf_solve(fast, z0, zm, movable, iters=15, step=0.5, **opts)
    z_naive, i_naive = naive_wgf_solve(full, z0, zm, movable, iters=15, step=0.5, **opts)
    assert torch.allclose(z_fast, z_naive, atol=1e-8)
    assert i_fast["iters"] >= 1 and torch.isfinite(i_fast["objective"]).all()
    if opts["tol"] > 0:
        assert torch.equal(i_fast["converged"], i_naive["converged"])
    assert all(p.grad is None for p in f.parameters())  # the VJP never accumulates parameter grads


def test_fast_path_runs_x_branch_once_naive_every_step():
    f, fast, full, z0, zm, movable = _fmap_problem(False)
    calls = []
    hook = f.x_embed.register_forward_hook(lambda *a: calls.append(1))
    wgf_solve(fast, z0, zm, movable, iters=6, step=0.5)
    assert len(calls) == 0  # prepared before the solve
    naive_wgf_solve(full, z0, zm, movable, iters=6, step=0.5)
    assert len(calls) == 12  # one gradient + one stopping-test forward per step
    hook.remove()


def test_one_loop_runs_both_gradient_functions(monkeypatch: pytest.MonkeyPatch):
    """Fast and naive differ only in the gradient function plugged into the one loop (ddeqs.solver.loop)."""
    import ddeqs.solver.deq as deq
    from ddeqs.solver.loop import GradientFn, wgf_loop
    from ddeqs.solver.naive import NaiveGradient
    from ddeqs.solver.wgf import FastGradient

    f, fast, full, z0, zm, movable = _fmap_problem(False)
    seen = []
    real_loop = deq.wgf_loop
    monkeypatch.setattr(deq, "wgf_loop", lambda gradient, *a, **k: seen.append(type(gradient)) or real_loop(gradient, *a, **k))
    for impl in ("fast", "naive"):
        deq.ddeqs_wgf_solver(fast, z0, max_iter=3, mask=zm, movable=movable, step=0.5, impl=impl, full_func=full)
    assert seen == [FastGradient, NaiveGradient]

    class Halved(GradientFn):  # any gradient function plugs in: here half the fast gradient
        def __init__(self) -> None:
            self.inner = FastGradient(fast, zm, movable, z0.dtype)

        def __call__(self, z):
            obj, g, fz = self.inner(z)
            return obj, 0.5 * g, fz

    z_half, _ = wgf_loop(Halved(), z0, zm, iters=4, step=1.0)
    z_fast, _ = wgf_solve(fast, z0, zm, movable, iters=4, step=0.5)
    assert torch.allclose(z_half, z_fast, atol=1e-12)


def test_tol_stops_early_and_gradient_is_zero_on_fixed_rows():
    f, fast, full, z0, zm, movable = _fmap_problem(False)
    obj, g, fz = wgf_gradient(fast, z0, zm, movable)
    assert (g[~movable] == 0).all() and g[movable].abs().sum() > 0
    _, info = wgf_solve(fast, z0, zm, movable, iters=200, step=0.05, tol=5e-2)
    assert info["iters"] < 200 and info["converged"].all()


def test_model_fast_and_naive_impl_agree():
    x = torch.randn(2, 10, 2)
    m = torch.ones(2, 10, dtype=torch.bool)
    out = {}
    for impl in ("fast", "naive"):
        cfg = load_config(None, TINY + ["solver.iters=8", "solver.step=1.0", f"solver.impl={impl}"])
        torch.manual_seed(0)
        model = build_model(cfg, 2, 4).eval()
        torch.manual_seed(1)
        with torch.no_grad():
            out[impl] = model(x, m)
    assert torch.allclose(out["fast"].z_star, out["naive"].z_star, atol=1e-4)
    assert torch.allclose(out["fast"].logits, out["naive"].logits, atol=1e-4)


@pytest.mark.parametrize("kind", ["fixed_point", "anderson", "broyden"])
def test_classical_solvers_keep_padding_and_fixed_rows(kind: str):
    cfg = load_config(None, [f"solver.kind={kind}", "solver.iters=6"])
    deq = build_deq(cfg.solver).eval()
    f, fast, _, z0, zm, movable = _fmap_problem(False)
    z0 = torch.where(zm[..., None], z0, torch.zeros(()))
    z_out, info = deq(fast, z0, solver_kwargs=solver_kwargs(cfg.solver, zm, movable))
    z = z_out[-1]
    assert torch.equal(z[~movable], z0[~movable])
    assert torch.isfinite(z).all() and "z_star" in info


def test_momentum_returns_the_best_iterate_and_stops_on_the_window_rule():
    """Heavy ball overshoots: the solver returns each sample's lowest-objective iterate; tol stops it early."""
    from ddeqs.solver.loop import StopRule

    f, fast, full, z0, zm, movable = _fmap_problem(False)
    z, info = wgf_solve(fast, z0, zm, movable, iters=60, step=2.0, momentum=0.8)
    obj = info["objective"]
    assert not (obj[:, 1:] <= obj[:, :-1] + 1e-12).all()  # the raw trace is not monotone here
    best, _, _ = wgf_gradient(fast, z, zm, movable)  # objective of the returned iterate
    assert torch.allclose(best, obj.min(1).values, atol=1e-12)
    z_f, _ = wgf_solve(fast, z0, zm, movable, iters=25, step=2.0, momentum=0.8)
    z_n, _ = naive_wgf_solve(full, z0, zm, movable, iters=25, step=2.0, momentum=0.8)
    assert torch.allclose(z_f, z_n, atol=1e-8)  # same best iterate (few steps: rounding grows along the flow)
    _, stopped = wgf_solve(fast, z0, zm, movable, iters=500, step=2.0, momentum=0.8, tol=1e-2)
    assert StopRule.WINDOW < stopped["iters"] < 500 and stopped["converged"].all()
    _, stopped_n = naive_wgf_solve(full, z0, zm, movable, iters=500, step=2.0, momentum=0.8, tol=1e-2)
    assert stopped_n["iters"] == stopped["iters"]


@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_objective_ratio_stops_each_sample_at_its_relative_level(momentum: float):
    f, fast, full, z0, zm, movable = _fmap_problem(False)
    kw = dict(iters=300, step=2.0, momentum=momentum, ratio=0.3)
    z, info = wgf_solve(fast, z0, zm, movable, **kw)
    obj = info["objective"]
    level = torch.cummin(obj, 1).values if momentum > 0 else obj
    assert info["converged"].all() and info["iters"] < 300
    reached = level <= 0.3 * obj[:, :1]
    assert reached[:, -1].all()  # every sample got there; none stopped before (first hit = its stop)
    final, _, _ = wgf_gradient(fast, z, zm, movable)
    assert (final <= 0.3 * obj[:, 0] + 1e-12).all()
    z_n, info_n = naive_wgf_solve(full, z0, zm, movable, **kw)
    assert info_n["iters"] == info["iters"] and torch.allclose(z, z_n, atol=1e-7)


def test_solvers_registered_by_build_deq_not_by_import():
    """torchdeq knows the ddeqs_* solvers once build_deq ran (explicit call), not merely after the import."""
    import importlib

    import torchdeq.solver as tsolver

    import ddeqs.solver.deq as deq

    names = [deq.solver_name(k) for k in ("wgf", *deq.CLASSICAL)]
    for name in names:
        tsolver._solvers.pop(name, None)
    importlib.reload(deq)  # importing the module registers nothing
    assert not any(name in tsolver._solvers for name in names)
    cfg = load_config(None, ["solver.kind=anderson"])
    deq.build_deq(cfg.solver)
    assert all(name in tsolver._solvers for name in names)
