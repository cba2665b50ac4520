"""The dataset registry: the one list of datasets, their facts, and how to fetch and prepare them.

Each :class:`DatasetSpec` states a dataset's name, point dimension, number of classes, label in the
paper tables, the role of the run names it plays (``mnist`` / ``modelnet``), whether it is one of
the paper's (paper-sized) datasets or an embedded stand-in, its completion defaults (partial radius,
classes) and the functions that fetch its raw files and read them for preparation. Everything else
(the config's ``data.dataset`` check and the schema's enum, the CLI choices, the paper labels and
roles, the bench problems, the pipeline's paths) derives from :data:`DATASETS`.

This module is light to import (no numpy, torch or open3d): :mod:`ddeqs.config` imports it, and the
fetch / prepare implementations are imported inside the functions that use them. Prepared splits
live at ``<root>/<name>/{train,test}.{npz,json}`` (:func:`split_path`, :func:`processed_files`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ddeqs.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

SPLITS = ("train", "test")
ORDER_SEED = 0  # prepared splits are stored in one fixed random order, so "first n" mixes classes
RAW_ROOT = "data/raw"  # default folder of downloads
PROCESSED_ROOT = "data/processed"  # default folder of prepared splits
# Paper §4.1: ModelNet40-s completion uses these 8 classes (2,868 samples); shapes has exactly these.
COMPLETION_CLASSES_3D = ("airplane", "bathtub", "bowl", "car", "chair", "cone", "toilet", "vase")

#: ``split -> (clouds, labels, source names, info)``: one raw split read for preparation
RawLoader = Callable[[str], "tuple[list[np.ndarray], list[int], list[str], dict]"]


# -- fetch and raw-read functions (implementations imported when called) ------------------------

def _fetch_mnist_pc(raw_root: Path, progress: bool, source: str) -> str:
    from ddeqs.data import mnist_pc

    return mnist_pc.fetch(raw_root, source=source, progress=progress)


def _fetch_modelnet(raw_root: Path, progress: bool, source: str) -> str:
    from ddeqs.data import modelnet

    return modelnet.fetch(raw_root, progress=progress)


def _raw_digits(raw_root: Path, params: dict[str, Any], workers: int, progress: bool) -> RawLoader:
    from ddeqs.data import digits

    params["class_names"] = digits.CLASS_NAMES
    return digits.load_split


def _raw_mnist_pc(raw_root: Path, params: dict[str, Any], workers: int, progress: bool) -> RawLoader:
    from ddeqs.data import mnist_pc

    params["class_names"] = mnist_pc.CLASS_NAMES
    return lambda split: mnist_pc.load_raw_split(raw_root, split)


def _mesh_loader(name: str, root: Path, source: dict[str, Any], params: dict[str, Any], workers: int,
                 progress: bool) -> RawLoader:
    """Raw reader of a ModelNet40-layout mesh folder ``root`` (voxelized by :mod:`ddeqs.data.meshes`)."""
    from ddeqs.data import meshes

    classes, files = meshes.list_meshes(root)
    params["class_names"] = classes

    def load(split: str):
        clouds, labels, names, skipped = meshes.process_split(
            root, files[split], params["max_points"], params["min_points"], workers, progress, f"{name} {split}")
        return clouds, labels, names, {**source, "skipped": skipped}

    return load


def _raw_shapes(raw_root: Path, params: dict[str, Any], workers: int, progress: bool) -> RawLoader:
    from ddeqs.data import shapes

    folder, _ = shapes.generate(raw_root / "shapes", params["per_class_train"], params["per_class_test"])
    source = {"source": "procedural meshes (ddeqs.data.shapes)", "mesh_folder": "shapes"}
    return _mesh_loader("shapes", folder, source, params, workers, progress)


def _raw_modelnet(raw_root: Path, params: dict[str, Any], workers: int, progress: bool) -> RawLoader:
    from ddeqs.data import modelnet

    found = modelnet.layout_root(raw_root)
    if found is None:
        raise DataError(f"ModelNet40 not found under {modelnet.raw_dir(raw_root)}; run 'ddeqs data fetch "
                        f"modelnet40-s' or place ModelNet40.zip (or its extracted ModelNet40/ folder) there")
    source = {"source": modelnet.URL, "source_sha256": modelnet.SHA256,
              "mesh_folder": found.relative_to(raw_root).as_posix()}
    return _mesh_loader("modelnet40-s", found, source, params, workers, progress)


def _shapes_params(per_class_train: int, per_class_test: int) -> dict[str, Any]:
    from ddeqs.data.shapes import GENERATOR_VERSION

    # the generator version too: a processed split of older meshes is prepared again
    return {"per_class_train": per_class_train, "per_class_test": per_class_test,
            "generator_version": GENERATOR_VERSION}


# -- the registry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetSpec:
    """One dataset and every fact the package states about it.

    ``role``: which role of the run names it plays (``mnist``/``modelnet``, see :mod:`ddeqs.plan`);
    ``paper``: one of the paper's datasets (paper-sized; the bench problems and the ``paper``
    profile's roles), else a small stand-in; ``embedded``: ships with the package (no download);
    ``partial_radius``: completion's default removal radius (``data.partial_radius``);
    ``completion_classes``: classes a completion run keeps unless ``data.classes`` says (None: all);
    ``cls_cross_layers``: the paper's cross layers of a DDEQ classifier (App. C.1);
    ``fetch(raw_root, progress, source) -> message`` (None: nothing to download);
    ``raw(raw_root, params, workers, progress) -> RawLoader`` (sets ``params['class_names']``);
    ``prepare_params(per_class_train, per_class_test) -> dict``: its own preparation parameters.
    """

    name: str
    dim: int
    num_classes: int  # labels of the whole dataset (a run may keep fewer with data.classes)
    label: str  # how the paper tables name it
    role: str
    paper: bool
    embedded: bool
    description: str
    partial_radius: float
    raw: Callable[[Path, dict[str, Any], int, bool], RawLoader]
    fetch: Callable[[Path, bool, str], str] | None = None
    completion_classes: tuple[str, ...] | None = None
    cls_cross_layers: int = 3
    prepare_params: Callable[[int, int], dict[str, Any]] | None = None

    @property
    def table_label(self) -> str:
        """The label tables and figures print: ``MNIST-pc``, ``digits (embedded)``."""
        return f"{self.label} (embedded)" if self.embedded else self.label


# Paper: partial radius 0.6 for MNIST-pc (2-D), 0.8 for ModelNet40-s (3-D); one cross layer for
# MNIST-pc classification (App. C.1). The embedded stand-ins take their role's settings.
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("mnist-pc", 2, 10, "MNIST-pc", "mnist", True, False,
                "MNIST point clouds (Kaggle cristiangarcia/pointcloudmnist2d)", 0.6, _raw_mnist_pc,
                fetch=_fetch_mnist_pc, cls_cross_layers=1),
    DatasetSpec("modelnet40-s", 3, 40, "ModelNet40-s", "modelnet", True, False,
                "ModelNet40 mesh vertices voxelized to <= 800 points", 0.8, _raw_modelnet,
                fetch=_fetch_modelnet, completion_classes=COMPLETION_CLASSES_3D),
    DatasetSpec("digits", 2, 10, "digits", "mnist", False, True,
                "scikit-learn handwritten digits as 2-D point clouds (embedded)", 0.6, _raw_digits,
                cls_cross_layers=1),
    DatasetSpec("shapes", 3, 8, "shapes", "modelnet", False, True,
                "procedural .off meshes in the ModelNet40 layout (embedded)", 0.8, _raw_shapes,
                completion_classes=COMPLETION_CLASSES_3D, prepare_params=_shapes_params),
)}


def spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (DataError listing the registered names if unknown)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_dim(name: str) -> int:
    """Point dimension ``d`` of dataset ``name`` (2 or 3)."""
    return spec(name).dim


def paper_datasets() -> list[str]:
    """Names of the paper's (paper-sized) datasets, in registry order."""
    return [n for n, s in DATASETS.items() if s.paper]


