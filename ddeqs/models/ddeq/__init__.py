"""The DDEQ (paper §3): the EI map F, the classification and completion pipelines.

``build_ddeq(cfg, in_dim, num_classes)`` picks the pipeline from ``cfg.task``.
"""

from __future__ import annotations

import torch.nn as nn

from ddeqs.config import ExperimentConfig
from ddeqs.models.ddeq.classifier import DDEQClassifier
from ddeqs.models.ddeq.completion import DDEQCompletion
from ddeqs.models.ddeq.core import DDEQCore, Equilibrium
from ddeqs.models.ddeq.coupling import AffineCoupling
from ddeqs.models.ddeq.fmap import FContext, FMap

__all__ = [
    "AffineCoupling",
    "DDEQClassifier",
    "DDEQCompletion",
    "DDEQCore",
    "Equilibrium",
    "FContext",
    "FMap",
    "build_ddeq",
    "parameter_breakdown",
]


def build_ddeq(cfg: ExperimentConfig, in_dim: int, num_classes: int) -> nn.Module:
    """DDEQ for ``cfg.task`` (``num_classes`` is used by classification only)."""
    if cfg.task == "classification":
        return DDEQClassifier(cfg.model, cfg.solver, in_dim, num_classes)
    return DDEQCompletion(cfg.model, cfg.solver, in_dim)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Trainable parameters of a DDEQ by part: ``F``, ``head``, ``coupling``, ``total``."""

    def count(m: nn.Module | None) -> int:
        return 0 if m is None else sum(p.numel() for p in m.parameters() if p.requires_grad)

    return {
        "F": count(getattr(getattr(model, "core", None), "fmap", None)),
        "head": count(getattr(model, "head", None)),
        "coupling": count(getattr(model, "coupling", None)),
        "total": count(model),
    }
