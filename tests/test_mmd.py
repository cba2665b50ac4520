"""Riesz MMD² (ddeqs.mmd) against geomloss and against autograd."""

import math

import pytest
import torch
from geomloss import SamplesLoss

from ddeqs.batch import pad_clouds
from ddeqs.mmd import riesz_mmd2, riesz_mmd2_with_grads


def _clouds(seed: int, sizes: list[int], d: int = 3, shift: float = 0.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) + shift for n in sizes]


def test_matches_geomloss_energy_times_two_with_masks():
    xs = _clouds(0, [7, 12, 3])
    ys = _clouds(1, [9, 4, 15], shift=0.5)
    x, xm = pad_clouds(xs, dtype=torch.float64)
    y, ym = pad_clouds(ys, dtype=torch.float64)
    ours = riesz_mmd2(x, xm, y, ym)
    energy = SamplesLoss("energy")
    ref = torch.stack([2.0 * energy(a, b) for a, b in zip(xs, ys)])
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-7)
    mmd2, _, _ = riesz_mmd2_with_grads(x, xm, y, ym)
    assert torch.allclose(mmd2, ref, rtol=1e-4, atol=1e-7)
    assert (ours > 0).all()


def test_analytic_grads_match_autograd():
    x, xm = pad_clouds(_clouds(2, [6, 10]), dtype=torch.float64)
    y, ym = pad_clouds(_clouds(3, [8, 5], shift=1.0), dtype=torch.float64)
    x.requires_grad_(True)
    y.requires_grad_(True)
    (0.5 * riesz_mmd2(x, xm, y, ym)).sum().backward()
    mmd2, gx, gy = riesz_mmd2_with_grads(x.detach(), xm, y.detach(), ym)
    assert torch.allclose(gx, x.grad, atol=1e-8)
    assert torch.allclose(gy, y.grad, atol=1e-8)
    assert (gx[~xm] == 0).all() and (gy[~ym] == 0).all()


@pytest.mark.parametrize("bad", [float("nan"), 1e6])
def test_padding_values_never_leak(bad: float):
    x, xm = pad_clouds(_clouds(4, [5, 8]))
    y, ym = pad_clouds(_clouds(5, [7, 3]))
    ref = riesz_mmd2(x, xm, y, ym)
    x2 = torch.cat([x, torch.full((2, 4, 3), bad)], 1)
    xm2 = torch.cat([xm, torch.zeros(2, 4, dtype=torch.bool)], 1)
    x2[0, 5:] = bad
    assert torch.allclose(riesz_mmd2(x2, xm2, y, ym), ref, atol=1e-6)
    mmd2, gx, _ = riesz_mmd2_with_grads(x2, xm2, y, ym)
    assert torch.allclose(mmd2, ref, atol=1e-5)
    assert torch.isfinite(gx).all()


def test_identical_clouds_give_zero():
    x, xm = pad_clouds(_clouds(6, [11]))
    assert math.isclose(float(riesz_mmd2(x, xm, x.clone(), xm)), 0.0, abs_tol=1e-5)


@pytest.mark.parametrize("all_movable", [False, True])
def test_paired_mmd_on_movable_rows_equals_the_full_computation(all_movable: bool):
    """Rows that coincide in z and fz cancel: the movable-rows MMD and gradients equal the full ones."""
    from ddeqs.mmd import paired_mmd2_with_grads, rows_index

    g = torch.Generator().manual_seed(7)
    z = torch.randn(3, 12, 5, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 9:] = False  # padding
    movable = mask.clone() if all_movable else torch.rand(3, 12, generator=g) < 0.4
    movable[0, 3] = True  # at least one movable row in sample 0
    movable &= mask
    fz = torch.where(movable[..., None], torch.randn(3, 12, 5, generator=g, dtype=torch.float64) + 0.3, z)
    ref, gz_ref, gfz_ref = riesz_mmd2_with_grads(z, mask, fz, mask)
    index = rows_index(movable)
    assert (index is None) == all_movable
    mmd2, gz, gfz = paired_mmd2_with_grads(z, fz, mask, movable)
    assert torch.allclose(mmd2, ref, atol=1e-10)
    keep = movable[..., None]
    assert torch.allclose(gz, torch.where(keep, gz_ref, 0.0), atol=1e-10)
    assert torch.allclose(gfz, torch.where(keep, gfz_ref, 0.0), atol=1e-10)
    assert (gz[~movable] == 0).all() and (gfz[~movable] == 0).all()
