"""Evaluation of a model on a split: test metrics with standard errors, embeddings and samples.

Classification: ``accuracy`` (fraction) and ``cross_entropy``. Completion: ``mmd2`` (Riesz MMD²,
whole output cloud vs full target), ``w2_*`` (exact W2), ``ot_*`` (exact OT cost, Euclidean ground
cost) and ``chamfer`` (whole output cloud vs target):

* ``w2_free`` / ``ot_free``: the free particles (those the model generated, ``ModelOutput.free_mask``;
  PCN: all of them) vs the *missing part* of the target (``CloudBatch.missing``: the points the
  partial input lacks), "the free particles and the corresponding particles in the target" (App. D.8);
* ``w2_free_target`` / ``ot_free_target``: the free particles vs the whole target (the other reading);
* ``w2_full`` / ``ot_full``: the whole output cloud vs the whole target.

Every metric comes with ``<name>_se`` (standard error over test samples) and ``n``.

Evaluation is seeded (Z0 and free-particle draws) inside a forked RNG, so training's final
evaluation and a later ``ddeqs evaluate`` of the saved model give the same numbers (CPU) and the
training RNG is not disturbed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn

from ddeqs.batch import CloudBatch
from ddeqs.config import ExperimentConfig
from ddeqs.errors import BadCloudError
from ddeqs.metrics import chamfer, mean_and_se, ot_distance, w2
from ddeqs.mmd import riesz_mmd2
from ddeqs.training.losses import per_sample_loss
from ddeqs.training.seeding import derive_seed

__all__ = ["EvalResult", "N_SAMPLES", "evaluate_model", "evaluate_run", "load_run_model", "load_weights", "summarize", "write_eval_artifacts"]

N_SAMPLES = 16  # completion samples saved for Figures 1, 4, 5, 15


@dataclass
class EvalResult:
    """``metrics``: the metrics.json block; ``embeddings``/``samples``: arrays for the npz files (or None)."""

    metrics: dict[str, float]
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] | None = None
    samples: dict[str, np.ndarray] | None = None


def summarize(per_sample: dict[str, np.ndarray]) -> dict[str, float]:
    """``{name: mean, name_se: se, ..., n}`` from per-sample values."""
    out: dict[str, float] = {}
    n = 0
    for name, v in per_sample.items():
        out[name], out[f"{name}_se"] = mean_and_se(v)
        n = len(v)
    out["n"] = n
    return out


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA when ``enabled`` (train.amp), else a no-op."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _cat_padded(chunks: list[np.ndarray], fill: Any = 0) -> np.ndarray:
    """Concatenate ``(b_i, n_i, ...)`` arrays along 0, padding axis 1 to the largest ``n_i``."""
    if chunks[0].ndim < 2:
        return np.concatenate(chunks, 0)
    n = max(c.shape[1] for c in chunks)
    out = []
    for c in chunks:
        pad = [(0, 0)] * c.ndim
        pad[1] = (0, n - c.shape[1])
        out.append(np.pad(c, pad, constant_values=fill))
    return np.concatenate(out, 0)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    if t is None:
        return None
    t = t.detach().cpu()
    return (t.float() if t.is_floating_point() else t).numpy()


def _completion_values(out: Any, batch: CloudBatch) -> dict[str, np.ndarray]:
    pts = out.points.float()
    full = out.mask if out.mask is not None else torch.ones(pts.shape[:2], dtype=torch.bool, device=pts.device)
    free = full if out.free_mask is None else (out.free_mask & full)
    tgt, tmask = batch.target.float(), batch.target_mask
    if batch.missing is None:
        from ddeqs.errors import DataError

        raise DataError("completion batches must carry the missing part of the target (CloudBatch.missing / "
                        "missing_mask: the points the partial input lacks) for the free-particle metrics")
    miss, mmask = batch.missing.float(), batch.missing_mask
    return {
        "mmd2": _np(riesz_mmd2(pts, full, tgt, tmask)),
        "w2_free": w2(pts, free, miss, mmask).numpy(),
        "w2_free_target": w2(pts, free, tgt, tmask).numpy(),
        "w2_full": w2(pts, full, tgt, tmask).numpy(),
        "ot_free": ot_distance(pts, free, miss, mmask).numpy(),
        "ot_free_target": ot_distance(pts, free, tgt, tmask).numpy(),
        "ot_full": ot_distance(pts, full, tgt, tmask).numpy(),
        "chamfer": _np(chamfer(pts, full, tgt, tmask)),
    }


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Iterable[CloudBatch],
    cfg: ExperimentConfig,
    device: torch.device,
    *,
    embeddings_batches: int = 0,
    n_samples: int = 0,
    quiet: bool = True,
    desc: str = "evaluate",
) -> EvalResult:
    """Evaluate ``model`` (put in eval mode, restored afterwards) on every batch of ``loader``.

    ``embeddings_batches``: keep Z*, F(Z*), z_mask, pooled embedding, labels and the input clouds
    (``inputs`` (n, N, d) zero-padded to the largest cloud, ``input_mask`` (n, N)) of that many first
    batches (classification DDEQ). ``n_samples``: keep the first that many completion samples
    (inputs, outputs, free_mask, targets, missing (the target points the input lacks), labels, index).
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    values: dict[str, list[np.ndarray]] = {}
    emb: dict[str, list[np.ndarray]] = {}
    smp: dict[str, list[np.ndarray]] = {}
    kept = 0
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(cfg.seed, 2))
            for bi, batch in enumerate(tqdm(loader, desc=desc, leave=False, disable=quiet, dynamic_ncols=True)):
                batch = batch.to(device)
                with autocast(device, cfg.train.amp):
                    try:
                        out = model(batch.points, batch.mask)
                    except BadCloudError as err:
                        from ddeqs.training.badcloud import locate_bad_clouds

                        raise locate_bad_clouds(err, batch, cfg, desc if desc in ("train", "test") else "test") from None
                if cfg.task == "classification":
                    logits = out.logits.float()
                    vals = {
                        "accuracy": _np((logits.argmax(-1) == batch.labels.long()).double()),
                        "cross_entropy": _np(per_sample_loss(cfg, out, batch)),
                    }
                    if bi < embeddings_batches and out.z_star is not None:
                        for k, v in (("z_star", out.z_star), ("fz_star", out.fz_star), ("z_mask", out.z_mask),
                                     ("pooled", out.embedding), ("labels", batch.labels),
                                     ("inputs", batch.points), ("input_mask", batch.mask)):
                            emb.setdefault(k, []).append(_np(v))
                else:
                    vals = _completion_values(out, batch)
                    if kept < n_samples:
                        take = min(n_samples - kept, len(batch))
                        free = out.free_mask if out.free_mask is not None else out.mask
                        index = batch.index if batch.index is not None else torch.arange(kept, kept + len(batch))
                        labels = batch.labels if batch.labels is not None else torch.full((len(batch),), -1)
                        for k, v in (("inputs", batch.points), ("input_mask", batch.mask), ("outputs", out.points),
                                     ("output_mask", out.mask), ("free_mask", free), ("targets", batch.target),
                                     ("target_mask", batch.target_mask), ("labels", labels), ("index", index),
                                     ("missing", batch.missing), ("missing_mask", batch.missing_mask)):
                            smp.setdefault(k, []).append(_np(v[:take]))
                        kept += take
                for k, v in vals.items():
                    values.setdefault(k, []).append(np.asarray(v, dtype=np.float64).reshape(-1))
    finally:
        model.train(was_training)
    if not values:
        from ddeqs.errors import DataError

        raise DataError("evaluation split is empty: no batch came from the data loader (check data.max_test)")
    per_sample = {k: np.concatenate(v) for k, v in values.items()}
    return EvalResult(
        metrics=summarize(per_sample),
        per_sample=per_sample,
        embeddings={k: _cat_padded(v) for k, v in emb.items()} or None,
        samples={k: _cat_padded(v) for k, v in smp.items()} or None,
    )


