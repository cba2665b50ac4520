"""Normalization and voxel downsampling of point clouds (ModelNet40-s, shapes)."""

from __future__ import annotations

import numpy as np

from ddeqs.errors import DataError


def normalize(points: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Zero mean and unit variance per coordinate: ``(n, d) -> (n, d)`` float64.

    A coordinate with zero spread (e.g. a flat mesh) is only centred.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or len(pts) == 0:
        raise DataError(f"cannot normalize an empty cloud or shape {pts.shape}")
    std = pts.std(axis=0)
    return (pts - pts.mean(axis=0)) / np.where(std > eps, std, 1.0)


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """Open3D voxel-grid downsampling (one averaged point per occupied voxel); ``(n, 3) -> (m, 3)``."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    return np.asarray(pcd.voxel_down_sample(float(voxel)).points)


def downsample_to(points: np.ndarray, max_points: int = 800, min_points: int = 500,
                  iters: int = 40) -> tuple[np.ndarray, float | None]:
    """Voxel-downsample to at most ``max_points``, aiming for ``[min_points, max_points]``.

    Bisection on the voxel size in log scale (the count decreases roughly
    monotonically with the size); keeps the largest count ``<= max_points`` seen.
    Clouds with at most ``max_points`` points are returned unchanged (voxel None).
    Returns ``(points (m, 3), voxel size)``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) <= max_points:
        return pts, None
    extent = float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))
    if extent <= 0:
        return pts[:1], None
    lo, hi = np.log(extent * 1e-6), np.log(extent)  # count(lo) = n (> max), count(hi) ~ 1
    best, best_v = voxel_downsample(pts, np.exp(hi)), float(np.exp(hi))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        out = voxel_downsample(pts, np.exp(mid))
        if len(out) > max_points:
            lo = mid
        else:
            hi = mid
            if len(out) > len(best):
                best, best_v = out, float(np.exp(mid))
            if len(out) >= min_points:
                break
    return best, best_v


def voxelize_cloud(vertices: np.ndarray, max_points: int = 800, min_points: int = 500) -> tuple[np.ndarray, float | None]:
    """The ModelNet40-s recipe: normalize, voxel-downsample to ``<= max_points``, normalize again.

    ``(n, 3)`` float -> ``((m, 3) float32, voxel size or None)``.
    """
    cloud, voxel = downsample_to(normalize(vertices), max_points, min_points)
    return normalize(cloud).astype(np.float32), voxel
