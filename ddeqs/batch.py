"""Padded point-cloud batches. Padding is always an explicit boolean mask.

Convention used by every model, loss and metric of the package:

* ``points``: ``(B, N, d)`` float tensor; rows ``n >= length[b]`` are padding.
* ``mask``:   ``(B, N)`` bool tensor, True for a real point. Values in padded
  rows are arbitrary and must never influence any output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np
import torch


@dataclass
class CloudBatch:
    """A batch for either task.

    points/mask: the model input ``(B, N, d)`` / ``(B, N)``.
    labels: ``(B,)`` long class indices (classification; also kept for completion).
    target/target_mask: ``(B, M, d)`` / ``(B, M)`` full clouds (completion only).
    missing/missing_mask: ``(B, R, d)`` / ``(B, R)`` the points of the target that the partial
    input lacks (completion only; the reference of the free-particle metrics, App. D.8).
    """

    points: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor | None = None
    target: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None
    index: torch.Tensor | None = None  # (B,) sample indices in the split
    missing: torch.Tensor | None = None
    missing_mask: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "CloudBatch":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.to(device) if isinstance(v, torch.Tensor) else v
        return CloudBatch(**kw)

    def __len__(self) -> int:
        return self.points.shape[0]


def pad_clouds(
    clouds: Sequence[np.ndarray | torch.Tensor], length: int | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack clouds of shapes ``(n_i, d)`` into ``(B, N, d)`` points and a ``(B, N)`` bool mask.

    ``N`` is ``max n_i`` unless ``length`` is given. Padded rows are zeros, but
    only the mask says which rows are real.
    """
    if len(clouds) == 0:
        raise ValueError("pad_clouds: no clouds given")
    d = clouds[0].shape[-1]
    n_max = max(int(c.shape[0]) for c in clouds)
    N = n_max if length is None else length
    if N < n_max:
        raise ValueError(f"pad_clouds: length {N} < largest cloud {n_max}")
    pts = torch.zeros(len(clouds), N, d, dtype=dtype)
    mask = torch.zeros(len(clouds), N, dtype=torch.bool)
    for i, c in enumerate(clouds):
        c = torch.as_tensor(c, dtype=dtype)
        if c.ndim != 2 or c.shape[1] != d:
            raise ValueError(f"pad_clouds: cloud {i} has shape {tuple(c.shape)}, expected (n, {d})")
        pts[i, : c.shape[0]] = c
        mask[i, : c.shape[0]] = True
    return pts, mask
