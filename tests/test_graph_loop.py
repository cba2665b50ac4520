"""``solver.cuda_graph``: the fixed-buffer inner loop (ddeqs.solver.graph) gives the eager loop's values.

On CPU the loop runs without capture, so these tests check everything but the capture itself, at
the paper's widths and at sizes where the eager MMD takes its Gram path (the capturable one takes
exact distances instead); tests/test_cuda.py checks the captured loop on a GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from ddeqs.bench.problem import ProblemSpec, build_problem
from ddeqs.config import LATE_FIELDS, load_config, omit_late_defaults
from ddeqs.models.ddeq import fastpath


def _solve(task: str, batch: int, graph: bool, *extra: str, train: bool = False):  # type: ignore[no-untyped-def]
    spec = ProblemSpec(task=task, batch=batch, iters=8, overrides=(f"solver.cuda_graph={str(graph).lower()}", *extra))
    problem = build_problem(spec)
    problem.model.train(train)
    torch.manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = problem.model(problem.batch.points, problem.batch.mask)
    return problem, out, [str(w.message) for w in caught]


@pytest.mark.parametrize(("task", "batch"), [("classification", 32), ("completion", 4)])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_fixed_buffer_loop_equals_the_eager_loop_bitwise(monkeypatch: pytest.MonkeyPatch, task: str, batch: int,
                                                         momentum: float) -> None:
    """Inside a model's solve, on the same (capturable) gradient function: the same Z*, trace, residual."""
    import ddeqs.solver.graph as graph
    from ddeqs.solver.loop import wgf_loop

    seen = {}
    real = graph.graph_wgf_loop

    def both(gradient, z0, mask, iters, step, momentum, nesterov, capture):  # type: ignore[no-untyped-def]
        seen["eager"] = wgf_loop(gradient, z0, mask, iters, step, 0.0, momentum, nesterov, 0.0)
        seen["fixed"] = real(gradient, z0, mask, iters, step, momentum, nesterov, capture=capture)
        return seen["fixed"]

    monkeypatch.setattr(graph, "graph_wgf_loop", both)
    _solve(task, batch, True, f"solver.momentum={momentum}")
    (ze, ie), (zf, i_f) = seen["eager"], seen["fixed"]
    assert torch.equal(ze, zf) and ie["iters"] == i_f["iters"] == 8
    assert torch.equal(ie["objective"], i_f["objective"]) and torch.equal(ie["rel_residual"], i_f["rel_residual"])
    assert torch.equal(ie["converged"], i_f["converged"])
    assert not torch.equal(ze, torch.zeros_like(ze))


@pytest.mark.parametrize(("task", "batch"), [("classification", 32), ("completion", 4)])
def test_model_with_the_graph_loop_matches_the_eager_fast_path(task: str, batch: int) -> None:
    """Paper widths, sizes where the eager MMD takes its Gram path: float64 Z* agree to rounding."""
    z = {}
    for graph in (False, True):
        spec = ProblemSpec(task=task, batch=batch, iters=8, momentum=0.5,
                           overrides=(f"solver.cuda_graph={str(graph).lower()}",))
        z[graph] = build_problem(spec).fixed_point(seed=1, dtype=torch.float64)
    assert torch.allclose(z[True], z[False], rtol=0, atol=1e-9)


def test_training_step_with_the_graph_loop_gives_the_eager_gradients() -> None:
    """Train mode (dropout masks sampled in the first iteration, phantom gradient), float64: same loss and grads."""
    from ddeqs.training.losses import per_sample_loss

    grads, losses = {}, {}
    for graph in (False, True):
        spec = ProblemSpec(task="completion", batch=4, iters=8,
                           overrides=(f"solver.cuda_graph={str(graph).lower()}", "model.dropout=0.1"))
        problem = build_problem(spec)
        problem.model.double().train()
        problem.batch.points, problem.batch.target = problem.batch.points.double(), problem.batch.target.double()
        torch.manual_seed(1)
        out = problem.model(problem.batch.points, problem.batch.mask)
        losses[graph] = per_sample_loss(problem.cfg, out, problem.batch).mean()
        losses[graph].backward()
        grads[graph] = [p.grad.clone() for p in problem.model.parameters() if p.grad is not None]
    assert len(grads[True]) == len(grads[False]) > 10
    assert torch.allclose(losses[True], losses[False], rtol=1e-10)
    assert all(torch.allclose(a, b, rtol=1e-7, atol=1e-12) for a, b in zip(grads[False], grads[True]))


