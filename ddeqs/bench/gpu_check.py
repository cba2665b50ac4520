"""``make gpu-check`` (``python -m ddeqs.bench.gpu_check [--out DIR]``): the one command for a GPU machine.

Bounded to :data:`BUDGET_S` (8 minutes) in all; each part runs in its own process with its own
time limit (the rest of the budget at most) and its output goes to ``DIR/logs/``:

1. the test suite's CUDA tests (``pytest -m cuda tests/test_cuda.py``): device placement, every
   model's forward/backward on cuda, fast = naive inner solve on cuda, the CUDA-graph loop
   (captured, same values as the eager loop), the padded attention kernel;
2. ``ddeqs bench step --device cuda``, fast (eager), graph (fast with ``solver.cuda_graph``: the
   inner iteration replayed from a CUDA graph) and naive, at the paper's batch 64 and 200 inner
   iterations on the MNIST-pc-partial-shaped completion problem (with ``--check``: Z* of fast and naive);
3. ``ddeqs bench attention --set train.device=cuda``: plain SDPA against SDPA at the head width
   padded to 8 under each backend, at the DDEQ's attention shapes; the report says which value
   ``solver.attention=auto`` should take on CUDA (``ddeqs.models.ddeq.fastpath.AUTO_CUDA``);
4. ``ddeqs bench bf16`` on cuda: how far ``solver.bf16`` moves Z* of the paper-sized
   MNIST-pc-shaped completion problem (random weights, batch :data:`BF16_BATCH`) from float32 at 25
   and 200 inner iterations, next to float32's own distance to float64 (the CPU figures and the
   tolerance: docs/benchmarks.md, "bf16 tolerance");
5. one short digits training on cuda (``params/digits-ddeq.yaml``, 2 epochs);
6. the estimate of one MNIST-pc-partial training epoch at 200 inner iterations: the faster of
   fast and graph, its median step time x ``ceil(60,000 training clouds / batch 64)`` = 938 steps,
   next to the paper's Table 4 (3 h 01 per epoch on one H100) and the goal of 1/10 of it (18 min).
   The estimate counts training steps only (no evaluation, no data loading) on synthetic clouds of
   :data:`POINTS` input points (255 slots), about the size of an MNIST-pc cloud (MNIST digits have
   ~150 nonzero pixels on average, batches pad to their largest cloud).

Part time limits: :data:`LIMITS`. ``--only PART ...`` runs some of the parts (:data:`PARTS`), e.g. to
rerun the one that failed after a fix without spending the whole budget again.
Writes ``DIR/gpu-check.md`` and ``DIR/gpu-check.json`` (DIR: ``--out``, else ``$OUT``, else
``results/gpu-check``) and exits 0 when every part passed, 1 otherwise (the report is written in
both cases). Without CUDA, or without a package it needs (:data:`NEEDED_MODULES`), it stops at once with
one line on stderr and exit status 2.

On a GPU machine without internet whose ``python3`` holds a CUDA build of PyTorch (a lent cloud GPU, a
cluster node): ``make gpu-wheels`` on a machine with internet fetches the few wheels that are missing
there into ``.whl/``; with ``.whl/`` copied over, ``make gpu-check`` (``scripts/gpu_check.sh``) installs
them into a scratch folder and runs the check with that ``python3``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

BUDGET_S = 480.0  # 8 minutes for everything
PAPER_TRAIN_CLOUDS = 60_000  # MNIST-pc training split (docs/data.md)
PAPER_BATCH = 64
PAPER_ITERS = 200
PAPER_EPOCH_S = 3 * 3600 + 60  # Table 4: 3 h 01 per MNIST-pc-partial epoch at 200 iterations, one H100
GOAL_EPOCH_S = PAPER_EPOCH_S / 10  # issue goal: 10x the paper (18 min 6 s)
POINTS = 200  # input points of the synthetic clouds (ddeqs bench step's default)
#: Each part's time limit (s), in running order; they add up to at most BUDGET_S, so no part is squeezed
#: out by the ones before it. Sized for one H100/H200-class GPU: process start and CUDA initialisation
#: take ~10 s per process; bench step spawns one per implementation, and its naive 200-iteration steps are
#: the slowest thing timed; the two small benchmarks stop themselves (attention: --budget-s 30); the
#: digits training (~1,400 clouds, 2 epochs) is a correctness check and comes last.
LIMITS = {"cuda-tests": 90.0, "bench-step": 150.0, "bench-attention": 45.0, "bench-bf16": 60.0,
          "digits-prepare": 30.0, "digits-train": 100.0}
BF16_BATCH = 16
#: The parts, in running order (``--only`` picks some: a rerun after a fix need not repeat the others).
PARTS = ("cuda-tests", "bench-step", "bench-attention", "bench-bf16", "digits")


#: Modules the parts import, beyond the standard library and torch (``scripts/gpu_wheels.sh`` fetches the
#: ones a CUDA image of PyTorch with the scientific stack tends to lack: pydantic and torchdeq; sklearn
#: prepares the embedded digits dataset). tests/test_gpu_check.py checks the parts need no other package.
NEEDED_MODULES = ("numpy", "scipy", "sklearn", "yaml", "tqdm", "filelock", "pydantic", "torchdeq", "pytest")


def missing_modules_reason(modules: tuple[str, ...] = NEEDED_MODULES) -> str | None:
    """None when every module of ``modules`` imports, else one line naming the missing ones and the fix."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (f"gpu-check needs the Python packages {', '.join(missing)}, which {sys.executable} cannot import: "
            "`make install` where pip reaches PyPI; on a GPU machine without internet, `make gpu-wheels` on a "
            "machine with it, copy .whl/ over and run `make gpu-check` (scripts/gpu_check.sh) there")


