"""The hand-written Z-branch forward and VJP against autograd through ``FMap.apply`` (float64)."""

from __future__ import annotations

import pytest
import torch

from ddeqs.config import SolverConfig
from ddeqs.models.ddeq.fastpath import zbranch_applies as applies
from ddeqs.models.ddeq.fmap import FMap
from ddeqs.models.ddeq.layers import DropoutState
from ddeqs.models.ddeq.step import make_solve_func
from ddeqs.models.ddeq.zbranch_vjp import ZBranch, zbranch_backward, zbranch_forward

SMALL = dict(z_dim=16, bilinear_dim=4, heads=4, ffn_dim=24)


def _setup(seed: int = 0, padded_x: bool = True, **kw):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    fmap = FMap(3, **{**SMALL, **kw}).double()
    with torch.no_grad():  # LayerNorm affine parts away from (1, 0), so the VJP must apply them
        for m in fmap.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 2.0)
                m.bias.normal_(0.0, 0.5)
    x = torch.randn(3, 9, 3, dtype=torch.float64)
    x_mask = torch.ones(3, 9, dtype=torch.bool)
    if padded_x:
        x_mask[0, 5:] = False
        x[0, 5:] = 1e3  # padding values that would show were they not masked
    z = torch.randn(3, 6, SMALL["z_dim"], dtype=torch.float64)
    ctx = fmap.prepare(x, x_mask, DropoutState(0.0, False))
    return fmap, ctx, z


@pytest.mark.parametrize("kw", [
    dict(cross_layers=1, self_layers=1),
    dict(cross_layers=3, self_layers=2),
    dict(cross_layers=2, self_layers=1, pushforward=True),  # no Z self-encoder, no β term
])
@pytest.mark.parametrize("padded_x", [False, True])
def test_forward_and_vjp_equal_autograd_through_fmap(kw: dict, padded_x: bool) -> None:
    fmap, ctx, z = _setup(padded_x=padded_x, **kw)
    solve_ctx = ctx.detached().dense()
    zr = z.clone().requires_grad_(True)
    ref = fmap.apply(zr, None, solve_ctx)
    dout = torch.randn_like(ref)
    (ref_grad,) = torch.autograd.grad(ref, zr, dout)
    with torch.no_grad():
        out, tape = zbranch_forward(fmap, z, solve_ctx)
        grad = zbranch_backward(fmap, tape, dout)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    # as an autograd node: the same gradient for z, and no parameter receives one
    zr2 = z.clone().requires_grad_(True)
    (node_grad,) = torch.autograd.grad(ZBranch.apply(zr2, fmap, solve_ctx), zr2, dout)
    torch.testing.assert_close(node_grad, ref_grad, rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in fmap.parameters())


def test_vjp_covers_the_add_and_norm_final_block() -> None:
    """The hand-written branch ends in LN(h + FFN(h)): its output rows are layer-normalised, and its
    gradient follows the final LayerNorm's affine part and residual (a VJP of a bare FFN would not)."""
    fmap, ctx, z = _setup(cross_layers=1, self_layers=1)
    solve_ctx = ctx.detached().dense()
    with torch.no_grad():
        out, tape = zbranch_forward(fmap, z, solve_ctx)
    unit = (out - fmap.out_norm.bias) / fmap.out_norm.weight
    torch.testing.assert_close(unit.mean(-1), torch.zeros(3, 6, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(unit.var(-1, unbiased=False), torch.ones(3, 6, dtype=torch.float64), atol=1e-4, rtol=0)
    # a direction LayerNorm removes (constant per row, scaled by 1/weight) has zero gradient
    dout = torch.ones_like(out) / fmap.out_norm.weight
    with torch.no_grad():
        grad = zbranch_backward(fmap, tape, dout)
    torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-10, rtol=0)
    # scaling the final LN weight scales the gradient of <dout, F(z)> for a bias-free dout
    dout = torch.randn_like(out)
    with torch.no_grad():
        g1 = zbranch_backward(fmap, tape, dout)
        fmap.out_norm.weight.mul_(3.0)
        _, tape3 = zbranch_forward(fmap, z, solve_ctx)
        g3 = zbranch_backward(fmap, tape3, dout)
    torch.testing.assert_close(g3, 3.0 * g1, rtol=1e-10, atol=1e-12)


def test_gradcheck_of_the_autograd_node() -> None:
    fmap, ctx, z = _setup(cross_layers=1, self_layers=1)
    solve_ctx = ctx.detached().dense()
    assert torch.autograd.gradcheck(lambda zz: ZBranch.apply(zz, fmap, solve_ctx), (z[:, :3].clone().requires_grad_(True),))


def test_applies_only_where_the_hand_written_branch_is_exact() -> None:
    fmap, ctx, _ = _setup()
    solve_ctx = ctx.detached().dense()
    assert applies(solve_ctx, 6, every_row_moves=True)
    assert not applies(solve_ctx, 6, every_row_moves=False)  # completion: fixed rows / row subsets
    assert not applies(solve_ctx, 65, every_row_moves=True)  # too many particles for the short kernel
    assert not applies(ctx, 6, every_row_moves=True)  # keys/values not laid out for the solve
    dropping = fmap.prepare(torch.randn(3, 9, 3, dtype=torch.float64), torch.ones(3, 9, dtype=torch.bool),
                            DropoutState(0.2, True)).detached()
    assert not applies(dropping, 6, every_row_moves=True)


def test_solve_function_uses_the_node_only_when_it_applies() -> None:
    fmap, ctx, z = _setup()
    all_real = torch.ones(3, 6, dtype=torch.bool)
    fast = make_solve_func(fmap, ctx, all_real, all_real, SolverConfig())
    zr = z.clone().requires_grad_(True)
    assert type(fast(zr).grad_fn).__name__ == "ZBranchBackward"
    some_fixed = all_real.clone()
    some_fixed[:, :2] = False
    general = make_solve_func(fmap, ctx, all_real, some_fixed, SolverConfig())
    out = general(zr)
    assert type(out.grad_fn).__name__ != "ZBranchBackward"
    torch.testing.assert_close(out[:, :2], z[:, :2])  # fixed rows stay where they are
