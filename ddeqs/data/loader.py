"""Datasets and DataLoaders for training: prepared splits -> :class:`ddeqs.batch.CloudBatch`.

Derived inputs (partial, noisy, share-subsampled) are computed on load from the
stored full clouds, seeded per sample by ``(cfg.seed, split, stored row)``, so a
pipeline can vary ``data.noise`` / ``data.input_share`` without re-preparing and the
same seed always gives the same samples. On the training split of a completion task the
sampler (:class:`VisitSampler`) also hands out one ``visit`` key per pass, drawn from the
loader's generator (reseeded every epoch by the trainer): noise, and with
``data.redraw_partial`` the partial cloud, are drawn afresh per visit, reproducibly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ddeqs.batch import CloudBatch, pad_clouds
from ddeqs.config import ExperimentConfig
from ddeqs.data.derive import completion_input
from ddeqs.data.registry import SPLITS, spec, split_path
from ddeqs.data.store import SplitArrays, load_split
from ddeqs.errors import DataError


@dataclass
class DatasetInfo:
    """What a model needs to know about a dataset (after class selection)."""

    in_dim: int
    num_classes: int
    class_names: list[str]
    n_train: int
    n_test: int
    sha256: str  # of the processed train file


def open_split(cfg: ExperimentConfig, split: str) -> SplitArrays:
    """The prepared split of ``cfg.data.dataset`` under ``cfg.data.root`` (DataError naming the command if missing)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    name = cfg.data.dataset
    path = split_path(cfg.data.root, name, split)
    if not path.with_suffix(".npz").is_file() or not path.with_suffix(".json").is_file():
        raise DataError(f"prepared dataset {path}.npz not found; run 'ddeqs data prepare {name} --root {cfg.data.root}'")
    return load_split(path)


def selected_classes(cfg: ExperimentConfig, available: list[str]) -> list[str]:
    """``cfg.data.classes``, else the dataset's completion classes for completion (the 8 of 3-D
    completion, :attr:`DatasetSpec.completion_classes`), else all classes."""
    completion_classes = spec(cfg.data.dataset).completion_classes
    if cfg.data.classes is not None:
        wanted = list(cfg.data.classes)
    elif cfg.task == "completion" and completion_classes is not None:
        wanted = list(completion_classes)
    else:
        return list(available)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"data.classes: {missing} not in dataset {cfg.data.dataset!r} (classes: {', '.join(available)})")
    if not wanted:
        raise DataError("data.classes is empty; give at least one class name or null for all")
    return wanted


