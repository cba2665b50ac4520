"""The DDEQ map ``F(Z, X)`` (paper §3.2, App. C.1) with the EI property.

``F`` is equivariant in the rows of ``Z`` and invariant in the rows of ``X``.
Its forward is split in two so the Z-independent X branch runs once per solve::

    ctx = fmap.prepare(x, x_mask)          # X embedding, X self-encoder, cross K/V, bilinear factors
    out = fmap.apply(z, z_mask, ctx)       # (B, K, p), called at every inner step
    fmap(z, z_mask, x, x_mask) == fmap.apply(z, z_mask, fmap.prepare(x, x_mask))

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
5. Final FFN ``Linear(p,f)-ReLU-Linear(f,p)``.

Parameter count, d = 2, one cross layer (MNIST-pc classification)::

    x embed     16d+16 + 272 + 32                     =     352   (368 for d = 3)
    z embed     128·16+16 + 272 + 32                  =   2,368
    bilinear    α 4,096 + β 4,096 + bias 16 + LN 32   =   8,240   (4,144 pushforward)
    x, z up     2 × (2,176 + 16,512 + 256)            =  37,888
    z skip LN                                         =     256
    encoders    3 × 198,272 (X self, Z self, 1 cross) = 594,816
    final FFN   65,664 + 66,048                       = 131,712
    total                                             = 775,632   (paper 773k: +0.34 %)

ModelNet40-s classification (d = 3, 3 cross layers): 49,120 + 5 × 198,272 + 131,712 = 1,172,192
(paper 1.17M: +0.19 %). Completion adds the 16,640-parameter coupling layer: 1,188,832
(paper 1.19M: -0.10 %). Heads: Linear(128, C) = 1,290 for C = 10 (paper 1.3k) and 5,160 for
C = 40 (paper "5k").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from ddeqs.models.ddeq.attention import KV, EncoderLayer
from ddeqs.models.ddeq.layers import DropoutState, EmbedMLP, FeedForward, masked_mean, zero_padding


@dataclass
class FContext:
    """Everything of ``F`` that depends on ``X`` only (computed once per forward solve).

    ``kv``: per cross layer the key/value heads of the encoded X, each ``(B, H, M, p/H)``;
    ``x_mask`` ``(B, M)``; ``alpha_x``/``beta_x``: the bilinear factors ``α x̄``/``β x̄``
    ``(B, b, b)`` (``beta_x`` None in the pushforward variant); ``drop``: the solve's dropout masks.
    """

    kv: list[KV]
    x_mask: torch.Tensor
    alpha_x: torch.Tensor
    beta_x: torch.Tensor | None
    drop: DropoutState

    def detached(self) -> "FContext":
        """Same context without autograd history (for the inner solve); shares the dropout masks."""
        return replace(
            self,
            kv=[(k.detach(), v.detach()) for k, v in self.kv],
            alpha_x=self.alpha_x.detach(),
            beta_x=None if self.beta_x is None else self.beta_x.detach(),
        )


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
    ) -> None:
        super().__init__()
        b, p = bilinear_dim, z_dim
        self.in_dim, self.z_dim, self.pushforward, self.dropout = in_dim, z_dim, pushforward, dropout
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
        self.x_self = nn.ModuleList(EncoderLayer(p, heads, ffn_dim) for _ in range(self_layers))
        self.z_self = nn.ModuleList(
            [] if pushforward else [EncoderLayer(p, heads, ffn_dim) for _ in range(self_layers)]
        )
        self.cross = nn.ModuleList(EncoderLayer(p, heads, ffn_dim) for _ in range(cross_layers))
        self.out_ffn = FeedForward(p, ffn_dim)

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
        return FContext(kv=kv, x_mask=x_mask, alpha_x=alpha_x, beta_x=beta_x, drop=drop)

    # ------------------------------------------------------------------ Z branch
    def apply(self, z: torch.Tensor, z_mask: torch.Tensor, ctx: FContext) -> torch.Tensor:
        """``F(Z, X)`` for ``z`` ``(B, K, p)`` with ``z_mask`` ``(B, K)``; padded output rows are 0."""
        z = zero_padding(z, z_mask)
        e = self.z_embed(z)
        bil = e @ ctx.alpha_x + self.bil_bias
        if ctx.beta_x is not None:
            bil = bil + (masked_mean(e, z_mask).unsqueeze(1) @ ctx.beta_x)
        e = self.bil_norm(e + bil)
        h = self.z_skip_norm(self.z_up(e) + z)
        h = zero_padding(h, z_mask)
        for i, layer in enumerate(self.z_self):
            h = zero_padding(layer.self_attend(h, z_mask, ctx.drop, f"zself{i}"), z_mask)
        for i, (layer, kv) in enumerate(zip(self.cross, ctx.kv)):
            h = layer(h, kv, ctx.x_mask, ctx.drop, f"cross{i}")
        out = self.out_ffn(h, ctx.drop, "out")
        return zero_padding(out, z_mask)

    def forward(self, z: torch.Tensor, z_mask: torch.Tensor, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """``apply(z, z_mask, prepare(x, x_mask))``."""
        return self.apply(z, z_mask, self.prepare(x, x_mask))