def cuda_unavailable_reason() -> str | None:
    """None when a CUDA device can be used, else one line saying why not."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a hard dependency
        return f"torch cannot be imported ({err})"
    if not torch.cuda.is_available():
        built = torch.version.cuda
        what = f"this torch {torch.__version__} is a CPU-only build" if built is None else (
            f"torch {torch.__version__} (CUDA {built}) sees no GPU (driver missing or CUDA_VISIBLE_DEVICES empty)")
        return f"gpu-check needs a CUDA GPU: {what}; run it on a machine with an NVIDIA GPU"
    return None


def epoch_estimate(step_seconds: float, train_clouds: int = PAPER_TRAIN_CLOUDS, batch: int = PAPER_BATCH) -> dict:
    """Seconds of one training epoch from the median step time: ``ceil(train_clouds / batch)`` steps.

    Also its ratio to the paper's 3 h 01 (Table 4) and whether it meets the goal (<= 1/10 of it).
    """
    steps = math.ceil(train_clouds / batch)
    seconds = steps * step_seconds
    return {"train_clouds": train_clouds, "batch": batch, "steps": steps, "step_seconds": step_seconds,
            "epoch_seconds": seconds, "paper_epoch_seconds": PAPER_EPOCH_S, "speedup_vs_paper": PAPER_EPOCH_S / seconds,
            "goal_epoch_seconds": GOAL_EPOCH_S, "meets_goal": seconds <= GOAL_EPOCH_S}


def fastest_estimate(median_step_s: dict[str, float]) -> dict | None:
    """:func:`epoch_estimate` of the faster of ``fast`` and ``graph`` in ``{impl: median step s}``, with ``impl``
    naming it; None when neither was timed."""
    timed = {impl: median_step_s[impl] for impl in ("fast", "graph") if impl in median_step_s}
    if not timed:
        return None
    best = min(timed, key=timed.__getitem__)
    return {**epoch_estimate(timed[best]), "impl": best}


def hms(seconds: float) -> str:
    """``'3 h 01 min'`` / ``'17 min 40 s'`` / ``'42.0 s'``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


