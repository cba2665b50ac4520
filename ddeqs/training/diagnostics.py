"""App. D.1 diagnostics of the DDEQ over training (paper Figures 7, 8, 9).

With ``D = ½ MMD²`` (Riesz kernel), ``μ* = Z*`` the fixed point found for a sample, ``F_ν(μ) = D(μ, ν)``
and ``G(μ) = D(μ, F_θ(μ, ρ))`` the inner objective, at training step ``t`` (1-based):

* **B.10** ``F_{μ*}(μ) / ‖∇_W F_{μ*}(μ)‖²_{L²(μ)}`` averaged over ``n_mu`` random ``μ`` per sample
  (``μ``: as many particles as ``Z*``, drawn from ``N(0, I)`` in R^p; the paper says "8 randomly
  created μ" without a law). The Wasserstein gradient at particle ``i`` is ``∇_{z_i} D / a_i`` with
  mass ``a_i = 1/n``, so ``‖∇_W‖²_{L²(μ)} = Σ_i a_i ‖∇_{z_i} D / a_i‖²``.
* **B.11** ``‖∇_W G(μ_t) - ∇_W F_{μ*}(μ_t)‖²_{L²(μ_t)} / ε_t`` with ``ε_t = min(1, t^{-1/2})`` and,
  as in the paper, ``μ_t = μ*``. Then ``∇_W F_{μ*}(μ*) = 0`` exactly, so the quantity is
  ``‖∇_W G(Z*)‖²_{L²(Z*)} / ε_t``; ``∇_W G`` includes the chain rule through F (the inner
  solver's own gradient, :func:`ddeqs.solver.wgf.wgf_gradient`), on the movable particles.
* **B.12** ``Σ_{s ≤ T} ‖∇L(θ_s)‖² / (√T (log T)²)``: the integral is a sum over training steps of
  the squared norm of the mini-batch gradient (after backward, before the optimizer step);
  undefined at ``T = 1`` (``log 1 = 0``), recorded as None there.

B.10 and B.11 cost one F evaluation with a VJP and a few MMD gradients on up to ``n_samples``
clouds of the current batch, at every ``every``-th step; B.12 costs one gradient norm per step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from ddeqs.mmd import riesz_mmd2_with_grads

__all__ = ["Diagnostics", "b10_ratio", "b11_quantity", "b12_quantity", "grad_sq_norm", "wasserstein_sq_norm"]


def wasserstein_sq_norm(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``‖v‖²_{L²(μ)} = Σ_i a_i ‖v_i‖²`` for a Wasserstein gradient ``v`` ``(B, K, p)``, ``a_i = 1/n``; ``(B,)``."""
    n = mask.sum(1).clamp_min(1).to(grad.dtype)
    return (grad.pow(2).sum(-1) * mask.to(grad.dtype)).sum(1) / n


