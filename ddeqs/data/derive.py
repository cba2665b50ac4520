"""Derived inputs, applied on load: partial clouds, noisy inputs, input-share subsampling.

All functions are pure: they take a ``(n, d)`` cloud and a ``numpy.random.Generator``
and return a new array. :func:`sample_rng` gives every sample its own generator from
``(seed, split, index)``, so the same seed always yields the same derived sample,
independently of batch order, epoch or worker.
"""

from __future__ import annotations

import zlib

import numpy as np

from ddeqs.errors import DataError

# Paper §4.1: ModelNet40-s completion uses these 8 classes (2,868 samples).
COMPLETION_CLASSES_3D = ["airplane", "bathtub", "bowl", "car", "chair", "cone", "toilet", "vase"]

_SALTS = {"partial": 1, "noise": 2, "share": 3}


def sample_rng(seed: int, split: str, index: int, what: str) -> np.random.Generator:
    """Generator seeded by ``(seed, split, sample index, derivation)``; deterministic across runs."""
    return np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(index), _SALTS[what]])


def partial_split(points: np.ndarray, radius: float, rng: np.random.Generator, n_centres: int = 2,
                  min_keep: int = 1, tries: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``n_centres`` distinct points of the cloud at random and mark every point within
    ``radius`` (inclusive) of one of them for removal.

    Returns ``(keep (n,) bool, centres (n_centres, d))``. Draws new centres (up to
    ``tries`` times) when fewer than ``min_keep`` points would remain; raises
    :class:`DataError` if that never succeeds.
    """
    pts = np.asarray(points)
    n = len(pts)
    if n == 0:
        raise DataError("cannot make a partial cloud from an empty cloud")
    if n > 1 and not np.ptp(pts, axis=0).any():  # no radius helps here: say what is wrong with the cloud
        raise DataError(f"all {n} points of the cloud are the same point {pts[0].tolist()}: it is degenerate "
                        "(a broken source file or a failed voxelization), and no partial cloud can be cut from "
                        "it; fix or drop it and prepare the dataset again")
    for _ in range(tries):
        centres = pts[rng.choice(n, size=min(n_centres, n), replace=False)]
        dist = np.linalg.norm(pts[:, None, :] - centres[None, :, :], axis=-1)  # (n, n_centres)
        keep = (dist > radius).all(axis=1)
        if keep.sum() >= min_keep:
            return keep, centres
    raise DataError(f"radius {radius} removes the whole cloud ({n} points) for every choice of centres; "
                    "lower data.partial_radius")


def partial_mask(points: np.ndarray, radius: float, rng: np.random.Generator, n_centres: int = 2) -> np.ndarray:
    """Bool ``(n,)`` mask of the points kept by :func:`partial_split`."""
    return partial_split(points, radius, rng, n_centres)[0]


def make_partial(points: np.ndarray, radius: float, rng: np.random.Generator, n_centres: int = 2) -> np.ndarray:
    """The partial cloud ``(m, d)``: :func:`partial_mask` applied to ``points``."""
    return np.asarray(points)[partial_mask(points, radius, rng, n_centres)]


def add_noise(points: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Replace ``round(fraction * n)`` randomly chosen points by draws from ``N(0, I)``; ``(n, d) -> (n, d)``."""
    out = np.array(points, copy=True)
    k = int(round(float(fraction) * len(out)))
    if k > 0:
        idx = rng.choice(len(out), size=k, replace=False)
        out[idx] = rng.standard_normal((k, out.shape[1])).astype(out.dtype)
    return out


def subsample_share(points: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Keep ``max(1, round(share * n))`` points chosen at random (order preserved); ``(n, d) -> (m, d)``."""
    n = len(points)
    if share >= 1.0 or n == 0:
        return np.asarray(points)
    k = max(1, int(round(float(share) * n)))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return np.asarray(points)[idx]


def completion_input(cloud: np.ndarray, radius: float, noise: float, share: float, seed: int, split: str,
                     index: int) -> np.ndarray:
    """The completion input of one sample: partial, then noisy, then share-subsampled."""
    x = make_partial(cloud, radius, sample_rng(seed, split, index, "partial"))
    if noise > 0:
        x = add_noise(x, noise, sample_rng(seed, split, index, "noise"))
    if share < 1.0:
        x = subsample_share(x, share, sample_rng(seed, split, index, "share"))
    return x
