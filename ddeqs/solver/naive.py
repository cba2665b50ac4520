"""Naive reference inner solver (``solver.impl = "naive"``).

What a direct implementation does: at every step, autograd of ``½ riesz_mmd2(Z, F(Z, X))``
through the *whole* F (the X branch is recomputed at every step), then one more full forward of
F after the update only to evaluate the stopping test. The particle update (rescaling by the
number of particles, fixed rows, momentum, per-sample stopping) is the same as in
:mod:`ddeqs.solver.wgf`, so both paths return the same ``Z*`` up to float rounding; the fast
path exists because this one does 2 full forwards and a full backward per step.
"""

from __future__ import annotations

from typing import Callable

import torch

from ddeqs.mmd import riesz_mmd2
from ddeqs.solver.wgf import ParticleUpdate, StopRule, fixed_point_residual, relative_change

FullFunc = Callable[[torch.Tensor], torch.Tensor]


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


def naive_wgf_solve(
    full_func: FullFunc,
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
    """Same contract as :func:`ddeqs.solver.wgf.wgf_solve`; ``full_func(z)`` runs all of F."""
    movable = mask if movable is None else movable & mask
    z = z0.detach().clone()
    upd = ParticleUpdate(step, momentum, nesterov)
    rule = StopRule(tol, momentum, z.shape[0], z.device, ratio)
    trace: list[torch.Tensor] = []
    z_eval, fz = z, z
    for _ in range(iters):
        obj, g, fz = naive_gradient(full_func, z, mask, movable)
        z_eval = z
        trace.append(obj)
        if (rule.keep_best or ratio > 0) and not rule.observe(z, obj, fz, use_tol=rule.keep_best):
            break
        z = upd(z, g, rule.active)
        with torch.no_grad():  # the extra full forward, only for the stopping test (always, as a direct port does)
            new_obj = 0.5 * riesz_mmd2(z, mask, full_func(z), mask)
        if tol > 0 and not rule.keep_best:
            rule.active = rule.active & (relative_change(obj, new_obj) >= tol)
            if not bool(rule.active.any()):
                break
    z, z_eval, fz = rule.result(z, z_eval, fz)
    info = {
        "objective": torch.stack(trace, 1) if trace else z.new_zeros(z.shape[0], 0),
        "rel_residual": fixed_point_residual(z_eval, fz, mask),
        "iters": len(trace),
        "converged": ~rule.active,
    }
    return z, info
