"""float32 MMD and Chamfer at the sizes users run, against float64 references.

Clouds of 255 and 800 points, random and near-converged (the regime of a good fit, where the
Gram formula |x|² + |y|² - 2x·y leaves only rounding noise in small distances), padded and
unpadded. Criterion: norm-wise relative gradient error <= 1e-3; padding changes no gradient by
more than 1e-6 relative. The float64 references use explicit differences (no Gram matrix).
"""

from __future__ import annotations

import pytest
import torch

from ddeqs.metrics import chamfer
from ddeqs.mmd import PairedMMD, paired_mmd2_with_grads, riesz_mmd2, riesz_mmd2_with_grads, signed_energy_with_grads

GRAD_TOL = 1e-3
PAD_TOL = 1e-6


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-wise relative error of ``a`` against the reference ``b``."""
    return float((a.double() - b.double()).norm() / b.double().norm())


def cloud_pair(n: int, p: int, sigma: float | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float32 clouds ``(1, n, p)``: independent N(0, I), or ``y = x + sigma · N(0, I)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, p, generator=g, dtype=torch.float64)
    y = torch.randn(1, n, p, generator=g, dtype=torch.float64)
    if sigma is not None:
        y = x + sigma * y
    return x.float(), y.float()


def pad(t: torch.Tensor, extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` with ``extra`` rows of padding (value 7, far from the cloud) and its mask."""
    B, n, p = t.shape
    mask = torch.zeros(B, n + extra, dtype=torch.bool)
    mask[:, :n] = True
    return torch.cat([t, torch.full((B, extra, p), 7.0, dtype=t.dtype)], 1), mask


def ref_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """float64 Riesz MMD² of unpadded clouds from explicit differences (autograd-able)."""
    def mean_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(a.unsqueeze(2) - b.unsqueeze(1), dim=-1).mean((1, 2))  # grad 0 at 0

    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def ref_chamfer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = torch.linalg.vector_norm(x.unsqueeze(2) - y.unsqueeze(1), dim=-1)
    return d.amin(2).mean(1) + d.amin(1).mean(1)


def loss_and_grads(fn, x: torch.Tensor, y: torch.Tensor, padded: bool):
    """``fn`` value and gradients w.r.t. the real rows of ``x`` and ``y`` (optionally padded inputs)."""
    if padded:
        xp, xm = pad(x, 17)
        yp, ym = pad(y, 31)
    else:
        xp, xm, yp, ym = x, None, y, None
    xp, yp = xp.clone().requires_grad_(True), yp.clone().requires_grad_(True)
    v = fn(xp, xm, yp, ym)
    v.sum().backward()
    n, m = x.shape[1], y.shape[1]
    return v.detach(), torch.cat([xp.grad[:, :n], yp.grad[:, :m]], 1)


def reference(ref_fn, x: torch.Tensor, y: torch.Tensor):
    x64, y64 = x.double().requires_grad_(True), y.double().requires_grad_(True)
    v = ref_fn(x64, y64)
    v.sum().backward()
    return v.detach(), torch.cat([x64.grad, y64.grad], 1)


