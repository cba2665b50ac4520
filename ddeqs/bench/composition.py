"""Does a trained DDEQ's output depend on which other clouds share its batch? (issue: batch composition)

Each test cloud is solved twice with the SAME initial state (Z0 for classification, the free particles'
initial draw for completion) and the same weights: once alone (a batch of one, no padding), once inside
a padded batch of ``batch`` clouds (plus ``extra_pad`` all-padding rows). Padding is masked everywhere,
so in exact arithmetic both solves agree; the differences measured here are float rounding amplified by
the inner flow. Comparing float32 with float64 separates the two: float64 differences near 1e-10 mean
no padding leak, and any float32 difference is rounding growth along the flow.

Classification: max |Δ logit| per cloud and how many predictions flip. Completion: max |Δ| of the free
particles per cloud (in the data's units, clouds have unit variance) and the Riesz MMD² between the two
outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddeqs.batch import pad_clouds
from ddeqs.mmd import riesz_mmd2


@dataclass
class CompositionResult:
    """Figures of one precision (``dtype``); per-cloud arrays have one entry per measured cloud."""

    dtype: str
    task: str
    iters: int
    clouds: int
    batch: int
    max_abs_diff: float          # largest |Δ| over clouds (logits, or free-particle coordinates)
    median_abs_diff: float       # median over clouds of the per-cloud max |Δ|
    flips: int                   # classification: predictions that differ (completion: 0)
    mmd2_between: float          # completion: mean MMD² between alone and batched outputs (classification: 0)
    accuracy_alone: float | None  # classification: accuracy of the alone solves on these clouds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _initial_states(model: torch.nn.Module, task: str, sizes: list[int], dim: int, seed: int) -> list[torch.Tensor]:
    """One seeded initial draw per cloud: Z0 ``(1, K, p)`` (classification) or free-particle noise ``(1, F, d)``."""
    from ddeqs.models.ddeq.completion import free_counts

    out = []
    for i, n in enumerate(sizes):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        if task == "classification":
            out.append(torch.randn(1, model.z_particles, model.z_dim, generator=g, dtype=torch.float64))
        else:
            f = int(free_counts(torch.ones(1, n, dtype=torch.bool), model.free_share)[0])
            out.append(torch.randn(1, f, dim, generator=g, dtype=torch.float64))
    return out


def _solve(model: torch.nn.Module, task: str, clouds: list[torch.Tensor], inits: list[torch.Tensor],
           extra_pad: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Solve ``clouds`` as ONE padded batch; returns per cloud the logits ``(C,)`` or free particles ``(F_i, d)``."""
    n_max = max(int(c.shape[0]) for c in clouds) + extra_pad
    pts, mask = pad_clouds(clouds, length=n_max, dtype=dtype)
    # padded rows get far-away garbage: masking must make their value irrelevant
    pts = torch.where(mask.unsqueeze(-1), pts, torch.full_like(pts, 37.0))
    with torch.no_grad():
        if task == "classification":
            z0 = torch.cat([z.to(dtype) for z in inits], 0)
            out = model(pts, mask, z0=z0)
            return list(out.logits.double())
        F = max(int(z.shape[1]) for z in inits)
        noise = torch.zeros(len(clouds), F, inits[0].shape[-1], dtype=dtype)
        for b, z in enumerate(inits):
            noise[b, : z.shape[1]] = z[0].to(dtype)
        out = model(pts, mask, free_init=noise)
        res = []
        for b in range(len(clouds)):
            free = out.points[b][out.free_mask[b]]
            res.append(free.double())
        return res


def measure_composition(
    model: torch.nn.Module, task: str, clouds: list[np.ndarray], labels: list[int] | None = None, *,
    batch: int = 8, extra_pad: int = 16, dtype: torch.dtype = torch.float32, seed: int = 0,
) -> CompositionResult:
    """Alone-vs-batched differences of ``model`` (a DDEQ in eval mode) on ``clouds`` (each ``(n_i, d)``).

    ``batch`` clouds share a batch (the last batch may be smaller), padded to the longest cloud plus
    ``extra_pad`` rows. The model is cast to ``dtype`` for the measurement and cast back afterwards.
    """
    if not clouds:
        raise ValueError("measure_composition: no clouds given")
    orig = next(model.parameters()).dtype
    was_training = model.training
    model.eval().to(dtype)
    try:
        tens = [torch.as_tensor(c, dtype=torch.float64) for c in clouds]
        inits = _initial_states(model, task, [int(c.shape[0]) for c in tens], int(tens[0].shape[-1]), seed)
        alone = [_solve(model, task, [c], [z], 0, dtype)[0] for c, z in zip(tens, inits)]
        batched: list[torch.Tensor] = []
        for s in range(0, len(tens), batch):
            batched.extend(_solve(model, task, tens[s : s + batch], inits[s : s + batch], extra_pad, dtype))
    finally:
        model.to(orig).train(was_training)
    per_cloud = np.array([float((a - b).abs().max()) for a, b in zip(alone, batched)])
    flips, mmd2, acc = 0, 0.0, None
    if task == "classification":
        pa = [int(a.argmax()) for a in alone]
        flips = sum(int(a != int(b.argmax())) for a, b in zip(pa, batched))
        if labels is not None:
            acc = float(np.mean([p == y for p, y in zip(pa, labels)]))
    else:
        vals = [float(riesz_mmd2(a[None], None, b[None], None)[0]) for a, b in zip(alone, batched)]
        mmd2 = float(np.mean(vals))
    iters = int(model.core.solver_cfg.eval_iters or model.core.solver_cfg.iters)
    return CompositionResult(
        dtype=str(dtype).replace("torch.", ""), task=task, iters=iters, clouds=len(tens), batch=batch,
        max_abs_diff=float(per_cloud.max()), median_abs_diff=float(np.median(per_cloud)), flips=flips,
        mmd2_between=mmd2, accuracy_alone=acc,
    )


def composition_from_run(
    run_dir: str | Path, *, clouds: int = 32, batch: int = 8, extra_pad: int = 16, iters: int | None = None,
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64), seed: int = 0,
) -> list[CompositionResult]:
    """:func:`measure_composition` on the first ``clouds`` test clouds of a trained DDEQ run folder.

    ``iters``: inner iterations of the evaluation solves (default: the run's ``solver.eval_iters`` or
    ``solver.iters``).
    """
    from ddeqs.config import ConfigError
    from ddeqs.training.evaluate import load_run_model

    cfg, model, source, _ = load_run_model(run_dir, device="cpu")
    if cfg.model.name != "ddeq":
        raise ConfigError(f"{run_dir}: batch composition is measured for DDEQ runs (this run is {cfg.model.name!r})")
    if iters is not None:
        model.core.set_solver(cfg.solver.model_copy(update={"eval_iters": iters}))
    loader = source.loader("test", shuffle=False, batch_size=1)
    pts: list[np.ndarray] = []
    labels: list[int] = []
    for b in loader:
        pts.append(b.points[0][b.mask[0]].double().numpy())
        labels.append(int(b.labels[0]) if b.labels is not None else -1)
        if len(pts) >= clouds:
            break
    return [measure_composition(model, cfg.task, pts, labels if cfg.task == "classification" else None,
                                batch=batch, extra_pad=extra_pad, dtype=dt, seed=seed) for dt in dtypes]
