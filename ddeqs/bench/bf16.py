"""How far ``solver.bf16`` moves the DDEQ's inner solution Z* (``ddeqs bench bf16``).

From the same weights, input batch and initial state (Z0 for classification, the free particles'
draw for completion), the inner problem is solved three times per iteration count: in float32
(the reference), with ``solver.bf16`` (F's Z branch under bf16 autocast of the device, the MMD
gradient and the particle update in float32) and in float64 (model and batch cast). float64 is the
yardstick: ``fp32 vs fp64`` is how far float32's own rounding moves Z* after the same iterations,
so ``bf16 vs fp32`` can be read against it.

Per iteration count and pair of precisions (``bf16_vs_fp32``, ``fp32_vs_fp64``):

* ``z_rel_err``: ``||Z*_a - Z*_b|| / ||Z*_b||`` over the real movable rows of the whole batch
  (classification: every particle; completion: the free particles, in Z's 128-wide coordinates);
  ``z_rel_err_worst``: the same per sample, its largest; ``z_max_abs``: the largest entry of
  ``|Z*_a - Z*_b|``;
* classification: ``logit_max_abs`` (max |Δ logit|), ``flips`` and ``flip_share`` (predictions
  that differ);
* completion: ``mmd2_between``, the mean Riesz MMD² between the two output clouds (input rows
  agree bit-exactly, so it measures the free particles), and ``mmd2_between_rel``, that value
  over the mean MMD² of ``b``'s output to its target (the test metric ``mmd2``): how large the
  precision change is next to the model's own error, in the metric's units; ``metric_rel_change``:
  the relative change of that test metric itself.

``fp32_redraw`` (output fields only): float32 from a second initial-state draw against float32, the
model's own dependence on Z0 (or on the free particles' draw): how many predictions, or how much
of the output, a new random start already changes.

Per precision: the final objective ``½MMD²(Z*, F(Z*))`` (batch mean, F evaluated in the model's
dtype: float32 for the bf16 solve too), the task metric (accuracy, or MMD² to the target) and the
solve's wall time. The tolerance the verdict applies is :func:`verdict`'s (docs/benchmarks.md,
"bf16 tolerance").
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn as nn

from ddeqs.batch import CloudBatch
from ddeqs.bench.machine import sync
from ddeqs.mmd import riesz_mmd2

PRECISIONS = ("float32", "bf16", "float64")
PAIRS = {"bf16_vs_fp32": ("bf16", "float32"), "fp32_vs_fp64": ("float32", "float64")}

#: the stated tolerance (:func:`verdict`): bf16 may move Z* and the output at most this many times as far
#: from float32 as float32's own rounding moves them from float64 after the same iterations
ERROR_FACTOR = 10.0
#: parts of F that :func:`float32_parts` can keep in float32 inside a bf16 solve (``--fp32-part``):
#: the attention sublayers (projections, scores, softmax, output projection; and their VJP), the
#: feed-forward sublayers, the embedding MLPs (``z_embed``, ``z_up``), the bilinear EI layer with its
#: LayerNorm (:meth:`ddeqs.models.ddeq.fmap.FMap.bilinear`, width ``b`` = 16)
PARTS = ("attention", "ffn", "embed", "bilinear")


@dataclass
class Problem:
    """What the study solves: ``model`` (a DDEQ in eval mode), one ``batch`` and its ``init`` (float64)."""

    task: str
    model: nn.Module
    batch: CloudBatch
    init: torch.Tensor  # Z0 (B, K, p) or the free particles' draw (B, F, d), float64 on the batch's device
    device: torch.device
    source: str  # "run DIR" or "random weights (...)"


@dataclass
class Solve:
    """One precision's solve: Z* and the output (float64 copies), objective ``(B,)``, seconds."""

    z_star: torch.Tensor
    output: Any  # ModelOutput, fields cast to float64
    objective: torch.Tensor
    seconds: float


@dataclass
class Bf16Row:
    """Figures of one iteration count (see the module doc)."""

    iters: int
    objective: dict[str, float]
    metric: dict[str, float]
    seconds: dict[str, float]
    bf16_vs_fp32: dict[str, float]
    fp32_vs_fp64: dict[str, float]
    fp32_redraw: dict[str, float]
    error_ratio: float  # z_rel_err of bf16_vs_fp32 / that of fp32_vs_fp64
    within_tolerance: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def initial_state(model: nn.Module, task: str, batch: CloudBatch, seed: int) -> torch.Tensor:
    """A seeded float64 draw: Z0 ``(B, K, p)`` (classification) or the free particles ``(B, F, d)``."""
    g = torch.Generator().manual_seed(seed)
    B, N, d = batch.points.shape
    if task == "classification":
        shape = (B, model.z_particles, model.z_dim)
    else:
        z_mask = model.layout(batch.mask.cpu())[0]
        shape = (B, z_mask.shape[1] - N, d)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(batch.points.device)


def _float32(fn: Callable, device_type: str) -> Callable:
    def run(*args: Any, **kw: Any) -> Any:
        args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kw)

    return run


