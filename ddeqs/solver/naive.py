"""Naive reference gradient of the WGF (``solver.impl = "naive"``), run by the same loop as the fast path.

What a direct implementation does: at every step, autograd of ``½ riesz_mmd2(Z, F(Z, X))``
through the *whole* F (the X branch is recomputed at every step), then one more full forward of
F after the update only to evaluate the stopping test (:attr:`NaiveGradient.recheck`). The loop
(particle update, fixed rows, momentum, per-sample stopping) is
:func:`ddeqs.solver.loop.wgf_loop`, shared with the fast path, so both return the same ``Z*`` up
to float rounding; the fast path exists because this one does 2 full forwards and a full
backward per step.
"""

from __future__ import annotations

from typing import Any

import torch

from ddeqs.mmd import riesz_mmd2
from ddeqs.solver.loop import Func, GradientFn, wgf_loop

FullFunc = Func


def naive_gradient(
    full_func: FullFunc, z: torch.Tensor, mask: torch.Tensor, movable: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(objective (B,), grad (B, K, p), fz)`` by plain autograd through ``full_func`` (X branch included)."""
    with torch.enable_grad():
        zr = z.detach().requires_grad_(True)
        fz = full_func(zr)
        obj = 0.5 * riesz_mmd2(zr, mask, fz, mask)
        (g,) = torch.autograd.grad(obj.sum(), zr)
    n = mask.sum(1).clamp_min(1).to(g.dtype)[:, None, None]
    g = torch.where(movable.unsqueeze(-1), g * n, torch.zeros((), dtype=g.dtype, device=g.device))
    return obj.detach(), g, fz.detach()


class NaiveGradient(GradientFn):
    """:func:`naive_gradient` of ``full_func``, with the direct implementation's extra forward as :meth:`recheck`."""

    def __init__(self, full_func: FullFunc, mask: torch.Tensor, movable: torch.Tensor) -> None:
        self.full_func, self.mask, self.movable = full_func, mask, movable
        self.recheck = self._objective

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return naive_gradient(self.full_func, z, self.mask, self.movable)

    def _objective(self, z: torch.Tensor) -> torch.Tensor:
        """``½ MMD²(z, F(z))`` ``(B,)``: the extra full forward, only for the stopping test (always run)."""
        with torch.no_grad():
            return 0.5 * riesz_mmd2(z, self.mask, self.full_func(z), self.mask)


def naive_wgf_solve(
    full_func: FullFunc,
    z0: torch.Tensor,
    mask: torch.Tensor,
    movable: torch.Tensor | None = None,
    **loop: Any,
) -> tuple[torch.Tensor, dict]:
    """Same contract as :func:`ddeqs.solver.wgf.wgf_solve`; ``full_func(z)`` runs all of F."""
    movable = mask if movable is None else movable & mask
    return wgf_loop(NaiveGradient(full_func, mask, movable), z0, mask, **loop)