def write_eval_artifacts(out_dir: str | Path, result: EvalResult) -> list[Path]:
    """``embeddings.npz`` / ``samples.npz`` in ``out_dir`` (atomic) for whatever ``result`` holds."""
    from ddeqs.training.runfolder import write_npz

    written = []
    if result.embeddings:
        written.append(write_npz(Path(out_dir) / "embeddings.npz", **result.embeddings))
    if result.samples:
        written.append(write_npz(Path(out_dir) / "samples.npz", **result.samples))
    return written


def load_weights(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with one clear error for a file that is not plain weights.

    A file that pickles Python objects (possibly code) is refused by torch's safe loader; torch's
    own message then advises ``weights_only=False``, which would run that code: it is not repeated.
    """
    import pickle

    from ddeqs.errors import DataError

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{path} is not a plain weights file: it contains Python objects that the safe loader refuses "
            f"(it may run code). Do not load it with weights_only=False; retrain with 'ddeqs train' or take "
            f"the file from a source you trust"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise DataError(f"{path} is not a readable PyTorch file ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:200] if str(err) else ''}); retrain with 'ddeqs train'") from None


def load_run_model(run_dir: str | Path, source: Any = None, device: str | None = None) -> tuple[ExperimentConfig, nn.Module, Any, torch.device]:
    """``(cfg, model, source, device)`` from a run folder's ``config.yaml`` and ``model.pt``."""
    from ddeqs.config import load_config
    from ddeqs.errors import DataError
    from ddeqs.training.runtime import new_model, open_runtime

    run_dir = Path(run_dir)
    for name in ("config.yaml", "model.pt"):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir / name} not found: is {run_dir} a finished run folder? Run 'ddeqs train' first")
    cfg = load_config(run_dir / "config.yaml")
    rt = open_runtime(cfg, source, device)  # the same torch settings, device and data as training
    model = new_model(cfg, rt.source.info)
    state = load_weights(run_dir / "model.pt")
    try:
        model.load_state_dict(state)
    except Exception as err:
        raise DataError(
            f"{run_dir / 'model.pt'} does not fit the model of {run_dir / 'config.yaml'} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); retrain with 'ddeqs train'"
        ) from None
    return cfg, model.to(rt.device), rt.source, rt.device


