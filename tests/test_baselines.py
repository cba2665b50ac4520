"""Baselines: PointNet, Point Transformer, PCN and the masked point operations they share."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from ddeqs.batch import pad_clouds
from ddeqs.config import load_config
from ddeqs.errors import DataError
from ddeqs.metrics import chamfer_distance
from ddeqs.models import build_model, count_parameters
from ddeqs.models.pcn import PCN, pcn_alpha, pcn_loss
from ddeqs.models.point_transformer import PointTransformerClassifier
from ddeqs.models.pointnet import PointNetClassifier
from ddeqs.models.pointops import (
    MaskedBatchNorm,
    farthest_point_sample,
    knn,
    resample_fill,
)

PT_CHANNELS, PT_STRIDES = [32, 64, 128, 256, 512], [1, 4, 4, 4, 4]


def make_pt(d: int = 2, c: int = 10) -> PointTransformerClassifier:
    return PointTransformerClassifier(d, c, channels=PT_CHANNELS, strides=PT_STRIDES, k=16)


def random_batch(sizes: list[int], d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds in general position (no distance ties), padded to max(sizes)."""
    g = torch.Generator().manual_seed(seed)
    return pad_clouds([torch.randn(n, d, generator=g) for n in sizes])


def digit_clouds(n: int = 8, threshold: float = 6.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n real handwritten digits (sklearn): pixel > threshold -> point (column, 7 - row), standardized."""
    ds = load_digits()
    clouds, labels = [], []
    for c in range(n):
        img = ds.images[int(np.flatnonzero(ds.target == c % 10)[0])]
        rows, cols = np.nonzero(img > threshold)
        pts = np.stack([cols, 7 - rows], axis=1).astype(np.float32)
        clouds.append((pts - pts.mean(0)) / pts.std(0))
        labels.append(c % 10)
    points, mask = pad_clouds(clouds)
    return points, mask, torch.tensor(labels)


def append_padding(points: torch.Tensor, mask: torch.Tensor, extra: int, value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``extra`` padded rows holding ``value`` (also NaN) and scatter padding among real rows."""
    B, N, d = points.shape
    junk = torch.full((B, extra, d), value)
    pts = torch.cat([points, junk], dim=1)
    msk = torch.cat([mask, torch.zeros(B, extra, dtype=torch.bool)], dim=1)
    perm = torch.randperm(N + extra, generator=torch.Generator().manual_seed(1))  # interleave padding
    return pts[:, perm], msk[:, perm]


def permute_points(points: torch.Tensor, mask: torch.Tensor, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(points.shape[1], generator=g) for _ in range(points.shape[0])])
    return torch.gather(points, 1, idx.unsqueeze(-1).expand_as(points)), torch.gather(mask, 1, idx)


CLASSIFIERS = {
    "pointnet": lambda: PointNetClassifier(2, 10),
    "point-transformer": lambda: make_pt(2, 10),
}


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("d,classes", [(2, 10), (3, 40)])
def test_parameter_counts_match_paper(d, classes):
    n_pn = count_parameters(PointNetClassifier(d, classes))
    n_pt = count_parameters(make_pt(d, classes))
    assert abs(n_pn - 1.6e6) / 1.6e6 < 0.02, n_pn
    assert abs(n_pt - 3.5e6) / 3.5e6 < 0.02, n_pt


def test_build_model_builds_baselines_from_config():
    cfg = load_config(None, ["model.name=pointnet"])
    assert isinstance(build_model(cfg, 2, 10), PointNetClassifier)
    cfg = load_config(None, ["model.name=point-transformer", "model.pt_k=8"])
    pt = build_model(cfg, 3, 40)
    assert isinstance(pt, PointTransformerClassifier) and pt.k == 8
    for d, m in [(2, 256), (3, 768)]:
        cfg = load_config(None, ["task=completion", "model.name=pcn"])
        pcn = build_model(cfg, d, 0)
        out = pcn.eval()(*random_batch([12, 9], d))
        assert out.points.shape == (2, m, d)


