"""The DDEQ: parameter counts, EI property, padding invariance, completion output, gradients, CLI."""

import pytest
import torch

from ddeqs.cli import main as cli_main
from ddeqs.config import dataset_dim, load_config
from ddeqs.errors import DataError
from ddeqs.models import build_model
from ddeqs.models.ddeq import parameter_breakdown
from ddeqs.models.ddeq.fmap import FMap
from ddeqs.models.ddeq.layers import DropoutState

TINY = ["model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32", "model.cross_layers=2",
        "model.coupling_width=8", "model.z_particles=6", "solver.iters=5", "solver.step=1.0"]


def _as_printed(n: int, text: str) -> str:
    """``n`` rounded the way the paper prints ``text`` ("776k", "1.17M", "1.2M", "16.6k", "5k")."""
    unit, scale = (text[-1], {"k": 1e3, "M": 1e6}[text[-1]])
    decimals = len(text[:-1].split(".")[1]) if "." in text else 0
    return f"{n / scale:.{decimals}f}{unit}"


@pytest.mark.parametrize(
    "task,dataset,cross,classes,part,ours,paper",
    [  # ours: F with the Add & Norm final block (LN(h + FFN(h)): 256 parameters more than a bare FFN)
        ("classification", "mnist-pc", 1, 10, "F", 775_888, "776k"),  # footnote 5
        ("classification", "mnist-pc", 1, 10, "head", 1_290, "1.3k"),
        ("classification", "modelnet40-s", 3, 40, "F", 1_172_448, "1.17M"),  # §4.2
        ("classification", "modelnet40-s", 3, 40, "head", 5_160, "5k"),
        ("classification", "modelnet40-s", 3, 40, "total", 1_177_608, "1.2M"),  # Table 1
        ("completion", "modelnet40-s", 3, 8, "F", 1_172_448, "1.17M"),
        ("completion", "modelnet40-s", 3, 8, "total", 1_189_088, None),  # the paper prints no total
        ("completion", "mnist-pc", 3, 10, "total", 1_189_072, None),
        ("completion", "mnist-pc", 3, 10, "coupling", 16_640, "16.6k"),
    ],
)
def test_parameter_counts_match_paper(task, dataset, cross, classes, part, ours, paper):
    cfg = load_config(None, [f"task={task}", f"data.dataset={dataset}", f"model.cross_layers={cross}"])
    counts = parameter_breakdown(build_model(cfg, dataset_dim(dataset), classes))
    assert counts[part] == ours, counts
    if paper is not None:
        assert _as_printed(counts[part], paper) == paper
    assert counts["total"] == counts["F"] + counts["head"] + counts["coupling"]