def test_cpu_run_says_once_that_nothing_is_captured() -> None:
    fastpath._WARNED.discard("cuda-graph-cpu")
    _, _, first = _solve("classification", 2, True)
    _, _, second = _solve("classification", 2, True)
    assert any("no CUDA device" in m for m in first) and not any("no CUDA device" in m for m in second)


def test_stop_tests_keep_the_eager_loop() -> None:
    """tol > 0 needs a host sync per iteration: one warning, and the eager loop's values (it may stop early)."""
    fastpath._WARNED.discard("cuda-graph-stop")
    _, eager, _ = _solve("completion", 2, False, "solver.tol=0.05")
    _, fixed, msgs = _solve("completion", 2, True, "solver.tol=0.05")
    assert any("fixed number of inner iterations" in m for m in msgs)
    assert torch.equal(eager.z_star, fixed.z_star) and eager.solver["iters"] == fixed.solver["iters"]


def test_capturable_mmd_takes_exact_distances_in_few_blocks() -> None:
    """No ``nonzero`` (host sync): explicit differences for every pair, the same values as the exact path,
    and the Gram path's to rounding, on clouds with close pairs (particles and images 1e-4 apart)."""
    from ddeqs.mmd import PairedMMD, signed_energy_with_grads

    g = torch.Generator().manual_seed(0)
    B, K, p = 16, 40, 128
    z = torch.randn(B, K, p, generator=g)
    fz = z + 1e-4 * torch.randn(B, K, p, generator=g)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 30:] = False
    plan = PairedMMD(mask, mask, z.dtype, capturable=True)
    assert plan.exact is True
    mmd2, gz, gfz = plan(z, fz)
    eager = PairedMMD(mask, mask, z.dtype)
    assert eager.exact is None and B * (2 * K) ** 2 * p > 1 << 20  # the eager plan takes the Gram path here
    e_mmd2, e_gz, e_gfz = eager(z, fz)
    r_mmd2, r_gz, _ = PairedMMD(mask, mask, torch.float64)(z.double(), fz.double())  # float64 reference
    assert torch.allclose(gz, e_gz, rtol=1e-3, atol=1e-7) and torch.allclose(gz.double(), r_gz, rtol=1e-3, atol=1e-8)
    # MMD² ~ 6e-5 is a small difference of sums of order one: float32 distances leave ~1e-7 of it
    assert torch.allclose(mmd2.double(), r_mmd2, rtol=0, atol=3e-7) and torch.allclose(e_mmd2.double(), r_mmd2, rtol=0, atol=3e-7)
    pts = torch.cat([z, fz], 1).masked_fill(~mask.repeat(1, 2).unsqueeze(-1), 0.0)
    ref, _ = signed_energy_with_grads(pts, plan.weights, exact=True, chunk=1 << 16)  # small blocks: same values
    assert torch.equal(mmd2, ref)


def test_late_fields_at_their_defaults_leave_resolved_configs_and_fingerprints_unchanged() -> None:
    from ddeqs.training.checkpoint import config_fingerprint

    cfg = load_config(None, [])
    nested = omit_late_defaults(cfg.model_dump(mode="json"))
    assert all(key.split(".")[1] not in nested[key.split(".")[0]] for key in LATE_FIELDS)
    assert "solver.iters" in omit_late_defaults(cfg.flat())
    on = load_config(None, ["solver.cuda_graph=true"])
    assert omit_late_defaults(on.model_dump(mode="json"))["solver"]["cuda_graph"] is True
    assert config_fingerprint(on) == config_fingerprint(cfg)  # how the loop is launched does not change the run
