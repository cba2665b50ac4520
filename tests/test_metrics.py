"""ddeqs.metrics: W2 / OT against known cases and POT, MMD, Chamfer against brute force, mean and SE."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ddeqs.batch import pad_clouds
from ddeqs.metrics import chamfer, mean_and_se, mmd2, ot_cost, ot_distance, w2


def _rand_clouds(rng: np.random.Generator, sizes: list[int], d: int = 2) -> list[np.ndarray]:
    return [rng.normal(size=(n, d)).astype(np.float32) for n in sizes]


def test_w2_of_a_shifted_cloud_is_the_shift_length() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 30, 3)).astype(np.float64)
    shift = np.array([0.3, -1.2, 0.4])
    y = x + shift
    got = w2(torch.tensor(x), None, torch.tensor(y), None)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(np.linalg.norm(shift), rel=1e-9)
    # OT (Euclidean ground cost) of a translation is the shift length as well
    assert ot_distance(torch.tensor(x), None, torch.tensor(y), None).item() == pytest.approx(np.linalg.norm(shift), rel=1e-9)


def test_w2_matches_brute_force_over_permutations() -> None:
    """Equal sizes and uniform weights: the optimal coupling is a permutation (Birkhoff)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    best_sq = min(np.mean(np.sum((x - y[list(p)]) ** 2, 1)) for p in itertools.permutations(range(6)))
    best_l1 = min(np.mean(np.linalg.norm(x - y[list(p)], axis=1)) for p in itertools.permutations(range(6)))
    assert w2(torch.tensor(x[None]), None, torch.tensor(y[None]), None).item() == pytest.approx(math.sqrt(best_sq), rel=1e-9)
    assert ot_distance(torch.tensor(x[None]), None, torch.tensor(y[None]), None).item() == pytest.approx(best_l1, rel=1e-9)


def test_w2_masked_batch_ignores_padding_and_matches_pot() -> None:
    import ot

    rng = np.random.default_rng(2)
    xs, ys = _rand_clouds(rng, [5, 9, 7]), _rand_clouds(rng, [8, 4, 7])
    x, xm = pad_clouds(xs)
    y, ym = pad_clouds(ys)
    x[~xm] = 1e6  # padding values must not matter
    y[~ym] = float("nan")
    got = w2(x, xm, y, ym)
    for b, (a, c) in enumerate(zip(xs, ys)):
        a64, c64 = a.astype(np.float64), c.astype(np.float64)
        ref = ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(c), 1 / len(c)), ot.dist(a64, c64))
        assert got[b].item() == pytest.approx(math.sqrt(ref), rel=1e-7)
    # unequal sizes: W2 between a cloud and itself duplicated is 0
    twice = np.concatenate([xs[0], xs[0]])
    assert ot_cost(xs[0].astype(np.float64), twice.astype(np.float64), 2) == pytest.approx(0.0, abs=1e-12)


def test_ot_cost_rejects_empty_cloud() -> None:
    with pytest.raises(ValueError, match="empty cloud"):
        ot_cost(np.zeros((0, 2)), np.ones((3, 2)))


def test_mmd_of_a_cloud_with_itself_is_zero_and_positive_otherwise() -> None:
    rng = np.random.default_rng(3)
    x, xm = pad_clouds(_rand_clouds(rng, [10, 6]))
    assert torch.allclose(mmd2(x, xm, x, xm), torch.zeros(2), atol=1e-5)
    assert (mmd2(x, xm, x + 0.5, xm) > 1e-3).all()


def _chamfer_brute(a: np.ndarray, b: np.ndarray) -> float:
    ab = sum(min(np.linalg.norm(p - q) for q in b) for p in a) / len(a)
    ba = sum(min(np.linalg.norm(p - q) for q in a) for p in b) / len(b)
    return ab + ba


def test_chamfer_matches_brute_force_loop_and_ignores_padding() -> None:
    rng = np.random.default_rng(4)
    xs, ys = _rand_clouds(rng, [5, 11, 3], 3), _rand_clouds(rng, [7, 2, 9], 3)
    x, xm = pad_clouds(xs)
    y, ym = pad_clouds(ys)
    x[~xm] = 0.0  # padding at the origin would be a near neighbour if it leaked
    y[~ym] = 0.0
    got = chamfer(x, xm, y, ym)
    ref = torch.tensor([_chamfer_brute(a, b) for a, b in zip(xs, ys)])
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert chamfer(x, xm, x, xm).abs().max().item() < 1e-5


def test_mean_and_se() -> None:
    m, se = mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert m == pytest.approx(2.5)
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_and_se(torch.tensor([2.0])) == (2.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        mean_and_se([1.0, float("nan")])
    with pytest.raises(ValueError, match="no values"):
        mean_and_se([])


def test_free_particle_metrics_compare_with_the_missing_part_of_the_target() -> None:
    """App. D.8: the free particles are compared with "the corresponding particles in the target", i.e.
    the points the partial input lacks. A completion whose free particles sit exactly on the removed
    points has free-particle W2 / OT 0; against the whole target (the other reading) it does not."""
    from types import SimpleNamespace

    from ddeqs.batch import CloudBatch
    from ddeqs.data.derive import completion_input
    from ddeqs.training.evaluate import _completion_values

    rng = np.random.default_rng(4)
    clouds = [rng.normal(size=(n, 2)).astype(np.float32) for n in (300, 260)]
    parts = [completion_input(c, 0.6, 0.0, 1.0, seed=0, split="test", index=i) for i, c in enumerate(clouds)]
    outs = [np.concatenate([p.input, p.missing]) for p in parts]  # input particles, then perfect free particles
    pts, mask = pad_clouds(outs)
    free = torch.zeros_like(mask)
    for b, p in enumerate(parts):
        free[b, len(p.input) : len(outs[b])] = True
    batch = CloudBatch(*pad_clouds([p.input for p in parts]))
    batch.target, batch.target_mask = pad_clouds(clouds)
    batch.missing, batch.missing_mask = pad_clouds([p.missing for p in parts])
    v = _completion_values(SimpleNamespace(points=pts, mask=mask, free_mask=free), batch)
    assert np.allclose(v["w2_free"], 0.0, atol=1e-6) and np.allclose(v["ot_free"], 0.0, atol=1e-6)
    assert np.allclose(v["w2_full"], 0.0, atol=1e-6)  # input + free particles = the target
    assert (v["w2_free_target"] > 0.3).all() and (v["ot_free_target"] > 0.3).all()
    batch.missing = None
    from ddeqs.errors import DataError

    with pytest.raises(DataError, match="missing"):
        _completion_values(SimpleNamespace(points=pts, mask=mask, free_mask=free), batch)
