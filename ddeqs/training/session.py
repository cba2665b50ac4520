"""A training in four phases: :func:`setup` -> :func:`resume` -> :func:`fit` -> :func:`finish`.

* :func:`setup`: torch settings, device and data (:mod:`ddeqs.training.runtime`, shared with
  evaluation), seeding, loaders, model, optimiser, scheduler, AMP scaler, diagnostics -> :class:`TrainState`;
* :func:`resume`: restores the state from ``<work>/last.pt`` when it was written for this configuration;
* :func:`fit`: the epoch and step loop (optionally the untrained model's evaluation first), calling the
  hooks of :mod:`ddeqs.training.callbacks` (progress, MLflow, diagnostics, checkpoints);
* :func:`finish`: the final test evaluation and the run folder (atomic; ``metrics.json`` last).

:func:`fit_and_finish` runs the last two and closes the callbacks with the run's status;
:func:`ddeqs.training.train_run` strings everything together under the run-folder lock.
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import yaml

from ddeqs.config import ExperimentConfig
from ddeqs.errors import BadCloudError, DDEQError
from ddeqs.models import count_parameters
from ddeqs.record import Epoch, History, Metrics
from ddeqs.training.badcloud import locate_bad_clouds
from ddeqs.training.callbacks import Callback, FinishedRun, StepInfo
from ddeqs.training.checkpoint import CHECKPOINT, config_fingerprint, load_checkpoint, unpack_rng
from ddeqs.training.diagnostics import Diagnostics
from ddeqs.training.evaluate import N_SAMPLES, autocast, evaluate_model, write_eval_artifacts
from ddeqs.training.losses import per_sample_loss
from ddeqs.training.optim import make_optimizer, make_scheduler, steps_per_batch
from ddeqs.training.runfolder import RUN_SIDE_FILES, write_json, write_text, write_torch
import ddeqs.training.runtime as runtime
from ddeqs.training.seeding import device_label, seed_all, seed_epoch, set_rng_state
from ddeqs.training.source import DataSource

__all__ = ["TrainState", "clean_work", "finish", "fit", "fit_and_finish", "resume", "setup", "stderr_log", "write_run_files"]


def stderr_log(msg: str) -> None:
    """Default ``log`` of a training: the line on stderr, flushed."""
    print(msg, file=sys.stderr, flush=True)


@dataclass
class TrainState:
    """Everything a training holds. ``epoch``: finished epochs (where :func:`fit` starts); ``step``:
    optimizer steps so far; ``history``: history.json rows; ``epoch_seconds``: training-loop seconds
    per finished epoch; ``resumed``: restored from a checkpoint; ``mlflow_*``: the MLflow run (set
    by :class:`~ddeqs.training.callbacks.TrackingCallback`, restored by :func:`resume`)."""

    cfg: ExperimentConfig
    out_dir: Path
    work: Path
    run_name: str
    quiet: bool
    log: Callable[[str], None]
    device: torch.device
    amp: bool
    source: DataSource
    model: nn.Module
    n_params: int
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    per_step: bool
    train_loader: Any
    test_loader: Any
    steps_per_epoch: int
    diag: Diagnostics
    fingerprint: str
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    init_metrics: dict[str, Any] | None = None
    resumed: bool = False
    mlflow_run_id: str | None = None
    mlflow_experiment_id: str | None = None

    @property
    def total_steps(self) -> int:
        return self.cfg.train.epochs * self.steps_per_epoch


def _batches_per_epoch(loader: Any, n_train: int, batch_size: int) -> int:
    """Batches of one training epoch: ``len(loader)`` when it has one, else ``ceil(n_train / batch_size)`` (≥ 1)."""
    try:
        return max(1, len(loader))
    except TypeError:
        return max(1, math.ceil(int(n_train or 0) / batch_size))


def setup(
    cfg: ExperimentConfig, out_dir: str | Path, work: str | Path, *, source: DataSource | None = None,
    quiet: bool | None = None, log: Callable[[str], None] = stderr_log,
) -> TrainState:
    """A fresh training of ``cfg`` (model seeded by ``cfg.seed``) writing to ``out_dir``, checkpointing to ``work``.

    ``source``: data (default: the prepared dataset of ``cfg.data``); ``quiet``: no progress bars
    (default ``train.quiet``); ``log``: where messages go.
    """
    out_dir = Path(out_dir)
    t = cfg.train
    rt = runtime.open_runtime(cfg, source)  # shared with evaluation (load_run_model)
    device = rt.device
    if t.amp and device.type != "cuda":
        log("ddeqs: train.amp is for GPUs; training in float32 on CPU")
    info = rt.source.info
    seed_all(cfg.seed)
    model = runtime.new_model(cfg, info).to(device)
    optimizer = make_optimizer(t, model)
    amp = t.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp and not torch.cuda.is_bf16_supported())
    train_loader = rt.source.loader("train", shuffle=True, batch_size=t.batch_size)
    test_loader = rt.source.loader("test", shuffle=False, batch_size=t.batch_size)
    steps_per_epoch = _batches_per_epoch(train_loader, getattr(info, "n_train", 0), t.batch_size)
    return TrainState(
        cfg=cfg, out_dir=out_dir, work=Path(work), run_name=cfg.tracking.run_name or out_dir.resolve().name,
        quiet=t.quiet if quiet is None else quiet, log=log, device=device, amp=amp, source=rt.source, model=model,
        n_params=count_parameters(model), optimizer=optimizer,
        scheduler=make_scheduler(t, optimizer, steps_per_epoch), scaler=scaler, per_step=steps_per_batch(t),
        train_loader=train_loader, test_loader=test_loader, steps_per_epoch=steps_per_epoch,
        diag=Diagnostics(t.diagnostics_every if cfg.model.name == "ddeq" else 0, seed=cfg.seed),
        fingerprint=config_fingerprint(cfg),
    )


def resume(state: TrainState) -> bool:
    """Restore ``state`` from ``<state.work>/last.pt`` if it was written for this configuration
    (:func:`ddeqs.training.checkpoint.load_checkpoint` says why not otherwise); True when resumed."""
    ckpt = load_checkpoint(state.work, state.fingerprint, state.log)
    if ckpt is None:
        return False
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    state.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(unpack_rng(ckpt["rng"]), state.train_loader)
    state.diag.load_state_dict(ckpt["diagnostics"])
    state.epoch, state.step = int(ckpt["epoch"]), int(ckpt["step"])
    state.history, state.epoch_seconds = list(ckpt["history"]), list(ckpt["epoch_seconds"])
    state.mlflow_run_id = ckpt.get("mlflow_run_id")
    state.init_metrics = ckpt.get("init_metrics")
    state.resumed = True
    state.log(f"ddeqs: resuming {state.run_name} from its checkpoint after epoch {state.epoch} of "
              f"{state.cfg.train.epochs} ({state.work})")
    return True


def _solver_stats(out: Any) -> tuple[float | None, float | None]:
    s = getattr(out, "solver", None) or {}
    iters = s.get("iters")
    res = s.get("rel_residual")
    if isinstance(res, torch.Tensor):
        res = float(res.detach().float().mean()) if res.numel() else None
    return (float(iters) if iters is not None else None), (float(res) if res is not None else None)


def _mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def _test_metrics(state: TrainState, **kw: Any) -> Any:
    return evaluate_model(state.model, state.test_loader, state.cfg, state.device, quiet=state.quiet, **kw)


def fit(state: TrainState, callbacks: Sequence[Callback] = ()) -> None:
    """Train from epoch ``state.epoch`` to ``train.epochs``; the untrained model is evaluated first with
    ``train.eval_init`` (once: a resumed run keeps its value). Each epoch reseeds every RNG from
    ``(seed, epoch)``, and every ``train.eval_every`` epochs (but the last) the test metrics join its row."""
    if state.cfg.train.eval_init and state.init_metrics is None:
        # the untrained model on the test split; evaluation draws its randomness from a forked RNG,
        # so training (and a resumed training) is the same with or without this
        state.init_metrics = _test_metrics(state, desc="test (init)").metrics
        for cb in callbacks:
            cb.on_init_evaluated(state, state.init_metrics)
    for epoch in range(state.epoch, state.cfg.train.epochs):
        _fit_epoch(state, epoch, callbacks)
    for cb in callbacks:
        cb.on_fit_end(state)


def _fit_epoch(state: TrainState, epoch: int, callbacks: Sequence[Callback]) -> None:
    cfg, model, optimizer, device = state.cfg, state.model, state.optimizer, state.device
    epochs = cfg.train.epochs
    seed_epoch(cfg.seed, epoch, state.train_loader)
    model.train()
    lr = optimizer.param_groups[0]["lr"]
    tot_loss, tot_n = 0.0, 0
    iters: list[float | None] = []
    resid: list[float | None] = []
    t0 = time.perf_counter()
    for cb in callbacks:
        cb.on_epoch_start(state, epoch)
    for batch in state.train_loader:
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, state.amp):
            try:
                out = model(batch.points, batch.mask)
            except BadCloudError as err:
                raise locate_bad_clouds(err, batch, cfg, "train") from None
        losses = per_sample_loss(cfg, out, batch, progress=state.step / state.total_steps)
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise DDEQError(
                f"training loss became {float(loss)} at epoch {epoch + 1}, step {state.step + 1} of run "
                f"{state.run_name}; lower train.lr (now {lr:g}) or check the data. The checkpoint of the last "
                f"finished epoch in {state.work} is kept: rerun the same command to resume from it after fixing "
                f"the cause."
            )
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(optimizer)
        state.step += 1
        it, res = _solver_stats(out)
        info = StepInfo(epoch=epoch, step=state.step, batch=batch, out=out, loss=float(loss.detach()),
                        inner_iters=it, inner_residual=res)
        for cb in callbacks:
            cb.on_backward(state, info)
        state.scaler.step(optimizer)
        state.scaler.update()
        if state.per_step:
            state.scheduler.step()
        tot_loss += float(losses.detach().sum())
        tot_n += len(batch)
        iters.append(it)
        resid.append(res)
        for cb in callbacks:
            cb.on_step(state, info)
    if tot_n == 0:
        raise DDEQError(f"the training split of {cfg.data.dataset} gave no batch; check data.max_train")
    if not state.per_step:
        state.scheduler.step()
    seconds = time.perf_counter() - t0
    state.epoch_seconds.append(seconds)
    every = cfg.train.eval_every
    tested = {}
    if every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
        tested = {f"test_{k}": v for k, v in _test_metrics(state, desc="test").metrics.items() if k != "n"}
    # history.json's row (ddeqs.record.Epoch); kept as a plain dict in the checkpoint
    entry = Epoch(epoch=epoch, train_loss=tot_loss / tot_n, lr=lr, seconds=seconds,
                  inner_iters=_mean(iters), inner_residual=_mean(resid), **tested).to_json()
    state.history.append(entry)
    state.epoch = epoch + 1
    for cb in callbacks:
        cb.on_epoch_end(state, entry)


def write_run_files(out_dir: Path, cfg: ExperimentConfig, model: nn.Module) -> None:
    """``config.yaml`` and ``model.pt`` (CPU state dict, loadable with ``weights_only=True``)."""
    write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    write_torch(out_dir / "model.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})


def finish(state: TrainState, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Evaluate the trained model on the test split and write the run folder; returns metrics.json's content.

    metrics.json marks a finished run: it is removed first and written last, and side files of an
    earlier run in the folder that this run did not write are removed. Then ``on_finish`` of each callback.
    """
    cfg, out_dir, info, history = state.cfg, state.out_dir, state.source.info, state.history
    result = _test_metrics(
        state, embeddings_batches=cfg.train.save_embeddings if (cfg.model.name == "ddeq" and cfg.task == "classification") else 0,
        n_samples=N_SAMPLES if cfg.task == "completion" else 0, desc="test",
    )
    if history:
        history[-1].update({f"test_{k}": v for k, v in result.metrics.items() if k != "n"})
    metrics = Metrics(
        name=state.run_name, task=cfg.task, model=cfg.model.name, dataset=cfg.data.dataset,
        n_params=state.n_params, device=device_label(state.device), epochs=cfg.train.epochs,
        seconds_per_epoch=statistics.median(state.epoch_seconds) if state.epoch_seconds else None,
        epoch_seconds=state.epoch_seconds, mlflow_run_id=state.mlflow_run_id,
        mlflow_experiment_id=state.mlflow_experiment_id,
        dataset_sha256=getattr(info, "sha256", None), config_flat=cfg.flat(),
        train={"loss": history[-1]["train_loss"] if history else None}, test=result.metrics,
        init=state.init_metrics,
    ).to_json()
    # metrics.json marks a finished run: it goes first and comes back last, and side files of an
    # earlier run in this folder that this run did not write are removed, so that figures are
    # never drawn from an old run next to new metrics
    (out_dir / "metrics.json").unlink(missing_ok=True)
    write_run_files(out_dir, cfg, state.model)
    write_json(out_dir / "history.json", History(epochs=history).to_json())
    written = write_eval_artifacts(out_dir, result)
    if state.diag.enabled:
        written.append(write_json(out_dir / "diagnostics.json", state.diag.series))
    for stale in RUN_SIDE_FILES:
        if out_dir / stale not in written:
            (out_dir / stale).unlink(missing_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    run = FinishedRun(result=result, metrics=metrics, written=written)
    for cb in callbacks:
        cb.on_finish(state, run)
    return metrics


def fit_and_finish(state: TrainState, callbacks: Sequence[Callback]) -> dict[str, Any]:
    """:func:`fit` then :func:`finish`; every callback is closed with ``FINISHED``, ``FAILED`` (an
    error) or ``KILLED`` (Ctrl-C), and the error is raised again."""
    status = "FAILED"
    try:
        fit(state, callbacks)
        metrics = finish(state, callbacks)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        for cb in callbacks:
            cb.close(status)
    return metrics


def clean_work(work: Path, keep_work: bool) -> None:
    """Remove the checkpoint of a finished run (unless ``keep_work``) and the work folder once empty."""
    if not keep_work:
        (work / CHECKPOINT).unlink(missing_ok=True)
        if work.is_dir() and not any(work.iterdir()):
            shutil.rmtree(work, ignore_errors=True)
