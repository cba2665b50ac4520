"""Optimizer settings of each model's paper (DDEQ paper §4: baselines use their own papers' optimizers).

Keys match :class:`ddeqs.config.TrainConfig` fields, so a training loop can apply them with
``cfg.train.model_copy(update=default_optimizer_settings(cfg.model.name))``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPTIMIZER_DEFAULTS", "default_optimizer_settings"]

OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    # DDEQ paper §4: Adam 1e-3
    "ddeq": {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0},
    # PointNet (Qi et al. 2017): Adam, initial learning rate 0.001
    "pointnet": {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0},
    # Point Transformer (Zhao et al. 2021): SGD, lr 0.05, momentum 0.9, weight decay 1e-4
    "point-transformer": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
    # PCN (Yuan et al. 2018): Adam, initial learning rate 0.0001
    "pcn": {"optimizer": "adam", "lr": 1e-4, "momentum": 0.9, "weight_decay": 0.0},
}


def default_optimizer_settings(model_name: str) -> dict[str, Any]:
    """``{"optimizer", "lr", "momentum", "weight_decay"}`` for ``model_name`` (a ``model.name`` value)."""
    try:
        return dict(OPTIMIZER_DEFAULTS[model_name])
    except KeyError:
        raise ValueError(
            f"no optimizer defaults for model.name={model_name!r}; known: {sorted(OPTIMIZER_DEFAULTS)}"
        ) from None
