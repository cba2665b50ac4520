"""Mesh datasets in the ModelNet40 layout ``<root>/<class>/{train,test}/*.off`` -> voxelized clouds.

Shared by ModelNet40-s and the embedded ``shapes``: read the vertices (strict
:mod:`ddeqs.data.offfile`), normalize, voxel-downsample to at most ``max_points``
(aiming at ``min_points``..``max_points``), normalize again. A malformed file is
skipped, counted and listed with its reason in the split's sidecar.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ddeqs.data.offfile import read_off_vertices
from ddeqs.data.voxelize import voxelize_cloud
from ddeqs.errors import DataError

SPLITS = ("train", "test")


def find_layout_root(base: str | Path, max_depth: int = 2) -> Path | None:
    """The folder below ``base`` (depth <= ``max_depth``) whose subfolders hold ``train``/``test`` folders."""
    base = Path(base)
    frontier = [base]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            if not d.is_dir():
                continue
            subs = [s for s in sorted(d.iterdir()) if s.is_dir() and not s.name.startswith((".", "__"))]
            if any((s / "train").is_dir() or (s / "test").is_dir() for s in subs):
                return d
            nxt.extend(subs)
        frontier = nxt
    return None


def list_meshes(root: str | Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """``(class_names, {split: [(file, label), ...]})``, sorted by class then file name."""
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir()
                     if d.is_dir() and any((d / s).is_dir() for s in SPLITS))
    if not classes:
        raise DataError(f"{root}: no '<class>/train' or '<class>/test' folders found (expected the ModelNet40 layout)")
    files = {s: [(f, k) for k, c in enumerate(classes) for f in sorted((root / c / s).glob("*.off"))] for s in SPLITS}
    return classes, files


def _process(args: tuple[str, int, int]) -> tuple[np.ndarray | None, float | None, str | None]:
    path, max_points, min_points = args
    try:
        cloud, voxel = voxelize_cloud(read_off_vertices(path), max_points, min_points)
        return cloud, voxel, None
    except DataError as err:
        return None, None, str(err)


def process_split(root: Path, files: list[tuple[Path, int]], max_points: int, min_points: int, workers: int = 1,
                  progress: bool = True, desc: str = "") -> tuple[list[np.ndarray], list[int], list[str], list[dict]]:
    """Voxelize every file; returns ``(clouds, labels, names, skipped)`` (names relative to ``root``)."""
    from tqdm.auto import tqdm

    jobs = [(str(f), max_points, min_points) for f, _ in files]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_process, jobs, chunksize=16), total=len(jobs), desc=desc, disable=not progress))
    else:
        results = [_process(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    clouds, labels, names, skipped = [], [], [], []
    for (f, k), (cloud, _, err) in zip(files, results):
        rel = f.relative_to(root).as_posix()
        if err is not None:
            skipped.append({"file": rel, "reason": err.replace(str(f), rel)})
            continue
        clouds.append(cloud)
        labels.append(k)
        names.append(rel)
    return clouds, labels, names, skipped