def test_final_block_is_add_and_norm():
    """F's output is LN(h + FFN(h)) of the last encoder's output h: every output row is layer-normalised."""
    f = _fmap(False).eval()
    with torch.no_grad():  # a non-trivial affine part, so the check sees weight and bias applied
        f.out_norm.weight.uniform_(0.5, 2.0)
        f.out_norm.bias.normal_()
    seen = {}
    f.out_ffn.register_forward_hook(lambda m, inp, out: seen.update(h=inp[0], ffn=out))
    x, xm, z, zm = _inputs()
    out = f(z, zm, x, xm)
    expected = torch.nn.functional.layer_norm(seen["h"] + seen["ffn"], (16,), f.out_norm.weight, f.out_norm.bias)
    torch.testing.assert_close(out, expected)
    unit = (out - f.out_norm.bias) / f.out_norm.weight  # per row: mean 0, variance 1
    torch.testing.assert_close(unit.mean(-1), torch.zeros(2, 7, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(unit.var(-1, unbiased=False), torch.ones(2, 7, dtype=torch.float64), atol=1e-4, rtol=0)


def test_modelnet_head_is_linear_128_to_40():
    cfg = load_config(None, ["data.dataset=modelnet40-s"])
    counts = parameter_breakdown(build_model(cfg, 3, 40))
    assert counts["head"] == 128 * 40 + 40  # the paper rounds 5,160 to "5k"
    assert round(counts["head"], -3) == 5_000


def _fmap(pushforward: bool, **kw) -> FMap:
    torch.manual_seed(0)
    return FMap(3, z_dim=16, bilinear_dim=4, heads=4, ffn_dim=32, cross_layers=2, pushforward=pushforward, **kw).double()


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 11, 3, generator=g, dtype=torch.float64)
    z = torch.randn(2, 7, 16, generator=g, dtype=torch.float64)
    return x, torch.ones(2, 11, dtype=torch.bool), z, torch.ones(2, 7, dtype=torch.bool)


@pytest.mark.parametrize("pushforward", [False, True])
def test_ei_property(pushforward):
    f = _fmap(pushforward).eval()
    x, xm, z, zm = _inputs()
    out = f(z, zm, x, xm)
    pz, px = torch.randperm(7), torch.randperm(11)
    out2 = f(z[:, pz], zm, x[:, px], xm)
    assert torch.allclose(out2, out[:, pz], atol=1e-10)
    # and F really depends on X and (full variant) on the other particles of Z
    assert not torch.allclose(f(z, zm, x * 2.0, xm), out)
    z_other = z.clone()
    z_other[:, 1:] += 1.0
    changed = not torch.allclose(f(z_other, zm, x, xm)[:, 0], out[:, 0], atol=1e-8)
    assert changed != pushforward  # pushforward: particle 0's image depends on particle 0 only


@pytest.mark.parametrize("pushforward", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), 1e8])
def test_padding_invariance_of_f(pushforward, bad):
    f = _fmap(pushforward).eval()
    x, xm, z, zm = _inputs(1)
    ref = f(z, zm, x, xm)
    xp = torch.cat([x, torch.full((2, 5, 3), bad, dtype=x.dtype)], 1)
    xmp = torch.cat([xm, torch.zeros(2, 5, dtype=torch.bool)], 1)
    zp = torch.cat([z, torch.full((2, 3, 16), bad, dtype=z.dtype)], 1)
    zmp = torch.cat([zm, torch.zeros(2, 3, dtype=torch.bool)], 1)
    out = f(zp, zmp, xp, xmp)
    assert torch.allclose(out[:, :7], ref, atol=1e-10)
    assert torch.isfinite(out).all() and (out[:, 7:] == 0).all()


def test_dropout_masks_fixed_within_a_solve_and_equivariant():
    f = _fmap(False, dropout=0.5).train()
    x, xm, z, zm = _inputs(2)
    ctx = f.prepare(x, xm, DropoutState(0.5, True))
    a = f.apply(z, zm, ctx)
    assert torch.equal(f.apply(z, zm, ctx), a)  # same masks at every inner step
    p = torch.randperm(7)
    assert torch.allclose(f.apply(z[:, p], zm, ctx), a[:, p], atol=1e-10)  # masks shared by particles
    assert not torch.allclose(f.apply(z, zm, f.prepare(x, xm)), a)  # a new solve draws new masks


def _model(task, extra=()):
    cfg = load_config(None, [f"task={task}", *TINY, *extra])
    torch.manual_seed(0)
    return build_model(cfg, 2, 5)


def _batch(seed=0, n=14):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, n, 2, generator=g)
    m = torch.ones(3, n, dtype=torch.bool)
    m[1, 9:] = False
    m[2, 5:] = False
    return x, m


@pytest.mark.parametrize("bad", [float("nan"), 1e6])
def test_classification_logits_invariant_to_padding(bad):
    model = _model("classification").eval()
    x, m = _batch()
    torch.manual_seed(5)
    with torch.no_grad():
        ref = model(x, m)
    xp = torch.cat([x, torch.full((3, 6, 2), bad)], 1)
    mp = torch.cat([m, torch.zeros(3, 6, dtype=torch.bool)], 1)
    xp[~mp] = bad
    torch.manual_seed(5)
    with torch.no_grad():
        out = model(xp, mp)
    assert torch.allclose(out.logits, ref.logits, atol=1e-5)
    assert out.logits.shape == (3, 5) and out.embedding.shape == (3, 16)
    assert out.z_star.shape == out.fz_star.shape == (3, 6, 16)
    assert out.solver["objective"].shape == (3, 5)