def test_config_rejects_inconsistent_baseline_shapes():
    from ddeqs.config import ConfigError

    with pytest.raises(ConfigError, match="pt_strides"):
        load_config(None, ["model.pt_strides=[1, 4]"])
    with pytest.raises(ConfigError, match="pcn_points"):
        load_config(None, ["model.pcn_grid=2", "model.pcn_points=10"])


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("name", list(CLASSIFIERS))
@pytest.mark.parametrize("train", [False, True])
def test_classifiers_are_permutation_and_padding_invariant(name, train):
    # float64: exact invariance up to round-off (float32 round-off is amplified by batch norm over
    # the few real rows of the last stage, so it would hide a real leak behind a loose tolerance)
    torch.manual_seed(0)
    model = CLASSIFIERS[name]().train(train).double()
    points, mask = random_batch([40, 23, 7, 31])
    points = points.double()

    def run(p, m):
        torch.manual_seed(5)  # same dropout mask for every call in training mode
        out = model(p, m)
        return out.logits.detach(), out.embedding.detach()

    ref_logits, ref_emb = run(points, mask)
    assert ref_logits.shape == (4, 10) and torch.isfinite(ref_logits).all()
    for p, m in [permute_points(points, mask), append_padding(points, mask, 13, float("nan")), append_padding(points, mask, 5, 1e6)]:
        logits, emb = run(p, m)
        torch.testing.assert_close(logits, ref_logits, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(emb, ref_emb, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_eval_output_of_a_cloud_does_not_depend_on_its_batch(name):
    torch.manual_seed(0)
    model = CLASSIFIERS[name]().eval()
    points, mask = random_batch([40, 23, 7, 31])
    together = model(points, mask).logits
    for b in range(4):
        alone = model(points[b : b + 1, : int(mask[b].sum())], mask[b : b + 1, : int(mask[b].sum())]).logits
        torch.testing.assert_close(alone[0], together[b], atol=1e-4, rtol=1e-4)


def test_classifiers_reject_empty_and_nan_clouds():
    model = PointNetClassifier(2, 10).eval()
    points, mask = random_batch([5, 3])
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(DataError, match=r"\[1\].*no real points"):
        model(points, empty)
    bad = points.clone()
    bad[0, 2, 0] = float("nan")
    with pytest.raises(DataError, match=r"\[0\].*NaN"):
        make_pt().eval()(bad, mask)


# --------------------------------------------------------------------------- point operations


def test_farthest_point_sample_uses_real_points_only_and_spreads():
    points, mask = random_batch([30, 6, 12])
    points[~mask] = 0.0
    idx = farthest_point_sample(points, mask, 8)
    assert idx.shape == (3, 8)
    assert mask.gather(1, idx).all(), "a padded row was sampled"
    assert len(set(idx[0].tolist())) == 8 and len(set(idx[2].tolist())) == 8
    assert set(idx[1].tolist()) == set(range(6)), "all 6 real points must be used before repeating"
    # farthest-point property: each new pick maximizes the distance to the picks before it
    p = points[0]
    for i in range(1, 8):
        d = torch.cdist(p, p[idx[0, :i]]).amin(1)
        assert d[idx[0, i]] == pytest.approx(float(d.max()))


def test_knn_matches_brute_force_and_repeats_real_neighbours():
    points, mask = random_batch([25, 3])
    points[~mask] = 0.0  # padding at the origin must not be taken for a neighbour
    idx = knn(points, points, mask, 5)
    assert idx.shape == (2, 25, 5)
    d = torch.cdist(points[0], points[0])
    assert torch.equal(idx[0], d.topk(5, largest=False).indices)
    nearest = torch.cdist(points[1, :3], points[1, :3]).argsort(1)  # (3, 3)
    assert torch.equal(idx[1, :3], torch.cat([nearest, nearest[:, :2]], dim=1))
    assert mask.gather(1, idx.reshape(2, -1)).all()


def test_masked_batchnorm_equals_batchnorm_on_real_rows():
    torch.manual_seed(0)
    x = torch.randn(3, 10, 4)
    mask = torch.rand(3, 10) > 0.4
    x[~mask] = 1e4  # padding values must not matter
    ours, ref = MaskedBatchNorm(4), torch.nn.BatchNorm1d(4)
    out = ours(x, mask)
    expected = ref(x[mask])
    torch.testing.assert_close(out[mask], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    one = ours(torch.randn(1, 4))  # one row in training: running statistics, no crash
    assert torch.isfinite(one).all()


def test_chamfer_distance_matches_brute_force():
    x, xm = random_batch([7, 4], d=3, seed=1)
    y, ym = random_batch([5, 9], d=3, seed=2)
    x[~xm] = float("nan")
    y[~ym] = 100.0
    for squared in (False, True):
        cd = chamfer_distance(x, xm, y, ym, squared=squared)
        for b in range(2):
            a, c = x[b][xm[b]].double(), y[b][ym[b]].double()
            dist = torch.cdist(a, c) ** (2 if squared else 1)
            expected = dist.min(1).values.mean() + dist.min(0).values.mean()
            assert float(cd[b]) == pytest.approx(float(expected), rel=1e-5)
    same = chamfer_distance(y, ym, y, ym)
    assert float(same.abs().max()) < 1e-4


def test_resample_fill_is_seeded_and_keeps_real_points():
    points, mask = random_batch([10, 3])
    a = resample_fill(points, mask, torch.Generator().manual_seed(7))
    b = resample_fill(points, mask, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(a[mask], points[mask])
    real1 = points[1, :3]
    assert torch.cdist(a[1, 3:], real1).amin(1).max() == 0.0  # every filled row is a real point of cloud 1


# --------------------------------------------------------------------------- PCN


def test_pcn_shapes_and_masks():
    points, mask = random_batch([20, 11], d=3)
    out = PCN(3, 768).eval()(points, mask)
    assert out.points.shape == (2, 768, 3) and out.mask.all() and out.free_mask.all()
    assert out.solver["coarse"].shape == (2, 768, 3)
    out = PCN(2, 64, grid_size=2).eval()(*random_batch([9, 4]))
    assert out.points.shape == (2, 64, 2) and out.solver["coarse"].shape == (2, 16, 2)
    with pytest.raises(ValueError, match="multiple"):
        PCN(2, 10, grid_size=2)


def test_pcn_padding_invariance():
    torch.manual_seed(0)
    model = PCN(2, 32)
    points, mask = random_batch([15, 6, 11])
    padded, pmask = append_padding(points, mask, 9, float("nan"))
    model.eval()  # max-pooling ignores duplicates: exact invariance whatever the fill
    ref = model(points, mask).points
    torch.testing.assert_close(model(padded, pmask).points, ref, atol=1e-5, rtol=1e-5)
    # different permutation of the real points: same output too
    torch.testing.assert_close(model(*permute_points(points, mask)).points, ref, atol=1e-5, rtol=1e-5)
    model.train()  # batch statistics see the resampled rows: same seed -> same output
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(model(padded, pmask, generator=g1).points, model(padded, pmask, generator=g2).points)


def test_pcn_chamfer_loss_decreases():
    torch.manual_seed(0)
    target, tmask = random_batch([40, 30, 36, 25], seed=4)
    keep = tmask & (target[..., 0] < 0.3)  # partial input: remove a slab
    model = PCN(2, 48)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = pcn_loss(model(target, keep), target, tmask).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


# --------------------------------------------------------------------------- training on real digits


def _overfit(model: torch.nn.Module, steps: int) -> int:
    points, mask, labels = digit_clouds()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(1, steps + 1):
        logits = model(points, mask).logits
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (logits.argmax(1) == labels).all():
            return step
    raise AssertionError(f"{type(model).__name__} did not reach 100 % training accuracy in {steps} steps")


def test_pointnet_overfits_eight_digits():
    torch.manual_seed(0)
    assert _overfit(PointNetClassifier(2, 10), 40) <= 40


def test_point_transformer_overfits_eight_digits():
    torch.manual_seed(0)
    assert _overfit(make_pt(2, 10), 40) <= 40


# --------------------------------------------------------------------------- optimizer defaults and saving


def test_pcn_is_trained_with_adam_1e4_and_its_staircase_decay():
    from ddeqs.training.trainer import make_optimizer, make_scheduler, steps_per_batch, steps_per_decay

    cfg = load_config(None, ["task=completion", "model.name=pcn", "train.epochs=6"])
    model = build_model(cfg, 2, 0)
    opt = make_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-4
    assert steps_per_batch(cfg) and steps_per_decay(cfg, 10) == 10  # 60 steps: x0.7 every 10
    sched = make_scheduler(cfg, opt, steps_per_epoch=10)
    lrs = []
    for _ in range(60):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[9] == pytest.approx(1e-4) and lrs[10] == pytest.approx(7e-5)
    assert lrs[59] == pytest.approx(1e-4 * 0.7**5)  # the PCN paper's last segment (250k-300k of 300k)
    long = load_config(None, ["task=completion", "model.name=pcn", "train.decay_every=0.01"])
    opt = make_optimizer(long, model)
    sched = make_scheduler(long, opt, steps_per_epoch=100)  # 5 epochs x 100 steps: 100 decays
    for _ in range(499):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)  # the floor
    # an explicit train.lr still wins; the classifiers keep the DDEQ's per-epoch milestones
    assert make_optimizer(load_config(None, ["task=completion", "model.name=pcn", "train.lr=0.002"]), model
                          ).param_groups[0]["lr"] == 0.002
    assert not steps_per_batch(load_config(None, ["model.name=pointnet"]))


def test_pcn_training_loss_has_the_coarse_and_the_fine_term():
    from ddeqs.batch import CloudBatch
    from ddeqs.training.losses import per_sample_loss

    cfg = load_config(None, ["task=completion", "model.name=pcn", "model.pcn_points=32"])
    torch.manual_seed(0)
    model = build_model(cfg, 2, 0).train()
    target, tmask = random_batch([30, 22, 26], seed=2)
    out = model(target, tmask & (target[..., 0] < 0.3))
    batch = CloudBatch(points=target, mask=tmask, target=target, target_mask=tmask)
    coarse = out.solver["coarse"]
    full = torch.ones(coarse.shape[:2], dtype=torch.bool)
    cd_c = chamfer_distance(coarse, full, target, tmask)
    cd_f = chamfer_distance(out.points, out.mask, target, tmask)
    assert not torch.allclose(cd_c, cd_f)  # with pcn_grid 1 the two clouds are distinct outputs
    for progress, alpha in [(0.0, 0.01), (0.05, 0.1), (0.1, 0.5), (0.5, 1.0), (None, 1.0)]:
        assert pcn_alpha(progress) == alpha
        torch.testing.assert_close(per_sample_loss(cfg, out, batch, progress=progress), cd_c + alpha * cd_f)
    # early in training the coarse term dominates, and it alone trains the global decoder's last layer
    loss = per_sample_loss(cfg, out, batch, progress=0.0).mean()
    loss.backward()
    assert model.coarse_mlp[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="coarse"):
        pcn_loss(type(out)(points=out.points, mask=out.mask), target, tmask)


def test_pointnet_dropout_before_the_last_layer_in_training_only():
    cfg = load_config(None, ["model.name=pointnet"])
    torch.manual_seed(0)
    model = build_model(cfg, 2, 10)
    assert isinstance(model.dropout, torch.nn.Dropout) and model.dropout.p == 0.3
    seen = {}
    model.head.register_forward_hook(lambda m, i, o: seen.update(head=o.detach()))
    model.classifier.register_forward_hook(lambda m, i, o: seen.update(last=i[0].detach()))
    points, mask = random_batch([40, 23, 35, 31])
    model.train()
    torch.manual_seed(1)
    a = model(points, mask).logits
    dropped = seen["last"] == 0
    kept = ~dropped & (seen["head"] != 0)
    torch.testing.assert_close(seen["last"][kept], seen["head"][kept] / 0.7)
    share = float(dropped[seen["head"] != 0].float().mean())
    assert 0.2 < share < 0.4, share  # ~30 % of the 4 x 256 features
    torch.manual_seed(2)
    assert not torch.allclose(model(points, mask).logits, a)  # another mask
    model.eval()
    e1 = model(points, mask).logits
    torch.testing.assert_close(seen["last"], seen["head"])  # no dropout in evaluation
    torch.manual_seed(3)
    torch.testing.assert_close(model(points, mask).logits, e1)


def test_state_dicts_load_with_weights_only(tmp_path):
    for model in (PointNetClassifier(3, 40), make_pt(3, 40), PCN(3, 768)):
        path = tmp_path / "model.pt"
        torch.save(model.state_dict(), path)
        state = torch.load(path, weights_only=True)
        fresh = type(model)(3, 40) if not isinstance(model, PointTransformerClassifier) else make_pt(3, 40)
        if isinstance(model, PCN):
            fresh = PCN(3, 768)
        fresh.load_state_dict(state)