@contextlib.contextmanager
def float32_parts(model: nn.Module, parts: Sequence[str], device_type: str) -> Iterator[None]:
    """Inside this block, the ``parts`` (of :data:`PARTS`) of ``model``'s F run with autocast off, inputs in float32.

    A diagnostic of the study (which part of F's bf16 rounding moves Z*), not a run setting: the
    methods are replaced on the module instances and restored on exit.
    """
    from ddeqs.models.ddeq.attention import MaskedAttention
    from ddeqs.models.ddeq.fmap import FMap
    from ddeqs.models.ddeq.layers import EmbedMLP, FeedForward

    kinds = {"attention": (MaskedAttention, ("attend", "kv")), "ffn": (FeedForward, ("forward",)),
             "embed": (EmbedMLP, ("forward",)), "bilinear": (FMap, ("bilinear",))}
    patched: list[tuple[nn.Module, str]] = []
    try:
        for part in parts:
            cls, methods = kinds[part]
            for m in model.modules():
                if isinstance(m, cls):
                    for name in methods:
                        setattr(m, name, _float32(getattr(m, name), device_type))
                        patched.append((m, name))
        yield
    finally:
        for m, name in patched:
            m.__dict__.pop(name, None)


def _set_solver(model: nn.Module, iters: int, bf16: bool) -> None:
    core = model.core
    core.set_solver(core.solver_cfg.model_copy(update={"eval_iters": iters, "iters": iters, "bf16": bf16}))


def solve(problem: Problem, iters: int, precision: str, fp32_parts: Sequence[str] = ()) -> Solve:
    """Solve ``problem`` with ``iters`` inner iterations in ``precision`` (one of :data:`PRECISIONS`).

    The model is cast to float64 for ``"float64"``, else to float32, and back to its own dtype
    afterwards; ``fp32_parts`` (bf16 only): parts of F kept in float32 (:func:`float32_parts`).
    """
    dtype = torch.float64 if precision == "float64" else torch.float32
    model = problem.model
    orig = next(model.parameters()).dtype
    model.eval().to(dtype)
    _set_solver(model, iters, precision == "bf16")
    pts = problem.batch.points.to(dtype)
    init = problem.init.to(dtype)
    try:
        sync(problem.device)
        t0 = time.perf_counter()
        parts = fp32_parts if precision == "bf16" else ()
        with torch.no_grad(), float32_parts(model, parts, problem.device.type):
            if problem.task == "classification":
                out = model(pts, problem.batch.mask, z0=init)
            else:
                out = model(pts, problem.batch.mask, free_init=init)
        sync(problem.device)
        seconds = time.perf_counter() - t0
    finally:
        model.to(orig)
    for name in ("logits", "points", "z_star", "fz_star"):
        value = getattr(out, name, None)
        if value is not None:
            setattr(out, name, value.double())
    return Solve(out.z_star, out, out.solver["final_objective"].double(), seconds)


def _movable(out: Any) -> torch.Tensor:
    """``(B, K)`` rows of Z the solve moves: every real particle, or completion's free ones."""
    return out.free_mask if getattr(out, "free_mask", None) is not None else out.z_mask


def compare(task: str, a: Solve, b: Solve, target: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, float]:
    """Differences of solve ``a`` from the reference ``b`` (see the module doc for the fields)."""
    rows = _movable(b.output).unsqueeze(-1)
    diff = torch.where(rows, a.z_star - b.z_star, 0.0)
    ref = torch.where(rows, b.z_star, 0.0)
    per_sample = diff.flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-300)
    res = {
        "z_rel_err": float(diff.norm() / ref.norm().clamp_min(1e-300)),
        "z_rel_err_worst": float(per_sample.max()),
        "z_max_abs": float(diff.abs().max()),
    }
    if task == "classification":
        la, lb = a.output.logits, b.output.logits
        flips = int((la.argmax(-1) != lb.argmax(-1)).sum())
        res.update(logit_max_abs=float((la - lb).abs().max()), flips=flips, flip_share=flips / la.shape[0])
    else:
        oa, ob = a.output, b.output
        between = float(riesz_mmd2(oa.points, oa.mask, ob.points, ob.mask).mean())
        res["mmd2_between"] = between
        if target is not None:
            ma, mb = _to_target(oa, target), _to_target(ob, target)
            res["mmd2_between_rel"] = between / mb if mb > 0 else float("inf")
            res["metric_rel_change"] = abs(ma - mb) / mb if mb > 0 else float("inf")
    return res


