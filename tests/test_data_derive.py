"""Partial, noisy and share-subsampled inputs: correctness and per-sample determinism."""

from __future__ import annotations

import numpy as np
import pytest

from ddeqs.data.derive import add_noise, completion_input, partial_split, sample_rng, subsample_share
from ddeqs.errors import DataError


@pytest.mark.parametrize("d, r", [(2, 0.6), (3, 0.8)])
def test_partial_removes_exactly_the_balls(d: int, r: float) -> None:
    pts = np.random.default_rng(0).normal(size=(400, d))
    keep, centres = partial_split(pts, r, sample_rng(0, "train", 5, "partial"))
    assert centres.shape == (2, d)
    assert any((pts == c).all(axis=1).any() for c in centres)  # centres are points of the cloud
    dist = np.linalg.norm(pts[:, None] - centres[None], axis=-1)
    assert (dist[keep] > r).all()  # nothing left within r of either centre
    assert (dist[~keep] <= r).any(axis=1).all()  # and only those were removed
    assert 0 < keep.sum() < len(pts)


def test_same_seed_same_output_and_different_seed_differs() -> None:
    cloud = np.random.default_rng(1).normal(size=(300, 2)).astype(np.float32)
    a = completion_input(cloud, 0.6, 0.2, 0.5, seed=3, split="test", index=7)
    b = completion_input(cloud, 0.6, 0.2, 0.5, seed=3, split="test", index=7)
    c = completion_input(cloud, 0.6, 0.2, 0.5, seed=4, split="test", index=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_noise_replaces_the_requested_fraction() -> None:
    pts = np.full((200, 3), 50.0)
    out = add_noise(pts, 0.2, np.random.default_rng(0))
    changed = (out != 50.0).any(axis=1)
    assert changed.sum() == 40 and np.abs(out[changed]).max() < 10  # N(0, I) draws replaced them
    np.testing.assert_array_equal(add_noise(pts, 0.0, np.random.default_rng(0)), pts)


def test_share_keeps_the_requested_count_of_original_points() -> None:
    pts = np.random.default_rng(2).normal(size=(101, 2))
    out = subsample_share(pts, 0.4, np.random.default_rng(0))
    assert len(out) == 40 and all((pts == p).all(axis=1).any() for p in out)
    assert len(subsample_share(pts, 1.0, np.random.default_rng(0))) == 101


def test_radius_removing_everything_is_an_error() -> None:
    pts = np.random.default_rng(3).uniform(-0.1, 0.1, size=(10, 2))
    with pytest.raises(DataError, match="partial_radius"):
        partial_split(pts, 0.5, np.random.default_rng(0))


def test_all_identical_cloud_is_named_degenerate_not_a_radius_problem() -> None:
    with pytest.raises(DataError, match="same point") as err:
        partial_split(np.zeros((10, 2)), 0.5, np.random.default_rng(0))
    assert "partial_radius" not in str(err.value)
