"""DDEQ completion pipeline (paper §3.3, Fig. 1).

``X̃`` = the input X plus ``ceil(free_share · |X|)`` free particles per sample. Free particles start
as N(0, I) draws in R^d: the clouds are normalised to zero mean and unit variance, so N(0, I) matches
the first two moments of the targets without looking at the input (the authors' code centred and
scaled the draws on X; with normalised data the two agree up to the partial cloud's bias).
``X̃`` is zero-padded to z_dim dims (coordinates in the second half, see ``coupling``), mapped by
``q``; the WGF moves only the free particles; the output is ``q⁻¹`` of the DEQ output truncated to
d dims, and the input rows are then written from X itself, so X appears bit-exactly in the output.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ddeqs.config import ModelConfig, SolverConfig
from ddeqs.models.base import ModelOutput
from ddeqs.models.ddeq.core import DDEQCore, check_input
from ddeqs.models.ddeq.coupling import AffineCoupling
from ddeqs.models.ddeq.layers import zero_padding


def free_counts(mask: torch.Tensor, share: float) -> torch.Tensor:
    """``ceil(share · n_b)`` free particles per sample, ``(B,)`` long (robust to 0.275·40 = 11.000000000000002)."""
    n = mask.sum(1).to(torch.float64)
    return torch.ceil(n * share - 1e-6).clamp_min(1).long()


class DDEQCompletion(nn.Module):
    """``forward(points (B, N, d), mask (B, N))`` -> ``ModelOutput(points (B, N+F, d), mask, free_mask, ...)``.

    Output rows ``[:N]`` are the input rows (bit-exact where ``mask``), rows ``[N:]`` the free particles.
    """

    def __init__(self, model: ModelConfig, solver: SolverConfig, in_dim: int) -> None:
        super().__init__()
        self.in_dim, self.z_dim, self.free_share = in_dim, model.z_dim, model.free_share
        if in_dim > model.z_dim // 2:
            raise ValueError(f"model.z_dim={model.z_dim} too small for {in_dim}-D points")
        self.core = DDEQCore(model, solver, in_dim)
        self.coupling = AffineCoupling(model.z_dim, model.coupling_width)
        self.offset = model.z_dim // 2  # coordinates live in the coupling's transformed half

    def layout(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_mask, fixed, free_mask)`` ``(B, N+F)`` for input ``mask`` ``(B, N)``."""
        n_free = free_counts(mask, self.free_share)
        F = int(n_free.max())
        free = torch.arange(F, device=mask.device)[None, :] < n_free.to(mask.device)[:, None]
        zeros_n = torch.zeros_like(mask)
        zeros_f = torch.zeros_like(free)
        return torch.cat([mask, free], 1), torch.cat([mask, zeros_f], 1), torch.cat([zeros_n, free], 1)

    def forward(
        self, points: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
        free_init: torch.Tensor | None = None,
    ) -> ModelOutput:
        """``free_init`` ``(B, F, d)``: the free particles' initial positions (default: N(0, I) draws);
        only the first ``ceil(free_share · n_b)`` rows of sample ``b`` are used."""
        check_input(points, mask)
        B, N, d = points.shape
        z_mask, fixed, free_mask = self.layout(mask)
        F = z_mask.shape[1] - N
        if free_init is None:
            noise = torch.randn(B, F, d, device=points.device, generator=generator).to(points.dtype)
        else:
            if free_init.shape[0] != B or free_init.shape[1] < F or free_init.shape[2] != d:
                raise ValueError(f"free_init has shape {tuple(free_init.shape)}, expected ({B}, >= {F}, {d})")
            noise = free_init[:, :F].to(points.dtype)
        coords = zero_padding(torch.cat([points, noise], 1), z_mask)
        u = coords.new_zeros(B, N + F, self.z_dim)
        u[..., self.offset : self.offset + d] = coords
        z0 = zero_padding(self.coupling(u), z_mask)
        eq = self.core.equilibrium(points, mask, z0, z_mask, movable=free_mask)
        decoded = self.coupling.inverse(eq.out)[..., self.offset : self.offset + d]
        x_full = torch.cat([points, points.new_zeros(B, F, d)], 1)
        out = torch.where(fixed.unsqueeze(-1), x_full, decoded)
        out = zero_padding(out, z_mask)
        return ModelOutput(
            points=out,
            mask=z_mask,
            free_mask=free_mask,
            z_star=eq.z_star,
            fz_star=eq.fz_star.detach(),
            z_mask=z_mask,
            solver=eq.solver,
        )
