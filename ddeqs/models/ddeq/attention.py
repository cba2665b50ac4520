"""Masked multi-head attention encoder layers (post-norm, as in Vaswani et al.).

The key/value projections are exposed separately (:meth:`MaskedAttention.kv`) so
that the cross-encoder's K/V of the Z-independent source X are computed once per
forward solve instead of at every inner step.

Padding: keys are masked with a boolean key-padding mask (passed to
``scaled_dot_product_attention`` by the SDPA kernels); padded keys never contribute. Padded query rows
compute something finite that callers mask downstream. Inputs are expected with
padded rows already zeroed (see ``layers.zero_padding``) so that a padded value
row can never turn ``0 * NaN`` into NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ddeqs.models.ddeq.attention_kernels import ConstKV, const_kv_attention, short_attention
from ddeqs.models.ddeq.fastpath import attention_kernel
from ddeqs.models.ddeq.layers import DropoutState, FeedForward
from ddeqs.models.ddeq.sdpa import sdpa_attention, sdpa_pad8_attention

if TYPE_CHECKING:
    from ddeqs.config import AttentionChoice

KV = tuple[torch.Tensor, torch.Tensor] | ConstKV


def attend_heads(
    q: torch.Tensor, kv: KV, key_mask: torch.Tensor | None, attention: "AttentionChoice" = "auto"
) -> torch.Tensor:
    """Softmax attention ``(B, H, N, c)`` of query heads ``q`` to ``kv`` by the kernel the dispatcher
    (:func:`ddeqs.models.ddeq.fastpath.attention_kernel`) picks for ``solver.attention`` ``attention``."""
    kernel = attention_kernel(q, kv, attention)
    if kernel == "const_kv":
        return const_kv_attention(q, kv, key_mask)  # type: ignore[arg-type]
    k, v = kv  # type: ignore[misc]
    if kernel == "short":
        return short_attention(q, k, v, key_mask)
    if kernel == "sdpa_pad8":
        return sdpa_pad8_attention(q, k, v, key_mask)
    return sdpa_attention(q, k, v, key_mask)


class MaskedAttention(nn.Module):
    """Multi-head attention, width ``dim`` split into ``heads`` heads of width ``dim // heads``.

    ``attention``: ``solver.attention``, the kernel choice handed to the dispatcher at every call.
    """

    def __init__(self, dim: int, heads: int, attention: "AttentionChoice" = "auto") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.z_dim={dim} is not divisible by model.heads={heads}")
        self.heads = heads
        self.attention: AttentionChoice = attention
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def _split(self, h: torch.Tensor) -> torch.Tensor:  # (B, N, c) -> (B, H, N, c/H)
        B, N, c = h.shape
        return h.view(B, N, self.heads, c // self.heads).transpose(1, 2)

    def kv(self, src: torch.Tensor) -> KV:
        """Key and value heads of the source ``(B, M, c)`` -> two ``(B, H, M, c/H)``."""
        return self._split(self.k(src)), self._split(self.v(src))

    def attend(self, tgt: torch.Tensor, kv: KV, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Queries from ``tgt`` ``(B, N, c)`` attend to ``kv`` with ``key_mask`` ``(B, M)`` -> ``(B, N, c)``.

        ``key_mask`` None: every key is real. The kernel is chosen by
        :func:`ddeqs.models.ddeq.fastpath.attention_kernel`: :func:`const_kv_attention` for a
        :class:`ConstKV` (the inner solve on CPU), :func:`short_attention` for few keys on CPU,
        otherwise PyTorch's SDPA, plain or at the head width padded to 8 (``solver.attention``).
        """
        B, N, c = tgt.shape
        out = attend_heads(self._split(self.q(tgt)), kv, key_mask, self.attention)
        return self.o(out.transpose(1, 2).reshape(B, N, c))


class EncoderLayer(nn.Module):
    """``h = LN(h + MHA(h, src)); h = LN(h + FFN(h))`` with FFN ``c -> ffn_dim -> c``.

    Parameters: 4 (c² + c) attention + (2 c·ffn + ffn + c) FFN + 2·2c LayerNorms
    (= 198,272 for c = 128, ffn = 512).
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, attention: "AttentionChoice" = "auto") -> None:
        super().__init__()
        self.attn = MaskedAttention(dim, heads, attention)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(
        self, h: torch.Tensor, kv: KV, key_mask: torch.Tensor | None, drop: DropoutState | None = None, name: str = "enc"
    ) -> torch.Tensor:
        a = self.attn.attend(h, kv, key_mask)
        if drop is not None:
            a = drop(name + ".attn", a)
        h = self.norm1(h + a)
        f = self.ffn(h, drop, name + ".ffn")
        if drop is not None:
            f = drop(name + ".out", f)
        return self.norm2(h + f)

    def self_attend(
        self, h: torch.Tensor, mask: torch.Tensor | None, drop: DropoutState | None = None, name: str = "self"
    ) -> torch.Tensor:
        """Self-attention layer: keys/values are ``h``'s own real rows."""
        return self.forward(h, self.attn.kv(h), mask, drop, name)
