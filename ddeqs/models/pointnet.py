"""PointNet classifier (Qi et al. 2017), masked, without the feature transform.

Architecture (paper Fig. 2, classification branch), every shared MLP layer Linear -> BN -> ReLU:
input transform T-Net (mlp 64-128-1024, max-pool, fc 512-256, a d x d matrix initialised to
the identity) -> shared mlp (64, 64) -> shared mlp (64, 128, 1024) -> masked max-pool (the
1024-dim global feature, returned as ``embedding``) -> fc 512 -> fc 256 -> dropout -> fc C.
Dropout 0.3 before the last layer (PointNet: keep ratio 0.7; ``model.dropout``), active in
training mode only.
The 64 x 64 feature transform is left out, as in the DDEQ paper's baseline (~1.6M parameters:
1,622,705 for d = 3 / 40 classes, 1,613,582 for d = 2 / 10 classes).

Batch norm statistics use real points only (:class:`~ddeqs.models.pointops.MaskedBatchNorm`),
so padding never changes an output, in training or in evaluation mode.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ddeqs.models.base import ModelOutput
from ddeqs.models.pointops import MLP, check_cloud_batch, masked_max, zero_padding

__all__ = ["PointNetClassifier", "InputTransform"]


class InputTransform(nn.Module):
    """T-Net predicting a ``(B, d, d)`` matrix from a masked cloud ``(B, N, d)``; starts as the identity."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.d = in_dim
        self.point_mlp = MLP(in_dim, [64, 128, 1024])
        self.fc = MLP(1024, [512, 256])
        self.out = nn.Linear(256, in_dim * in_dim)
        nn.init.zeros_(self.out.weight)  # identity at initialisation, as in the PointNet paper
        nn.init.zeros_(self.out.bias)

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        g = masked_max(self.point_mlp(points, mask), mask)  # (B, 1024)
        t = self.out(self.fc(g))
        eye = torch.eye(self.d, device=points.device, dtype=t.dtype)
        return t.view(-1, self.d, self.d) + eye


class PointNetClassifier(nn.Module):
    """PointNet classifier. ``forward(points (B, N, d), mask (B, N))`` -> ModelOutput with
    ``logits (B, C)`` and ``embedding (B, 1024)`` (the max-pooled global feature)."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.transform = InputTransform(in_dim)
        self.mlp1 = MLP(in_dim, [64, 64])
        self.mlp2 = MLP(64, [64, 128, 1024])
        self.head = MLP(1024, [512, 256])
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        check_cloud_batch(points, mask, "PointNet")
        x = zero_padding(points, mask)
        x = torch.bmm(x, self.transform(x, mask))  # (B, N, d)
        feat = self.mlp2(self.mlp1(x, mask), mask)  # (B, N, 1024)
        g = masked_max(feat, mask)  # (B, 1024)
        logits = self.classifier(self.dropout(self.head(g)))
        return ModelOutput(logits=logits, embedding=g)