def b10_ratio(
    z_star: torch.Tensor, z_mask: torch.Tensor, n_mu: int = 8, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Assumption B.10 ratio per sample ``(B,)``, averaged over ``n_mu`` random ``μ ~ N(0, I)`` clouds."""
    B, K, p = z_star.shape
    ratios = []
    for _ in range(n_mu):
        mu = torch.randn(B, K, p, generator=generator, dtype=z_star.dtype).to(z_star.device)
        mmd2, g_mu, _ = riesz_mmd2_with_grads(mu, z_mask, z_star, z_mask)  # g_mu = ∂(½MMD²)/∂μ_i
        n = z_mask.sum(1).clamp_min(1).to(g_mu.dtype)[:, None, None]
        wgrad = g_mu * n  # divide by the mass 1/n
        ratios.append(0.5 * mmd2 / wasserstein_sq_norm(wgrad, z_mask).clamp_min(1e-30))
    return torch.stack(ratios, 0).mean(0)


def b11_quantity(model: nn.Module, x: torch.Tensor, x_mask: torch.Tensor, z_star: torch.Tensor,
                 z_mask: torch.Tensor, movable: torch.Tensor, step: int) -> torch.Tensor:
    """Assumption B.11 quantity per sample ``(B,)`` at training step ``step`` (1-based), ``μ_t = Z*``."""
    from ddeqs.models.ddeq.layers import DropoutState
    from ddeqs.solver.wgf import wgf_gradient

    fmap = model.core.fmap
    with torch.no_grad():  # X branch once; the gradient is taken w.r.t. Z only
        ctx = fmap.prepare(x, x_mask, DropoutState(fmap.dropout, False))
    mv = movable.unsqueeze(-1)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.where(mv, fmap.apply(z, z_mask, ctx), z)

    _, g, _ = wgf_gradient(f, z_star.detach(), z_mask, movable)  # ∇_W G (zero on fixed particles)
    eps = min(1.0, step ** -0.5)
    return wasserstein_sq_norm(g, z_mask) / eps


def b12_quantity(grad_sq_sum: float, step: int) -> float | None:
    """Theorem B.12 quantity ``Σ_{s≤T} ‖∇L‖² / (√T (log T)²)`` at ``T = step``; None at ``T = 1``."""
    if step < 2:
        return None
    return grad_sq_sum / (math.sqrt(step) * math.log(step) ** 2)


def grad_sq_norm(model: nn.Module) -> float:
    """``‖∇_θ L‖²`` over all parameters with a gradient."""
    total = None
    for p in model.parameters():
        if p.grad is not None:
            s = p.grad.detach().float().pow(2).sum()
            total = s if total is None else total + s
    return 0.0 if total is None else float(total)


class Diagnostics:
    """Collects B.10/B.11 every ``every`` steps and the B.12 running sum at every step; checkpointable."""

    def __init__(self, every: int, n_mu: int = 8, n_samples: int = 8, seed: int = 0) -> None:
        self.every, self.n_mu, self.n_samples, self.seed = every, n_mu, n_samples, seed
        self.grad_sq_sum = 0.0
        self.series: dict[str, list[Any]] = {"step": [], "b10": [], "b11": [], "b12": []}

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def due(self, step: int) -> bool:
        return self.enabled and step % self.every == 0

    def add_gradient(self, model: nn.Module) -> None:
        """Call after backward (gradients unscaled) and before the optimizer step."""
        if self.enabled:
            self.grad_sq_sum += grad_sq_norm(model)

    def measure(self, model: nn.Module, x: torch.Tensor, x_mask: torch.Tensor, out: Any, step: int) -> dict[str, float | None]:
        """B.10/B.11/B.12 at ``step`` from a training forward's ``ModelOutput``; appends and returns them."""
        k = min(self.n_samples, x.shape[0])
        z_star, z_mask = out.z_star[:k].detach().float(), out.z_mask[:k]
        movable = z_mask if out.free_mask is None else (out.free_mask[:k] & z_mask)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        was_training = model.training
        model.eval()  # no dropout: F is the deterministic map whose fixed point was found
        try:
            b10 = float(b10_ratio(z_star, z_mask, self.n_mu, gen).mean())
            b11 = float(b11_quantity(model, x[:k].float(), x_mask[:k], z_star, z_mask, movable, step).mean())
        finally:
            model.train(was_training)
        b12 = b12_quantity(self.grad_sq_sum, step)
        vals = {"b10": b10, "b11": b11, "b12": b12}
        self.series["step"].append(step)
        for key, v in vals.items():
            self.series[key].append(v if v is None or math.isfinite(v) else None)
        return vals

    def state_dict(self) -> dict[str, Any]:
        return {"grad_sq_sum": self.grad_sq_sum, "series": {k: list(v) for k, v in self.series.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.grad_sq_sum = float(state["grad_sq_sum"])
        self.series = {k: list(v) for k, v in state["series"].items()}
