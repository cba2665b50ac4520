"""Fast gradient of the WGF (``solver.impl = "fast"``), run by the one loop :func:`ddeqs.solver.loop.wgf_loop`.

Minimises ``G(Z) = ½ MMD²(Z, F(Z))`` (Riesz kernel) over the movable particles of ``Z``. The
gradient includes the chain rule through ``F``: per step, with autograd enabled only for ``z``::

    fz = func(z)                                     # Z branch of F only (X branch prepared once)
    mmd2, gz, gfz = plan(z, fz)                      # PairedMMD: one distance matrix of the movable rows,
                                                     # analytic ∂(½MMD²)/∂z, ∂/∂fz
    grad = gz + (∂fz/∂z)ᵀ gfz                        # torch.autograd.grad(fz, z, gfz): VJP w.r.t. z only
    grad *= n_real(Z)                                # Wasserstein gradient: each particle has mass 1/n
    grad[fixed or padding] = 0
    z <- z - step * (heavy-ball / Nesterov) update

Rows that cannot move (completion's input particles) coincide in ``Z`` and ``F(Z)`` and cancel in
``μ - ν``, so the MMD and its gradients are computed on the movable rows only
(:class:`ddeqs.mmd.PairedMMD`, planned once per solve).

The stopping test uses the objective of the *same* step (no extra forward). Samples whose
relative objective change falls below ``tol`` freeze individually; the loop ends when all
are frozen (:class:`ddeqs.solver.loop.StopRule`).

``func(z)`` maps ``(B, K, p)`` -> ``(B, K, p)`` and must leave fixed and padded rows unchanged
(the DDEQ passes ``where(movable, F(z), z)``).
"""

from __future__ import annotations

from typing import Any

import torch

from ddeqs.mmd import PairedMMD
from ddeqs.solver.loop import (  # noqa: F401 - re-exported: the loop's parts, importable from here as before
    Func,
    GradientFn,
    ParticleUpdate,
    StopRule,
    fixed_point_residual,
    relative_change,
    wgf_loop,
)


def wgf_gradient(
    func: Func,
    z: torch.Tensor,
    mask: torch.Tensor,
    movable: torch.Tensor,
    plan: PairedMMD | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One fast-path gradient evaluation at ``z`` ``(B, K, p)``.

    Returns ``(objective (B,), grad (B, K, p), fz (B, K, p))`` with objective ``½ MMD²(z, func(z))``
    and ``grad`` the particle (Wasserstein) gradient, zero on rows where ``movable`` is False.
    Parameter ``.grad`` fields are never touched (the VJP is taken w.r.t. ``z`` only).
    ``func`` must return ``z``'s own values on rows that are not ``movable``; ``plan``: the
    :class:`ddeqs.mmd.PairedMMD` of ``mask``/``movable`` (optional; :func:`wgf_solve` builds it
    once per solve instead of at every step).
    """
    if plan is None:
        plan = PairedMMD(mask, movable, z.dtype)
    with torch.enable_grad():
        zr = z.detach().requires_grad_(True)
        fz = func(zr)
        mmd2, gz, gfz = plan(zr.detach(), fz.detach())
        (vjp,) = torch.autograd.grad(fz, zr, gfz, allow_unused=True)
    g = gz if vjp is None else gz + vjp
    g = g * plan.counts.unsqueeze(-1)  # Wasserstein gradient: each particle has mass 1/n
    if plan.keep is not None:
        g = torch.where(plan.keep, g, torch.zeros((), dtype=g.dtype, device=g.device))
    return 0.5 * mmd2, g, fz.detach()


class FastGradient(GradientFn):
    """:func:`wgf_gradient` of ``func`` with the :class:`ddeqs.mmd.PairedMMD` of ``mask``/``movable`` planned once.

    ``capturable``: no host sync per call (see :class:`ddeqs.mmd.PairedMMD` and :mod:`ddeqs.solver.graph`).
    """

    def __init__(self, func: Func, mask: torch.Tensor, movable: torch.Tensor, dtype: torch.dtype,
                 capturable: bool = False) -> None:
        self.func, self.mask, self.movable = func, mask, movable
        self.plan = PairedMMD(mask, movable, dtype, capturable=capturable)

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return wgf_gradient(self.func, z, self.mask, self.movable, self.plan)


def wgf_solve(
    func: Func,
    z0: torch.Tensor,
    mask: torch.Tensor,
    movable: torch.Tensor | None = None,
    **loop: Any,
) -> tuple[torch.Tensor, dict]:
    """:func:`ddeqs.solver.loop.wgf_loop` (``loop``: its keyword arguments iters, step, tol, momentum,
    nesterov, ratio; same return value) with :class:`FastGradient`
    from ``z0`` ``(B, K, p)``, ``mask`` ``(B, K)``; ``movable`` (default ``mask``): particles that move."""
    movable = mask if movable is None else movable & mask
    gradient = FastGradient(func, mask, movable, z0.dtype)
    return wgf_loop(gradient, z0, mask, **loop)
