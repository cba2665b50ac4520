"""``ddeqs bench``: the benchmark machinery measures what it says (figures themselves are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddeqs.bench.momentum import first_reach, first_stay
from ddeqs.bench.problem import ProblemSpec, build_problem, problem_config
from ddeqs.bench.step import compare_fixed_points, measure_steps, run_step_benches
from ddeqs.cli import main as cli_main
from ddeqs.errors import DDEQError
from ddeqs.solver.wgf import wgf_solve

TINY = ("model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32", "model.coupling_width=8")
TINY_ARGS = [a for o in TINY for a in ("--set", o)]


def test_problem_is_paper_sized_by_default():
    cls = problem_config(ProblemSpec())
    assert (cls.model.z_dim, cls.model.heads, cls.model.ffn_dim, cls.model.cross_layers) == (128, 32, 512, 1)
    assert (cls.solver.step, cls.solver.iters) == (5.0, 200)
    cpl = problem_config(ProblemSpec(task="completion", shape="modelnet"))
    assert cpl.model.cross_layers == 3 and cpl.data.dataset == "modelnet40-s"
    p = build_problem(ProblemSpec(task="completion", batch=2, points=200, iters=1, overrides=TINY))
    assert p.batch.points.shape == (2, 200, 2) and p.batch.target.shape == (2, 255, 2)  # 200 + 55 = 255 slots
    assert p.model.layout(p.batch.mask)[0].shape == (2, 255)


@pytest.mark.parametrize("task", ["classification", "completion"])
def test_fast_and_naive_reach_the_same_fixed_point(task: str):
    # float64, few iterations: the flow amplifies rounding by ~4x per step at step 5 (measured),
    # so a longer comparison would test the conditioning of the flow, not the implementations
    diff = compare_fixed_points(ProblemSpec(task=task, batch=3, points=30, overrides=TINY), iters=4)
    assert diff < 1e-9


def test_step_measurement_reports_time_iterations_and_memory():
    r = measure_steps(ProblemSpec(task="completion", batch=2, points=20, iters=4, overrides=TINY), repeats=2, warmup=1)
    assert len(r.step_seconds) == 2 and r.median_step_s > 0 and r.inner_iters == 4
    assert r.per_iter_ms == pytest.approx(1000 * r.median_step_s / 4)
    assert r.device == "cpu" and r.peak_mem_mib is not None and r.peak_mem_mib >= 0


def test_isolated_configurations_run_interleaved_in_their_own_processes():
    """One spawned process per configuration; every configuration gets its timed steps and memory."""
    specs = [ProblemSpec(batch=2, points=16, iters=n, impl=impl, overrides=TINY)
             for n, impl in ((3, "fast"), (3, "naive"), (5, "fast"))]
    results = run_step_benches(specs, repeats=3, warmup=0, threads=1)
    assert [(r.spec["impl"], r.spec["iters"], r.inner_iters) for r in results] == [
        ("fast", 3, 3), ("naive", 3, 3), ("fast", 5, 5)]
    for r in results:
        assert len(r.step_seconds) == 3 and all(t > 0 for t in r.step_seconds)
        assert r.threads == 1 and r.peak_mem_mib is not None


def test_isolated_worker_errors_reach_the_caller():
    with pytest.raises(DDEQError, match="worker for fast / 2 iterations failed: .*device"):
        run_step_benches([ProblemSpec(batch=2, points=16, iters=2, device="cuda:99", overrides=TINY)], repeats=1)


def test_peak_memory_sees_a_temporary_allocation():
    """In a fresh process: after other tests, malloc may serve the 64 MiB from free memory that is already
    resident (RSS, and so the peak, would not move), which made this test flaky in the suite's process."""
    code = ("import torch\n"
            "from ddeqs.bench.memory import PeakMemory\n"
            "with PeakMemory(torch.device('cpu')) as pm:\n"
            "    x = torch.ones(16 * 2**20)  # 64 MiB, freed before the block ends\n"
            "    x.add_(1.0)\n"
            "    del x\n"
            "print(pm.mib)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    mib = float(proc.stdout.strip().splitlines()[-1])
    assert mib >= 60


def test_inner_solve_keeps_no_graph_across_iterations():
    p = build_problem(ProblemSpec(batch=2, points=16, iters=1, overrides=TINY))
    fmap = p.model.core.fmap
    ctx = fmap.prepare(p.batch.points, p.batch.mask)  # with autograd history, like in training
    seen = []

    def f(z: torch.Tensor) -> torch.Tensor:
        seen.append((z.is_leaf, z.grad_fn))  # every step starts from a fresh detached leaf
        return fmap.apply(z, None, ctx.detached())

    z0 = torch.randn(2, 10, 16)
    z, info = wgf_solve(f, z0, torch.ones(2, 10, dtype=torch.bool), iters=5, step=0.5)
    assert seen == [(True, None)] * 5
    assert z.grad_fn is None and not z.requires_grad and info["objective"].grad_fn is None
    assert all(prm.grad is None for prm in fmap.parameters())


def test_first_reach_and_first_stay():
    trace = torch.tensor([[5.0, 3.0, 1.0, 2.5, 1.0, 0.5], [4.0, 1.0, 1.0, 1.0, 1.0, 0.9]])
    target = torch.tensor([2.0, 1.0])
    assert first_reach(trace, target) == 2  # both samples at or below first at index 2
    assert first_stay(trace, target) == 4  # sample 0 goes back up at index 3
    assert first_reach(trace, torch.tensor([0.1, 0.1])) is None and first_stay(trace, torch.tensor([0.1, 0.1])) is None


def test_bench_step_cli_writes_ratios_and_memory(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "step", "--task", "completion", "--batch", "2", "--points", "20", "--iters", "2", "4",
                   "--impl", "fast", "naive", "--repeats", "1", "--warmup", "0", "--no-isolate", "--check",
                   "--check-iters", "4",
                   "--out", str(out), *TINY_ARGS])
    assert rc == 0
    text = capsys.readouterr().out
    assert "speed-up at 4 iterations: naive / fast" in text and "peak memory fast" in text
    data = json.loads(out.read_text())
    assert sorted((r["spec"]["impl"], r["spec"]["iters"]) for r in data["results"]) == [
        ("fast", 2), ("fast", 4), ("naive", 2), ("naive", 4)]
    assert set(data["ratios"]) == {"2", "4"} and all(v > 0 for v in data["ratios"].values())
    assert data["memory"]["fast"]["iters"] == [2, 4]
    assert data["z_star_max_abs_diff"] < 1e-9


