"""The four datasets: how to fetch them and how to prepare ``<root>/<name>/{train,test}.{npz,json}``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ddeqs.errors import DataError

SPLITS = ("train", "test")
ORDER_SEED = 0  # prepared splits are stored in one fixed random order, so "first n" mixes classes


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    dim: int
    embedded: bool
    description: str
    num_classes: int  # labels of the whole dataset (a run may keep fewer with data.classes)


DATASETS: dict[str, DatasetSpec] = {
    "mnist-pc": DatasetSpec("mnist-pc", 2, False, "MNIST point clouds (Kaggle cristiangarcia/pointcloudmnist2d)", 10),
    "modelnet40-s": DatasetSpec("modelnet40-s", 3, False, "ModelNet40 mesh vertices voxelized to <= 800 points", 40),
    "digits": DatasetSpec("digits", 2, True, "scikit-learn handwritten digits as 2-D point clouds (embedded)", 10),
    "shapes": DatasetSpec("shapes", 3, True, "procedural .off meshes in the ModelNet40 layout (embedded)", 8),
}


def spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def fetch_dataset(name: str, raw_root: str | Path = "data/raw", progress: bool = True, source: str = "auto") -> str:
    """Download (or find) the raw files of ``name``; returns a sentence saying what was done."""
    spec(name)
    if name == "mnist-pc":
        from ddeqs.data import mnist_pc

        return mnist_pc.fetch(raw_root, source=source, progress=progress)
    if name == "modelnet40-s":
        from ddeqs.data import modelnet

        return modelnet.fetch(raw_root, progress=progress)
    return f"{name}: embedded dataset, nothing to download"


def split_path(root: str | Path, name: str, split: str) -> Path:
    """``<root>/<name>/<split>`` (without suffix)."""
    return Path(root) / name / split


def _raw_loader(name: str, raw_root: Path, params: dict[str, Any], workers: int, progress: bool
                ) -> Callable[[str], tuple[list[np.ndarray], list[int], list[str], dict]]:
    """A function ``split -> (clouds, labels, names, info)`` plus ``params['class_names']`` set."""
    if name == "digits":
        from ddeqs.data import digits

        params["class_names"] = digits.CLASS_NAMES
        return digits.load_split
    if name == "mnist-pc":
        from ddeqs.data import mnist_pc

        params["class_names"] = mnist_pc.CLASS_NAMES
        return lambda split: mnist_pc.load_raw_split(raw_root, split)

    from ddeqs.data import meshes

    if name == "shapes":
        from ddeqs.data import shapes

        folder, _ = shapes.generate(raw_root / "shapes", params["per_class_train"], params["per_class_test"])
        root = folder
        source = {"source": "procedural meshes (ddeqs.data.shapes)", "mesh_folder": "shapes"}
    else:
        from ddeqs.data import modelnet

        found = modelnet.layout_root(raw_root)
        if found is None:
            raise DataError(f"ModelNet40 not found under {modelnet.raw_dir(raw_root)}; run 'ddeqs data fetch "
                            f"modelnet40-s' or place ModelNet40.zip (or its extracted ModelNet40/ folder) there")
        root = found
        source = {"source": modelnet.URL, "source_sha256": modelnet.SHA256,
                  "mesh_folder": root.relative_to(raw_root).as_posix()}
    classes, files = meshes.list_meshes(root)
    params["class_names"] = classes

    def load(split: str):
        clouds, labels, names, skipped = meshes.process_split(
            root, files[split], params["max_points"], params["min_points"], workers, progress, f"{name} {split}")
        return clouds, labels, names, {**source, "skipped": skipped}

    return load


def prepare_dataset(name: str, raw_root: str | Path = "data/raw", root: str | Path = "data/processed",
                    max_points: int = 800, min_points: int = 500, workers: int = 1, per_class_train: int = 40,
                    per_class_test: int = 25, force: bool = False, progress: bool = True) -> list[str]:
    """Prepare both splits of ``name`` (idempotent); returns one message per split.

    2-D clouds are normalized (zero mean, unit variance per coordinate); meshes go
    through :mod:`ddeqs.data.meshes`. A split whose files are complete and were made
    with the same parameters is left as it is unless ``force``.
    """
    from ddeqs.data.store import pack, read_sidecar, save_split, split_complete
    from ddeqs.data.voxelize import normalize

    sp = spec(name)
    raw_root = Path(raw_root)
    params: dict[str, Any] = {"dataset": name}
    if sp.dim == 3:
        if not 1 <= min_points <= max_points:
            raise DataError(f"--min-points {min_points} must be between 1 and --max-points {max_points}")
        params.update(max_points=max_points, min_points=min_points)
    if name == "shapes":
        from ddeqs.data.shapes import GENERATOR_VERSION

        # the generator version too: a processed split of older meshes is prepared again
        params.update(per_class_train=per_class_train, per_class_test=per_class_test,
                      generator_version=GENERATOR_VERSION)
    messages, todo = [], []
    for split in SPLITS:
        path = split_path(root, name, split)
        if not force and split_complete(path) and read_sidecar(path).get("params") == params:
            messages.append(f"{path}.npz is complete (same parameters); nothing to do")
        else:
            todo.append(split)
    if not todo:
        return messages
    load = _raw_loader(name, raw_root, params, workers, progress)
    class_names = params.pop("class_names")
    for split in todo:
        t0 = time.perf_counter()
        clouds, labels, names, info = load(split)
        if sp.dim == 2:
            clouds = [normalize(c).astype(np.float32) for c in clouds]
        order = np.random.default_rng(ORDER_SEED).permutation(len(clouds))
        data = pack([clouds[i] for i in order], [int(labels[i]) for i in order], class_names,
                     [names[i] for i in order])
        skipped = info.pop("skipped", [])
        meta = {"dataset": name, "split": split, "params": params, **info,
                "normalization": "per cloud: zero mean, unit variance per coordinate",
                "order": f"random permutation (seed {ORDER_SEED}) of the source order",
                "n_skipped": len(skipped), "skipped": skipped,
                "seconds": round(time.perf_counter() - t0, 2)}
        path = split_path(root, name, split)
        out = save_split(path, data, meta)
        msg = f"wrote {path}.npz: {out['n']} clouds, {out['points']['min']}-{out['points']['max']} points"
        if skipped:
            msg += f"; skipped {len(skipped)} malformed input(s), listed in {path}.json"
        messages.append(msg)
    return messages
