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
    a = completion_input(cloud, 0.6, 0.2, 0.5, seed=3, split="test", index=7).input
    b = completion_input(cloud, 0.6, 0.2, 0.5, seed=3, split="test", index=7).input
    c = completion_input(cloud, 0.6, 0.2, 0.5, seed=4, split="test", index=7).input
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_noise_is_additive_by_default_on_the_requested_fraction() -> None:
    pts = np.full((200, 3), 50.0, dtype=np.float32)
    out = add_noise(pts, 0.2, np.random.default_rng(0))
    changed = (out != 50.0).any(axis=1)
    eps = out[changed] - 50.0  # x + eps: the points stay where they were, give or take N(0, I)
    assert changed.sum() == 40 and np.abs(eps).max() < 6 and 0.6 < eps.std() < 1.4 and out.dtype == np.float32
    assert (out[~changed] == 50.0).all()
    np.testing.assert_array_equal(add_noise(pts, 0.0, np.random.default_rng(0)), pts)


def test_noise_mode_replace_draws_new_points() -> None:
    pts = np.full((200, 3), 50.0)
    out = add_noise(pts, 0.2, np.random.default_rng(0), mode="replace")
    changed = (out != 50.0).any(axis=1)
    assert changed.sum() == 40 and np.abs(out[changed]).max() < 10  # N(0, I) draws replaced them
    with pytest.raises(ValueError, match="noise_mode"):
        add_noise(pts, 0.2, np.random.default_rng(0), mode="swap")  # type: ignore[arg-type]


def test_completion_input_carries_the_removed_points() -> None:
    cloud = np.random.default_rng(5).normal(size=(350, 2)).astype(np.float32)
    x, missing = completion_input(cloud, 0.6, 0.0, 1.0, seed=0, split="test", index=3)
    assert len(x) + len(missing) == len(cloud) and len(missing) > 0
    both = np.concatenate([x, missing])
    np.testing.assert_array_equal(np.sort(both, axis=0), np.sort(cloud, axis=0))  # a partition of the target
    # noise and share change the input only: the missing part is the same clean target points
    x2, missing2 = completion_input(cloud, 0.6, 0.3, 0.5, seed=0, split="test", index=3)
    np.testing.assert_array_equal(missing2, missing)
    assert len(x2) == round(0.5 * len(x))


def test_visits_redraw_partial_and_noise_reproducibly() -> None:
    cloud = np.random.default_rng(6).normal(size=(300, 2)).astype(np.float32)

    def draw(visit, redraw=True, noise=0.1):
        return completion_input(cloud, 0.6, noise, 1.0, seed=1, split="train", index=2, visit=visit,
                                redraw_partial=redraw)

    fixed = draw(None)
    np.testing.assert_array_equal(draw(None).input, fixed.input)  # no visit: the fixed per-sample draw
    a, b = draw(11), draw(12)
    np.testing.assert_array_equal(draw(11).input, a.input)  # the same visit: the same draw
    assert not np.array_equal(a.missing, b.missing)  # another visit: other removed balls
    assert not np.array_equal(draw(0).missing, fixed.missing)  # visit 0 is not the fixed draw
    # redraw_partial=false: the removed balls stay, the noise is still fresh per visit
    c, d = draw(11, redraw=False), draw(12, redraw=False)
    np.testing.assert_array_equal(c.missing, fixed.missing)
    np.testing.assert_array_equal(d.missing, fixed.missing)
    assert not np.array_equal(c.input, d.input)
    assert sample_rng(0, "train", 1, "noise", 2**40 + 5).random() != sample_rng(0, "train", 1, "noise", 5).random()


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


# --- the training loader: noise on the training split only, fresh draws per visit -------------------


@pytest.fixture()
def tiny_root(tmp_path):
    """A prepared 2-D split pair (as `ddeqs data prepare` writes it) of 12 / 6 clouds of 250-350 points."""
    from ddeqs.data.registry import split_path
    from ddeqs.data.store import pack, save_split

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        clouds = [rng.normal(size=(int(rng.integers(250, 350)), 2)).astype(np.float32) for _ in range(n)]
        save_split(split_path(tmp_path, "digits", split), pack(clouds, [i % 2 for i in range(n)], ["a", "b"]), {})
    return tmp_path


def _loader_cfg(root, *over):
    from ddeqs.config import load_config

    return load_config(None, [f"data.root={root}", "data.dataset=digits", "task=completion", "model.name=pcn",
                              "train.batch_size=4", *over])


