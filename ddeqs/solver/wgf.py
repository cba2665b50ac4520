"""Fast inner solver: Wasserstein gradient descent on the particles of Z (paper §3.1, Prop. 2).

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
are frozen. No autograd graph is kept across iterations and there is no loop over samples.

``func(z)`` maps ``(B, K, p)`` -> ``(B, K, p)`` and must leave fixed and padded rows unchanged
(the DDEQ passes ``where(movable, F(z), z)``).
"""

from __future__ import annotations

from typing import Callable

import torch

from ddeqs.mmd import PairedMMD

Func = Callable[[torch.Tensor], torch.Tensor]


def _rows(mask: torch.Tensor) -> torch.Tensor:
    return mask.unsqueeze(-1)


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


class ParticleUpdate:
    """SGD update with optional heavy-ball / Nesterov momentum (PyTorch SGD convention)."""

    def __init__(self, step: float, momentum: float = 0.0, nesterov: bool = False) -> None:
        self.step, self.momentum, self.nesterov = step, momentum, nesterov
        self.buf: torch.Tensor | None = None

    def __call__(self, z: torch.Tensor, g: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        d = g
        if self.momentum > 0:
            self.buf = g.clone() if self.buf is None else self.momentum * self.buf + g
            d = g + self.momentum * self.buf if self.nesterov else self.buf
        return z - self.step * d * active.to(z.dtype)[:, None, None]


def relative_change(prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """``|prev - cur| / |prev|`` per sample (``(B,)``), safe at 0."""
    return (prev - cur).abs() / prev.abs().clamp_min(torch.finfo(prev.dtype).tiny)


def fixed_point_residual(z: torch.Tensor, fz: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``||F(z) - z|| / ||F(z)||`` over real rows, ``(B,)``."""
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    diff = torch.where(_rows(mask), fz - z, zero).flatten(1).norm(dim=1)
    return diff / (torch.where(_rows(mask), fz, zero).flatten(1).norm(dim=1) + 1e-8)


class StopRule:
    """Per-sample stopping (``tol``) and, with momentum, best-iterate bookkeeping; shared by both solvers.

    * Plain descent (``momentum == 0``): the objective decreases; a sample freezes when the relative
      change of its objective between consecutive iterates falls below ``tol``; the last iterate is
      returned.
    * With momentum the objective is not monotone (heavy ball overshoots), so each sample's
      lowest-objective evaluated iterate is kept and returned (as torchdeq's own solvers return
      their lowest-residual iterate), and a sample freezes when its best objective improved by less
      than ``tol`` (relative) over the last :attr:`WINDOW` iterations.
    * ``ratio > 0`` (``solver.objective_ratio``): a sample also freezes once its objective (with
      momentum: its best one) is at most ``ratio`` times its objective at ``Z0``: the relative
      objective, a target level rather than a rate.
    """

    WINDOW = 10

    def __init__(self, tol: float, momentum: float, batch: int, device: torch.device, ratio: float = 0.0) -> None:
        self.tol, self.keep_best, self.ratio = tol, momentum > 0, ratio
        self.first: torch.Tensor | None = None
        self.active = torch.ones(batch, dtype=torch.bool, device=device)
        self.prev: torch.Tensor | None = None
        self.best_obj: torch.Tensor | None = None
        self.best_z: torch.Tensor | None = None
        self.best_fz: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []

    def observe(self, z: torch.Tensor, obj: torch.Tensor, fz: torch.Tensor, use_tol: bool = True) -> bool:
        """Record the objective ``obj`` ``(B,)`` of the evaluated iterate ``z``; False when every sample has stopped.

        ``use_tol=False``: skip the plain-descent ``tol`` test (the naive solver applies it to the
        objective of its extra forward instead).
        """
        if self.first is None:
            self.first = obj
        if self.keep_best:
            if self.best_obj is None:
                self.best_obj, self.best_z, self.best_fz = obj.clone(), z.clone(), fz.clone()
            else:
                better = obj < self.best_obj
                rows = better[:, None, None]
                self.best_obj = torch.where(better, obj, self.best_obj)
                self.best_z = torch.where(rows, z, self.best_z)
                self.best_fz = torch.where(rows, fz, self.best_fz)
            self.history.append(self.best_obj)
            if self.tol > 0 and len(self.history) > self.WINDOW:
                old = self.history[-1 - self.WINDOW]
                self.active = self.active & (relative_change(old, self.best_obj) >= self.tol)
        elif use_tol and self.tol > 0 and self.prev is not None:
            self.active = self.active & (relative_change(self.prev, obj) >= self.tol)
        if self.ratio > 0:
            level = self.best_obj if self.keep_best else obj
            self.active = self.active & (level > self.ratio * self.first)
        self.prev = obj
        return (self.tol <= 0 and self.ratio <= 0) or bool(self.active.any())

    def result(self, z: torch.Tensor, z_eval: torch.Tensor, fz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_star, evaluated iterate, its F)``: the best iterate with momentum, else the last ``z``."""
        if self.keep_best and self.best_z is not None:
            return self.best_z, self.best_z, self.best_fz  # type: ignore[return-value]
        return z, z_eval, fz


def wgf_solve(
    func: Func,
    z0: torch.Tensor,
    mask: torch.Tensor,
    movable: torch.Tensor | None = None,
    iters: int = 200,
    step: float = 5.0,
    tol: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    ratio: float = 0.0,
) -> tuple[torch.Tensor, dict]:
    """Run the fast WGF from ``z0`` ``(B, K, p)`` with ``mask`` ``(B, K)`` (``movable`` default: ``mask``).

    Returns ``(z_star, info)``; ``info``: ``objective`` ``(B, T)`` (½MMD² at each evaluated iterate),
    ``rel_residual`` ``(B,)`` (``||F(z)-z||/||F(z)||`` at the returned iterate's evaluation: no extra
    forward), ``iters`` (steps evaluated), ``converged`` ``(B,)`` bool (stopped by ``tol``).
    With momentum, ``z_star`` is each sample's lowest-objective iterate (:class:`StopRule`).
    """
    movable = mask if movable is None else movable & mask
    plan = PairedMMD(mask, movable, z0.dtype)
    z = z0.detach().clone()
    upd = ParticleUpdate(step, momentum, nesterov)
    rule = StopRule(tol, momentum, z.shape[0], z.device, ratio)
    trace: list[torch.Tensor] = []
    z_eval, fz = z, z
    for _ in range(iters):
        obj, g, fz = wgf_gradient(func, z, mask, movable, plan)
        z_eval = z
        trace.append(obj)
        if not rule.observe(z, obj, fz):
            break
        z = upd(z, g, rule.active)
    z, z_eval, fz = rule.result(z, z_eval, fz)
    info = {
        "objective": torch.stack(trace, 1) if trace else z.new_zeros(z.shape[0], 0),
        "rel_residual": fixed_point_residual(z_eval, fz, mask),
        "iters": len(trace),
        "converged": ~rule.active,
    }
    return z, info
