"""Where training and evaluation get their data: the prepared datasets of :mod:`ddeqs.data`,
or any object with the same two things (tests use tiny in-memory stand-ins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ddeqs.batch import CloudBatch
from ddeqs.config import ExperimentConfig

__all__ = ["DataSource", "default_source"]

LoaderFn = Callable[..., Iterable[CloudBatch]]


@dataclass
class DataSource:
    """``info``: has ``in_dim``, ``num_classes`` and ``sha256``; ``loader(split, shuffle=None, batch_size=None)``
    returns an iterable of :class:`~ddeqs.batch.CloudBatch` (a DataLoader)."""

    info: Any
    loader: LoaderFn


def default_source(cfg: ExperimentConfig) -> DataSource:
    """The prepared dataset named by ``cfg.data`` (``ddeqs.data.dataset_info`` / ``make_loader``)."""
    from ddeqs.data import dataset_info, make_loader

    info = dataset_info(cfg)

    def loader(split: str, shuffle: bool | None = None, batch_size: int | None = None) -> Iterable[CloudBatch]:
        return make_loader(cfg, split, shuffle=shuffle, batch_size=batch_size)

    return DataSource(info=info, loader=loader)