def evaluate_run(
    run_dir: str | Path, split: str = "test", *, source: Any = None, device: str | None = None,
    quiet: bool = True, track: bool = True, accept_new_data: bool = False, log: Any = None,
) -> dict[str, Any]:
    """Evaluate a finished run folder on ``split`` and write ``metrics.json[split]`` (other keys kept).

    The test split also rewrites ``embeddings.npz`` / ``samples.npz``. Logs ``<split>_*`` metrics to the
    run's MLflow run (``mlflow_run_id``) or, when that run is not in the store, to a new run. Returns the
    updated metrics.json content.

    The dataset's sha256 must equal the ``dataset_sha256`` recorded at training; otherwise a
    :class:`~ddeqs.errors.DataError` is raised before anything is written, unless
    ``accept_new_data`` (the new hash is then recorded and ``log`` says so). One process per run
    folder (:mod:`ddeqs.training.lock`).
    """
    if log is None:
        import sys

        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

    from ddeqs.training.lock import run_folder_lock

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        from ddeqs.errors import DataError

        raise DataError(f"{run_dir / 'config.yaml'} not found: run folder {run_dir} does not exist; pass a "
                        f"folder written by 'ddeqs train'")
    with run_folder_lock(run_dir, "evaluate"):
        return _evaluate_locked(run_dir, split, source=source, device=device, quiet=quiet, track=track,
                                accept_new_data=accept_new_data, log=log)


def _evaluate_locked(run_dir: Path, split: str, *, source: Any, device: str | None, quiet: bool, track: bool,
                     accept_new_data: bool, log: Any) -> dict[str, Any]:
    from ddeqs.errors import DataError
    from ddeqs.record import Metrics
    from ddeqs.training.runfolder import write_json

    cfg, model, source, dev = load_run_model(run_dir, source, device)
    path = run_dir / "metrics.json"
    old = Metrics.read(path) if path.is_file() else None
    trained_on, now = (old.dataset_sha256 if old else None), getattr(source.info, "sha256", None)
    if trained_on and now and trained_on != now:
        if not accept_new_data:
            raise DataError(
                f"the dataset {cfg.data.dataset} changed since {run_dir} was trained (sha256 {trained_on[:12]}... "
                f"then, {now[:12]}... now); nothing was written. Retrain with 'ddeqs train', or pass "
                f"--accept-new-data to evaluate on the new data and record its hash"
            )
        log(f"ddeqs: {cfg.data.dataset} changed since training (sha256 {trained_on[:12]}... -> {now[:12]}...); "
            f"evaluating on the new data and recording its hash in {path} (the old one is kept as "
            f"dataset_sha256_trained)")
    loader = source.loader(split, shuffle=False, batch_size=cfg.train.batch_size)
    is_test = split == "test"
    result = evaluate_model(
        model, loader, cfg, dev,
        embeddings_batches=cfg.train.save_embeddings if (is_test and cfg.model.name == "ddeq" and cfg.task == "classification") else 0,
        n_samples=N_SAMPLES if (is_test and cfg.task == "completion") else 0, quiet=quiet, desc=split,
    )
    record = old or Metrics(
        name=cfg.tracking.run_name or run_dir.resolve().name, task=cfg.task, model=cfg.model.name,
        dataset=cfg.data.dataset, config_flat=cfg.flat(), mlflow_run_id=None, mlflow_experiment_id=None,
    )
    if trained_on and now and trained_on != now:
        record.dataset_sha256_trained = record.dataset_sha256_trained or trained_on
    if now:
        record.dataset_sha256 = now
    # the split's block: this evaluation's metrics over the ones recorded before
    blocks = {"train": record.train, "test": record.test}
    block = {**(blocks[split] if split in blocks else (record.model_extra or {}).get(split) or {}), **result.metrics}
    record = record.model_validate({**record.to_json(), split: block})
    written = write_eval_artifacts(run_dir, result) if is_test else []
    if track:
        from ddeqs.training.runtime import open_run_tracker

        name = record.name or run_dir.resolve().name
        cfg_t = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"rule": cfg.tracking.rule or "evaluate"})})
        tracker = open_run_tracker(cfg_t, name, record.dataset_sha256, run_id=record.mlflow_run_id)
        if tracker.run_id and tracker.run_id != record.mlflow_run_id:
            tracker.log_params(cfg.flat())
            record.mlflow_run_id, record.mlflow_experiment_id = tracker.run_id, tracker.experiment_id
        tracker.log_metrics({f"{split}_{k}": v for k, v in result.metrics.items()}, step=int(record.epochs or 0))
        write_json(path, record.to_json())
        for p in [path, *written]:
            tracker.log_artifact(p)
        tracker.end("FINISHED")
    else:
        write_json(path, record.to_json())
    metrics = record.to_json()
    return metrics