def test_completion_contains_input_bit_exactly_and_ignores_padding():
    model = _model("completion").double().eval()  # float64: compare padded vs unpadded tightly
    x, m = _batch(1, n=20)
    x = x.double()
    torch.manual_seed(3)
    with torch.no_grad():
        out = model(x, m)
    n = m.sum(1)
    n_free = out.free_mask.sum(1)
    assert torch.equal(n_free, torch.ceil(0.275 * n.double() - 1e-6).long())
    assert torch.equal(out.mask.sum(1), n + n_free)
    N = x.shape[1]
    assert torch.equal(out.points[:, :N][m], x[m])  # bit-exact
    assert not out.free_mask[:, :N].any() and (out.points[~out.mask] == 0).all()
    assert torch.isfinite(out.points).all()
    # padding: appending padded rows (NaN) to the input changes no real output point
    xp = torch.cat([x, torch.full((3, 4, 2), float("nan"), dtype=x.dtype)], 1)
    mp = torch.cat([m, torch.zeros(3, 4, dtype=torch.bool)], 1)
    torch.manual_seed(3)
    with torch.no_grad():
        out2 = model(xp, mp)
    free_a = [p[f] for p, f in zip(out.points, out.free_mask)]
    free_b = [p[f] for p, f in zip(out2.points, out2.free_mask)]
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(free_a, free_b))


@pytest.mark.parametrize("task", ["classification", "completion"])
@pytest.mark.parametrize("pushforward", [False, True])
def test_every_parameter_gets_a_finite_gradient(task, pushforward):
    model = _model(task, [f"model.pushforward={str(pushforward).lower()}", "model.dropout=0.1"]).train()
    x, m = _batch(2)
    out = model(x, m)
    if task == "classification":
        loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2]))
    else:
        from ddeqs.mmd import riesz_mmd2

        loss = riesz_mmd2(out.points, out.mask, x, m).mean()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_bad_input_is_rejected_with_a_clear_error():
    model = _model("classification").eval()
    x, m = _batch()
    m2 = m.clone()
    m2[0] = False
    with pytest.raises(DataError, match="empty cloud"):
        model(x, m2)
    x2 = x.clone()
    x2[1, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        model(x2, m)


def test_info_model_cli(capsys):
    assert cli_main(["info", "model", "--task", "classification", "--dataset", "mnist-pc"]) == 0
    text = capsys.readouterr().out
    assert "775,888" in text and "776k" in text and "1,290" in text and "cross_layers=1" in text
    assert cli_main(["info", "model", "--task", "completion", "--dataset", "digits",
                     "--set", "model.z_dim=32", "--set", "model.heads=4"]) == 0
    assert "coupling" in capsys.readouterr().out
    assert cli_main(["info", "model", "--set", "model.nope=1"]) == 2


def test_eval_momentum_and_ratio_apply_in_eval_mode_only():
    """``solver.eval_momentum`` / ``eval_objective_ratio`` change the evaluation solve and leave training's alone."""
    x, m = _batch(4)
    sets = ["solver.iters=30"]
    split = _model("completion", [*sets, "solver.eval_momentum=0.5", "solver.eval_objective_ratio=0.5"])
    both = _model("completion", [*sets, "solver.momentum=0.5", "solver.objective_ratio=0.5"])
    plain = _model("completion", sets)

    def solve(model, train: bool):
        model.train(train)
        torch.manual_seed(7)
        with torch.no_grad():
            out = model(x, m)
        return out.solver["objective"], out.points

    for a, b in zip(solve(split, False), solve(both, False)):  # eval: the momentum + ratio solve
        assert torch.equal(a, b)
    for a, b in zip(solve(split, True), solve(plain, True)):  # training: plain descent, all 30 iterations
        assert torch.equal(a, b)
    assert solve(split, True)[0].shape[1] == 30
    assert solve(split, False)[0].shape[1] < 30  # the ratio rule stopped the eval solve early
