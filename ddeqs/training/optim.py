"""Optimiser and learning-rate schedule of a training, from ``train.*`` (:class:`~ddeqs.config.TrainConfig`).

Every function takes the training settings (``cfg.train``); an :class:`~ddeqs.config.ExperimentConfig`
is accepted too and its ``train`` block is used.
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn as nn

from ddeqs.config import ExperimentConfig, TrainConfig

__all__ = ["make_optimizer", "make_scheduler", "milestone_epochs", "steps_per_batch", "steps_per_decay"]

Settings = Union[TrainConfig, ExperimentConfig]


def _train(settings: Settings) -> TrainConfig:
    return settings.train if isinstance(settings, ExperimentConfig) else settings


def make_optimizer(settings: Settings, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD (momentum) with ``train.lr`` and ``train.weight_decay`` (resolved per model: ``TRAIN_DEFAULTS``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    t = _train(settings)
    assert t.optimizer is not None and t.lr is not None, "ExperimentConfig validation fills the model defaults"
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum or 0.0, weight_decay=t.weight_decay or 0.0)
    return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay or 0.0)


def milestone_epochs(fractions: list[float], epochs: int) -> list[int]:
    """Epoch indices at which lr is multiplied by gamma: ``floor(f · epochs + ½)``, e.g. 5 epochs,
    [0.4, 0.8] -> [2, 4] (epochs 0-1 at lr, 2-3 at lr·γ, 4 at lr·γ²). Milestones at 0 or ≥ epochs are dropped."""
    out = sorted({int(math.floor(f * epochs + 0.5)) for f in fractions})
    return [m for m in out if 0 < m < epochs]


def steps_per_decay(settings: Settings, steps_per_epoch: int) -> int:
    """Exponential schedule: optimizer steps between two lr decays, ``round(decay_every · total steps)`` (≥ 1)."""
    t = _train(settings)
    total = t.epochs * steps_per_epoch
    return max(1, int(math.floor((t.decay_every or 1.0) * total + 0.5)))


def steps_per_batch(settings: Settings) -> bool:
    """Whether the lr scheduler is stepped after every optimizer step (exponential) or every epoch (multistep)."""
    return _train(settings).schedule == "exponential"


def make_scheduler(
    settings: Settings, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1
) -> torch.optim.lr_scheduler.LRScheduler:
    """``train.schedule``: multistep -> MultiStepLR stepped once per epoch at :func:`milestone_epochs`;
    exponential -> staircase ``lr · max(γ^floor(step / n), min_lr / lr)`` stepped once per optimizer
    step, ``n`` = :func:`steps_per_decay` (``steps_per_epoch``: batches per epoch)."""
    t = _train(settings)
    gamma = float(t.gamma if t.gamma is not None else 0.1)
    if t.schedule == "exponential":
        every = steps_per_decay(t, steps_per_epoch)
        floor = (t.min_lr or 0.0) / float(t.lr or 1.0)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(gamma ** (step // every), floor))
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=milestone_epochs(t.milestones, t.epochs), gamma=gamma
    )
