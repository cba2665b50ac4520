"""The fast-path dispatcher (ddeqs.models.ddeq.fastpath): every case it takes against the plain evaluation.

Plain: ``where(movable, FMap.apply(z, z_mask, ctx), z)`` under autograd with PyTorch's SDPA. Each
case is first checked to be the one the dispatcher takes, then its value and its gradient w.r.t.
``Z`` are compared with the plain ones, in float64, at the model's real width (128, 32 heads).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from ddeqs.config import SolverConfig
from ddeqs.models.ddeq.attention import MaskedAttention
from ddeqs.models.ddeq.attention_kernels import SHORT_KEYS
from ddeqs.models.ddeq.fastpath import attention_kernel, plan_step, solve_kv
from ddeqs.models.ddeq.fmap import FMap
from ddeqs.models.ddeq.layers import DropoutState
from ddeqs.models.ddeq.step import make_solve_func


def _sdpa_attend(attn: MaskedAttention, tgt: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask) -> torch.Tensor:
    B, N, c = tgt.shape
    q = attn._split(attn.q(tgt))
    mask = None if key_mask is None else key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.o(out.transpose(1, 2).reshape(B, N, c))


@pytest.mark.parametrize("case, keys, const", [("short", 10, False), ("sdpa", SHORT_KEYS + 1, False),
                                               ("const_kv", 10, True), ("const_kv", 200, True)])
def test_every_attention_kernel_matches_sdpa_in_value_and_query_gradient(case: str, keys: int, const: bool) -> None:
    torch.manual_seed(0)
    attn = MaskedAttention(128, 32).double()
    tgt = torch.randn(3, 10, 128, dtype=torch.float64, requires_grad=True)
    src = torch.randn(3, keys, 128, dtype=torch.float64)
    key_mask = torch.ones(3, keys, dtype=torch.bool)
    key_mask[0, keys // 2:] = False
    k, v = attn.kv(src)
    kv = solve_kv(k, v) if const else (k, v)
    assert attention_kernel(attn._split(attn.q(tgt)), kv) == case
    out = attn.attend(tgt, kv, key_mask)
    ref = _sdpa_attend(attn, tgt, k, v, key_mask)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    dout = torch.randn_like(out)
    (g,) = torch.autograd.grad(out, tgt, dout)
    (g_ref,) = torch.autograd.grad(ref, tgt, dout)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-11)


def _problem(K: int, fixed: int, pad_sample: bool, pad_all: bool, drop: float = 0.0,  # type: ignore[no-untyped-def]
             dtype: torch.dtype = torch.float64, attention: str = "auto"):
    """F at the paper's width (z_dim 128, 32 heads) on 200 input points in ``dtype``, one of each row pattern."""
    torch.manual_seed(1)
    fmap = FMap(2, z_dim=128, bilinear_dim=8, heads=32, ffn_dim=512, cross_layers=2, self_layers=1,
                attention=attention).to(dtype)
    B = 3
    x = torch.randn(B, 200, 2, dtype=dtype)
    x_mask = torch.ones(B, 200, dtype=torch.bool)
    x_mask[1, 150:] = False
    z = torch.randn(B, K, 128, dtype=dtype)
    z_mask = torch.ones(B, K, dtype=torch.bool)
    if pad_sample:
        z_mask[0, K - 2:] = False  # one sample padded, others full: no row can be skipped everywhere
    if pad_all:
        z_mask[:, K - 1] = False  # the last row is padding in every sample: it can be skipped
    movable = z_mask.clone()
    movable[:, :fixed] = False
    ctx = fmap.prepare(x, x_mask, DropoutState(drop, drop > 0))
    return fmap, ctx, z, z_mask, movable


CASES = {  # kind: (K, fixed rows, one sample padded, every sample padded)
    "zbranch": (10, 0, False, False),
    "rows": (10, 3, False, False),
    "masked": (10, 0, True, False),
    "dense": (SHORT_KEYS + 6, 0, False, False),  # too many particles for the hand-written branch
}


