"""Affine coupling layer ``q`` of the completion pipeline (paper §3.3, App. C.1).

``q([u1, u2]) = [u1, u2 · exp(φ(u1)) + ψ(u1)]``, ``q⁻¹([v1, v2]) = [v1, (v2 - ψ(v1)) · exp(-φ(v1))]``
with ``u1, u2`` the two halves (``z_dim/2`` each) of a particle and φ, ψ two-layer nets
``Linear(h, w) - ReLU - Linear(w, h)`` (h = z_dim/2 = 64, w = coupling_width = 64):
2 × 2 × (64·64 + 64) = 16,640 parameters (paper: 16.6k).

Where the point coordinates sit: the completion pipeline writes the d coordinates of a particle
into the *second* half (``u2[:d]``) and zeros elsewhere (``coords_offset = z_dim/2``). With the
coordinates in the first half, ``q⁻¹`` followed by the truncation to d dimensions would be the
identity on the coordinates, and since the phantom gradient detaches the solver's initial state,
φ and ψ would never receive a gradient. With the coordinates in ``u2`` the coupling is a learned
invertible decoder: a free particle's output position depends on where its latent half ``v1``
ended up, and input particles (``v1 = 0`` fixed) are still recovered.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _net(h: int, w: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(h, w), nn.ReLU(), nn.Linear(w, h))


class AffineCoupling(nn.Module):
    """Invertible per-particle map on ``(..., dim)`` tensors (``dim`` even)."""

    def __init__(self, dim: int, width: int = 64) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"model.z_dim={dim} must be even for the coupling layer")
        self.half = dim // 2
        self.phi = _net(self.half, width)  # log-scale
        self.psi = _net(self.half, width)  # shift

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``q(u)``."""
        u1, u2 = u[..., : self.half], u[..., self.half :]
        return torch.cat([u1, u2 * torch.exp(self.phi(u1)) + self.psi(u1)], dim=-1)

    def inverse(self, v: torch.Tensor) -> torch.Tensor:
        """``q⁻¹(v)``."""
        v1, v2 = v[..., : self.half], v[..., self.half :]
        return torch.cat([v1, (v2 - self.psi(v1)) * torch.exp(-self.phi(v1))], dim=-1)
