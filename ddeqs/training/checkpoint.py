"""Epoch checkpoints in the run's work folder, for resuming killed trainings.

A checkpoint (``<work>/last.pt``) holds the model, optimizer, scheduler and AMP scaler
states, every RNG state, the finished epoch count, the history and the diagnostics so far,
and a fingerprint of the configuration: a checkpoint written for a different configuration
is never resumed (training starts over and says so). Checkpoints load with
``torch.load(weights_only=True)``: RNG states are stored as tensors and plain lists.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddeqs.config import ExperimentConfig, omit_late_defaults
from ddeqs.errors import DDEQError
from ddeqs.training.runfolder import write_torch

__all__ = ["CHECKPOINT", "config_fingerprint", "load_checkpoint", "pack_rng", "save_checkpoint", "unpack_rng"]

CHECKPOINT = "last.pt"
#: what a resume reads (session.resume)
REQUIRED_KEYS = ("fingerprint", "epoch", "step", "model", "optimizer", "scheduler", "scaler", "rng", "diagnostics",
                 "history", "epoch_seconds")
#: keys that do not change what is computed (display, bookkeeping): ignored by the fingerprint.
#: ``solver.preset`` only names where the solver fields came from; the fields themselves count.
#: ``solver.cuda_graph`` changes how the inner loop is launched, not its values; ``solver.attention`` picks an
#: attention kernel giving the same values up to float rounding (its "auto" follows the fastest kernel measured).
_NEUTRAL = ("train.quiet", "tracking.", "solver.preset", "solver.cuda_graph", "solver.attention")


def config_fingerprint(cfg: ExperimentConfig) -> str:
    """sha256 of the configuration fields that affect the trained model."""
    flat = {k: v for k, v in omit_late_defaults(cfg.flat()).items() if not any(k == n or k.startswith(n) for n in _NEUTRAL)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


def pack_rng(state: dict[str, Any]) -> dict[str, Any]:
    """RNG snapshot (:func:`ddeqs.training.seeding.rng_state`) in weights_only-loadable types."""
    kind, keys, pos, has_gauss, cached = state["numpy"]
    out = dict(state)
    out["numpy"] = [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]
    version, internal, gauss = state["python"]
    out["python"] = [version, list(internal), gauss]
    return out


def unpack_rng(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`pack_rng`."""
    out = dict(state)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    out["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    version, internal, gauss = state["python"]
    out["python"] = (version, tuple(internal), gauss)
    return out


def save_checkpoint(work_dir: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (see module doc) to ``<work_dir>/last.pt``."""
    return write_torch(Path(work_dir) / CHECKPOINT, state)


def load_checkpoint(work_dir: str | Path, fingerprint: str, log: Any = print) -> dict[str, Any] | None:
    """The checkpoint in ``work_dir`` if it exists and matches ``fingerprint``, else None (with a note)."""
    path = Path(work_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # Python objects in it: never loaded unsafely, never resumed
        log(f"ddeqs: checkpoint {path} is not a plain weights file (it holds Python objects the safe loader "
            f"refuses; do not load it with weights_only=False); ignoring it, starting from epoch 0")
        return None
    except Exception as err:  # a corrupt file (e.g. disk full): start over, keep going
        log(f"ddeqs: checkpoint {path} is unreadable ({type(err).__name__}: {str(err)[:200]}); starting from epoch 0")
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        log(f"ddeqs: checkpoint {path} was written for a different configuration; starting from epoch 0")
        return None
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise DDEQError(
            f"checkpoint {path} matches this configuration but lacks {', '.join(missing)} (written by another "
            f"version of ddeqs or damaged); delete it to train from epoch 0, or resume with the version that wrote it"
        )
    return state


