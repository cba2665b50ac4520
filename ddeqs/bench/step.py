"""``ddeqs bench step``: time full DDEQ training steps, fast vs naive inner solve.

One step = the inner WGF solve (``solver.iters`` iterations, no early stop) + torchdeq's 1-step
phantom-gradient backward + the Adam step (:meth:`BenchProblem.train_step`). After ``warmup``
untimed steps, ``repeats`` steps are timed (CUDA synchronised) and the median is reported, with
the median divided by the inner iterations, the peak memory of the timed steps
(:mod:`ddeqs.bench.memory`) and the device.

:func:`run_step_benches` (``isolate=True``, the default of ``ddeqs bench step``) runs each
configuration in its own spawned process, so memory figures of one configuration do not leak
into the next, and **interleaves** the timed steps: round ``r`` times step ``r`` of every
configuration, one process at a time, in alternating order. A shared machine whose speed
drifts during the run then slows all configurations alike, so their ratio stays meaningful
(timing all steps of one configuration, then all of the next, puts the drift into the ratio).
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from ddeqs.bench.machine import sync
from ddeqs.bench.memory import PeakMemory
from ddeqs.bench.problem import ProblemSpec, build_problem
from ddeqs.errors import DDEQError


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


def _result(spec: ProblemSpec, problem, times: list[float], iters: int, pm: PeakMemory) -> StepResult:  # type: ignore[no-untyped-def]
    from ddeqs.training.seeding import device_label

    med = statistics.median(times)
    return StepResult(
        spec=spec.label(), device=device_label(problem.device), threads=torch.get_num_threads(),
        step_seconds=times, median_step_s=med, per_iter_ms=1000.0 * med / max(iters, 1), inner_iters=iters,
        peak_mem_mib=pm.mib, mem_kind=pm.kind,
    )


def _check_counts(repeats: int, warmup: int) -> None:
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")


def _timed_step(problem) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    info = problem.train_step()
    sync(problem.device)
    return time.perf_counter() - t0, int(info.get("iters", 0))


def _ready(spec: ProblemSpec, warmup: int, threads: int | None):  # type: ignore[no-untyped-def]
    if threads:
        torch.set_num_threads(threads)
    problem = build_problem(spec)
    for _ in range(warmup):
        problem.train_step()
    sync(problem.device)
    return problem


def measure_steps(spec: ProblemSpec, repeats: int = 5, warmup: int = 1, threads: int | None = None) -> StepResult:
    """Time ``repeats`` training steps of ``spec`` in this process (see module doc)."""
    _check_counts(repeats, warmup)
    problem = _ready(spec, warmup, threads)
    times: list[float] = []
    iters = 0
    with PeakMemory(problem.device) as pm:
        for _ in range(repeats):
            dt, iters = _timed_step(problem)
            times.append(dt)
    return _result(spec, problem, times, iters, pm)


def _step_worker(conn, spec: ProblemSpec, warmup: int, threads: int | None) -> None:  # type: ignore[no-untyped-def]
    """Spawned process of :func:`run_step_benches`: build and warm up, then one timed step per ``"step"``."""
    try:
        problem = _ready(spec, warmup, threads)
        conn.send(("ready", None))
        times: list[float] = []
        iters = 0
        with PeakMemory(problem.device) as pm:
            while conn.recv() == "step":
                dt, iters = _timed_step(problem)
                times.append(dt)
                conn.send(("step", dt))
        conn.send(("done", _result(spec, problem, times, iters, pm)))
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", (isinstance(err, DDEQError), f"{type(err).__name__}: {err}")))
    finally:
        conn.close()


def _receive(conn, proc, spec: ProblemSpec):  # type: ignore[no-untyped-def]
    try:
        kind, value = conn.recv()
    except EOFError:
        raise RuntimeError(f"benchmark worker for {spec.impl} / {spec.iters} iterations died "
                           f"(exit code {proc.exitcode}); out of memory?") from None
    if kind == "error":
        input_error, text = value  # input errors (a bad device, config) stay DDEQError: no traceback in the CLI
        raise (DDEQError if input_error else RuntimeError)(
            f"benchmark worker for {spec.impl} / {spec.iters} iterations failed: {text}")
    return value


def run_step_benches(
    specs: list[ProblemSpec], repeats: int = 5, warmup: int = 1, threads: int | None = None, isolate: bool = True
) -> list[StepResult]:
    """:func:`measure_steps` of every spec; with ``isolate`` one spawned process each, timed steps interleaved.

    Interleaving (see module doc): round ``r`` times step ``r`` of every spec, one process at a
    time (the others wait), forwards in even rounds and backwards in odd ones.
    """
    _check_counts(repeats, warmup)
    if not isolate:
        return [measure_steps(spec, repeats, warmup, threads) for spec in specs]
    ctx = mp.get_context("spawn")
    workers = []
    try:
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_step_worker, args=(child, spec, warmup, threads), daemon=True)
            proc.start()
            child.close()
            workers.append((parent, proc, spec))
        for conn, proc, spec in workers:  # warm-ups run side by side; nothing is timed yet
            _receive(conn, proc, spec)
        for r in range(repeats):
            for conn, proc, spec in (workers if r % 2 == 0 else workers[::-1]):
                conn.send("step")
                _receive(conn, proc, spec)
        results = []
        for conn, proc, spec in workers:
            conn.send("done")
            results.append(_receive(conn, proc, spec))
        return results
    finally:
        for conn, proc, _ in workers:
            conn.close()
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def run_step_bench(
    spec: ProblemSpec, repeats: int = 5, warmup: int = 1, threads: int | None = None, isolate: bool = True
) -> StepResult:
    """:func:`measure_steps`, in a fresh spawned process when ``isolate`` (default)."""
    return run_step_benches([spec], repeats, warmup, threads, isolate)[0]


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