def _to_target(out: Any, target: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean Riesz MMD² of the output clouds to their targets (the completion test metric ``mmd2``)."""
    return float(riesz_mmd2(out.points, out.mask, target[0].double(), target[1]).mean())


def _metric(problem: Problem, s: Solve) -> float:
    if problem.task == "classification":
        labels = problem.batch.labels
        return float((s.output.logits.argmax(-1) == labels).double().mean()) if labels is not None else float("nan")
    target = _target(problem)
    return _to_target(s.output, target) if target is not None else float("nan")


def _target(problem: Problem) -> tuple[torch.Tensor, torch.Tensor] | None:
    b = problem.batch
    return None if b.target is None else (b.target, b.target_mask)


def verdict(bf16_vs_fp32: dict[str, float], fp32_vs_fp64: dict[str, float]) -> bool:
    """Whether bf16 keeps the stated tolerance at one iteration count (float32's own error as the yardstick).

    Z*: ``z_rel_err(bf16, fp32) <= ERROR_FACTOR · z_rel_err(fp32, fp64)``; output: classification: no
    more predictions differ from float32 than float32's differ from float64; completion:
    ``mmd2_between(bf16, fp32) <= ERROR_FACTOR · mmd2_between(fp32, fp64)``. That is: bf16 is as
    good as float32 wherever float32's own result is no more reliable than an order of magnitude
    better than bf16's (docs/benchmarks.md, "bf16 tolerance").
    """
    ok = bf16_vs_fp32["z_rel_err"] <= ERROR_FACTOR * fp32_vs_fp64["z_rel_err"]
    if "flips" in bf16_vs_fp32:
        ok = ok and bf16_vs_fp32["flips"] <= fp32_vs_fp64["flips"]
    if "mmd2_between" in bf16_vs_fp32:
        ok = ok and bf16_vs_fp32["mmd2_between"] <= ERROR_FACTOR * fp32_vs_fp64["mmd2_between"]
    return ok


def bf16_study(problem: Problem, iters: Sequence[int], fp32_parts: Sequence[str] = ()) -> list[Bf16Row]:
    """One :class:`Bf16Row` per iteration count in ``iters``; the model keeps its dtype and solver settings.

    ``fp32_parts``: parts of F the bf16 solve keeps in float32 (:func:`float32_parts`; default: none,
    the whole Z branch in bf16 as ``solver.bf16`` runs it).
    """
    rows = []
    target = _target(problem)
    saved = problem.model.core.solver_cfg
    g = torch.Generator().manual_seed(12_345)  # a second start of the same shape (Z0 or free particles)
    redrawn = replace(problem, init=torch.randn(problem.init.shape, generator=g, dtype=torch.float64).to(problem.device))
    try:
        for n in iters:
            solves = {p: solve(problem, n, p, fp32_parts) for p in PRECISIONS}
            pairs = {name: compare(problem.task, solves[a], solves[b], target) for name, (a, b) in PAIRS.items()}
            b16, f32 = pairs["bf16_vs_fp32"], pairs["fp32_vs_fp64"]
            other = compare(problem.task, solve(redrawn, n, "float32"), solves["float32"], target)
            rows.append(Bf16Row(
                iters=n,
                objective={p: float(s.objective.mean()) for p, s in solves.items()},
                metric={p: _metric(problem, s) for p, s in solves.items()},
                seconds={p: s.seconds for p, s in solves.items()},
                bf16_vs_fp32=b16, fp32_vs_fp64=f32,
                fp32_redraw={k: v for k, v in other.items() if not k.startswith("z_")},
                error_ratio=b16["z_rel_err"] / f32["z_rel_err"] if f32["z_rel_err"] > 0 else float("inf"),
                within_tolerance=verdict(b16, f32),
            ))
    finally:
        problem.model.core.set_solver(saved)
    return rows


def problem_from_run(run_dir: str | Path, batch: int, overrides: Sequence[str] = (), seed: int = 0) -> Problem:
    """The first ``batch`` test clouds of a finished DDEQ run folder, with its trained weights.

    ``overrides``: ``--set`` keys applied to the run's configuration; only ``solver.*`` (how the
    inner problem is solved) and ``train.device`` / ``train.threads`` (where) are accepted.
    """
    from ddeqs.config import ConfigError, load_config
    from ddeqs.training.evaluate import load_run_model
    from ddeqs.training.seeding import configure_torch

    bad = [o for o in overrides if not o.split("=", 1)[0].startswith(("solver.", "train.device", "train.threads"))]
    if bad:
        raise ConfigError(f"bench bf16 --run: only solver.*, train.device and train.threads can be set (got {bad})")
    cfg = load_config(Path(run_dir) / "config.yaml", list(overrides))
    _, model, source, device = load_run_model(run_dir, device=cfg.train.device)
    configure_torch(cfg.train)  # the run's threads, or those --set gives
    if cfg.model.name != "ddeq":
        raise ConfigError(f"{run_dir}: the bf16 study needs a DDEQ run (this run is {cfg.model.name!r})")
    model.core.set_solver(cfg.solver)
    data = next(iter(source.loader("test", shuffle=False, batch_size=batch))).to(device)
    return Problem(cfg.task, model.eval(), data, initial_state(model, cfg.task, data, seed), device, f"run {run_dir}")


def synthetic_problem(spec: Any) -> Problem:
    """Random weights and a synthetic batch of :mod:`ddeqs.bench.problem` (``spec``: a ``ProblemSpec``)."""
    from ddeqs.bench.problem import build_problem

    p = build_problem(spec)
    return Problem(spec.task, p.model.eval(), p.batch, initial_state(p.model, spec.task, p.batch, spec.seed + 1),
                   p.device, f"random weights (seed {spec.seed}), synthetic {spec.shape}-shaped batch")
