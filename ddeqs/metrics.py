"""Evaluation metrics between point clouds, batched and masked.

Every function takes padded batches with explicit masks (``x`` ``(B, N, d)`` with ``x_mask``
``(B, N)``, ``y`` ``(B, M, d)`` with ``y_mask`` ``(B, M)``) and returns one value per cloud,
``(B,)``. Masses are uniform over the real points of each cloud.

* :func:`w2`: exact 2-Wasserstein distance, ``sqrt`` of the optimal transport cost with squared
  Euclidean ground cost (POT's network simplex ``ot.emd2``; paper Table 2).
* :func:`ot_distance`: exact optimal transport cost with Euclidean ground cost (= W1; Table 6).
* :func:`chamfer`: symmetric Chamfer distance (mean nearest-neighbour distance both ways).
* :func:`mmd2`: Riesz-kernel MMD² (:func:`ddeqs.mmd.riesz_mmd2`).
* :func:`mean_and_se`: mean and standard error over samples.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ddeqs.mmd import riesz_mmd2

__all__ = ["chamfer", "mean_and_se", "mmd2", "ot_cost", "ot_distance", "w2"]


def _clouds(x: torch.Tensor, x_mask: torch.Tensor | None) -> list[np.ndarray]:
    """Real points of each cloud as float64 numpy arrays (POT is exact in float64)."""
    x = x.detach().to("cpu", torch.float64)
    if x_mask is None:
        return [c.numpy() for c in x]
    m = x_mask.detach().to("cpu", torch.bool)
    return [c[mi].numpy() for c, mi in zip(x, m)]


def ot_cost(x: np.ndarray, y: np.ndarray, power: int = 2) -> float:
    """Exact OT cost between uniform clouds ``x`` ``(n, d)`` and ``y`` ``(m, d)``; ground cost ``|x - y|^power``."""
    import ot  # POT; imported lazily (pulls in scipy)

    if len(x) == 0 or len(y) == 0:
        raise ValueError(f"optimal transport between an empty cloud and a cloud of {max(len(x), len(y))} points")
    if power not in (1, 2):
        raise ValueError(f"ot_cost: power must be 1 (Euclidean) or 2 (squared Euclidean), got {power}")
    cost = ot.dist(x, y, metric="sqeuclidean" if power == 2 else "euclidean")
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    return float(ot.emd2(a, b, cost, numItermax=10_000_000))


def w2(x: torch.Tensor, x_mask: torch.Tensor | None, y: torch.Tensor, y_mask: torch.Tensor | None) -> torch.Tensor:
    """Exact W2 per cloud, ``(B,)`` float64: ``sqrt(min_P <P, |x - y|²>)`` over couplings of uniform weights."""
    xs, ys = _clouds(x, x_mask), _clouds(y, y_mask)
    return torch.tensor([math.sqrt(max(ot_cost(a, b, 2), 0.0)) for a, b in zip(xs, ys)], dtype=torch.float64)


def ot_distance(
    x: torch.Tensor, x_mask: torch.Tensor | None, y: torch.Tensor, y_mask: torch.Tensor | None
) -> torch.Tensor:
    """Exact OT cost with Euclidean ground cost per cloud (W1), ``(B,)`` float64 (paper Table 6)."""
    xs, ys = _clouds(x, x_mask), _clouds(y, y_mask)
    return torch.tensor([ot_cost(a, b, 1) for a, b in zip(xs, ys)], dtype=torch.float64)


def chamfer(x: torch.Tensor, x_mask: torch.Tensor | None, y: torch.Tensor, y_mask: torch.Tensor | None) -> torch.Tensor:
    """Symmetric Chamfer distance per cloud, ``(B,)``, differentiable:
    ``mean_x min_y |x - y| + mean_y min_x |x - y|`` (Euclidean, not squared; PCN's "CD")."""
    from ddeqs.models.pointops import chamfer_distance  # the same function PCN trains with

    if x_mask is None:
        x_mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if y_mask is None:
        y_mask = torch.ones(y.shape[:2], dtype=torch.bool, device=y.device)
    return chamfer_distance(x, x_mask, y, y_mask)


def mmd2(x: torch.Tensor, x_mask: torch.Tensor | None, y: torch.Tensor, y_mask: torch.Tensor | None) -> torch.Tensor:
    """Riesz-kernel MMD² per cloud, ``(B,)`` (energy distance; 0 for identical clouds)."""
    return riesz_mmd2(x, x_mask, y, y_mask)


def mean_and_se(values: Sequence[float] | np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean (``std(ddof=1) / sqrt(n)``; 0 for one value)."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_and_se: no values")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"mean_and_se: {int((~np.isfinite(v)).sum())} of {v.size} values are NaN/inf")
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), se
