"""App. D.9 flow: towards a rotation by 2π/5 the particles become rotation invariant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddeqs.mmd import riesz_mmd2
from ddeqs.paper.flow import invariance_ratio, rotation_flow, rotation_matrix, save_flow


@pytest.mark.slow
def test_rotation_flow_reaches_invariant_pattern():
    res = rotation_flow(5, n_particles=60, iters=2000)
    z = torch.as_tensor(res.final)[None]
    rz = torch.as_tensor(res.rotated_final())[None]
    final = float(riesz_mmd2(z, None, rz, None))
    z0 = torch.as_tensor(res.snapshots[0])[None]
    initial = float(riesz_mmd2(z0, None, z0 @ rotation_matrix(2 * math.pi / 5).T, None))
    assert initial > 1.0
    assert final / initial < 1e-3
    assert invariance_ratio(res) == pytest.approx(final / initial, rel=1e-3)
    assert np.linalg.norm(res.final.mean(0)) < 0.5  # centred on the rotation's fixed point
    assert sorted(res.snapshots) == [0, 10, 50, 200, 1000, 2000]


def test_flow_decreases_and_is_seeded(tmp_path):
    a = rotation_flow(8, n_particles=16, iters=100, seed=3)
    b = rotation_flow(8, n_particles=16, iters=100, seed=3)
    np.testing.assert_array_equal(a.final, b.final)
    assert a.mmd2[-1] < 0.1 * a.mmd2[0]
    assert np.allclose(a.snapshots[0].mean(0), [-10, 0], atol=2.5)
    save_flow(a, str(tmp_path / "f.npz"))
    with np.load(tmp_path / "f.npz") as f:
        assert f["snapshots"].shape == (len(a.snapshots), 16, 2)
    with pytest.raises(ValueError):
        rotation_flow(0)