@pytest.mark.parametrize("kind", [*CASES, "rows-padded"])
def test_every_inner_step_matches_the_plain_f_in_value_and_vjp(kind: str) -> None:
    K, fixed, pad_sample, pad_all = CASES.get(kind, (10, 2, False, True))
    fmap, ctx, z, z_mask, movable = _problem(K, fixed, pad_sample, pad_all)
    cfg = SolverConfig()
    assert plan_step(ctx.detached().dense(), z_mask, movable, cfg).kind == kind.split("-")[0]
    step = make_solve_func(fmap, ctx, z_mask, movable, cfg)
    zr = z.clone().requires_grad_(True)
    out = step(zr)
    ref = torch.where(movable.unsqueeze(-1), fmap.apply(zr, z_mask, ctx), zr)
    real = z_mask.unsqueeze(-1)  # padded rows: both keep z, compared too
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert torch.equal(out[~movable], z[~movable])  # fixed and padded rows bit-exactly unchanged
    dout = torch.randn_like(out) * real
    (g,) = torch.autograd.grad(out, zr, dout)
    (g_ref,) = torch.autograd.grad(ref, zr, dout)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9)
    assert all(p.grad is None for p in fmap.parameters())


def test_dropout_falls_back_to_the_plain_step_and_bf16_to_the_autograd_one() -> None:
    """Dropout blocks the hand-written branch (masks sampled lazily); so does bf16, on CPU as on CUDA."""
    fmap, ctx, z, z_mask, movable = _problem(10, 0, False, False, drop=0.2)
    assert plan_step(ctx.detached().dense(), z_mask, movable, SolverConfig()).kind == "dense"
    fmap, ctx, z, z_mask, movable = _problem(10, 0, False, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bf16 on CPU is applied, not declined with a warning
        plan = plan_step(ctx.detached().dense(), z_mask, movable, SolverConfig(bf16=True))
    assert plan.kind == "dense" and plan.bf16


@pytest.mark.parametrize("kind, attention", [(k, "auto") for k in [*CASES, "rows-padded"]]
                         + [("rows", "sdpa"), ("masked", "sdpa_pad8")])
def test_every_inner_step_runs_under_cpu_bf16_close_to_float32(kind: str, attention: str) -> None:
    """CPU bf16 autocast through every case's kernels (ConstKV, short, SDPA, padded SDPA): float32 out,
    finite, near fp32.

    bf16 keeps 8 significant bits (relative rounding 2^-9 = 2e-3 per operation); F's rows are
    layer-normalised (entries of order one), so the step and its VJP agree with float32 to a few
    per cent (measured: values 0.3-0.4 %, VJP 2-4 %), and fixed or padded rows stay bit-exactly ``z``.
    """
    K, fixed, pad_sample, pad_all = CASES.get(kind, (10, 2, False, True))
    fmap, ctx, z, z_mask, movable = _problem(K, fixed, pad_sample, pad_all, dtype=torch.float32, attention=attention)
    plain = make_solve_func(fmap, ctx, z_mask, movable, SolverConfig())
    bf16 = make_solve_func(fmap, ctx, z_mask, movable, SolverConfig(bf16=True))
    zr = z.clone().requires_grad_(True)
    out, ref = bf16(zr), plain(zr)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out[~movable], z[~movable])
    rel = float((out - ref).detach().norm() / ref.detach().norm())
    assert 1e-5 < rel < 3e-2  # rounded (not silently full precision), yet close
    dout = torch.randn_like(out) * z_mask.unsqueeze(-1)
    (g,) = torch.autograd.grad(out, zr, dout)
    (g_ref,) = torch.autograd.grad(ref, zr, dout)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    assert float((g - g_ref).norm() / g_ref.norm()) < 0.1  # measured 2-4 %: the VJP runs in bf16 too
