"""Point Transformer classifier (Zhao et al. 2021) in pure PyTorch, masked.

Layout (paper §3.3/§3.4, classification network):

* input embedding: shared MLP d -> c0 -> c0;
* stage s (``channels[s]``, ``strides[s]``): a transition down (stride 1: point-wise linear, or
  nothing when the width is unchanged; stride > 1: farthest point sampling of ceil(n / stride)
  real points, kNN grouping of (relative position, feature), shared MLP (two layers),
  max-pool over the k neighbours) followed by one Point Transformer block;
* block: Linear -> BN -> ReLU -> vector self-attention layer -> BN -> Linear -> BN, residual, ReLU;
* layer: for each point i and its k nearest neighbours j,
  ``y_i = sum_j softmax_j(gamma(q_i - k_j + delta_ij)) * (v_j + delta_ij)`` (per channel),
  with the learned positional encoding ``delta_ij = theta(p_i - p_j)`` (Linear-BN-ReLU-Linear)
  and the attention MLP gamma (BN-ReLU-Linear-BN-ReLU-Linear);
* head: masked global average pooling (``embedding``, ``channels[-1]`` wide) -> Linear 256 ->
  BN -> ReLU -> dropout 0.5 -> Linear C.

With channels [32, 64, 128, 256, 512] and strides [1, 4, 4, 4, 4] this has 3,485,640 parameters
(d = 3, 40 classes) and 3,475,946 (d = 2, 10 classes), matching the paper's "3.5M".

Memory: the largest tensors are ``(B, N, k, C)`` (grouped neighbours); distances for kNN are
``(B, M, N)``; nothing of size ``B x N x N x C`` is formed. FPS loops over samples, not the batch.
Masks: padded points are never sampled or grouped, batch statistics and pooling use real rows only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ddeqs.models.base import ModelOutput
from ddeqs.models.pointops import (
    MLP,
    MaskedBatchNorm,
    check_cloud_batch,
    farthest_point_sample,
    gather,
    knn,
    masked_mean,
    zero_padding,
)

__all__ = ["PointTransformerClassifier", "PointTransformerLayer", "PointTransformerBlock", "TransitionDown"]


class PointTransformerLayer(nn.Module):
    """Vector self-attention over kNN neighbourhoods on features ``(B, N, C)`` at positions ``(B, N, d)``."""

    def __init__(self, channels: int, pos_dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.pos1 = nn.Linear(pos_dim, channels, bias=False)
        self.pos_bn = MaskedBatchNorm(channels)
        self.pos2 = nn.Linear(channels, channels)
        self.attn_bn1 = MaskedBatchNorm(channels)
        self.attn1 = nn.Linear(channels, channels, bias=False)
        self.attn_bn2 = MaskedBatchNorm(channels)
        self.attn2 = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        """x ``(B, N, C)``, pos ``(B, N, d)``, mask ``(B, N)``, nbr ``(B, N, k)`` real-point indices -> ``(B, N, C)``."""
        gmask = mask.unsqueeze(-1).expand_as(nbr)  # statistics over neighbourhoods of real centres
        rel = pos.unsqueeze(2) - gather(pos, nbr)  # (B, N, k, d)
        delta = self.pos2(torch.relu(self.pos_bn(self.pos1(rel), gmask)))  # (B, N, k, C)
        a = self.q(x).unsqueeze(2) - gather(self.k(x), nbr) + delta
        a = self.attn1(torch.relu(self.attn_bn1(a, gmask)))
        a = self.attn2(torch.relu(self.attn_bn2(a, gmask)))
        w = torch.softmax(a, dim=2)  # per channel over the k neighbours
        return (w * (gather(self.v(x), nbr) + delta)).sum(dim=2)


class PointTransformerBlock(nn.Module):
    """Residual block around :class:`PointTransformerLayer` (width preserved)."""

    def __init__(self, channels: int, pos_dim: int) -> None:
        super().__init__()
        self.lin_in = nn.Linear(channels, channels, bias=False)
        self.bn_in = MaskedBatchNorm(channels)
        self.attn = PointTransformerLayer(channels, pos_dim)
        self.bn_attn = MaskedBatchNorm(channels)
        self.lin_out = nn.Linear(channels, channels, bias=False)
        self.bn_out = MaskedBatchNorm(channels)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn_in(self.lin_in(x), mask))
        y = torch.relu(self.bn_attn(self.attn(y, pos, mask, nbr), mask))
        y = self.bn_out(self.lin_out(y), mask)
        return torch.relu(x + y)


class TransitionDown(nn.Module):
    """Downsample by ``stride``: FPS + kNN grouping + shared MLP + max-pool over neighbours.

    Each cloud with n real points keeps ceil(n / stride) of them; the output mask says which
    rows are real. Stride 1 is a point-wise Linear -> BN -> ReLU (or nothing if widths match).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, k: int, pos_dim: int) -> None:
        super().__init__()
        self.stride, self.k = stride, k
        if stride == 1:
            self.mlp = MLP(c_in, [c_out], bias=False) if c_in != c_out else None
        else:
            self.mlp = MLP(c_in + pos_dim, [c_out, c_out], bias=False)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x ``(B, N, C_in)``, pos ``(B, N, d)``, mask ``(B, N)`` -> x ``(B, M, C_out)``, pos ``(B, M, d)``, mask ``(B, M)``."""
        if self.stride == 1:
            return (x if self.mlp is None else self.mlp(x, mask)), pos, mask
        n_keep = torch.div(mask.sum(dim=1) + self.stride - 1, self.stride, rounding_mode="floor")  # ceil(n / s)
        m = int(n_keep.max())
        idx = farthest_point_sample(pos, mask, m)  # (B, M)
        new_pos = gather(pos, idx)
        new_mask = torch.arange(m, device=pos.device).unsqueeze(0) < n_keep.unsqueeze(1)
        nbr = knn(new_pos, pos, mask, self.k)  # (B, M, k)
        grouped = torch.cat([gather(pos, nbr) - new_pos.unsqueeze(2), gather(x, nbr)], dim=-1)
        gmask = new_mask.unsqueeze(-1).expand_as(nbr)
        feat = self.mlp(grouped, gmask)  # (B, M, k, C_out)
        feat = feat.amax(dim=2)  # every neighbour is a real point
        return feat, new_pos, new_mask


class PointTransformerClassifier(nn.Module):
    """Point Transformer classifier. ``forward(points (B, N, d), mask (B, N))`` -> ModelOutput with
    ``logits (B, C)`` and ``embedding (B, channels[-1])`` (masked global average pooling)."""

    def __init__(self, in_dim: int, num_classes: int, channels: list[int], strides: list[int], k: int) -> None:
        super().__init__()
        channels, strides = list(channels), list(strides)
        if not channels or len(channels) != len(strides):
            raise ValueError(
                f"Point Transformer: model.pt_channels {channels} and model.pt_strides {strides} "
                "must be non-empty lists of the same length (one entry per stage)"
            )
        if min(channels) < 1 or min(strides) < 1 or k < 1:
            raise ValueError(f"Point Transformer: channels {channels}, strides {strides} and k={k} must be positive")
        self.k = k
        self.embed = MLP(in_dim, [channels[0], channels[0]], bias=False)
        self.downs = nn.ModuleList()
        self.blocks = nn.ModuleList()
        c_prev = channels[0]
        for c, s in zip(channels, strides):
            self.downs.append(TransitionDown(c_prev, c, s, k, in_dim))
            self.blocks.append(PointTransformerBlock(c, in_dim))
            c_prev = c
        self.head = MLP(channels[-1], [256])
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        check_cloud_batch(points, mask, "Point Transformer")
        pos = zero_padding(points, mask)
        x = self.embed(pos, mask)
        for down, block in zip(self.downs, self.blocks):
            x, pos, mask = down(x, pos, mask)
            nbr = knn(pos, pos, mask, self.k)
            x = block(x, pos, mask, nbr)
        g = masked_mean(x, mask)  # (B, C_last)
        logits = self.classifier(self.dropout(self.head(g)))
        return ModelOutput(logits=logits, embedding=g)

