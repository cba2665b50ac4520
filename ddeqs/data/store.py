"""Processed split files: one compact ``.npz`` per split plus a JSON sidecar.

``<root>/<dataset>/<split>.npz`` holds

* ``points``  ``(total, d)`` float32: all clouds concatenated,
* ``lengths`` ``(n,)`` int64: points per cloud (cloud ``i`` is rows ``offsets[i]:offsets[i+1]``),
* ``labels``  ``(n,)`` int64 class indices into ``class_names``,
* ``class_names`` ``(C,)`` str, ``names`` ``(n,)`` str (source file or row of every cloud).

``<split>.json`` records the source checksum, the parameters, the counts, the skipped
inputs and the sha256 of the npz (checked on load).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ddeqs.errors import DataError

FORMAT_VERSION = 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_mode() -> int:
    """Permissions of a new regular file under the current umask (mkstemp alone gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class SplitArrays:
    """One prepared split: concatenated points with explicit lengths."""

    points: np.ndarray  # (total, d) float32
    lengths: np.ndarray  # (n,) int64
    labels: np.ndarray  # (n,) int64
    class_names: list[str]
    names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    def cloud(self, i: int) -> np.ndarray:
        """Cloud ``i`` as a ``(n_i, d)`` float32 view."""
        return self.points[self.offsets[i] : self.offsets[i + 1]]


def pack(clouds: Sequence[np.ndarray], labels: Sequence[int], class_names: Sequence[str],
         names: Sequence[str] | None = None) -> SplitArrays:
    """Concatenate ``(n_i, d)`` clouds into a :class:`SplitArrays`."""
    if len(clouds) == 0:
        raise DataError("no clouds to write: the split has no input cloud (empty source, or every cloud was "
                        "skipped as too small); check the raw data and the preparation options")
    d = clouds[0].shape[1]
    pts = np.concatenate([np.asarray(c, dtype=np.float32).reshape(-1, d) for c in clouds], axis=0)
    lengths = np.array([len(c) for c in clouds], dtype=np.int64)
    return SplitArrays(pts, lengths, np.asarray(labels, dtype=np.int64), list(class_names),
                       list(names) if names is not None else [str(i) for i in range(len(clouds))])


def save_split(path: str | Path, split: SplitArrays, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``<path>.npz`` and ``<path>.json`` atomically; returns the sidecar dict.

    ``path`` is the split path without suffix, e.g. ``data/processed/digits/train``.
    The npz is written first; the sidecar (which marks the split as complete) last.
    """
    path = Path(path)
    npz, sidecar = path.with_suffix(".npz"), path.with_suffix(".json")
    npz.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{npz.name}.", suffix=".tmp", dir=npz.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, points=split.points.astype(np.float32), lengths=split.lengths,
                     labels=split.labels, class_names=np.array(split.class_names, dtype=str),
                     names=np.array(split.names, dtype=str))
        digest = sha256_file(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, npz)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    lengths = split.lengths
    info = {
        "format": FORMAT_VERSION,
        "file": npz.name,
        "sha256": digest,
        "n": len(split),
        "dim": split.dim,
        "class_names": split.class_names,
        "class_counts": {c: int((split.labels == k).sum()) for k, c in enumerate(split.class_names)},
        "points": {"total": int(lengths.sum()), "min": int(lengths.min()), "median": float(np.median(lengths)),
                   "max": int(lengths.max())},
        **meta,
    }
    atomic_write_bytes(sidecar, (json.dumps(info, indent=2, default=str) + "\n").encode())
    return info


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of a split (``path`` with or without suffix)."""
    sidecar = Path(path).with_suffix(".json")
    try:
        return json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise DataError(f"{sidecar} is missing: the split is incomplete; run 'ddeqs data prepare' again") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{sidecar} is not valid JSON ({err}); delete it and run 'ddeqs data prepare' again") from None


def split_complete(path: str | Path) -> bool:
    """True when both files exist and the npz matches the sha256 recorded in the sidecar."""
    path = Path(path)
    npz, sidecar = path.with_suffix(".npz"), path.with_suffix(".json")
    if not (npz.is_file() and sidecar.is_file()):
        return False
    try:
        return read_sidecar(path).get("sha256") == sha256_file(npz)
    except DataError:
        return False


_CACHE: dict[tuple[str, int, int], SplitArrays] = {}


def load_split(path: str | Path, verify: bool = True) -> SplitArrays:
    """Read a split written by :func:`save_split` (checks the sha256 against the sidecar).

    Results are cached per process by (path, size, mtime).
    """
    path = Path(path)
    npz = path.with_suffix(".npz")
    if not npz.is_file():
        raise DataError(f"{npz} not found")
    st = npz.stat()
    key = (str(npz.resolve()), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    meta = read_sidecar(path)
    if verify and meta.get("sha256") != sha256_file(npz):
        raise DataError(f"{npz} does not match the sha256 in {npz.with_suffix('.json').name} (corrupted or "
                        "modified); delete both files and run 'ddeqs data prepare' again")
    try:
        with np.load(npz, allow_pickle=False) as z:
            split = SplitArrays(z["points"], z["lengths"].astype(np.int64), z["labels"].astype(np.int64),
                                [str(c) for c in z["class_names"]], [str(c) for c in z["names"]], meta)
    except (KeyError, ValueError, OSError) as err:
        raise DataError(f"{npz} is not a prepared split ({err}); run 'ddeqs data prepare' again") from None
    if int(split.lengths.sum()) != split.points.shape[0] or len(split.labels) != len(split.lengths):
        raise DataError(f"{npz}: lengths/labels do not match points; run 'ddeqs data prepare' again")
    _CACHE[key] = split
    return split
