"""PyTorch's fused attention (SDPA) at the DDEQ's narrow heads: plain, and with the head width padded to 8.

PyTorch's fused SDPA backends on CUDA (flash, memory-efficient, cuDNN) take head widths that are
multiples of 8 in half types (and no ``attn_mask`` for flash); at the DDEQ's width 4
(``model.z_dim`` 128 / ``model.heads`` 32) a call may fall back to the unfused math backend.
:func:`sdpa_pad8_attention` appends zero columns to ``q``, ``k`` and ``v`` up to the next multiple
of :data:`PAD_MULTIPLE`: zero columns add nothing to ``q kᵀ``, the softmax scale stays
``1/sqrt(c)`` of the real width (passed explicitly), the output's extra columns (weighted sums of
zero columns) are cut off, and the key mask is passed unchanged. Values and gradients equal
:func:`sdpa_attention` up to float rounding (``tests/test_sdpa_kernels.py``; on CUDA
``tests/test_cuda.py``).

Shapes: queries ``(B, H, N, c)``, keys/values ``(B, H, M, c)``, ``key_mask`` ``(B, M)`` bool
(True = real key; None = every key is real). Which kernel runs is chosen by
:func:`ddeqs.models.ddeq.fastpath.attention_kernel` (``solver.attention``); whether the padded call
is the faster one on a GPU is measured by ``ddeqs bench attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD_MULTIPLE = 8
"""Head widths the fused CUDA backends take in half types (flash, memory-efficient)."""


def padded_width(c: int) -> int:
    """``c`` rounded up to a multiple of :data:`PAD_MULTIPLE` (4 -> 8, 8 -> 8, 12 -> 16)."""
    return -(-c // PAD_MULTIPLE) * PAD_MULTIPLE


def attn_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """SDPA's boolean ``attn_mask`` ``(B, 1, 1, M)`` of a key-padding mask ``(B, M)`` (None stays None)."""
    return None if key_mask is None else key_mask[:, None, None, :]


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with a boolean key-padding mask: ``(B, H, N, c)``."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask(key_mask))


def pad_heads(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """``(q, k, v)`` with zero columns up to :func:`padded_width` of their width ``c``, and the scale ``1/sqrt(c)``."""
    c = q.shape[-1]
    pad = padded_width(c) - c
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    return q, k, v, c**-0.5


def sdpa_pad8_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
) -> torch.Tensor:
    """:func:`sdpa_attention` computed at the head width padded to :func:`padded_width`: ``(B, H, N, c)``.

    Differentiable in ``q``, ``k`` and ``v``; the padding's gradient is dropped by the pad's backward.
    """
    c = q.shape[-1]
    if padded_width(c) == c:
        return sdpa_attention(q, k, v, key_mask)
    qp, kp, vp, scale = pad_heads(q, k, v)
    out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=attn_mask(key_mask), scale=scale)
    return out[..., :c]
