"""Name a bad cloud by where it lives (dataset split, stored row, source file), not by its place in a
shuffled batch: the model reports batch positions (:class:`~ddeqs.errors.BadCloudError`), the batch
knows each sample's row (``CloudBatch.index``), the prepared split knows each row's source."""

from __future__ import annotations

from typing import Any

from ddeqs.batch import CloudBatch
from ddeqs.config import ExperimentConfig
from ddeqs.errors import BadCloudError, DataError

__all__ = ["locate_bad_clouds"]


def locate_bad_clouds(err: BadCloudError, batch: CloudBatch, cfg: ExperimentConfig, split: str) -> DataError:
    """A :class:`DataError` naming the split, rows and source files of the clouds ``err`` points at."""
    if batch.index is None:
        return err
    rows = [int(batch.index[p]) for p in err.positions]
    where, sources = f"{cfg.data.dataset} {split} split", {}
    try:  # the prepared file and each row's source (a mesh file or a CSV row); absent for in-memory data
        from ddeqs.data.loader import open_split
        from ddeqs.data.registry import split_path

        data: Any = open_split(cfg, split)
        path = split_path(cfg.data.root, cfg.data.dataset, split).with_suffix(".npz")
        where += f" ({path})"
        sources = {r: data.names[r] for r in rows if r < len(data.names)}
    except (DataError, OSError, IndexError):
        pass
    shown = ", ".join(f"row {r}" + (f" (source {sources[r]})" if r in sources else "") for r in rows[:10])
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return DataError(f"{err.problem} in the {where}: {shown}{more}; fix or drop these clouds in the raw data and "
                     f"re-run 'ddeqs data prepare {cfg.data.dataset} --force'")