def role_datasets(paper: bool) -> dict[str, str]:
    """``{role: dataset}`` of the paper's datasets (``paper``) or of their stand-ins."""
    return {s.role: s.name for s in DATASETS.values() if s.paper == paper}


def paper_counterpart(name: str) -> DatasetSpec:
    """The paper dataset playing the same role as ``name`` (itself for a paper dataset)."""
    role = spec(name).role
    return next(s for s in DATASETS.values() if s.paper and s.role == role)


def dataset_label(name: str) -> str:
    """How tables and figures name dataset ``name`` (the name itself if it is not registered)."""
    return DATASETS[name].table_label if name in DATASETS else name


def dataset_dir(root: str | Path, name: str) -> Path:
    """``<root>/<name>``: the folder of dataset ``name``'s prepared splits."""
    return Path(root) / name


def split_path(root: str | Path, name: str, split: str) -> Path:
    """``<root>/<name>/<split>`` (without suffix)."""
    return dataset_dir(root, name) / split


def processed_files(root: str | Path, name: str, suffix: str = ".npz") -> list[Path]:
    """``[<root>/<name>/train<suffix>, <root>/<name>/test<suffix>]``: the prepared files of ``name``."""
    return [split_path(root, name, s).with_suffix(suffix) for s in SPLITS]


def fetch_dataset(name: str, raw_root: str | Path = RAW_ROOT, progress: bool = True, source: str = "auto") -> str:
    """Download (or find) the raw files of ``name``; returns a sentence saying what was done."""
    sp = spec(name)
    if sp.fetch is None:
        return f"{name}: embedded dataset, nothing to download"
    return sp.fetch(Path(raw_root), progress, source)


def prepare_dataset(name: str, raw_root: str | Path = RAW_ROOT, root: str | Path = PROCESSED_ROOT,
                    max_points: int = 800, min_points: int = 500, workers: int = 1, per_class_train: int = 40,
                    per_class_test: int = 25, force: bool = False, progress: bool = True) -> list[str]:
    """Prepare both splits of ``name`` (idempotent); returns one message per split.

    2-D clouds are normalized (zero mean, unit variance per coordinate); meshes go
    through :mod:`ddeqs.data.meshes`. A split whose files are complete and were made
    with the same parameters is left as it is unless ``force``.
    """
    import numpy as np

    from ddeqs.data.store import pack, read_sidecar, save_split, split_complete
    from ddeqs.data.voxelize import normalize

    sp = spec(name)
    raw_root = Path(raw_root)
    params: dict[str, Any] = {"dataset": name}
    if sp.dim == 3:
        if not 1 <= min_points <= max_points:
            raise DataError(f"--min-points {min_points} must be between 1 and --max-points {max_points}")
        params.update(max_points=max_points, min_points=min_points)
    if sp.prepare_params is not None:
        params.update(sp.prepare_params(per_class_train, per_class_test))
    messages, todo = [], []
    for split in SPLITS:
        path = split_path(root, name, split)
        if not force and split_complete(path) and read_sidecar(path).get("params") == params:
            messages.append(f"{path}.npz is complete (same parameters); nothing to do")
        else:
            todo.append(split)
    if not todo:
        return messages
    load = sp.raw(raw_root, params, workers, progress)
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
