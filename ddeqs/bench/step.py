"""``ddeqs bench step``: time full DDEQ training steps, fast vs naive inner solve.

One step = the inner WGF solve (``solver.iters`` iterations, no early stop) + torchdeq's 1-step
phantom-gradient backward + the Adam step (:meth:`BenchProblem.train_step`). After ``warmup``
untimed steps, ``repeats`` steps are timed (CUDA synchronised) and the median is reported, with
the median divided by the inner iterations, the peak memory of the timed steps
(:mod:`ddeqs.bench.memory`) and the device. ``isolate=True`` runs each configuration in a fresh
spawned process, so memory figures of one configuration do not leak into the next.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from ddeqs.bench.memory import PeakMemory
from ddeqs.bench.problem import ProblemSpec, build_problem


@dataclass
class StepResult:
    """Timings of one configuration. Seconds per step; ``per_iter_ms`` = median step / inner iterations."""

    spec: dict
    device: str
    threads: int
    step_seconds: list[float]
    median_step_s: float
    per_iter_ms: float
    inner_iters: int
    peak_mem_mib: float | None
    mem_kind: str

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_steps(spec: ProblemSpec, repeats: int = 5, warmup: int = 1, threads: int | None = None) -> StepResult:
    """Time ``repeats`` training steps of ``spec`` in this process (see module doc)."""
    from ddeqs.training.seeding import device_label

    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")
    if threads:
        torch.set_num_threads(threads)
    problem = build_problem(spec)
    for _ in range(warmup):
        problem.train_step()
    _sync(problem.device)
    times: list[float] = []
    iters = 0
    with PeakMemory(problem.device) as pm:
        for _ in range(repeats):
            t0 = time.perf_counter()
            info = problem.train_step()
            _sync(problem.device)
            times.append(time.perf_counter() - t0)
            iters = int(info.get("iters", 0))
    med = statistics.median(times)
    return StepResult(
        spec=spec.label(), device=device_label(problem.device), threads=torch.get_num_threads(),
        step_seconds=times, median_step_s=med, per_iter_ms=1000.0 * med / max(iters, 1), inner_iters=iters,
        peak_mem_mib=pm.mib, mem_kind=pm.kind,
    )


def run_step_bench(
    spec: ProblemSpec, repeats: int = 5, warmup: int = 1, threads: int | None = None, isolate: bool = True
) -> StepResult:
    """:func:`measure_steps`, in a fresh spawned process when ``isolate`` (default)."""
    if not isolate:
        return measure_steps(spec, repeats, warmup, threads)
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(measure_steps, spec, repeats, warmup, threads).result()


def compare_fixed_points(spec: ProblemSpec, iters: int = 20, dtype: torch.dtype = torch.float64) -> float:
    """Max ``|Z*_fast - Z*_naive|`` of one eval-mode solve with shared weights, input and ``Z0``.

    Both problems are built with the same seed (same weights and batch); ``iters`` inner
    iterations (the naive path is slow, a few dozen suffice to compare trajectories). In float64
    by default: with the paper's step size the flow amplifies float32 rounding differences
    between the two evaluation orders to ~1e-2 within 20 iterations, which would hide a real bug.
    """
    from dataclasses import replace

    z = {}
    for impl in ("fast", "naive"):
        problem = build_problem(replace(spec, impl=impl, iters=iters, compile=False, bf16=False))
        z[impl] = problem.fixed_point(seed=spec.seed + 1, dtype=dtype)
    return float((z["fast"] - z["naive"]).abs().max())
