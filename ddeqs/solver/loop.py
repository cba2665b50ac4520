"""The one WGF loop (paper §3.1, Prop. 2), shared by the fast path and the naive reference.

Minimises ``G(Z) = ½ MMD²(Z, F(Z))`` (Riesz kernel) over the movable particles of ``Z`` by
particle gradient descent. What changes between ``solver.impl = "fast"`` and ``"naive"`` is only
how the gradient is computed: :func:`wgf_loop` takes a :class:`GradientFn`
(:class:`ddeqs.solver.wgf.FastGradient` or :class:`ddeqs.solver.naive.NaiveGradient`); the
particle update (:class:`ParticleUpdate`), the per-sample stopping (:class:`StopRule`) and the
returned diagnostics are this module's, once. No autograd graph is kept across iterations and
there is no loop over samples. (:mod:`ddeqs.solver.graph` runs the stop-free case of this loop on
fixed buffers, for capture in a CUDA graph; tests check it gives this loop's values bitwise.)
"""

from __future__ import annotations

from typing import Callable

import torch

Func = Callable[[torch.Tensor], torch.Tensor]


class GradientFn:
    """One gradient evaluation of ``G`` at ``z`` ``(B, K, p)`` for :func:`wgf_loop`.

    ``__call__(z)`` returns ``(objective (B,), grad (B, K, p), fz (B, K, p))``: ``½ MMD²(z, F(z))``,
    the particle (Wasserstein) gradient, zero on rows that do not move, and ``F(z)`` (detached).
    :meth:`recheck` (None: not used) evaluates the objective at the updated iterate; when a
    gradient function defines it, the plain-descent ``tol`` test uses that objective (as a direct
    implementation does) instead of the one of the next step.
    """

    recheck: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class ParticleUpdate:
    """SGD update with optional heavy-ball / Nesterov momentum (PyTorch SGD convention).

    The momentum buffer ``buf`` is advanced in place (a preallocated zero buffer gives the same first
    value, ``m·0 + g = g``: the fixed-address loop of :mod:`ddeqs.solver.graph` relies on both).
    """

    def __init__(self, step: float, momentum: float = 0.0, nesterov: bool = False) -> None:
        self.step, self.momentum, self.nesterov = step, momentum, nesterov
        self.buf: torch.Tensor | None = None

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """The descent direction ``(B, K, p)`` for the gradient ``g``; advances the momentum buffer."""
        if self.momentum <= 0:
            return g
        if self.buf is None:
            self.buf = g.clone()
        else:
            self.buf.mul_(self.momentum).add_(g)
        return g + self.momentum * self.buf if self.nesterov else self.buf

    def __call__(self, z: torch.Tensor, g: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return z - self.step * self.direction(g) * active.to(z.dtype)[:, None, None]


def relative_change(prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """``|prev - cur| / |prev|`` per sample (``(B,)``), safe at 0."""
    return (prev - cur).abs() / prev.abs().clamp_min(torch.finfo(prev.dtype).tiny)


def fixed_point_residual(z: torch.Tensor, fz: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``||F(z) - z|| / ||F(z)||`` over real rows, ``(B,)``."""
    rows = mask.unsqueeze(-1)
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    diff = torch.where(rows, fz - z, zero).flatten(1).norm(dim=1)
    return diff / (torch.where(rows, fz, zero).flatten(1).norm(dim=1) + 1e-8)


class StopRule:
    """Per-sample stopping (``tol``) and, with momentum, best-iterate bookkeeping.

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

        ``use_tol=False``: skip the plain-descent ``tol`` test (applied by :meth:`observe_update`
        to a recheck objective instead).
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

    def observe_update(self, obj: torch.Tensor, new_obj: torch.Tensor) -> bool:
        """Plain-descent ``tol`` test between ``obj`` and the recheck objective ``new_obj`` of the update; False when all stopped."""
        if self.tol > 0 and not self.keep_best:
            self.active = self.active & (relative_change(obj, new_obj) >= self.tol)
            return bool(self.active.any())
        return True

    def result(self, z: torch.Tensor, z_eval: torch.Tensor, fz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_star, evaluated iterate, its F)``: the best iterate with momentum, else the last ``z``."""
        if self.keep_best and self.best_z is not None:
            return self.best_z, self.best_z, self.best_fz  # type: ignore[return-value]
        return z, z_eval, fz


def wgf_loop(
    gradient: GradientFn,
    z0: torch.Tensor,
    mask: torch.Tensor,
    iters: int = 200,
    step: float = 5.0,
    tol: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    ratio: float = 0.0,
) -> tuple[torch.Tensor, dict]:
    """Run the WGF from ``z0`` ``(B, K, p)`` with ``mask`` ``(B, K)``, ``gradient`` giving each step's gradient.

    Returns ``(z_star, info)``; ``info``: ``objective`` ``(B, T)`` (½MMD² at each evaluated iterate),
    ``rel_residual`` ``(B,)`` (``||F(z)-z||/||F(z)||`` at the returned iterate's evaluation: no extra
    forward), ``iters`` (steps evaluated), ``converged`` ``(B,)`` bool (stopped by ``tol``/``ratio``).
    With momentum, ``z_star`` is each sample's lowest-objective iterate (:class:`StopRule`).
    Per step: ``(obj, g, fz) = gradient(z)``; stopping test on ``obj``; ``z <- update(z, g)``; and,
    when ``gradient.recheck`` is set, the plain-descent ``tol`` test on ``recheck(z)`` instead.
    """
    z = z0.detach().clone()
    upd = ParticleUpdate(step, momentum, nesterov)
    rule = StopRule(tol, momentum, z.shape[0], z.device, ratio)
    recheck = gradient.recheck
    trace: list[torch.Tensor] = []
    z_eval, fz = z, z
    for _ in range(iters):
        obj, g, fz = gradient(z)
        z_eval = z
        trace.append(obj)
        if not rule.observe(z, obj, fz, use_tol=recheck is None):
            break
        z = upd(z, g, rule.active)
        if recheck is not None and not rule.observe_update(obj, recheck(z)):
            break
    z, z_eval, fz = rule.result(z, z_eval, fz)
    info = {
        "objective": torch.stack(trace, 1) if trace else z.new_zeros(z.shape[0], 0),
        "rel_residual": fixed_point_residual(z_eval, fz, mask),
        "iters": len(trace),
        "converged": ~rule.active,
    }
    return z, info
