"""Models: the DDEQ and the PointNet / Point Transformer / PCN baselines.

``build_model(cfg, in_dim, num_classes)`` is the one constructor used by training,
evaluation, the CLI and the tests.
"""

from __future__ import annotations

import torch.nn as nn

from ddeqs.config import ExperimentConfig
from ddeqs.models.base import ModelOutput

__all__ = ["ModelOutput", "build_model", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_model(cfg: ExperimentConfig, in_dim: int, num_classes: int) -> nn.Module:
    """Construct the model named by ``cfg.model.name`` for ``cfg.task``.

    in_dim: point dimension d (2 or 3). num_classes: classes (classification head size).
    Every model's ``forward(points (B, N, d), mask (B, N))`` returns a :class:`ModelOutput`.
    """
    name = cfg.model.name
    if name == "ddeq":
        from ddeqs.models.ddeq import build_ddeq

        return build_ddeq(cfg, in_dim, num_classes)
    if name == "pointnet":
        from ddeqs.models.pointnet import PointNetClassifier

        dropout = cfg.model.dropout
        return PointNetClassifier(in_dim, num_classes, dropout=0.3 if dropout is None else dropout)
    if name == "point-transformer":
        from ddeqs.models.point_transformer import PointTransformerClassifier

        return PointTransformerClassifier(
            in_dim, num_classes, channels=cfg.model.pt_channels, strides=cfg.model.pt_strides, k=cfg.model.pt_k
        )
    if name == "pcn":
        from ddeqs.models.pcn import PCN

        n_out = cfg.model.pcn_points or (256 if in_dim == 2 else 768)
        return PCN(in_dim, num_points=n_out, grid_size=cfg.model.pcn_grid)
    raise ValueError(f"unknown model.name {name!r}")
