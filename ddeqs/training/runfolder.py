"""Run-folder files (``results/<profile>/runs/<run>/``), written atomically.

Every final output is first written to a temporary file in the same folder and then moved
into place with :func:`os.replace`, so a killed process never leaves a half-written
``metrics.json`` or ``model.pt`` that a pipeline would take for finished.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ddeqs.record import to_jsonable  # one conversion for every JSON file of a run

__all__ = ["RUN_SIDE_FILES", "atomic_write", "ensure_writable", "read_json", "to_jsonable", "write_json", "write_npz", "write_torch", "write_text"]

WORK_DIR = ".work"  # undeclared pipeline output: survives Snakemake deleting outputs
#: files a run writes only for some models/tasks; a retrained run removes those it did not write
RUN_SIDE_FILES = ("embeddings.npz", "samples.npz", "diagnostics.json")


def ensure_writable(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and prove a file can be written there; a clear error otherwise.

    Called for every output location before training starts, so that a read-only or mistyped
    folder fails in a second, not after the first epoch.
    """
    from ddeqs.errors import DDEQError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DDEQError(f"{what} {folder} is a file, not a folder; pass another path or move the file away")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ddeqs-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise DDEQError(f"cannot write the {what} {folder} ({err.strerror or err}); make it writable or pass "
                        f"another folder") from None
    return folder


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path`` and ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> Path:
    text = json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def write_torch(path: str | Path, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def read_json(path: str | Path) -> Any:
    from ddeqs.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; run 'ddeqs train' for this run folder first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); delete it and re-run 'ddeqs train'") from None
