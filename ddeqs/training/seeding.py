"""Seeds, RNG states, torch determinism and device choice for training and evaluation.

Each epoch reseeds every generator from ``(seed, epoch)`` (:func:`seed_epoch`), so an epoch's
randomness (shuffling, Z0 draws, dropout) does not depend on what ran before it: a run resumed
from an epoch checkpoint replays exactly the epochs an uninterrupted run would have. The full
RNG states are still saved in checkpoints (:func:`rng_state`) for anything that draws between
epochs.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from ddeqs.config import ExperimentConfig, TrainConfig

__all__ = ["configure_torch", "derive_seed", "resolve_device", "rng_state", "seed_all", "seed_epoch", "set_rng_state"]


def derive_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed from ``seed`` and integers (e.g. the epoch); stable across runs and platforms."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(p) & 0xFFFFFFFF for p in parts)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def seed_epoch(seed: int, epoch: int, loader: Any = None) -> None:
    """Reseed everything for ``epoch`` (0-based), including the loader's sampler generator if it has one."""
    s = derive_seed(seed, 1, epoch)
    seed_all(s)
    for gen in _loader_generators(loader):
        gen.manual_seed(s)


def _loader_generators(loader: Any) -> list[torch.Generator]:
    gens = []
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens


def rng_state(loader: Any = None) -> dict[str, Any]:
    """Snapshot of python, numpy, torch (and CUDA) and loader-generator RNG states (picklable)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "loader": [g.get_state() for g in _loader_generators(loader)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader: Any = None) -> None:
    """Restore a snapshot taken by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for g, s in zip(_loader_generators(loader), state.get("loader", [])):
        g.set_state(s)


def configure_torch(settings: TrainConfig | ExperimentConfig) -> None:
    """Threads and determinism from ``train.threads`` / ``train.deterministic`` (``cfg.train``, or a whole
    ExperimentConfig); call once, before building the model."""
    t = settings.train if isinstance(settings, ExperimentConfig) else settings
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; otherwise ``torch.device(name)`` (checked)."""
    from ddeqs.errors import DDEQError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise DDEQError(f"train.device={name!r} is not a device ({err}); use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DDEQError(f"train.device={name!r} but CUDA is not available here; use train.device=auto or cpu")
    return dev


def device_label(device: torch.device) -> str:
    """``'cpu'`` or the GPU's name (metrics.json ``device``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type
