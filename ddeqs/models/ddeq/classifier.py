"""DDEQ classification pipeline (paper §3.3, Fig. 3).

``Z0`` = ``z_particles`` particles ~ N(0, I) in R^z_dim, independent of X; the DEQ output is
max-pooled over Z's particles (masked) and mapped to logits by one Linear layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ddeqs.config import ModelConfig, SolverConfig
from ddeqs.models.base import ModelOutput
from ddeqs.models.ddeq.core import DDEQCore, check_input
from ddeqs.models.ddeq.layers import masked_max


class DDEQClassifier(nn.Module):
    """``forward(points (B, N, d), mask (B, N))`` -> ``ModelOutput(logits (B, C), embedding (B, p), ...)``."""

    def __init__(self, model: ModelConfig, solver: SolverConfig, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.z_particles, self.z_dim = model.z_particles, model.z_dim
        self.core = DDEQCore(model, solver, in_dim)
        self.head = nn.Linear(model.z_dim, num_classes)

    def initial_state(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """``Z0`` ``(B, K, p)`` ~ N(0, I)."""
        return torch.randn(batch, self.z_particles, self.z_dim, device=device, generator=generator)

    def forward(
        self, points: torch.Tensor, mask: torch.Tensor, z0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ModelOutput:
        check_input(points, mask)
        B = points.shape[0]
        if z0 is None:
            z0 = self.initial_state(B, points.device, generator).to(points.dtype)
        z_mask = torch.ones(z0.shape[:2], dtype=torch.bool, device=points.device)
        eq = self.core.equilibrium(points, mask, z0, z_mask)
        pooled = masked_max(eq.out, z_mask)
        return ModelOutput(
            logits=self.head(pooled),
            embedding=pooled,
            z_star=eq.z_star,
            fz_star=eq.fz_star.detach(),
            z_mask=z_mask,
            solver=eq.solver,
        )
