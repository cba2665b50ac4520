"""Derived inputs, applied on load: partial clouds, noisy inputs, input-share subsampling.

All functions are pure: they take a ``(n, d)`` cloud and a ``numpy.random.Generator``
and return a new array. :func:`sample_rng` gives every sample its own generator from
``(seed, split, index)`` and, for training augmentation, a ``visit`` key (one per pass over
the training split, drawn by the loader's seeded sampler): the same seed always yields the
same derived sample, independently of batch order or worker, and a resumed run replays the
very same draws.
"""

from __future__ import annotations

import zlib
from typing import Literal, NamedTuple

import numpy as np

from ddeqs.errors import DataError

_SALTS = {"partial": 1, "noise": 2, "share": 3}


NoiseMode = Literal["add", "replace"]


def sample_rng(seed: int, split: str, index: int, what: str, visit: int | None = None) -> np.random.Generator:
    """Generator seeded by ``(seed, split, sample index, derivation[, visit])``; deterministic across runs.

    ``visit``: a non-negative integer naming one pass over the split (training augmentation);
    None gives the fixed per-sample draw.
    """
    key = [int(seed), zlib.crc32(split.encode()), int(index), _SALTS[what]]
    if visit is not None:
        v = int(visit)
        if v < 0:
            raise ValueError(f"sample_rng: visit must be >= 0, got {v}")
        key += [v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF, 1]  # the trailing 1 keeps (visit 0) != (no visit)
    return np.random.default_rng(key)


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


def add_noise(points: np.ndarray, fraction: float, rng: np.random.Generator, mode: NoiseMode = "add") -> np.ndarray:
    """Gaussian noise on ``round(fraction * n)`` randomly chosen points; ``(n, d) -> (n, d)``.

    ``mode="add"``: ``x + eps`` with ``eps ~ N(0, I)`` (the paper's "add Gaussian noise from
    N(0, 1) to a small portion of the input points"); ``mode="replace"``: the points are replaced
    by ``N(0, I)`` draws (the other reading).
    """
    if mode not in ("add", "replace"):
        raise ValueError(f"data.noise_mode must be 'add' or 'replace', got {mode!r}")
    out = np.array(points, copy=True)
    k = int(round(float(fraction) * len(out)))
    if k > 0:
        idx = rng.choice(len(out), size=k, replace=False)
        eps = rng.standard_normal((k, out.shape[1])).astype(out.dtype)
        out[idx] = out[idx] + eps if mode == "add" else eps
    return out


def subsample_share(points: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Keep ``max(1, round(share * n))`` points chosen at random (order preserved); ``(n, d) -> (m, d)``."""
    n = len(points)
    if share >= 1.0 or n == 0:
        return np.asarray(points)
    k = max(1, int(round(float(share) * n)))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return np.asarray(points)[idx]


class CompletionSample(NamedTuple):
    """One derived completion sample: the model ``input`` ``(m, d)`` and the ``missing`` part of the
    target ``(r, d)`` (the clean points the partial cloud removed; App. D.8's reference for the
    free particles)."""

    input: np.ndarray
    missing: np.ndarray


def completion_input(cloud: np.ndarray, radius: float, noise: float, share: float, seed: int, split: str,
                     index: int, *, noise_mode: NoiseMode = "add", visit: int | None = None,
                     redraw_partial: bool = True) -> CompletionSample:
    """The completion input of one sample: partial, then noisy, then share-subsampled.

    ``visit`` (training augmentation, one key per pass over the split): the noise is drawn afresh
    for each visit, and so are the partial cloud and the share subsample when ``redraw_partial``.
    ``visit=None`` gives the fixed per-sample draws (the test split). ``noise`` is applied as given:
    the caller decides on which split (the loader: training only unless ``data.noise_test``).
    """
    part_visit = visit if redraw_partial else None
    keep, _ = partial_split(cloud, radius, sample_rng(seed, split, index, "partial", part_visit))
    pts = np.asarray(cloud)
    x, missing = pts[keep], pts[~keep]
    if noise > 0:
        x = add_noise(x, noise, sample_rng(seed, split, index, "noise", visit), noise_mode)
    if share < 1.0:
        x = subsample_share(x, share, sample_rng(seed, split, index, "share", part_visit))
    return CompletionSample(x, missing)