@dataclass
class Part:
    """One part of the check: its command, exit status (None: killed at its time limit) and wall time."""

    name: str
    command: list[str]
    rc: int | None
    seconds: float
    limit_s: float
    log: str
    summary: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def run_part(name: str, command: list[str], limit_s: float, log_dir: Path) -> Part:
    """Run ``command`` in its own process group, output to ``log_dir/<name>.log``; kill the group at ``limit_s``."""
    log = log_dir / f"{name}.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        fh.write("$ " + " ".join(command) + "\n")
        fh.flush()
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=max(limit_s, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: bench step's worker processes go too
            proc.wait()
            rc = None
            fh.write(f"\n[gpu-check] killed after its time limit of {limit_s:.0f} s\n")
    return Part(name, command, rc, time.perf_counter() - t0, limit_s, str(log))


def _tail(path: str, n: int = 1) -> str:
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    return " / ".join(lines[-n:])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def bench_summary(data: dict | None) -> tuple[dict, str]:
    """``({impl: median step s}, one-line summary)`` of a ``bench step --out`` JSON file."""
    if not data:
        return {}, "no results"
    med = {r["spec"]["impl"]: r["median_step_s"] for r in data.get("results", [])}
    parts = [f"{k} {v:.3f} s/step" for k, v in med.items()]
    for iters, ratio in data.get("ratios", {}).items():
        parts.append(f"naive/fast {ratio:.1f}x at {iters} iterations")
    for iters, ratio in data.get("graph_ratios", {}).items():
        parts.append(f"fast/graph {ratio:.2f}x at {iters} iterations")
    if "z_star_max_abs_diff" in data:
        parts.append(f"Z* max |fast - naive| {data['z_star_max_abs_diff']:.1e} (float64)")
    return med, ", ".join(parts)


def bf16_summary(data: dict | None) -> str:
    """One line of a ``bench bf16 --out`` JSON file: per iteration count, Z* and output error of bf16 vs fp32."""
    if not data or not data.get("rows"):
        return "no results"
    parts = []
    for r in data["rows"]:
        b, f = r["bf16_vs_fp32"], r["fp32_vs_fp64"]
        out = (f"{b['flips']} predictions flip" if "flips" in b else
               f"MMD² between outputs {b.get('mmd2_between_rel', float('nan')):.1e} of MMD² to target")
        parts.append(f"{r['iters']} it: Z* rel err bf16 {b['z_rel_err']:.1e} (fp32 vs fp64 {f['z_rel_err']:.1e}), "
                     f"{out}, tolerance {'kept' if r['within_tolerance'] else 'missed'}")
    return "; ".join(parts)


def write_report(out: Path, info: dict, parts: list[Part], estimate: dict | None,
                 attention: dict | None = None) -> tuple[Path, Path]:
    """``out/gpu-check.md`` and ``out/gpu-check.json``; ``attention``: the ``bench attention --out`` document."""
    js = out / "gpu-check.json"
    js.write_text(json.dumps({**info, "parts": [p.as_dict() for p in parts], "epoch_estimate": estimate,
                              "attention_decision": (attention or {}).get("decision")}, indent=2))
    lines = [f"# gpu-check: {info['gpu']}", "",
             f"torch {info['torch']} (CUDA {info['cuda']}), {info['date']}, commit {info['commit']}; "
             f"budget {BUDGET_S:.0f} s, used {info['seconds']:.0f} s.", "",
             "| part | result | seconds (limit) | details |", "|---|---|---|---|"]
    for p in parts:
        res = "passed" if p.ok else ("timed out" if p.rc is None else f"failed (exit {p.rc})")
        lines.append(f"| {p.name} | {res} | {p.seconds:.0f} ({p.limit_s:.0f}) | {p.summary} |")
    lines += ["", f"## Estimate: one MNIST-pc-partial epoch at {PAPER_ITERS} inner iterations, batch {PAPER_BATCH}", ""]
    if estimate:
        e = estimate
        lines += [
            f"{e['steps']} steps (ceil({e['train_clouds']:,} / {e['batch']})) x {e['step_seconds']:.3f} s "
            f"({e.get('impl', 'fast')}, the faster fast path, median training step, synthetic clouds of {POINTS} points) = **{hms(e['epoch_seconds'])}**; "
            f"paper (Table 4, one H100): {hms(e['paper_epoch_seconds'])}, {e['speedup_vs_paper']:.1f}x; "
            f"goal <= {hms(e['goal_epoch_seconds'])}: {'met' if e['meets_goal'] else 'not met'}.",
            "", "Training steps only: no evaluation, no data loading; real batches pad to their largest cloud."]
    else:
        lines.append("No estimate: the bench step part gave no fast-path step time." if "bench-step" in
                     info.get("parts_run", PARTS) else "No estimate: the bench step part was not run (--only).")
    from ddeqs.bench.attention import decision_lines

    lines += ["", *decision_lines(attention)]
    md = out / "gpu-check.md"
    md.write_text("\n".join(lines) + "\n")
    return md, js


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ddeqs.bench.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="report folder (default: $OUT, else results/gpu-check)")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART",
                    help=f"run only these parts ({', '.join(PARTS)}; default: all); the estimate needs bench-step")
    args = ap.parse_args(argv)
    reason = missing_modules_reason(NEEDED_MODULES) or cuda_unavailable_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    import torch

    out = Path(args.out or os.environ.get("OUT") or "results/gpu-check")
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    py = sys.executable
    only = set(args.only)

    def left(limit: float) -> float:
        return min(limit, BUDGET_S - (time.perf_counter() - t_start))

    parts: list[Part] = []
    med: dict[str, float] = {}
    attention = None
    if "cuda-tests" in only:
        p = run_part("cuda-tests", [py, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                                    "tests/test_cuda.py"], left(LIMITS["cuda-tests"]), logs)
        p.summary = _tail(p.log)
        parts.append(p)
    if "bench-step" in only:  # fast vs graph vs naive, paper batch and iterations
        step_json = out / "bench-step-completion.json"
        p = run_part("bench-step", [py, "-m", "ddeqs", "bench", "step", "--task", "completion", "--dataset", "mnist-pc",
                                    "--batch", str(PAPER_BATCH), "--points", str(POINTS), "--iters", str(PAPER_ITERS),
                                    "--impl", "fast", "graph", "naive", "--set", "train.device=cuda", "--repeats", "3",
                                    "--warmup", "1", "--check", "--out", str(step_json)], left(LIMITS["bench-step"]), logs)
        med, p.summary = bench_summary(_read_json(step_json))
        parts.append(p)
    if "bench-attention" in only:  # plain SDPA vs SDPA at head width 8, per backend (decides solver.attention=auto)
        from ddeqs.bench.attention import one_line

        att_json = out / "bench-attention.json"
        p = run_part("bench-attention", [py, "-m", "ddeqs", "bench", "attention", "--set", "train.device=cuda",
                                         "--budget-s", "30", "--out", str(att_json)], left(LIMITS["bench-attention"]), logs)
        attention = _read_json(att_json)
        p.summary = one_line(attention) if attention else _tail(p.log)
        parts.append(p)
    if "bench-bf16" in only:
        bf16_json = out / "bench-bf16.json"
        p = run_part("bench-bf16", [py, "-m", "ddeqs", "bench", "bf16", "--task", "completion", "--dataset", "mnist-pc",
                                    "--batch", str(BF16_BATCH), "--points", str(POINTS), "--iters", "25", str(PAPER_ITERS),
                                    "--set", "train.device=cuda", "--out", str(bf16_json)], left(LIMITS["bench-bf16"]), logs)
        p.summary = bf16_summary(_read_json(bf16_json)) if p.ok else _tail(p.log)
        parts.append(p)
    if "digits" in only:  # last: a correctness check (the embedded dataset: preparing it takes seconds)
        parts.append(_digits_part(py, out, logs, left))
    estimate = fastest_estimate(med)
    info = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit(),
            "seconds": time.perf_counter() - t_start, "budget_s": BUDGET_S, "parts_run": [p for p in PARTS if p in only]}
    md, js = write_report(out, info, parts, estimate, attention)
    print(md.read_text())
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0 if all(p.ok for p in parts) and (estimate is not None or "bench-step" not in only) else 1


