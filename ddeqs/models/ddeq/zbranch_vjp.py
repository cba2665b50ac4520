"""F's Z branch with a hand-written input gradient, as one autograd node (fast inner step, CPU).

Written by hand because, at the DDEQ's sizes, the per-operation bookkeeping of autograd and of
``nn.Module`` calls is a large share of an inner step: the step is about a hundred small
operations on ``(B·K, 128)`` rows, and the same step with every width cut to 16 (almost no
arithmetic left) still takes 1.6 ms, against 4-5 ms at full width (2-core CPU, measured).
:func:`zbranch_forward` evaluates exactly the operations of :meth:`FMap.apply` (same layers,
same kernels) with the weights as plain tensors and keeps what the backward needs;
:func:`zbranch_backward` returns the gradient with respect to ``Z`` only (the solve never needs
parameter gradients). :class:`ZBranch` wraps the pair as a single autograd node.

It covers the inner step of the common case, chosen once per solve by the dispatcher (:func:`ddeqs.models.ddeq.fastpath.zbranch_applies`): every
particle real and movable (no ``z_mask``, no row subset: classification), dropout off, the cross
keys/values prepared as :class:`ConstKV` (CPU) and few enough particles for the short
self-attention kernel. Other cases run :meth:`FMap.apply` under autograd. Values and gradients
equal that path up to float rounding (``tests/test_zbranch_vjp.py``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddeqs.models.ddeq.attention import EncoderLayer
from ddeqs.models.ddeq.attention_kernels import (
    ConstKV,
    const_kv_backward,
    const_kv_forward,
    short_backward,
    short_forward,
)
from ddeqs.models.ddeq.fmap import FContext, FMap
from ddeqs.models.ddeq.layers import EmbedMLP, FeedForward

_ln_backward = torch.ops.aten.native_layer_norm_backward
_relu_backward = torch.ops.aten.threshold_backward


# ---------------------------------------------------------------- layers: forward -> (y, saved)
def _linear(x: torch.Tensor, m: nn.Linear) -> torch.Tensor:
    return F.linear(x, m.weight, m.bias)


def _linear_t(dy: torch.Tensor, m: nn.Linear) -> torch.Tensor:
    return torch.matmul(dy, m.weight)


def _norm(x: torch.Tensor, m: nn.LayerNorm) -> tuple[torch.Tensor, tuple]:
    y, mean, rstd = torch.native_layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
    return y, (x, mean, rstd)


def _norm_t(dy: torch.Tensor, saved: tuple, m: nn.LayerNorm) -> torch.Tensor:
    x, mean, rstd = saved
    return _ln_backward(dy, x, m.normalized_shape, mean, rstd, m.weight, m.bias, [True, False, False])[0]


def _embed(x: torch.Tensor, m: EmbedMLP) -> tuple[torch.Tensor, tuple]:
    a = F.relu(_linear(x, m.fc1))
    y, s = _norm(_linear(a, m.fc2), m.norm)
    return y, (a, s)


def _embed_t(dy: torch.Tensor, saved: tuple, m: EmbedMLP) -> torch.Tensor:
    a, s = saved
    return _linear_t(_relu_backward(_linear_t(_norm_t(dy, s, m.norm), m.fc2), a, 0.0), m.fc1)


def _ffn(h: torch.Tensor, m: FeedForward) -> tuple[torch.Tensor, torch.Tensor]:
    u = F.relu(_linear(h, m.fc1))
    return _linear(u, m.fc2), u


def _ffn_t(df: torch.Tensor, u: torch.Tensor, m: FeedForward) -> torch.Tensor:
    return _linear_t(_relu_backward(_linear_t(df, m.fc2), u, 0.0), m.fc1)


def _merge(a: torch.Tensor) -> torch.Tensor:  # (B, H, N, c) -> (B, N, H·c)
    B, H, N, c = a.shape
    return a.transpose(1, 2).reshape(B, N, H * c)


def _encoder(
    h: torch.Tensor, m: EncoderLayer, kv: ConstKV | None, key_mask: torch.Tensor | None
) -> tuple[torch.Tensor, tuple]:
    """Post-norm encoder layer: self-attention when ``kv`` is None, else attention to ``kv``."""
    att = m.attn
    q = att._split(_linear(h, att.q))
    if kv is None:
        a, sa = short_forward(q, att._split(_linear(h, att.k)), att._split(_linear(h, att.v)), None)
    else:
        a, sa = const_kv_forward(q, kv, key_mask, True)
    h1, s1 = _norm(h + _linear(_merge(a), att.o), m.norm1)
    f, u = _ffn(h1, m.ffn)
    h2, s2 = _norm(h1 + f, m.norm2)
    return h2, (kv is None, sa, s1, u, s2)


def _encoder_t(dh2: torch.Tensor, saved: tuple, m: EncoderLayer) -> torch.Tensor:
    self_attn, sa, s1, u, s2 = saved
    att = m.attn
    dr2 = _norm_t(dh2, s2, m.norm2)
    dr1 = _norm_t(dr2 + _ffn_t(dr2, u, m.ffn), s1, m.norm1)
    da = att._split(_linear_t(dr1, att.o))
    if self_attn:
        dq, dk, dv = short_backward(sa, da)
        return dr1 + _linear_t(_merge(dq), att.q) + _linear_t(_merge(dk), att.k) + _linear_t(_merge(dv), att.v)
    return dr1 + _linear_t(_merge(const_kv_backward(sa, da)), att.q)


# ---------------------------------------------------------------- the Z branch
def zbranch_forward(fmap: FMap, z: torch.Tensor, ctx: FContext) -> tuple[torch.Tensor, tuple]:
    """``F(z, X)`` ``(B, K, p)`` as :meth:`FMap.apply` with no mask, and the tape for :func:`zbranch_backward`."""
    e0, s_embed = _embed(z, fmap.z_embed)
    bil = torch.baddbmm(fmap.bil_bias, e0, ctx.alpha_x)  # e α x̄ + bias
    if ctx.beta_x is not None:
        bil = bil + e0.mean(1, keepdim=True) @ ctx.beta_x  # + ē β x̄
    e1, s_bil = _norm(e0 + bil, fmap.bil_norm)
    u, s_up = _embed(e1, fmap.z_up)
    h, s_skip = _norm(u + z, fmap.z_skip_norm)
    layers = []
    for layer in fmap.z_self:
        h, s = _encoder(h, layer, None, None)
        layers.append((layer, s))
    for layer, kv in zip(fmap.cross, ctx.kv):
        h, s = _encoder(h, layer, kv, ctx.x_mask)  # type: ignore[arg-type]
        layers.append((layer, s))
    f, u_out = _ffn(h, fmap.out_ffn)
    out, s_out = _norm(h + f, fmap.out_norm)  # final block: Add & Norm
    return out, (ctx, s_embed, s_bil, s_up, s_skip, layers, u_out, s_out, z.shape[1])


def zbranch_backward(fmap: FMap, tape: tuple, dout: torch.Tensor) -> torch.Tensor:
    """``(∂F/∂z)ᵀ dout`` ``(B, K, p)`` for the tape of :func:`zbranch_forward`."""
    ctx, s_embed, s_bil, s_up, s_skip, layers, u_out, s_out, K = tape
    dr = _norm_t(dout, s_out, fmap.out_norm)  # d(h + FFN(h))
    dh = dr + _ffn_t(dr, u_out, fmap.out_ffn)
    for layer, s in reversed(layers):
        dh = _encoder_t(dh, s, layer)
    dr = _norm_t(dh, s_skip, fmap.z_skip_norm)  # d(u + z)
    db = _norm_t(_embed_t(dr, s_up, fmap.z_up), s_bil, fmap.bil_norm)  # d(e0 + bil)
    de0 = db + db @ ctx.alpha_x.transpose(-1, -2)
    if ctx.beta_x is not None:
        de0 = de0 + (db.sum(1, keepdim=True) @ ctx.beta_x.transpose(-1, -2)) / K
    return dr + _embed_t(de0, s_embed, fmap.z_embed)


class ZBranch(torch.autograd.Function):
    """``ZBranch.apply(z, fmap, ctx)`` = ``fmap.apply(z, None, ctx)``; its backward gives ``z``'s gradient only."""

    @staticmethod
    def forward(fctx, z, fmap, ctx):  # type: ignore[no-untyped-def, override]
        out, fctx.tape = zbranch_forward(fmap, z, ctx)
        fctx.fmap = fmap
        return out

    @staticmethod
    def backward(fctx, dout):  # type: ignore[no-untyped-def, override]
        return zbranch_backward(fctx.fmap, fctx.tape, dout), None, None