def test_bench_momentum_cli_zero_momentum_reproduces_plain_descent(tmp_path: Path):
    out = tmp_path / "momentum.json"
    rc = cli_main(["bench", "momentum", "--batch", "2", "--points", "20", "--iters", "12", "--momentum", "0", "0.5",
                   "--nesterov", "no", "--tol", "0.01", "--out", str(out), *TINY_ARGS])
    assert rc == 0
    data = json.loads(out.read_text())
    plain, heavy = data["rows"]
    assert plain["momentum"] == 0 and plain["stay_iters"] is not None and plain["stay_iters"] <= 12
    assert plain["final_objective"] == pytest.approx(data["target_mean"], rel=1e-6)
    assert plain["stop_iters"] <= 12 and plain["stop_reached"]  # the ratio rule stops where plain descent got
    assert heavy["momentum"] == 0.5 and heavy["stop_iters"] <= 12
    assert 0 < data["objective_ratio"] < 1 and 1 <= heavy["tol_stop_iters"] <= 12


def test_bench_rejects_bad_arguments(capsys: pytest.CaptureFixture):
    assert cli_main(["bench", "step", "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err
    assert cli_main(["bench", "step", "--set", "solver.iter=5"]) == 2
    assert "did you mean 'solver.iters'" in capsys.readouterr().err