def _digits_part(py: str, out: Path, logs: Path, left: Callable[[float], float]) -> Part:
    """Prepare the digits dataset, then train ``params/digits-ddeq.yaml`` 2 epochs on cuda; the failing step's Part."""
    prep = run_part("digits-prepare", [py, "-m", "ddeqs", "data", "prepare", "digits"], left(LIMITS["digits-prepare"]), logs)
    if not prep.ok:
        prep.summary = _tail(prep.log)
        return prep
    run_dir = out / "digits-cls-cuda"
    p = run_part("digits-train", [py, "-m", "ddeqs", "train", "--params", "params/digits-ddeq.yaml",
                                  "--set", "train.epochs=2", "--set", "train.device=cuda",
                                  "--no-tracking", "--out", str(run_dir), "--quiet",
                                  "--overwrite"],  # this report's own run: a rerun of the check replaces it
                 left(LIMITS["digits-train"]), logs)
    m = _read_json(run_dir / "metrics.json")
    if m:
        t = m.get("test", {})
        p.summary = (f"{m.get('device')}: {m.get('epochs')} epochs, {m.get('seconds_per_epoch', 0):.1f} s/epoch, "
                     f"test accuracy {100 * t.get('accuracy', float('nan')):.1f} ± "
                     f"{100 * t.get('accuracy_se', float('nan')):.1f} %")
    else:
        p.summary = _tail(p.log)
    return p


if __name__ == "__main__":
    sys.exit(main())