def _by_index(loader):
    """{stored row: (input, missing)} over one pass of ``loader``."""
    out = {}
    for b in loader:
        for k in range(len(b)):
            out[int(b.index[k])] = (b.points[k][b.mask[k]].numpy(), b.missing[k][b.missing_mask[k]].numpy())
    return out


def test_test_inputs_are_clean_at_every_noise_level(tiny_root) -> None:
    from ddeqs.data import make_loader

    clean = _by_index(make_loader(_loader_cfg(tiny_root, "data.noise=0"), "test"))
    for noise in (0.05, 0.8):
        for mode in ("add", "replace"):
            got = _by_index(make_loader(_loader_cfg(tiny_root, f"data.noise={noise}", f"data.noise_mode={mode}"), "test"))
            assert got.keys() == clean.keys()
            for i in clean:
                np.testing.assert_array_equal(got[i][0], clean[i][0])
    noisy = _by_index(make_loader(_loader_cfg(tiny_root, "data.noise=0.8", "data.noise_test=true"), "test"))
    assert all(not np.array_equal(noisy[i][0], clean[i][0]) for i in clean)  # the other reading, on request
    # train split: noise is applied there (round(0.8 n) of the partial's points move)
    tr0 = _by_index(make_loader(_loader_cfg(tiny_root, "data.noise=0", "data.redraw_partial=false"), "train"))
    tr8 = _by_index(make_loader(_loader_cfg(tiny_root, "data.noise=0.8", "data.redraw_partial=false"), "train"))
    for i in tr0:
        moved = (tr8[i][0] != tr0[i][0]).any(axis=1)
        assert moved.sum() == round(0.8 * len(tr0[i][0]))


def test_training_partials_and_noise_are_redrawn_per_epoch_and_replayed_on_resume(tiny_root) -> None:
    from ddeqs.data import make_loader
    from ddeqs.training.seeding import seed_epoch

    cfg = _loader_cfg(tiny_root, "data.noise=0.05")
    loader = make_loader(cfg, "train")
    seed_epoch(cfg.seed, 0, loader)
    e0 = _by_index(loader)
    seed_epoch(cfg.seed, 1, loader)
    e1 = _by_index(loader)
    assert e0.keys() == e1.keys() and len(e0) == 12
    assert all(not np.array_equal(e0[i][1], e1[i][1]) for i in e0)  # other removed balls each epoch
    assert all(len(e0[i][0]) + len(e0[i][1]) == len(e1[i][0]) + len(e1[i][1]) for i in e0)
    # a resumed run builds a fresh loader and reseeds it for the epoch it resumes: the same draws
    again = make_loader(cfg, "train")
    seed_epoch(cfg.seed, 1, again)
    e1b = _by_index(again)
    for i in e1:
        np.testing.assert_array_equal(e1b[i][0], e1[i][0])
        np.testing.assert_array_equal(e1b[i][1], e1[i][1])
    # data.redraw_partial=false: fixed removed balls, noise still fresh per epoch
    fixed = make_loader(_loader_cfg(tiny_root, "data.noise=0.05", "data.redraw_partial=false"), "train")
    seed_epoch(cfg.seed, 0, fixed)
    f0 = _by_index(fixed)
    seed_epoch(cfg.seed, 1, fixed)
    f1 = _by_index(fixed)
    assert all(np.array_equal(f0[i][1], f1[i][1]) and not np.array_equal(f0[i][0], f1[i][0]) for i in f0)
    # the test split stays fixed whatever the epoch
    t0, t1 = _by_index(make_loader(cfg, "test")), _by_index(make_loader(cfg, "test"))
    assert all(np.array_equal(t0[i][1], t1[i][1]) for i in t0)


def test_visit_keys_reach_worker_processes(tiny_root) -> None:
    from ddeqs.data import make_loader
    from ddeqs.training.seeding import seed_epoch

    ref_cfg = _loader_cfg(tiny_root, "data.noise=0.05")
    ref = make_loader(ref_cfg, "train")
    seed_epoch(0, 3, ref)
    want = _by_index(ref)
    loader = make_loader(_loader_cfg(tiny_root, "data.noise=0.05", "data.workers=2"), "train")
    seed_epoch(0, 2, loader)
    _by_index(loader)
    seed_epoch(0, 3, loader)
    got = _by_index(loader)  # persistent workers, epoch 3: the draws of the single-process loader
    for i in want:
        np.testing.assert_array_equal(got[i][0], want[i][0])
