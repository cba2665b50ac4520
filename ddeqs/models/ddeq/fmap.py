"""The DDEQ map ``F(Z, X)`` (paper §3.2, App. C.1) with the EI property.

``F`` is equivariant in the rows of ``Z`` and invariant in the rows of ``X``.
Its forward is split in two so the Z-independent X branch runs once per solve::

    ctx = fmap.prepare(x, x_mask)          # X embedding, X self-encoder, cross K/V, bilinear factors
    out = fmap.apply(z, z_mask, ctx)       # (B, K, p), called at every inner step
    fmap(z, z_mask, x, x_mask) == fmap.apply(z, z_mask, fmap.prepare(x, x_mask))

Only some rows of ``F(Z)`` may be needed (completion: the free particles; the fixed ones stay
where they are). After the last Z self-attention every layer is row-wise, so
``fmap.apply_rows(z, z_mask, ctx, rows)`` computes the trunk (embeddings, bilinear layer, the
Z self-attention keys/values) on all rows and the queries, cross-encoder and final FFN only on
the rows of a :class:`RowSubset`; the values equal ``apply(...)`` at those rows.

Architecture (d = point dim, b = bilinear_dim = 16, p = z_dim = 128, f = ffn_dim = 512):

1. ``x -> Linear(d,b)-ReLU-Linear(b,b)-LN``; ``z -> Linear(p,b)-ReLU-Linear(b,b)-LN``.
2. Bilinear EI layer (Prop. 5) with residual and LayerNorm::

       e_z <- LN(e_z + e_z α x̄ + ē_z β x̄ + bias),  x̄ = masked mean of e_x, ē_z = masked mean of e_z

   Means, not the sums ``Xᵀ1`` / ``1ᵀZ`` of the formula: they are the integrals against the
   empirical measures (masses 1/n), so the layer does not scale with the cloud size
   (MNIST-pc clouds hold 30-350 points) and padded rows drop out exactly. The pushforward
   variant drops the β term.
3. ``Linear(b,p)-ReLU-Linear(p,p)-LN`` on both; on Z a skip connection ``LN(h_z + z)``.
4. X self-encoder (``self_layers``), Z self-encoder (``self_layers``; none in the pushforward
   variant), cross-encoder Z <- X (``cross_layers``), each layer = 32-head attention + FFN p->f->p,
   post-norm.
5. Final block, the transformer feed-forward sublayer with Add & Norm:
   ``LN(h + Linear(f,p)(ReLU(Linear(p,f) h)))`` (App. C.1: "a typical transformer feedforward
   layer", hidden 4 x 128 = 512 = ``model.ffn_dim``), so every output row of F is layer-normalised.

Parameter count, d = 2, one cross layer (MNIST-pc classification)::

    x embed     16d+16 + 272 + 32                     =     352   (368 for d = 3)
    z embed     128·16+16 + 272 + 32                  =   2,368
    bilinear    α 4,096 + β 4,096 + bias 16 + LN 32   =   8,240   (4,144 pushforward)
    x, z up     2 × (2,176 + 16,512 + 256)            =  37,888
    z skip LN                                         =     256
    encoders    3 × 198,272 (X self, Z self, 1 cross) = 594,816
    final block FFN 65,664 + 66,048, LN 256           = 131,968
    total                                             = 775,888   (paper "776k": -0.01 %)

ModelNet40-s classification (d = 3, 3 cross layers): 49,120 + 5 × 198,272 + 131,968 = 1,172,448
(paper "1.17M": +0.21 %). Completion: the same F (1,172,432 for d = 2) plus the
16,640-parameter coupling layer (paper "16.6k"): 1,189,088 for d = 3, 1,189,072 for d = 2 (the
paper prints no completion total; 1.17M + 16.6k = 1.1866M, +0.21 %). Heads: Linear(128, C) =
1,290 for C = 10 (paper "1.3k") and 5,160 for C = 40 (paper "5k"); the ModelNet40-s classifier in
all, 1,177,608 (Table 1 "1.2M").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ddeqs.mmd import rows_index
from ddeqs.models.ddeq.attention import KV, EncoderLayer
from ddeqs.models.ddeq.fastpath import solve_kv
from ddeqs.models.ddeq.layers import DropoutState, EmbedMLP, FeedForward, masked_mean, zero_padding

if TYPE_CHECKING:
    from ddeqs.config import AttentionChoice


@dataclass
class FContext:
    """Everything of ``F`` that depends on ``X`` only (computed once per forward solve).

    ``kv``: per cross layer the key/value heads of the encoded X, each ``(B, H, M, p/H)``;
    ``x_mask`` ``(B, M)`` (None after :meth:`dense` when every point of X is real); ``alpha_x``/``beta_x``: the bilinear factors ``α x̄``/``β x̄``
    ``(B, b, b)`` (``beta_x`` None in the pushforward variant); ``drop``: the solve's dropout masks;
    ``attention``: ``solver.attention`` of the map (how :meth:`detached` lays out the keys/values).
    """

    kv: list[KV]
    x_mask: torch.Tensor | None
    alpha_x: torch.Tensor
    beta_x: torch.Tensor | None
    drop: DropoutState
    attention: "AttentionChoice" = "auto"

    def detached(self) -> "FContext":
        """Same context without autograd history (for the inner solve); shares the dropout masks.

        Keys/values are laid out once here, not by every inner step's matmul, as the dispatcher
        chooses (:func:`ddeqs.models.ddeq.fastpath.solve_kv`: :class:`ConstKV` on CPU for the
        hand-written query-gradient kernel, elsewhere contiguous for SDPA).
        """
        kv: list[KV] = [solve_kv(k, v, self.attention) for k, v in self.kv]  # type: ignore[misc]
        return replace(
            self,
            kv=kv,
            alpha_x=self.alpha_x.detach(),
            beta_x=None if self.beta_x is None else self.beta_x.detach(),
        )

    def dense(self) -> "FContext":
        """Same context with ``x_mask`` None when no point of X is padding (one host sync; per solve)."""
        if self.x_mask is not None and bool(self.x_mask.all()):
            return replace(self, x_mask=None)
        return self


@dataclass
class RowSubset:
    """Rows of ``Z`` whose output is needed, per sample, padded to ``R = max_b n_b`` entries.

    ``gather`` ``(B, R)`` long: row index in ``[0, K)`` of each entry (padded entries: 0);
    ``scatter`` ``(B, R)`` long: the same with padded entries ``K`` (a scratch row that callers
    drop); ``mask`` ``(B, R)`` bool: True for a real entry. Rows keep their order.
    """

    gather: torch.Tensor
    scatter: torch.Tensor
    mask: torch.Tensor

    @staticmethod
    def from_mask(rows: torch.Tensor) -> "RowSubset | None":
        """Subset of the True entries of ``rows`` ``(B, K)``; None when no row can be skipped (R = K).

        One host sync (``R``); call once per solve, not per step.
        """
        index = rows_index(rows)
        if index is None:
            return None
        gather, mask = index
        return RowSubset(gather=gather, scatter=gather.masked_fill(~mask, rows.shape[1]), mask=mask)

    def take(self, h: torch.Tensor) -> torch.Tensor:
        """Rows of ``h`` ``(B, K, c)`` -> ``(B, R, c)`` (padded entries hold row 0; callers mask them)."""
        return torch.gather(h, 1, self.gather.unsqueeze(-1).expand(-1, -1, h.shape[-1]))

    def put(self, base: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``base`` ``(B, K, c)`` with the subset rows replaced by ``rows`` ``(B, R, c)`` (out of place)."""
        B, K, c = base.shape
        ext = torch.cat([base, base.new_zeros(B, 1, c)], 1)  # scratch row K takes the padded entries
        return ext.scatter(1, self.scatter.unsqueeze(-1).expand(-1, -1, c), rows.to(base.dtype))[:, :K]


