"""Hand-written CPU attention kernels for the DDEQ's many narrow heads (32 heads of width 4).

Written by hand, not taken from PyTorch, because the CPU kernels PyTorch offers are slow at these
shapes and the inner solve calls them at every step (per step: one Z self-attention of
``K`` ≈ 10 particles, one cross-attention of those particles to ``M`` ≈ 200 points per layer):

* ``scaled_dot_product_attention`` (flash kernel) has a fixed cost of a few hundred µs per call
  even for 10×10 attention, and its backward always computes key/value gradients;
* ``torch.softmax`` costs about 80 ns per row, whatever the row length (2,560 rows of 10: 190 µs;
  the four reductions and maps below: 70 µs);
* MKL's batched matmul is about 2.7× slower for an output of width 4 (``P @ V``,
  ``(N×M)(M×4)``) than for the transposed product ``Vᵀ Pᵀ`` ``(4×M)(M×N)``, so every product
  that ends in a head dimension is computed transposed.

Shapes: queries ``(B, H, N, c)``, keys/values ``(B, H, M, c)``, ``key_mask`` ``(B, M)`` bool
(True = real key; None = every key is real). Values equal ``F.scaled_dot_product_attention`` up
to float rounding and the gradients are exact (``tests/test_attention_kernels.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SHORT_KEYS = 64
"""Key counts up to which :func:`short_attention` and the in-place softmax beat PyTorch's CPU kernels."""


_INPLACE_SOFTMAX = [True]


