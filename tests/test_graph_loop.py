"""``solver.cuda_graph``: the fixed-buffer inner loop (ddeqs.solver.graph) gives the eager loop's values.

On CPU the loop runs without capture, so these tests check everything but the capture itself,
bitwise, at the paper's widths and at sizes where the MMD takes its Gram path (whose close-pair
list is the part rewritten for capture); tests/test_cuda.py checks the captured loop on a GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from ddeqs.bench.problem import ProblemSpec, build_problem
from ddeqs.config import LATE_FIELDS, load_config, omit_late_defaults
from ddeqs.mmd import ClosePairs, signed_energy_with_grads
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
def test_fixed_buffer_loop_equals_the_eager_loop_bitwise(task: str, batch: int, momentum: float) -> None:
    """Paper-width DDEQ, batch large enough for the Gram path (B·T²·p > 2^20); plain and heavy ball."""
    _, eager, _ = _solve(task, batch, False, f"solver.momentum={momentum}")
    _, fixed, _ = _solve(task, batch, True, f"solver.momentum={momentum}")
    assert torch.equal(eager.z_star, fixed.z_star)
    assert torch.equal(eager.solver["objective"], fixed.solver["objective"])
    assert torch.equal(eager.solver["rel_residual"], fixed.solver["rel_residual"])
    assert eager.solver["iters"] == fixed.solver["iters"] == 8
    assert not torch.equal(eager.z_star, torch.zeros_like(eager.z_star))


def test_training_step_with_the_fixed_buffer_loop_gives_the_same_gradients() -> None:
    """Train mode (dropout masks sampled in the first iteration, phantom gradient): same loss and parameter grads."""
    from ddeqs.training.losses import per_sample_loss

    grads = {}
    for graph in (False, True):
        problem, out, _ = _solve("classification", 8, graph, "model.dropout=0.1", train=True)
        loss = per_sample_loss(problem.cfg, out, problem.batch).mean()
        loss.backward()
        grads[graph] = [p.grad.clone() for p in problem.model.parameters() if p.grad is not None]
    assert len(grads[True]) == len(grads[False]) > 10
    assert all(torch.equal(a, b) for a, b in zip(grads[False], grads[True]))


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


def test_overflowing_close_pair_list_redoes_the_solve_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    import ddeqs.mmd as mmd

    monkeypatch.setattr(mmd, "PAIRS_PER_ROW", 0)  # no room at all: the first close pair overflows
    fastpath._WARNED.discard("cuda-graph-pairs")
    _, eager, _ = _solve("completion", 4, False)
    _, fixed, msgs = _solve("completion", 4, True)
    assert any("redone eagerly" in m for m in msgs)
    assert torch.equal(eager.z_star, fixed.z_star)


def _near_cloud(B: int = 3, n: int = 40, p: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` particles and their images 1e-4 away (near pairs), signed weights ``±1/n``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, n, p, generator=g)
    pts = torch.cat([z, z + 1e-4 * torch.randn(B, n, p, generator=g)], 1)
    w = torch.cat([torch.full((B, n), 1.0 / n), torch.full((B, n), -1.0 / n)], 1)
    return pts, w


def test_close_pair_list_gives_the_nonzero_values() -> None:
    pts, w = _near_cloud()
    ref = signed_energy_with_grads(pts, w, exact=False)
    pairs = ClosePairs(2 * pts.shape[0] * pts.shape[1], pts.device)
    got = signed_energy_with_grads(pts, w, exact=False, pairs=pairs)
    assert not bool(pairs.overflow)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    exact = signed_energy_with_grads(pts, w, exact=True)  # the close pairs matter: Gram alone would be far off
    assert torch.allclose(got[1], exact[1], rtol=1e-3, atol=1e-6)


def test_close_pair_list_flags_overflow_and_keeps_what_fits() -> None:
    flags = torch.tensor([False, True, False, True, True, False, True])
    pairs = ClosePairs(3, flags.device)
    assert pairs(flags).tolist() == [1, 3, 4] and bool(pairs.overflow)
    pairs.reset()
    assert pairs(flags[:5]).tolist() == [1, 3, 4] and not bool(pairs.overflow)
    assert ClosePairs(5, flags.device)(flags[:2]).tolist() == [1, 0, 0, 0, 0]


def test_late_fields_at_their_defaults_leave_resolved_configs_and_fingerprints_unchanged() -> None:
    from ddeqs.training.checkpoint import config_fingerprint

    cfg = load_config(None, [])
    nested = omit_late_defaults(cfg.model_dump(mode="json"))
    assert all(key.split(".")[1] not in nested[key.split(".")[0]] for key in LATE_FIELDS)
    assert "solver.iters" in omit_late_defaults(cfg.flat())
    on = load_config(None, ["solver.cuda_graph=true"])
    assert omit_late_defaults(on.model_dump(mode="json"))["solver"]["cuda_graph"] is True
    assert config_fingerprint(on) == config_fingerprint(cfg)  # how the loop is launched does not change the run