class FMap(nn.Module):
    """``F(Z, X)``: ``(B, K, z_dim)`` particles, ``(B, M, in_dim)`` input -> ``(B, K, z_dim)``."""

    def __init__(
        self,
        in_dim: int,
        z_dim: int = 128,
        bilinear_dim: int = 16,
        heads: int = 32,
        ffn_dim: int = 512,
        cross_layers: int = 3,
        self_layers: int = 1,
        pushforward: bool = False,
        dropout: float = 0.0,
        attention: "AttentionChoice" = "auto",
    ) -> None:
        super().__init__()
        b, p = bilinear_dim, z_dim
        self.in_dim, self.z_dim, self.pushforward, self.dropout = in_dim, z_dim, pushforward, dropout
        self.attention: AttentionChoice = attention  # solver.attention: the kernel choice of every attention layer
        self.x_embed = EmbedMLP(in_dim, b, b)
        self.z_embed = EmbedMLP(p, b, b)
        # Bilinear EI layer; std 1/b keeps e_z α x̄ of order one for LayerNorm-ed inputs.
        self.alpha = nn.Parameter(torch.randn(b, b, b) / b)
        self.beta = None if pushforward else nn.Parameter(torch.randn(b, b, b) / b)
        self.bil_bias = nn.Parameter(torch.zeros(b))
        self.bil_norm = nn.LayerNorm(b)
        self.x_up = EmbedMLP(b, p, p)
        self.z_up = EmbedMLP(b, p, p)
        self.z_skip_norm = nn.LayerNorm(p)
        self.x_self = nn.ModuleList(EncoderLayer(p, heads, ffn_dim, attention) for _ in range(self_layers))
        self.z_self = nn.ModuleList(
            [] if pushforward else [EncoderLayer(p, heads, ffn_dim, attention) for _ in range(self_layers)]
        )
        self.cross = nn.ModuleList(EncoderLayer(p, heads, ffn_dim, attention) for _ in range(cross_layers))
        # Final block: the transformer feed-forward sublayer with Add & Norm, LN(h + FFN(h)) (App. C.1
        # "a typical transformer feedforward layer"), so F's output rows are layer-normalised.
        self.out_ffn = FeedForward(p, ffn_dim)
        self.out_norm = nn.LayerNorm(p)

    # ------------------------------------------------------------------ X branch
    def prepare(self, x: torch.Tensor, x_mask: torch.Tensor, drop: DropoutState | None = None) -> FContext:
        """Encode ``x`` ``(B, M, d)`` with ``x_mask`` ``(B, M)`` once; returns the :class:`FContext`."""
        if drop is None:
            drop = DropoutState(self.dropout, self.training)
        x = zero_padding(x, x_mask)
        e = self.x_embed(x)
        xbar = masked_mean(e, x_mask)  # (B, b)
        alpha_x = torch.einsum("ljn,bn->blj", self.alpha, xbar)
        beta_x = None if self.beta is None else torch.einsum("ljn,bn->blj", self.beta, xbar)
        h = zero_padding(self.x_up(e), x_mask)
        for i, layer in enumerate(self.x_self):
            h = zero_padding(layer.self_attend(h, x_mask, drop, f"xself{i}"), x_mask)
        kv = [layer.attn.kv(h) for layer in self.cross]
        return FContext(kv=kv, x_mask=x_mask, alpha_x=alpha_x, beta_x=beta_x, drop=drop, attention=self.attention)

    # ------------------------------------------------------------------ Z branch
    def apply(self, z: torch.Tensor, z_mask: torch.Tensor | None, ctx: FContext) -> torch.Tensor:
        """``F(Z, X)`` for ``z`` ``(B, K, p)`` with ``z_mask`` ``(B, K)``; padded output rows are 0.

        ``z_mask`` None: every row of ``z`` is real (the fast inner step checks once per solve).
        """
        return self._rows(z, z_mask, ctx, None)

    def apply_rows(self, z: torch.Tensor, z_mask: torch.Tensor | None, ctx: FContext, rows: RowSubset) -> torch.Tensor:
        """``F(Z, X)`` at the rows of ``rows`` only: ``(B, R, p)`` (``apply(...)`` gathered; padded entries 0).

        All rows of ``z`` still enter the result (bilinear mean, Z self-attention keys/values).
        """
        return self._rows(z, z_mask, ctx, rows)

    def _rows(self, z: torch.Tensor, z_mask: torch.Tensor | None, ctx: FContext, rows: RowSubset | None) -> torch.Tensor:
        z = zero_padding(z, z_mask)
        e = self.bilinear(self.z_embed(z), z_mask, ctx)
        h = self.z_skip_norm(self.z_up(e) + z)
        h = zero_padding(h, z_mask)
        n_self = len(self.z_self)
        for i, layer in enumerate(self.z_self):
            if rows is not None and i == n_self - 1:  # last self layer: queries of the needed rows only
                h = layer(rows.take(h), layer.attn.kv(h), z_mask, ctx.drop, f"zself{i}")
            else:
                h = layer.self_attend(h, z_mask, ctx.drop, f"zself{i}")
            h = zero_padding(h, z_mask if rows is None or i < n_self - 1 else rows.mask)
        if rows is not None:
            if n_self == 0:  # pushforward variant: every layer from here on is row-wise
                h = rows.take(h)
            q_mask = rows.mask
        else:
            q_mask = z_mask
        for i, (layer, kv) in enumerate(zip(self.cross, ctx.kv)):
            h = layer(h, kv, ctx.x_mask, ctx.drop, f"cross{i}")
        f = ctx.drop("out.res", self.out_ffn(h, ctx.drop, "out"))
        return zero_padding(self.out_norm(h + f), q_mask)

    def bilinear(self, e: torch.Tensor, z_mask: torch.Tensor | None, ctx: FContext) -> torch.Tensor:
        """The bilinear EI layer on the embedded particles ``e`` ``(B, K, b)``: ``LN(e + e α x̄ + ē β x̄ + bias)``."""
        bil = e @ ctx.alpha_x + self.bil_bias
        if ctx.beta_x is not None:
            bil = bil + (masked_mean(e, z_mask).unsqueeze(1) @ ctx.beta_x)
        return self.bil_norm(e + bil)

    def forward(self, z: torch.Tensor, z_mask: torch.Tensor, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """``apply(z, z_mask, prepare(x, x_mask))``."""
        return self.apply(z, z_mask, self.prepare(x, x_mask))