def _masked_scores(s: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    if key_mask is not None:
        s = s.masked_fill_(~key_mask[:, None, None, :], float("-inf"))
    return s


def _softmax_(s: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, in place for short rows (see the module doc); ``torch.softmax`` for long ones.

    The split is at :data:`SHORT_KEYS`: ``torch.softmax`` costs per row, the four passes here per
    element (2,560 rows of 200: 180 vs 370 µs; of 10: 190 vs 70 µs). Long rows are written over
    ``s`` as well (ATen's ``_softmax.out`` with ``out=s``): one 2 MiB buffer instead of two per
    cross-attention keeps more of the layer weights in cache (5 % of an inner step, measured).
    """
    if s.shape[-1] > SHORT_KEYS:
        if _INPLACE_SOFTMAX[0]:
            try:  # the row-wise kernel reads each element before writing it: aliasing is safe (tested)
                return torch.ops.aten._softmax.out(s, -1, False, out=s)
            except RuntimeError:  # a PyTorch that refuses the aliasing: allocate instead, from now on
                _INPLACE_SOFTMAX[0] = False
        return torch.softmax(s, -1)
    s = s.sub_(s.amax(-1, keepdim=True)).exp_()
    return s.div_(s.sum(-1, keepdim=True))


@dataclass
class ConstKV:
    """Keys/values that are constants of a solve (the cross-attention's encoded X), laid out once.

    ``kt`` ``(B, H, c, M)``: keys transposed; ``basis`` ``(B, H, 2c + c², M)``: per key ``j`` the
    column ``[v_j; k_j; vec(v_j k_jᵀ)]``. One product ``basis Pᵀ`` then gives the attention output
    ``P v`` together with the two sums the query gradient needs (see :func:`const_kv_forward`).
    """

    kt: torch.Tensor
    basis: torch.Tensor

    @staticmethod
    def from_kv(k: torch.Tensor, v: torch.Tensor) -> "ConstKV":
        """From key/value heads ``(B, H, M, c)`` (detached here)."""
        k, v = k.detach(), v.detach()
        B, H, M, c = k.shape
        outer = (v.unsqueeze(-1) * k.unsqueeze(-2)).reshape(B, H, M, c * c)  # [j, c·c_v + d] = v_jc k_jd
        basis = torch.cat([v, k, outer], -1).transpose(-1, -2).contiguous()
        return ConstKV(kt=k.transpose(-1, -2).contiguous(), basis=basis)


def const_kv_forward(
    q: torch.Tensor, kv: ConstKV, key_mask: torch.Tensor | None, need_grad: bool
) -> tuple[torch.Tensor, tuple | None]:
    """Attention of ``q`` ``(B, H, N, c)`` to the constant ``kv``: ``(out (B, H, N, c), saved)``.

    With ``s = scale · q kᵀ``, ``p = softmax(s)``, ``out = p v`` and ``δ_i = dout_i · out_i``, the
    usual ``dq_i = scale · Σ_j p_ij (dout_i · v_j - δ_i) k_j`` regroups into::

        dq_i = scale · (W_iᵀ dout_i - δ_i (p k)_i),   W_i = Σ_j p_ij v_j k_jᵀ  (c × c)

    ``W_i`` and ``(p k)_i`` come from the forward's single product with ``basis`` (``2c + c²`` = 24
    rows instead of ``c``), so the backward (:func:`const_kv_backward`) never touches an ``(N, M)``
    array: ``p`` is neither kept nor re-read, and no ``dout vᵀ`` is formed. ``saved`` is None
    unless ``need_grad``.
    """
    c = q.shape[-1]
    scale = c**-0.5
    p = _softmax_(_masked_scores(torch.matmul(q * scale, kv.kt), key_mask))  # (B, H, N, M)
    rows = kv.basis if need_grad else kv.basis[:, :, :c]  # no gradient: P v only
    r = torch.matmul(rows, p.transpose(-1, -2))  # (B, H, rows, N)
    out_t = r[:, :, :c]
    saved = (out_t, r[:, :, c : 2 * c], r[:, :, 2 * c :], scale) if need_grad else None
    return out_t.transpose(-1, -2), saved


def const_kv_backward(saved: tuple, dout: torch.Tensor) -> torch.Tensor:
    """Query gradient ``(B, H, N, c)`` of :func:`const_kv_forward` for ``dout`` ``(B, H, N, c)``."""
    out_t, pk_t, w, scale = saved  # (B, H, c, N), (B, H, c, N), (B, H, c·c, N)
    B, H, c, N = out_t.shape
    dout_t = dout.transpose(-1, -2)  # (B, H, c, N)
    delta = (dout_t * out_t).sum(-2, keepdim=True)  # (B, H, 1, N)
    wd = (w.view(B, H, c, c, N) * dout_t.unsqueeze(-2)).sum(-3)  # Σ_c dout_ic W_i[c, d]: (B, H, c, N)
    return (wd - delta * pk_t).mul_(scale).transpose(-1, -2)


def short_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
) -> tuple[torch.Tensor, tuple]:
    """Attention over few keys (``M`` up to :data:`SHORT_KEYS`): ``(out (B, H, N, c), saved)``."""
    scale = q.shape[-1] ** -0.5
    p = _softmax_(_masked_scores(torch.matmul(q * scale, k.transpose(-1, -2)), key_mask))
    out = torch.matmul(p, v)
    return out, (q, k, v, p, out, scale)


def short_backward(
    saved: tuple, dout: torch.Tensor, need_q: bool = True, need_k: bool = True, need_v: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dq, dk, dv)`` of :func:`short_forward` (None where not needed).

    ``ds = p ⊙ (dout vᵀ - δ)``, ``dq = scale · ds k``, ``dk = scale · dsᵀ q``, ``dv = pᵀ dout``.
    """
    q, k, v, p, out, scale = saved
    dq = dk = dv = None
    if need_v:
        dv = torch.matmul(p.transpose(-1, -2), dout)
    if need_q or need_k:
        delta = (dout * out).sum(-1, keepdim=True)
        ds = torch.matmul(dout, v.transpose(-1, -2)).sub_(delta).mul_(p).mul_(scale)
        if need_q:
            dq = torch.matmul(ds, k)
        if need_k:
            dk = torch.matmul(ds.transpose(-1, -2), q)
    return dq, dk, dv


class _ConstKVAttention(torch.autograd.Function):
    """:func:`const_kv_forward` / :func:`const_kv_backward` for autograd (query gradient only)."""

    @staticmethod
    def forward(ctx, q, kv, key_mask):  # type: ignore[no-untyped-def, override]
        out, ctx.saved = const_kv_forward(q, kv, key_mask, ctx.needs_input_grad[0])
        return out

    @staticmethod
    def backward(ctx, dout):  # type: ignore[no-untyped-def, override]
        return const_kv_backward(ctx.saved, dout), None, None


class _ShortAttention(torch.autograd.Function):
    """:func:`short_forward` / :func:`short_backward` for autograd (only the gradients asked for)."""

    @staticmethod
    def forward(ctx, q, k, v, key_mask):  # type: ignore[no-untyped-def, override]
        out, saved = short_forward(q, k, v, key_mask)
        ctx.save_for_backward(*saved[:5])
        ctx.scale = saved[5]
        return out

    @staticmethod
    def backward(ctx, dout):  # type: ignore[no-untyped-def, override]
        need_q, need_k, need_v, _ = ctx.needs_input_grad
        dq, dk, dv = short_backward((*ctx.saved_tensors, ctx.scale), dout, need_q, need_k, need_v)
        return dq, dk, dv, None


def const_kv_attention(q: torch.Tensor, kv: ConstKV, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention ``(B, H, N, c)`` of ``q`` to the constant ``kv``; gradient to ``q`` only."""
    return _ConstKVAttention.apply(q, kv, key_mask)


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention ``(B, H, N, c)`` for few keys, differentiable in ``q``, ``k`` and ``v``."""
    return _ShortAttention.apply(q, k, v, key_mask)
