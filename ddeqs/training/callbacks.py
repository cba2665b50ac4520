"""What a training does besides optimising, as callbacks of :func:`ddeqs.training.session.fit`.

A callback overrides any of the hooks of :class:`Callback`; :func:`~ddeqs.training.session.fit` and
:func:`~ddeqs.training.session.finish` call them in list order. :func:`default_callbacks` are those of
``ddeqs train``, in this order:

* :class:`DiagnosticsCallback`: App. D.1 diagnostics (B.10-B.12) after backward, before the optimizer step;
* :class:`TrackingCallback`: the MLflow run (params, per-step and per-epoch metrics, traces, artefacts, model);
* :class:`CheckpointCallback`: ``<work>/last.pt`` after every epoch (resume);
* :class:`ProgressCallback`: the tqdm bar of an epoch and the one-line summaries on ``log``.

The order matters at an epoch's end: metrics are tracked, then the checkpoint is written, then the
line is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ddeqs.training.checkpoint import pack_rng, save_checkpoint
from ddeqs.training.seeding import device_label, rng_state

if TYPE_CHECKING:
    from ddeqs.batch import CloudBatch
    from ddeqs.training.diagnostics import Diagnostics
    from ddeqs.training.evaluate import EvalResult
    from ddeqs.training.session import TrainState

__all__ = ["Callback", "CheckpointCallback", "DiagnosticsCallback", "FinishedRun", "ProgressCallback", "StepInfo",
           "TrackingCallback", "default_callbacks", "epoch_line", "final_line", "metric_text"]


@dataclass
class StepInfo:
    """One optimizer step: ``step`` counts steps from 1 over the whole training, ``epoch`` from 0.

    ``loss``: the batch's mean training loss; ``inner_iters`` / ``inner_residual``: the inner solver's
    iterations and mean relative residual (None for models without one); ``metrics``: further per-step
    values that callbacks add in :meth:`Callback.on_backward` (tracked at ``step``, e.g. ``b10``).
    """

    epoch: int
    step: int
    batch: CloudBatch
    out: Any
    loss: float
    inner_iters: float | None = None
    inner_residual: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class FinishedRun:
    """The written run folder: final test ``result``, ``metrics`` (metrics.json content) and the side
    files ``written`` (npz, diagnostics.json)."""

    result: EvalResult
    metrics: dict[str, Any]
    written: list[Path]


class Callback:
    """No-op hooks; subclasses override those they need. ``state``: the :class:`~ddeqs.training.session.TrainState`."""

    def on_init_evaluated(self, state: TrainState, metrics: dict[str, Any]) -> None:
        """The untrained model's test metrics (``train.eval_init``; not again after a resume)."""

    def on_epoch_start(self, state: TrainState, epoch: int) -> None:
        """Before the first batch of ``epoch`` (0-based)."""

    def on_backward(self, state: TrainState, step: StepInfo) -> None:
        """Gradients are computed (unscaled), the optimizer has not stepped yet."""

    def on_step(self, state: TrainState, step: StepInfo) -> None:
        """After the optimizer (and a per-step scheduler) stepped."""

    def on_epoch_end(self, state: TrainState, entry: dict[str, Any]) -> None:
        """``entry``: the epoch's history.json row, already appended to ``state.history``; ``state.epoch``
        is the number of finished epochs."""

    def on_fit_end(self, state: TrainState) -> None:
        """Every epoch is done (also when a resumed run had none left)."""

    def on_finish(self, state: TrainState, run: FinishedRun) -> None:
        """The run folder is written (metrics.json last)."""

    def close(self, status: str) -> None:
        """Always called once at the end: ``FINISHED``, ``FAILED`` or ``KILLED``."""


class DiagnosticsCallback(Callback):
    """App. D.1 diagnostics of ``state.diag``: the gradient norm of every step, B.10-B.12 every
    ``train.diagnostics_every`` steps (added to the step's metrics)."""

    def on_backward(self, state: TrainState, step: StepInfo) -> None:
        diag: Diagnostics = state.diag
        diag.add_gradient(state.model)
        if diag.due(step.step):
            vals = diag.measure(state.model, step.batch.points, step.batch.mask, step.out, step.step)
            step.metrics.update({k: v for k, v in vals.items() if v is not None})


