"""Voxel downsampling: at most max_points, 500-800 on a dense sphere, normalized output."""

from __future__ import annotations

import numpy as np

from ddeqs.data.voxelize import downsample_to, normalize, voxelize_cloud


def _sphere(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return 3.0 * x / np.linalg.norm(x, axis=1, keepdims=True) + np.array([5.0, -2.0, 1.0])


def test_dense_sphere_lands_in_500_800_and_is_normalized() -> None:
    cloud, voxel = voxelize_cloud(_sphere(30_000))
    assert 500 <= len(cloud) <= 800 and voxel is not None
    assert cloud.dtype == np.float32
    np.testing.assert_allclose(cloud.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(cloud.var(0), 1.0, atol=1e-4)


def test_never_more_than_max_points() -> None:
    rng = np.random.default_rng(1)
    for n, shape in [(5_000, "gauss"), (2_000, "line"), (20_000, "plane")]:
        pts = rng.normal(size=(n, 3))
        if shape == "line":
            pts[:, 1:] *= 1e-3
        if shape == "plane":
            pts[:, 2] = 0.0
        cloud = normalize(pts)
        for max_points in (800, 300):
            min_points = max_points * 5 // 8
            out, voxel = downsample_to(cloud, max_points=max_points, min_points=min_points)
            assert min_points <= len(out) <= max_points, (shape, max_points, len(out))
            assert voxel is not None and voxel > 0
            # voxel centroids stay inside the input's bounding box
            assert (out.min(0) >= cloud.min(0) - 1e-5).all() and (out.max(0) <= cloud.max(0) + 1e-5).all()


def test_small_cloud_is_kept_whole() -> None:
    pts = np.random.default_rng(2).normal(size=(100, 3))
    out, voxel = voxelize_cloud(pts)
    assert len(out) == 100 and voxel is None
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-5)


def test_normalize_handles_a_flat_coordinate() -> None:
    pts = np.random.default_rng(3).normal(size=(50, 3))
    pts[:, 2] = 4.0
    out = normalize(pts)
    assert np.isfinite(out).all() and np.allclose(out[:, 2], 0.0)