def _rows(cfg: ExperimentConfig, data: SplitArrays, split: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(stored rows, class names, old->new label map)`` after class selection and max_train/max_test."""
    names = selected_classes(cfg, data.class_names)
    lut = np.full(len(data.class_names), -1, dtype=np.int64)
    for new, c in enumerate(names):
        lut[data.class_names.index(c)] = new
    rows = np.flatnonzero(lut[data.labels] >= 0)
    limit = cfg.data.max_train if split == "train" else cfg.data.max_test
    if limit is not None:
        rows = rows[:limit]
    return rows, names, lut


class CloudDataset(Dataset):
    """One split as a map-style dataset of dicts ``{points, target, missing, label, index}``.

    ``points`` is the model input ``(n, d)`` float32 (the full cloud for
    classification; partial -> noisy -> share-subsampled for completion), ``target``
    the full cloud (completion) or None, ``missing`` the target points the partial input
    lacks (completion) or None, ``index`` the stored row of the sample.

    Items are ``dataset[i]`` (fixed per-sample draws) or ``dataset[(i, visit)]`` (training
    split: the draws of that visit, see :func:`ddeqs.data.derive.completion_input`). Noise is
    applied on the training split only, unless ``data.noise_test``.
    """

    def __init__(self, cfg: ExperimentConfig, split: str) -> None:
        self.data = open_split(cfg, split)
        self.rows, self.class_names, self.lut = _rows(cfg, self.data, split)
        self.split, self.dataset = split, cfg.data.dataset
        self.completion = cfg.task == "completion"
        self.radius = cfg.data.partial_radius or spec(cfg.data.dataset).partial_radius
        self.noise = cfg.data.noise if (split == "train" or cfg.data.noise_test) else 0.0
        self.noise_mode, self.redraw_partial = cfg.data.noise_mode, cfg.data.redraw_partial
        self.share, self.seed = cfg.data.input_share, cfg.seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        i, visit = item if isinstance(item, tuple) else (item, None)
        if self.split != "train":
            visit = None  # test inputs are fixed per sample
        row = int(self.rows[i])
        cloud = self.data.cloud(row)
        label = int(self.lut[self.data.labels[row]])
        if not self.completion:
            return {"points": cloud, "target": None, "missing": None, "label": label, "index": row}
        try:
            x, missing = completion_input(cloud, self.radius, self.noise, self.share, self.seed, self.split, row,
                                          noise_mode=self.noise_mode, visit=visit, redraw_partial=self.redraw_partial)
        except DataError as err:  # name the cloud: split, stored row, source
            src = self.data.names[row] if row < len(self.data.names) else "?"
            raise DataError(f"{self.dataset} {self.split} split, row {row} (source {src}): {err}") from None
        return {"points": x.astype(np.float32), "target": cloud, "missing": missing.astype(np.float32),
                "label": label, "index": row}


class VisitSampler(Sampler):
    """Indices ``(i, visit)`` of one pass over ``n`` samples (shuffled with ``generator`` if ``shuffle``).

    ``visit`` is one 62-bit key per pass, drawn from ``generator`` before the permutation, so a
    generator reseeded per epoch (:func:`ddeqs.training.seeding.seed_epoch` finds it as
    ``loader.sampler.generator``) gives every epoch its own, reproducible augmentation draws.
    """

    def __init__(self, n: int, shuffle: bool, generator: torch.Generator) -> None:
        self.n, self.shuffle, self.generator = n, shuffle, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        visit = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        order = torch.randperm(self.n, generator=self.generator).tolist() if self.shuffle else range(self.n)
        for i in order:
            yield (int(i), visit)


def collate(items: list[dict]) -> CloudBatch:
    """Pad a list of samples into a :class:`CloudBatch` (explicit bool masks)."""
    pts, mask = pad_clouds([torch.from_numpy(np.ascontiguousarray(it["points"])) for it in items])
    batch = CloudBatch(points=pts, mask=mask, labels=torch.tensor([it["label"] for it in items], dtype=torch.long),
                       index=torch.tensor([it["index"] for it in items], dtype=torch.long))
    if items[0]["target"] is not None:
        batch.target, batch.target_mask = pad_clouds([torch.from_numpy(np.ascontiguousarray(it["target"]))
                                                      for it in items])
    if items[0].get("missing") is not None:
        batch.missing, batch.missing_mask = pad_clouds([torch.from_numpy(np.ascontiguousarray(it["missing"]))
                                                        for it in items])
    return batch


def make_loader(cfg: ExperimentConfig, split: str, shuffle: bool | None = None,
                batch_size: int | None = None) -> DataLoader:
    """DataLoader of :class:`CloudBatch` for ``split`` ('train' or 'test').

    Shuffles the training split by default (seeded by ``cfg.seed``); batch size
    ``cfg.train.batch_size`` unless given; ``cfg.data.workers`` worker processes. The training
    split of a completion task is sampled by :class:`VisitSampler` (fresh augmentation per pass).
    """
    ds = CloudDataset(cfg, split)
    if len(ds) == 0:
        raise DataError(f"{cfg.data.dataset} {split}: no samples left after data.classes / max_{split} selection")
    shuffle = (split == "train") if shuffle is None else shuffle
    gen = torch.Generator().manual_seed(int(cfg.seed))
    kw: dict = {"shuffle": shuffle}
    if split == "train" and ds.completion:
        # its own generator: DataLoader draws worker base seeds from `gen` on every pass without
        # persistent workers but only on the first one with them, which would shift a shared stream
        sgen = torch.Generator().manual_seed(int(cfg.seed))
        kw = {"sampler": VisitSampler(len(ds), shuffle, sgen)}
    return DataLoader(ds, batch_size=batch_size or cfg.train.batch_size, collate_fn=collate,
                      num_workers=cfg.data.workers, generator=gen, persistent_workers=cfg.data.workers > 0, **kw)


def dataset_info(cfg: ExperimentConfig) -> DatasetInfo:
    """Dimensions, classes and sizes of the configured dataset (after selection), and the train file's sha256."""
    train, test = open_split(cfg, "train"), open_split(cfg, "test")
    rows_tr, names, _ = _rows(cfg, train, "train")
    rows_te, _, _ = _rows(cfg, test, "test")
    return DatasetInfo(in_dim=train.dim, num_classes=len(names), class_names=names, n_train=len(rows_tr),
                       n_test=len(rows_te), sha256=str(train.meta.get("sha256", "")))