class TrackingCallback(Callback):
    """Logs the training to ``tracker`` (:mod:`ddeqs.tracking`; a NullTracker when tracking is off)."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self._series: list[tuple[str, float, int]] = []
        self._trace: Any = None

    @classmethod
    def open(cls, state: TrainState) -> TrackingCallback:
        """Open (or, after a resume, reopen) the run's MLflow run; params and dataset are logged when the
        run is new. Sets ``state.mlflow_run_id`` / ``mlflow_experiment_id``."""
        from ddeqs.training.runtime import open_run_tracker

        cfg, info = state.cfg, state.source.info
        tracker = open_run_tracker(cfg, state.run_name, getattr(info, "sha256", None), run_id=state.mlflow_run_id,
                                   warn=state.log)
        if not state.resumed or tracker.run_id != state.mlflow_run_id:
            tracker.log_params({**cfg.flat(), "n_params": state.n_params, "device": device_label(state.device)})
            sizes = {split: getattr(info, f"n_{split}", None) for split in ("train", "test")}
            tracker.log_dataset(cfg.data.dataset, getattr(info, "sha256", None), sizes)
        state.mlflow_run_id, state.mlflow_experiment_id = tracker.run_id, tracker.experiment_id
        return cls(tracker)

    def on_init_evaluated(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.tracker.log_metrics({f"init_{k}": v for k, v in metrics.items() if k != "n"}, step=0)

    def on_epoch_start(self, state: TrainState, epoch: int) -> None:
        self._series, self._trace = [], None

    def on_step(self, state: TrainState, step: StepInfo) -> None:
        s = step.step
        self._series += [(k, v, s) for k, v in step.metrics.items()]
        self._series.append(("train_loss_step", step.loss, s))
        if step.inner_iters is not None:
            self._series.append(("inner_iters", step.inner_iters, s))
        if step.inner_residual is not None:
            self._series.append(("inner_residual", step.inner_residual, s))
        self._trace = (getattr(step.out, "solver", None) or {}).get("objective")

    def on_epoch_end(self, state: TrainState, entry: dict[str, Any]) -> None:
        trace = self._trace
        if isinstance(trace, torch.Tensor) and trace.ndim == 2 and trace.shape[1] > 1:
            tr = trace.detach().float().mean(0).cpu().tolist()  # mean ½MMD² per inner iteration, last batch
            self.tracker.log_metric_series(f"inner_objective_trace/epoch_{state.epoch:03d}", enumerate(tr))
        self.tracker.log_steps(self._series)
        self.tracker.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, step=state.epoch)
        self._series, self._trace = [], None

    def on_finish(self, state: TrainState, run: FinishedRun) -> None:
        t, epochs, out_dir, info = self.tracker, state.cfg.train.epochs, state.out_dir, state.source.info
        t.log_metrics({f"test_{k}": v for k, v in run.result.metrics.items()}, step=epochs)
        t.log_metrics({"seconds_per_epoch": run.metrics["seconds_per_epoch"], "n_params": state.n_params}, step=epochs)
        for name in ("model.pt", "config.yaml"):
            t.log_artifact(out_dir / name, "model")
        for path in [out_dir / "metrics.json", out_dir / "history.json", *run.written]:
            t.log_artifact(path)
        t.log_model(state.model, info.in_dim, state.cfg.task, getattr(info, "num_classes", None))  # last: moves it to CPU

    def close(self, status: str) -> None:
        self.tracker.end(status)


class CheckpointCallback(Callback):
    """After every epoch, atomically: ``<state.work>/last.pt`` with everything a resume restores
    (:func:`ddeqs.training.session.resume`; keys: :data:`ddeqs.training.checkpoint.REQUIRED_KEYS`)."""

    def on_epoch_end(self, state: TrainState, entry: dict[str, Any]) -> None:
        save_checkpoint(state.work, {
            "fingerprint": state.fingerprint, "epoch": state.epoch, "step": state.step,
            "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(),
            "rng": pack_rng(rng_state(state.train_loader)), "diagnostics": state.diag.state_dict(),
            "history": state.history, "epoch_seconds": state.epoch_seconds, "mlflow_run_id": state.mlflow_run_id,
            "init_metrics": state.init_metrics,
        })


class ProgressCallback(Callback):
    """A tqdm bar per epoch (loss, inner iterations, residual; none when ``state.quiet``) and one line per
    epoch and for the initial evaluation on ``state.log``."""

    def __init__(self) -> None:
        self._bar: Any = None

    def on_init_evaluated(self, state: TrainState, metrics: dict[str, Any]) -> None:
        state.log(f"{state.run_name}: at initialisation: " + metric_text(metrics))

    def on_epoch_start(self, state: TrainState, epoch: int) -> None:
        from tqdm.auto import tqdm

        try:
            total: int | None = len(state.train_loader)
        except TypeError:
            total = None
        self._bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{state.cfg.train.epochs}", disable=state.quiet,
                         leave=False, dynamic_ncols=True)

    def on_step(self, state: TrainState, step: StepInfo) -> None:
        post: dict[str, Any] = {"loss": f"{step.loss:.4g}"}
        if step.inner_iters is not None:
            post["it"] = int(step.inner_iters)
        if step.inner_residual is not None:
            post["res"] = f"{step.inner_residual:.2e}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(1)

    def on_epoch_end(self, state: TrainState, entry: dict[str, Any]) -> None:
        self.close("")
        state.log(epoch_line(state.run_name, entry, state.cfg.train.epochs))

    def close(self, status: str) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def default_callbacks(state: TrainState) -> list[Callback]:
    """The callbacks of ``ddeqs train`` (module doc); opens the MLflow run."""
    return [DiagnosticsCallback(), TrackingCallback.open(state), CheckpointCallback(), ProgressCallback()]


def epoch_line(name: str, e: dict[str, Any], epochs: int) -> str:
    """One history.json row as the line printed after the epoch."""
    parts = [f"{name}: epoch {e['epoch'] + 1}/{epochs}", f"loss {e['train_loss']:.4g}", f"lr {e['lr']:.2g}",
             f"{e['seconds']:.1f}s"]
    if e.get("inner_iters") is not None:
        parts.append(f"inner {e['inner_iters']:.0f} it")
    if e.get("inner_residual") is not None:
        parts.append(f"res {e['inner_residual']:.2e}")
    parts += [f"{k[5:]} {v:.4g}" for k, v in e.items() if k.startswith("test_") and not k.endswith("_se")]
    return ", ".join(parts)


def metric_text(t: dict[str, Any]) -> str:
    """The headline test metrics of either task, with standard errors, on one line."""
    keys = ["accuracy", "cross_entropy", "mmd2", "w2_free", "ot_full", "chamfer"]
    return ", ".join(f"{k} {t[k]:.4g} ± {t[k + '_se']:.2g}" for k in keys if k in t)


def final_line(name: str, m: dict[str, Any]) -> str:
    """The last line of a training: the final test metrics of metrics.json ``m``."""
    t = m["test"]
    return f"{name}: test ({t.get('n')} samples): {metric_text(t)}"

