"""Per-particle building blocks of the DDEQ map F: masked reductions, MLPs, dropout state.

Shapes: particles ``(B, N, c)`` with a ``(B, N)`` bool mask (True = real row).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real rows: ``(B, N, c)``, ``(B, N)`` -> ``(B, c)`` (``mask`` None: every row is real).

    Padded rows are selected away with ``torch.where`` (not multiplied by 0), so
    NaN/inf in padding cannot leak. A cloud with no real row gives zeros.
    """
    if mask is None:
        return h.mean(1)
    m = mask.unsqueeze(-1)
    s = torch.where(m, h, torch.zeros((), dtype=h.dtype, device=h.device)).sum(1)
    return s / m.sum(1).clamp_min(1).to(h.dtype)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the real rows: ``(B, N, c)``, ``(B, N)`` -> ``(B, c)`` (padding never wins)."""
    neg = torch.finfo(h.dtype).min
    return torch.where(mask.unsqueeze(-1), h, torch.full((), neg, dtype=h.dtype, device=h.device)).amax(1)


def zero_padding(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Replace padded rows by exact zeros (arbitrary, even NaN, padding values are dropped).

    ``mask`` None means every row is real (callers that checked the mask once per solve pass
    None to skip the select at every inner step); ``h`` is returned as is.
    """
    if mask is None:
        return h
    return torch.where(mask.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device))


class DropoutState:
    """Dropout masks sampled once per forward solve and reused at every inner step.

    Masks have shape ``(B, 1, c)``: one mask per sample and channel, shared by all
    particles. Sharing across particles keeps F permutation-equivariant in Z while
    training; reusing the masks keeps F the *same* function during one solve (a
    fixed point of a map that changes at every step is meaningless).
    """

    def __init__(self, p: float, active: bool) -> None:
        self.p = float(p)
        self.active = bool(active) and p > 0.0
        self._masks: dict[tuple, torch.Tensor] = {}

    def __call__(self, name: str, h: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return h
        key = (name, h.shape[0], h.shape[-1], h.device, h.dtype)
        mask = self._masks.get(key)
        if mask is None:
            keep = torch.rand(h.shape[0], 1, h.shape[-1], device=h.device) >= self.p
            mask = keep.to(h.dtype) / (1.0 - self.p)
            self._masks[key] = mask
        return h * mask


class EmbedMLP(nn.Module):
    """Linear(c_in -> hidden) - ReLU - Linear(hidden -> c_out) - LayerNorm(c_out), per particle."""

    def __init__(self, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(c_in, hidden)
        self.fc2 = nn.Linear(hidden, c_out)
        self.norm = nn.LayerNorm(c_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc2(F.relu(self.fc1(h))))


class FeedForward(nn.Module):
    """Transformer feed-forward Linear(c -> hidden) - ReLU - [dropout] - Linear(hidden -> c_out)."""

    def __init__(self, c: int, hidden: int, c_out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, c_out or c)

    def forward(self, h: torch.Tensor, drop: DropoutState | None = None, name: str = "ffn") -> torch.Tensor:
        u = F.relu(self.fc1(h))
        if drop is not None:
            u = drop(name, u)
        return self.fc2(u)
