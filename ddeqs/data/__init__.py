"""Datasets: download, voxelize, store, derive (partial / noisy / share) and load.

Training uses :func:`dataset_info` and :func:`make_loader`; the command line
``ddeqs data fetch|prepare|info`` uses :mod:`ddeqs.data.registry`. See docs/data.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DatasetInfo", "dataset_info", "make_loader", "CloudDataset", "DATASETS", "fetch_dataset", "prepare_dataset"]

if TYPE_CHECKING:  # pragma: no cover
    from ddeqs.data.loader import CloudDataset, DatasetInfo, dataset_info, make_loader
    from ddeqs.data.registry import DATASETS, fetch_dataset, prepare_dataset


def __getattr__(name: str) -> Any:  # lazy: importing ddeqs.data must not import torch
    if name in ("DatasetInfo", "dataset_info", "make_loader", "CloudDataset"):
        from ddeqs.data import loader

        return getattr(loader, name)
    if name in ("DATASETS", "fetch_dataset", "prepare_dataset"):
        from ddeqs.data import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'ddeqs.data' has no attribute {name!r}")
