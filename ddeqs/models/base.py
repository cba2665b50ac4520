"""What every model returns, so training, evaluation and figures treat them alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """Output of any model's ``forward(points (B, N, d), mask (B, N))``.

    Classification: ``logits`` ``(B, C)``; ``embedding`` ``(B, D)`` the pooled feature before the head.
    Completion: ``points`` ``(B, M, d)`` with ``mask`` ``(B, M)``; ``free_mask`` ``(B, M)`` marks
    particles the model generated (DDEQ: the free particles; PCN: every output point).
    DDEQ only: ``z_star`` ``(B, K, p)`` and ``fz_star`` = F(Z*) with ``z_mask`` ``(B, K)``;
    ``solver`` a dict of inner-solver diagnostics (``iters``, ``objective`` trace ``(B, T)``,
    ``rel_residual`` ``(B,)``, ...).
    """

    logits: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    points: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    free_mask: torch.Tensor | None = None
    z_star: torch.Tensor | None = None
    fz_star: torch.Tensor | None = None
    z_mask: torch.Tensor | None = None
    solver: dict = field(default_factory=dict)
