"""Masked point-cloud operations shared by the baselines (pure PyTorch, CPU and GPU).

Every function takes padded batches ``points (B, N, d)`` with a ``(B, N)`` bool ``mask``
(True = real point). Padded rows never influence a result: they are never selected by
farthest point sampling or kNN, never enter a pooling, and never enter batch statistics.

Written by hand because the usual implementations (``pointops`` CUDA extensions of
Point Transformer, PyTorch3D) need compiled extensions and know nothing about masks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ddeqs.errors import DataError

__all__ = [
    "MLP",
    "MaskedBatchNorm",
    "check_cloud_batch",
    "farthest_point_sample",
    "gather",
    "knn",
    "masked_max",
    "masked_mean",
    "zero_padding",
    "resample_fill",
]


def check_cloud_batch(points: torch.Tensor, mask: torch.Tensor, who: str = "model") -> None:
    """Raise :class:`DataError` for a malformed batch: wrong shapes, an empty cloud, NaN/inf in real rows.

    points: ``(B, N, d)`` float; mask: ``(B, N)`` bool.
    """
    if points.ndim != 3:
        raise DataError(f"{who}: points must have shape (B, N, d), got {tuple(points.shape)}")
    if mask.shape != points.shape[:2] or mask.dtype != torch.bool:
        raise DataError(
            f"{who}: mask must be a bool tensor of shape {tuple(points.shape[:2])}, "
            f"got {mask.dtype} {tuple(mask.shape)} (build batches with ddeqs.batch.pad_clouds)"
        )
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        idx = empty.nonzero().flatten().tolist()
        raise DataError(f"{who}: cloud(s) {idx} of the batch have no real points (mask all False); drop empty clouds from the dataset")
    bad = (~torch.isfinite(points)).any(dim=-1) & mask
    if bool(bad.any()):
        idx = bad.any(dim=1).nonzero().flatten().tolist()
        raise DataError(f"{who}: cloud(s) {idx} of the batch contain NaN/inf coordinates in real points; clean or re-prepare the dataset")


def zero_padding(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Copy of ``points (B, N, d)`` with padded rows set to 0, so arbitrary (even NaN) padding stays inert."""
    return points.masked_fill(~mask.unsqueeze(-1), 0.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Max over ``dim`` of ``x (..., N, C)`` counting only rows where ``mask (..., N)`` is True."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean over ``dim`` of ``x (..., N, C)`` over rows where ``mask (..., N)`` is True."""
    m = mask.unsqueeze(-1)
    cnt = m.sum(dim=dim).clamp_min(1).to(x.dtype)
    return x.masked_fill(~m, 0.0).sum(dim=dim) / cnt


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``x (B, N, C)`` at ``idx (B, ...)`` (long, values in [0, N)) -> ``(B, ..., C)``."""
    B = x.shape[0]
    flat = idx.reshape(B, -1)
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


@torch.no_grad()
def farthest_point_sample(points: torch.Tensor, mask: torch.Tensor, m: int) -> torch.Tensor:
    """Farthest point sampling of ``m`` indices per cloud -> ``(B, m)`` long, never a padded row.

    Vectorized over the batch (the loop runs over the ``m`` samples). The start is the real
    point farthest from the cloud's mean, so the selected *set* does not depend on the order
    of the points (up to exact distance ties) nor on padding. Once a cloud's real points are
    exhausted (``m`` > its size) further picks repeat real points.
    """
    B, N, _ = points.shape
    pts = zero_padding(points, mask)
    pts = pts.to(torch.promote_types(pts.dtype, torch.float32))
    centre = masked_mean(pts, mask)  # (B, d)
    neg = torch.full((B, N), -1.0, device=pts.device, dtype=pts.dtype)  # padded rows: below any real distance (>= 0)
    start = torch.where(mask, ((pts - centre.unsqueeze(1)) ** 2).sum(-1), neg)
    far = start.argmax(dim=1)
    # padded rows hold -1 and min(-1, d >= 0) keeps them there: no mask op inside the loop
    dist = torch.where(mask, torch.full_like(neg, float("inf")), neg)
    rows = torch.arange(B, device=pts.device)
    picks = []
    for _ in range(m):  # few kernels per step: the loop is launch-bound on GPU
        picks.append(far)
        d = torch.linalg.vector_norm(pts - pts[rows, far].unsqueeze(1), dim=-1)
        dist = torch.minimum(dist, d)
        far = dist.argmax(dim=1)
    return torch.stack(picks, dim=1)


@torch.no_grad()
def knn(query: torch.Tensor, points: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, M, k)`` of the ``k`` nearest real points of ``points (B, N, d)`` to each ``query (B, M, d)``.

    Nearest first. Padded rows are never returned: a cloud with fewer than ``k`` real points
    gets its real neighbours repeated cyclically (nearest, second nearest, ..., nearest, ...),
    which depends only on the real points, not on the amount of padding.
    Uses ``torch.cdist`` on ``(B, M, N)`` distances (never ``(B, M, N, C)``).
    """
    N = points.shape[1]
    dt = torch.promote_types(points.dtype, torch.float32)
    dist = torch.cdist(query.to(dt), zero_padding(points, mask).to(dt))
    dist = dist.masked_fill(~mask.unsqueeze(1), float("inf"))
    k_eff = min(k, N)
    idx = dist.topk(k_eff, dim=-1, largest=False, sorted=True).indices  # (B, M, k_eff)
    n_real = mask.sum(dim=1).clamp(min=1, max=k_eff)  # (B,)
    slot = torch.arange(k, device=idx.device).unsqueeze(0) % n_real.unsqueeze(1)  # (B, k)
    return torch.gather(idx, 2, slot.unsqueeze(1).expand(-1, idx.shape[1], -1))


def resample_fill(points: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace every padded row of ``points (B, N, d)`` by a real point of the same cloud drawn uniformly
    (with replacement) -> ``(B, N, d)`` with no padding (PCN's way of filling batches).

    ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible; real rows are kept as they are.
    """
    B, N, _ = points.shape
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real rows first, in order
    n_real = mask.sum(dim=1, keepdim=True)  # (B, 1)
    u = torch.rand(B, N, generator=generator).to(points.device)
    j = (u * n_real).long().clamp_max(n_real - 1).clamp_min(0)
    src = torch.gather(order, 1, j)
    return torch.where(mask.unsqueeze(-1), points, gather(points, src))


class MaskedBatchNorm(nn.Module):
    """Batch normalization over the channel (last) axis of ``x (..., C)`` whose statistics use only
    rows where ``mask (...)`` is True.

    ``nn.BatchNorm1d`` would average padded rows into the batch statistics in training mode,
    so padding would change every output; hence this hand-written version. Same parameters
    and buffers as ``nn.BatchNorm1d`` (weight, bias, running_mean, running_var). In training
    mode with fewer than 2 real rows (a batch of one cloud at the head) it uses the running
    statistics instead of failing.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: ``(..., C)``; mask: ``x.shape[:-1]`` bool or None (all real)."""
        flat = x.reshape(-1, x.shape[-1])
        if not self.training:
            mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        else:
            # no host synchronisation: the real-row count stays a tensor
            if mask is None:
                n = torch.tensor(float(flat.shape[0]), device=x.device, dtype=x.dtype)
                xm = flat
            else:
                m = mask.reshape(-1, 1)
                n = m.sum().to(x.dtype)
                xm = flat.masked_fill(~m, 0.0)
            use = n >= 2
            nn_ = n.clamp_min(1)
            mean_b = xm.sum(0) / nn_
            sq = (flat - mean_b).pow(2)
            if mask is not None:
                sq = sq.masked_fill(~m, 0.0)
            var_b = sq.sum(0) / nn_
            with torch.no_grad():
                w = self.momentum * use.to(self.running_mean.dtype)
                self.running_mean.lerp_(mean_b.detach().to(self.running_mean.dtype), w)
                unbiased = var_b.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), w)
            mean = torch.where(use, mean_b, self.running_mean.to(x.dtype))
            var = torch.where(use, var_b, self.running_var.to(x.dtype))
        out = (flat - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return out.reshape(x.shape)


class MLP(nn.Module):
    """Shared (point-wise) MLP on ``(..., C_in)`` features: Linear -> MaskedBatchNorm -> ReLU per layer.

    ``widths`` are the output widths; ``last_act=False`` leaves the last layer as a bare Linear
    (with bias); ``bias`` sets the bias of the normalized layers (redundant before BN).
    """

    def __init__(self, c_in: int, widths: list[int], last_act: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = c_in
        for i, w in enumerate(widths):
            plain = (i == len(widths) - 1) and not last_act
            self.linears.append(nn.Linear(c, w, bias=bias or plain))
            self.norms.append(nn.Identity() if plain else MaskedBatchNorm(w))
            c = w

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for lin, norm in zip(self.linears, self.norms):
            x = lin(x)
            if isinstance(norm, MaskedBatchNorm):
                x = torch.relu(norm(x, mask))
        return x