CASES = [
    pytest.param(255, None, id="255-random"),
    pytest.param(255, 1e-3, id="255-close"),
    pytest.param(800, None, id="800-random", marks=pytest.mark.slow),
    pytest.param(800, 1e-3, id="800-close", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("n,sigma", CASES)
@pytest.mark.parametrize(
    "name,fn,ref_fn,value_tol",
    [("mmd2", riesz_mmd2, ref_mmd2, 1e-3), ("chamfer", chamfer, ref_chamfer, 1e-6)],
    ids=["mmd2", "chamfer"],
)
def test_training_losses_float32_match_float64(name, fn, ref_fn, value_tol, n, sigma):
    """Training MMD (autograd) and Chamfer: float32 value and gradient vs float64; padding is inert."""
    x, y = cloud_pair(n, 3, sigma, seed=n)
    v64, g64 = reference(ref_fn, x, y)
    v, g = loss_and_grads(fn, x, y, padded=False)
    vp, gp = loss_and_grads(fn, x, y, padded=True)
    assert rel(v, v64) <= value_tol, (name, rel(v, v64))
    assert rel(g, g64) <= GRAD_TOL, (name, rel(g, g64))
    assert rel(gp, g) <= PAD_TOL, (name, rel(gp, g))
    assert rel(vp, v) <= PAD_TOL


def near_converged(K: int, p: int, target: float | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``z`` ``(1, K, p)`` and ``fz``: independent, or ``z + s·N(0, I)`` with ``s`` scaled so that
    MMD²(z, fz) is about ``target`` (MMD² of paired clouds is linear in ``s`` for small ``s``)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, K, p, generator=g, dtype=torch.float64)
    d = torch.randn(1, K, p, generator=g, dtype=torch.float64)
    if target is None:
        return z.float(), d.float()
    w = torch.cat([torch.full((1, K), 1.0 / K, dtype=torch.float64), torch.full((1, K), -1.0 / K, dtype=torch.float64)], 1)
    probe = float(signed_energy_with_grads(torch.cat([z, z + 1e-3 * d], 1), w, exact=True)[0])
    return z.float(), (z + (1e-3 * target / probe) * d).float()


def paired_reference(z: torch.Tensor, fz: torch.Tensor):
    """float64 ``(MMD², ∂(½MMD²)/∂z, ∂(½MMD²)/∂fz)`` from explicit differences (exact path)."""
    K = z.shape[1]
    w = torch.cat([torch.full((1, K), 1.0 / K, dtype=torch.float64), torch.full((1, K), -1.0 / K, dtype=torch.float64)], 1)
    v, g = signed_energy_with_grads(torch.cat([z, fz], 1).double(), w, exact=True)
    return v, g[:, :K], g[:, K:]


def test_exact_energy_matches_autograd_reference():
    """The float64 solver reference itself agrees with autograd of explicit differences."""
    z, fz = near_converged(120, 16, 1e-5, seed=3)
    v, gz, gfz = paired_reference(z, fz)
    rv, rg = reference(ref_mmd2, z, fz)
    assert rel(v, rv) < 1e-9
    assert rel(torch.cat([gz, gfz], 1), 0.5 * rg) < 1e-9


SOLVER_CASES = [
    pytest.param(255, 128, target, id=f"255-p128-{target}") for target in (None, 1e-2, 1e-4, 1e-6)
] + [
    pytest.param(255, 3, 1e-6, id="255-p3-1e-06"),
    pytest.param(800, 3, 1e-6, id="800-p3-1e-06", marks=pytest.mark.slow),
    pytest.param(800, 128, 1e-6, id="800-p128-1e-06", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("K,p,target", SOLVER_CASES)
def test_solver_paired_mmd_float32_matches_float64(K, p, target):
    """The solver's analytic MMD gradients (Gram path for these sizes) down to MMD² = 1e-6."""
    z, fz = near_converged(K, p, target, seed=K + p)
    v64, gz64, gfz64 = paired_reference(z, fz)
    if target is not None:
        assert 0.5 * target < float(v64) < 2 * target
    mask = torch.ones(1, K, dtype=torch.bool)
    plan = PairedMMD(mask, mask, torch.float32)
    assert plan.index is None  # all K rows, the Gram path: 1 · (2K)² · p > 2^20
    v, gz, gfz = paired_mmd2_with_grads(z, fz, mask, mask, plan)
    ref = torch.cat([gz64, gfz64], 1)
    assert rel(torch.cat([gz, gfz], 1), ref) <= GRAD_TOL
    assert rel(v, v64) <= (1e-2 if target == 1e-6 else 1e-3)  # a difference of sums ~1e6 times larger

    # padding: 20 padded rows (plan with a row index) and the unpaired entry point
    zp, m = pad(z, 20)
    fzp, _ = pad(fz, 20)
    vp, gzp, gfzp = paired_mmd2_with_grads(zp, fzp, m, m)
    assert rel(torch.cat([gzp[:, :K], gfzp[:, :K]], 1), torch.cat([gz, gfz], 1)) <= PAD_TOL
    assert float(gzp[:, K:].abs().max()) == 0.0 and float(gfzp[:, K:].abs().max()) == 0.0
    _, gx, gy = riesz_mmd2_with_grads(zp, m, fzp, m)
    assert rel(torch.cat([gx[:, :K], gy[:, :K]], 1), ref) <= GRAD_TOL


def test_small_solver_problem_is_exact_at_coincident_points():
    """Classification-sized problem (explicit-difference path): coincident and nearly coincident
    particles (closer than the former 1e-4 clamp) get the exact gradient."""
    z, fz = near_converged(20, 128, 1e-6, seed=5)
    fz[:, 3] = z[:, 3]  # one particle that does not move
    v64, gz64, gfz64 = paired_reference(z, fz)
    mask = torch.ones(4, 20, dtype=torch.bool)
    v, gz, gfz = paired_mmd2_with_grads(z.expand(4, -1, -1), fz.expand(4, -1, -1), mask, mask)
    assert float((fz - z).norm(dim=-1).max()) < 1e-4
    assert rel(torch.cat([gz[:1], gfz[:1]], 1), torch.cat([gz64, gfz64], 1)) <= GRAD_TOL
    # The value keeps the float32 rounding of each distance (~1e-7 · 16 here, 1/400 weights): an
    # absolute error of about 1e-7, whatever the level of MMD².
    assert abs(float(v[0]) - float(v64)) <= 4e-7
