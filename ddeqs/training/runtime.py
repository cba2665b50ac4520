"""What training and evaluation set up the same way: torch settings and device, the data source,
the model for that data, and the MLflow run of a run folder.

Used by :func:`ddeqs.training.session.setup` (``ddeqs train``, and so ``ddeqs bench train``, which
trains through :func:`~ddeqs.training.train_run`) and :func:`ddeqs.training.evaluate.load_run_model`
(``ddeqs evaluate``, ``ddeqs bench composition``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from ddeqs.config import ExperimentConfig
from ddeqs.training.seeding import configure_torch, resolve_device
from ddeqs.training.source import DataSource, default_source

__all__ = ["Runtime", "new_model", "open_run_tracker", "open_runtime"]


@dataclass
class Runtime:
    """Where a run computes (``device``) and what it reads (``source``: ``info`` and ``loader``)."""

    device: torch.device
    source: DataSource


def open_runtime(cfg: ExperimentConfig, source: DataSource | None = None, device: str | None = None) -> Runtime:
    """Apply ``train.threads`` / ``train.deterministic``, resolve ``device`` (default ``train.device``)
    and open ``source`` (default: the prepared dataset of ``cfg.data``)."""
    configure_torch(cfg.train)
    dev = resolve_device(device or cfg.train.device)
    return Runtime(device=dev, source=source or default_source(cfg))


def new_model(cfg: ExperimentConfig, info: Any) -> nn.Module:
    """``cfg.model`` built for the data's point dimension and classes (``info.in_dim``, ``info.num_classes``), on CPU."""
    from ddeqs.models import build_model

    return build_model(cfg, info.in_dim, info.num_classes)


def open_run_tracker(
    cfg: ExperimentConfig, run_name: str, dataset_sha256: str | None, run_id: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> Any:
    """The MLflow run of a run folder (:func:`ddeqs.tracking.open_tracker`), tagged with the dataset's
    sha256; ``run_id`` reopens that run when the store has it. A NullTracker when tracking is off."""
    from ddeqs.tracking import open_tracker

    kw = {"warn": warn} if warn is not None else {}
    return open_tracker(cfg, run_name, tags={"ddeqs.dataset_sha256": dataset_sha256}, run_id=run_id, **kw)
