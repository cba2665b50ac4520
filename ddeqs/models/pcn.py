"""PCN, the Point Completion Network (Yuan et al. 2018), for 2-D and 3-D clouds.

Encoder (PCN §4.1): shared MLP d -> 128 -> 256, max-pool to a global feature g (256);
concatenate g to every point feature (512); shared MLP 512 -> 512 -> 1024; max-pool -> v (1024).

Decoder (PCN §4.2, coarse-to-fine): an MLP 1024 -> 1024 -> 1024 -> d * M_c gives the coarse
cloud (M_c points). Each coarse point c is then expanded into ``grid_size**2`` fine points
by "folding": a fixed 2-D grid offset s (``grid_size x grid_size`` points spanning
[-0.05, 0.05]^2) is concatenated with v and c, and a shared MLP (1024+2+d -> 512 -> 512 -> d)
predicts an offset added to c. Output: ``M = num_points = M_c * grid_size**2`` fine points.

Grid size 1 (the DDEQ paper's setting): the grid is the single seed (0, 0), so ``M_c = M`` and
every coarse point gets exactly one fine point: the folding MLP becomes a learned per-point
refinement ``fine_i = c_i + f(v, c_i)``. The coarse cloud is returned too
(``ModelOutput.solver["coarse"]``, ``(B, M_c, d)``) for the PCN loss
``CD(coarse, target) + alpha * CD(fine, target)`` (:func:`pcn_loss`), alpha ramped from 0.01 to 1
over training (:func:`pcn_alpha`).

The loss with grid size 1: coarse and fine clouds then have the same size but are two outputs,
the coarse one of the global decoder and the fine one after the per-point refinement. Both terms
stay, as in PCN: the coarse term trains the global decoder to produce the completion by itself
(early in training, while alpha is small, almost alone), the fine term trains the refinement on
top of it. Were the refinement to learn zero offsets, the two clouds would coincide and the loss
would be ``(1 + alpha) · CD(fine, target)``: the same objective, rescaled, so keeping both terms
never pulls the two outputs apart. The reported metrics use the fine cloud only.

Inputs with padding: PCN needs equal-size inputs, so padded rows are filled with real points
of the same cloud drawn at random (:func:`~ddeqs.models.pointops.resample_fill`), as the DDEQ
paper did. The draw uses a CPU ``torch.Generator``: pass one to ``forward``; otherwise a fresh
generator seeded with ``seed`` is used for every call, so the same batch always gets the same
fill. Because the encoder pools with a max, duplicated points do not change the pooled
features; in evaluation mode the output for a cloud is therefore exactly independent of the
padding (in training mode batch-norm statistics see the duplicates, by design of PCN).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ddeqs.metrics import chamfer_distance
from ddeqs.models.base import ModelOutput
from ddeqs.models.pointops import MLP, check_cloud_batch, resample_fill

__all__ = ["PCN", "PCN_ALPHA_STEPS", "pcn_alpha", "pcn_loss"]


class PCN(nn.Module):
    """``forward(points (B, N, d), mask (B, N), generator=None)`` -> ModelOutput with ``points (B, M, d)``,
    ``mask`` and ``free_mask`` all True ``(B, M)`` (every output point is generated) and
    ``solver["coarse"] (B, M / grid_size**2, d)``."""

    def __init__(self, in_dim: int, num_points: int, grid_size: int = 1, seed: int = 0) -> None:
        super().__init__()
        if num_points < 1 or grid_size < 1 or num_points % (grid_size * grid_size) != 0:
            raise ValueError(
                f"PCN: model.pcn_points={num_points} must be a positive multiple of model.pcn_grid**2={grid_size ** 2}"
            )
        self.d, self.num_points, self.grid_size, self.seed = in_dim, num_points, grid_size, seed
        self.num_coarse = num_points // (grid_size * grid_size)
        self.enc1 = MLP(in_dim, [128, 256], last_act=False)
        self.enc2 = MLP(512, [512, 1024], last_act=False)
        self.coarse_mlp = nn.Sequential(
            nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, in_dim * self.num_coarse)
        )
        self.fold = MLP(1024 + 2 + in_dim, [512, 512, in_dim], last_act=False)
        if grid_size == 1:
            seeds = torch.zeros(1, 2)
        else:
            t = torch.linspace(-0.05, 0.05, grid_size)
            seeds = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)
        self.register_buffer("grid", seeds, persistent=False)  # (S, 2), S = grid_size**2

    def forward(
        self, points: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> ModelOutput:
        check_cloud_batch(points, mask, "PCN")
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        x = resample_fill(points, mask, generator)  # (B, N, d), no padding left
        B, N, _ = x.shape
        f = self.enc1(x)  # (B, N, 256)
        g = f.amax(dim=1, keepdim=True).expand(-1, N, -1)
        v = self.enc2(torch.cat([g, f], dim=-1)).amax(dim=1)  # (B, 1024)
        coarse = self.coarse_mlp(v).view(B, self.num_coarse, self.d)
        S = self.grid.shape[0]
        c_rep = coarse.unsqueeze(2).expand(-1, -1, S, -1).reshape(B, self.num_points, self.d)
        seeds = self.grid.to(x.dtype).unsqueeze(0).expand(self.num_coarse, -1, -1).reshape(1, self.num_points, 2)
        feat = torch.cat([v.unsqueeze(1).expand(-1, self.num_points, -1), seeds.expand(B, -1, -1), c_rep], dim=-1)
        fine = c_rep + self.fold(feat)
        full = torch.ones(B, self.num_points, dtype=torch.bool, device=x.device)
        return ModelOutput(points=fine, mask=full, free_mask=full.clone(), solver={"coarse": coarse})


# PCN's weight of the fine term: 0.01, 0.1, 0.5, then 1 after 10k, 20k and 50k of its 300k training
# iterations (Yuan et al. 2018: alpha "increased from 0.01 to 1 during training"). We keep the
# breakpoints as fractions of training (1/30, 1/15, 1/6), like the lr decay (TRAIN_DEFAULTS).
PCN_ALPHA_STEPS: tuple[tuple[float, float], ...] = ((1.0 / 30.0, 0.01), (1.0 / 15.0, 0.1), (1.0 / 6.0, 0.5))


def pcn_alpha(progress: float | None) -> float:
    """Weight of the fine term at ``progress`` = fraction of training done in [0, 1]; None (evaluation): 1."""
    if progress is None:
        return 1.0
    for end, alpha in PCN_ALPHA_STEPS:
        if progress < end:
            return alpha
    return 1.0


def pcn_loss(
    out: ModelOutput, target: torch.Tensor, target_mask: torch.Tensor, alpha: float = 1.0, squared: bool = False
) -> torch.Tensor:
    """PCN training loss per sample ``(B,)``: ``CD(coarse, target) + alpha * CD(fine, target)``.

    target: ``(B, T, d)`` with ``target_mask (B, T)``; the coarse cloud is ``out.solver["coarse"]``
    (a missing coarse cloud is an error: it would silently drop half of PCN's loss). Chamfer with
    plain Euclidean distances, as PCN's "CD", unless ``squared``.
    """
    coarse = out.solver.get("coarse")
    if coarse is None or out.points is None:
        raise ValueError("pcn_loss needs the PCN output points and its coarse cloud (ModelOutput.solver['coarse'])")
    cmask = torch.ones(coarse.shape[:2], dtype=torch.bool, device=coarse.device)
    fine = chamfer_distance(out.points, out.mask, target, target_mask, squared=squared)
    return chamfer_distance(coarse, cmask, target, target_mask, squared=squared) + alpha * fine
