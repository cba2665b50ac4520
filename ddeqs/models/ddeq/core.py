"""Shared DDEQ machinery: F, the torchdeq DEQ and one equilibrium solve.

:meth:`DDEQCore.equilibrium` prepares F's X branch once, builds the DEQ function
``f(z) = where(movable, F(z, X), z)`` (fixed particles and padding stay put) and, for the fast
WGF, its per-step twin (:func:`ddeqs.models.ddeq.step.make_solve_func`: detached X branch,
movable rows only, optional ``torch.compile`` / bf16), runs the configured solver through torchdeq and returns the DEQ output (``F(Z*)`` with phantom
gradient in training, ``Z*`` in eval), ``Z*``, ``F(Z*)`` and solver diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ddeqs.config import ModelConfig, SolverConfig
from ddeqs.errors import BadCloudError, DataError
from ddeqs.mmd import riesz_mmd2
from ddeqs.models.ddeq.fmap import FMap
from ddeqs.models.ddeq.layers import DropoutState
from ddeqs.models.ddeq.step import make_solve_func
from ddeqs.solver.deq import build_deq, solver_kwargs


@dataclass
class Equilibrium:
    """Result of one solve. ``out``: DEQ output ``(B, K, p)`` (differentiable in training)."""

    out: torch.Tensor
    z_star: torch.Tensor
    fz_star: torch.Tensor
    solver: dict


def check_input(points: torch.Tensor, mask: torch.Tensor) -> None:
    """Reject malformed batches: wrong shapes, empty clouds, non-finite real points."""
    if points.ndim != 3 or mask.shape != points.shape[:2] or mask.dtype != torch.bool:
        raise DataError(
            f"DDEQ input must be points (B, N, d) with a (B, N) bool mask; got {tuple(points.shape)} "
            f"and {tuple(mask.shape)} {mask.dtype}. Build batches with ddeqs.batch.pad_clouds."
        )
    empty = (~mask.any(1)).nonzero().flatten()
    if empty.numel():
        raise BadCloudError(f"batch samples {empty.tolist()} have no real point (empty cloud); drop them from the dataset",
                            empty.tolist(), "an empty cloud (no real point)")
    bad = (~torch.isfinite(points) & mask.unsqueeze(-1)).any(-1).any(-1).nonzero().flatten()
    if bad.numel():
        raise BadCloudError(f"batch samples {bad.tolist()} contain NaN/inf coordinates; re-run 'ddeqs data' or fix the files",
                            bad.tolist(), "NaN/inf coordinates")


class DDEQCore(nn.Module):
    """F plus the DEQ solver for one model/solver configuration."""

    def __init__(self, model: ModelConfig, solver: SolverConfig, in_dim: int) -> None:
        super().__init__()
        self.solver_cfg = solver
        self.fmap = FMap(
            in_dim,
            z_dim=model.z_dim,
            bilinear_dim=model.bilinear_dim,
            heads=model.heads,
            ffn_dim=model.ffn_dim,
            cross_layers=model.cross_layers,
            self_layers=model.self_layers,
            pushforward=model.pushforward,
            dropout=model.dropout or 0.0,
            attention=solver.attention,
        )
        self.deq = build_deq(solver)

    def set_solver(self, solver: SolverConfig) -> None:
        """Solve with ``solver`` from now on (its torchdeq DEQ rebuilt; the kernel choice of F is kept)."""
        self.solver_cfg = solver
        self.deq = build_deq(solver)

    def equilibrium(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        z0: torch.Tensor,
        z_mask: torch.Tensor,
        movable: torch.Tensor | None = None,
    ) -> Equilibrium:
        """Solve ``Z* = argmin ½MMD²(Z, F(Z, X))`` from ``z0`` ``(B, K, p)``; ``movable`` ``(B, K)`` default ``z_mask``."""
        movable = z_mask if movable is None else movable & z_mask
        mv = movable.unsqueeze(-1)
        drop = DropoutState(self.fmap.dropout, self.training)
        ctx = self.fmap.prepare(x, x_mask, drop)

        def f(z: torch.Tensor) -> torch.Tensor:
            return torch.where(mv, self.fmap.apply(z, z_mask, ctx), z)

        def full_f(z: torch.Tensor) -> torch.Tensor:  # naive reference: X branch recomputed per call
            return torch.where(mv, self.fmap.apply(z, z_mask, self.fmap.prepare(x, x_mask, drop)), z)

        cfg = self.solver_cfg
        z0 = torch.where(z_mask.unsqueeze(-1), z0, torch.zeros((), dtype=z0.dtype, device=z0.device)).detach()
        naive = cfg.impl == "naive"
        solve_f = None if naive or cfg.kind != "wgf" else make_solve_func(self.fmap, ctx, z_mask, movable, cfg)
        kwargs = solver_kwargs(cfg, z_mask, movable, full_f if naive else None, solve_f, training=self.training)
        z_out, info = self.deq(f, z0, solver_kwargs=kwargs)
        out = z_out[-1]
        z_star = info.get("z_star", out).detach()
        fz_star = out if self.training else f(z_star)
        with torch.no_grad():
            final = 0.5 * riesz_mmd2(z_star, z_mask, fz_star.detach(), z_mask)
        solver = {
            "kind": cfg.kind,
            "iters": int(info.get("iters", 0)),
            "objective": info["objective"] if "objective" in info else final.unsqueeze(1),
            "rel_residual": info.get("rel_residual", info.get("rel_lowest")),
            "final_objective": final,
        }
        return Equilibrium(out=out, z_star=z_star, fz_star=fz_star, solver=solver)
