"""The training loop: any model of the package on any prepared dataset, resumable, tracked.

``train_run(cfg, out_dir)`` trains ``cfg.model`` for ``cfg.train.epochs`` epochs, checkpoints every
epoch to the work folder (default ``<out_dir>/.work``, not a pipeline output), resumes from it
when started again with the same configuration, evaluates the final model on the test split
(:mod:`ddeqs.training.evaluate`) and writes the run folder atomically:

``config.yaml``, ``model.pt`` (state dict), ``history.json``, ``metrics.json``, and per model/task
``diagnostics.json`` (DDEQ, when ``train.diagnostics_every > 0``), ``embeddings.npz``
(classification DDEQ), ``samples.npz`` (completion). Everything is also logged to MLflow
(:mod:`ddeqs.tracking`), which may fail without stopping training.

Reproducibility: model initialisation is seeded by ``cfg.seed``, each epoch reseeds every RNG
from ``(seed, epoch)``; with ``train.deterministic`` on CPU, a killed-and-resumed run ends with
bit-identical metrics to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import yaml

from ddeqs.config import ExperimentConfig
from ddeqs.errors import BadCloudError, DDEQError
from ddeqs.models import build_model, count_parameters
from ddeqs.training.badcloud import locate_bad_clouds
from ddeqs.training.checkpoint import config_fingerprint, load_checkpoint, pack_rng, save_checkpoint, unpack_rng
from ddeqs.training.diagnostics import Diagnostics
from ddeqs.training.evaluate import N_SAMPLES, autocast, evaluate_model, write_eval_artifacts
from ddeqs.training.losses import per_sample_loss
from ddeqs.training.lock import LOCK_FILE, run_folder_lock
from ddeqs.record import Epoch, History, Metrics
from ddeqs.training.runfolder import RUN_SIDE_FILES, WORK_DIR, ensure_writable, write_json, write_text, write_torch
from ddeqs.training.seeding import (
    configure_torch, device_label, resolve_device, rng_state, seed_all, seed_epoch, set_rng_state,
)
from ddeqs.training.source import DataSource, default_source

__all__ = ["make_optimizer", "make_scheduler", "milestone_epochs", "steps_per_batch", "steps_per_decay", "train_run",
           "write_run_files"]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_optimizer(cfg: ExperimentConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD (momentum) with ``train.lr`` and ``train.weight_decay`` (resolved per model: ``TRAIN_DEFAULTS``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    assert t.optimizer is not None and t.lr is not None, "ExperimentConfig validation fills the model defaults"
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum or 0.0, weight_decay=t.weight_decay or 0.0)
    return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay or 0.0)


def milestone_epochs(fractions: list[float], epochs: int) -> list[int]:
    """Epoch indices at which lr is multiplied by gamma: ``floor(f · epochs + ½)``, e.g. 5 epochs,
    [0.4, 0.8] -> [2, 4] (epochs 0-1 at lr, 2-3 at lr·γ, 4 at lr·γ²). Milestones at 0 or ≥ epochs are dropped."""
    out = sorted({int(math.floor(f * epochs + 0.5)) for f in fractions})
    return [m for m in out if 0 < m < epochs]


def steps_per_decay(cfg: ExperimentConfig, steps_per_epoch: int) -> int:
    """Exponential schedule: optimizer steps between two lr decays, ``round(decay_every · total steps)`` (≥ 1)."""
    total = cfg.train.epochs * steps_per_epoch
    return max(1, int(math.floor((cfg.train.decay_every or 1.0) * total + 0.5)))


def steps_per_batch(cfg: ExperimentConfig) -> bool:
    """Whether the lr scheduler is stepped after every optimizer step (exponential) or every epoch (multistep)."""
    return cfg.train.schedule == "exponential"


def make_scheduler(
    cfg: ExperimentConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1
) -> torch.optim.lr_scheduler.LRScheduler:
    """``train.schedule``: multistep -> MultiStepLR stepped once per epoch at :func:`milestone_epochs`;
    exponential -> staircase ``lr · max(γ^floor(step / n), min_lr / lr)`` stepped once per optimizer
    step, ``n`` = :func:`steps_per_decay` (``steps_per_epoch``: batches per epoch)."""
    t = cfg.train
    gamma = float(t.gamma if t.gamma is not None else 0.1)
    if t.schedule == "exponential":
        every = steps_per_decay(cfg, steps_per_epoch)
        floor = (t.min_lr or 0.0) / float(t.lr or 1.0)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(gamma ** (step // every), floor))
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=milestone_epochs(t.milestones, t.epochs), gamma=gamma
    )


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


def _batches_per_epoch(loader: Any, n_train: int, batch_size: int) -> int:
    """Batches of one training epoch: ``len(loader)`` when it has one, else ``ceil(n_train / batch_size)`` (≥ 1)."""
    try:
        return max(1, len(loader))
    except TypeError:
        return max(1, math.ceil(int(n_train or 0) / batch_size))


def _forward(model: nn.Module, batch: Any) -> Any:
    return model(batch.points, batch.mask)


def write_run_files(out_dir: Path, cfg: ExperimentConfig, model: nn.Module) -> None:
    """``config.yaml`` and ``model.pt`` (CPU state dict, loadable with ``weights_only=True``)."""
    write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    write_torch(out_dir / "model.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})


def train_run(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    work_dir: str | Path | None = None,
    *,
    source: DataSource | None = None,
    quiet: bool | None = None,
    keep_work: bool = False,
    log: Callable[[str], None] = _stderr,
) -> dict[str, Any]:
    """Train, evaluate and write the run folder ``out_dir``; returns the metrics.json content.

    ``work_dir``: checkpoint folder (default ``out_dir/.work``), removed after success unless
    ``keep_work``. ``source``: data (default: the prepared dataset of ``cfg.data``). ``quiet``:
    no progress bars (default ``cfg.train.quiet``); one summary line per epoch goes to ``log``.
    """
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out_dir / WORK_DIR
    # every output location is checked before anything trains (a read-only --work used to fail after epoch 1)
    ensure_writable(out_dir, "run folder")
    ensure_writable(work, "checkpoint folder")
    separate_work = out_dir.resolve() not in work.resolve().parents
    with contextlib.ExitStack() as locks:  # one process per run folder (and per work folder outside it)
        locks.enter_context(run_folder_lock(out_dir, "train"))
        if separate_work:
            locks.enter_context(run_folder_lock(work, "train"))
        metrics = _train_locked(cfg, out_dir, work, source=source, quiet=quiet, keep_work=keep_work, log=log)
    if separate_work and not keep_work:  # the lock file was all that was left in it
        (work / LOCK_FILE).unlink(missing_ok=True)
        if work.is_dir() and not any(work.iterdir()):
            shutil.rmtree(work, ignore_errors=True)
    return metrics


def _train_locked(cfg: ExperimentConfig, out_dir: Path, work: Path, *, source: DataSource | None,
                  quiet: bool | None, keep_work: bool, log: Callable[[str], None]) -> dict[str, Any]:
    quiet = cfg.train.quiet if quiet is None else quiet
    run_name = cfg.tracking.run_name or out_dir.resolve().name

    configure_torch(cfg)
    device = resolve_device(cfg.train.device)
    if cfg.train.amp and device.type != "cuda":
        log("ddeqs: train.amp is for GPUs; training in float32 on CPU")
    source = source or default_source(cfg)
    info = source.info
    seed_all(cfg.seed)
    model = build_model(cfg, info.in_dim, info.num_classes).to(device)
    n_params = count_parameters(model)
    optimizer = make_optimizer(cfg, model)
    amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp and not torch.cuda.is_bf16_supported())
    train_loader = source.loader("train", shuffle=True, batch_size=cfg.train.batch_size)
    test_loader = source.loader("test", shuffle=False, batch_size=cfg.train.batch_size)
    steps_per_epoch = _batches_per_epoch(train_loader, getattr(info, "n_train", 0), cfg.train.batch_size)
    total_steps = cfg.train.epochs * steps_per_epoch
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    per_step = steps_per_batch(cfg)
    is_ddeq = cfg.model.name == "ddeq"
    diag = Diagnostics(cfg.train.diagnostics_every if is_ddeq else 0, seed=cfg.seed)

    fingerprint = config_fingerprint(cfg)
    state = load_checkpoint(work, fingerprint, log)
    start_epoch, step = 0, 0
    init_metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = []
    epoch_seconds: list[float] = []
    mlflow_id = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(unpack_rng(state["rng"]), train_loader)
        diag.load_state_dict(state["diagnostics"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        history, epoch_seconds = list(state["history"]), list(state["epoch_seconds"])
        mlflow_id = state.get("mlflow_run_id")
        init_metrics = state.get("init_metrics")
        log(f"ddeqs: resuming {run_name} from its checkpoint after epoch {start_epoch} of {cfg.train.epochs} ({work})")

    from ddeqs.tracking import open_tracker

    tracker = open_tracker(cfg, run_name, tags={"ddeqs.dataset_sha256": getattr(info, "sha256", None)},
                           run_id=mlflow_id, warn=log)
    if state is None or tracker.run_id != mlflow_id:
        tracker.log_params({**cfg.flat(), "n_params": n_params, "device": device_label(device)})
        sizes = {split: getattr(info, f"n_{split}", None) for split in ("train", "test")}
        tracker.log_dataset(cfg.data.dataset, getattr(info, "sha256", None), sizes)

    from tqdm.auto import tqdm

    epochs = cfg.train.epochs
    status = "FAILED"
    try:
        if cfg.train.eval_init and init_metrics is None:
            # the untrained model on the test split; evaluation draws its randomness from a forked RNG,
            # so training (and a resumed training) is the same with or without this
            init_metrics = evaluate_model(model, test_loader, cfg, device, quiet=quiet, desc="test (init)").metrics
            tracker.log_metrics({f"init_{k}": v for k, v in init_metrics.items() if k != "n"}, step=0)
            log(f"{run_name}: at initialisation: " + _metric_text(init_metrics))
        for epoch in range(start_epoch, epochs):
            seed_epoch(cfg.seed, epoch, train_loader)
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            tot_loss, tot_n = 0.0, 0
            iters, resid = [], []
            series: list[tuple[str, float, int]] = []
            t0 = time.perf_counter()
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", disable=quiet, leave=False, dynamic_ncols=True)
            for batch in bar:
                batch = batch.to(device)
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, amp):
                    try:
                        out = _forward(model, batch)
                    except BadCloudError as err:
                        raise locate_bad_clouds(err, batch, cfg, "train") from None
                losses = per_sample_loss(cfg, out, batch, progress=step / total_steps)
                loss = losses.mean()
                if not torch.isfinite(loss):
                    raise DDEQError(
                        f"training loss became {float(loss)} at epoch {epoch + 1}, step {step + 1} of run {run_name}; "
                        f"lower train.lr (now {lr:g}) or check the data. The checkpoint of the last finished epoch "
                        f"in {work} is kept: rerun the same command to resume from it after fixing the cause."
                    )
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                step += 1
                diag.add_gradient(model)
                if diag.due(step):
                    vals = diag.measure(model, batch.points, batch.mask, out, step)
                    series += [(k, v, step) for k, v in vals.items() if v is not None]
                scaler.step(optimizer)
                scaler.update()
                if per_step:
                    scheduler.step()
                b = len(batch)
                tot_loss += float(losses.detach().sum())
                tot_n += b
                it, res = _solver_stats(out)
                iters.append(it)
                resid.append(res)
                series.append(("train_loss_step", float(loss.detach()), step))
                if it is not None:
                    series.append(("inner_iters", it, step))
                if res is not None:
                    series.append(("inner_residual", res, step))
                post = {"loss": f"{float(loss.detach()):.4g}"}
                if it is not None:
                    post["it"] = int(it)
                if res is not None:
                    post["res"] = f"{res:.2e}"
                bar.set_postfix(post, refresh=False)
            bar.close()
            if tot_n == 0:
                raise DDEQError(f"the training split of {cfg.data.dataset} gave no batch; check data.max_train")
            if not per_step:
                scheduler.step()
            seconds = time.perf_counter() - t0
            epoch_seconds.append(seconds)
            every = cfg.train.eval_every
            tested = {}
            if every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
                tested = {f"test_{k}": v for k, v in evaluate_model(
                    model, test_loader, cfg, device, quiet=quiet, desc="test").metrics.items() if k != "n"}
            # history.json's row (ddeqs.record.Epoch); kept as a plain dict in the checkpoint
            entry = Epoch(epoch=epoch, train_loss=tot_loss / tot_n, lr=lr, seconds=seconds,
                          inner_iters=_mean(iters), inner_residual=_mean(resid), **tested).to_json()
            history.append(entry)
            last_trace = (getattr(out, "solver", None) or {}).get("objective")
            if isinstance(last_trace, torch.Tensor) and last_trace.ndim == 2 and last_trace.shape[1] > 1:
                tr = last_trace.detach().float().mean(0).cpu().tolist()  # mean ½MMD² per inner iteration
                tracker.log_metric_series(f"inner_objective_trace/epoch_{epoch + 1:03d}", enumerate(tr))
            tracker.log_steps(series)
            tracker.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, step=epoch + 1)
            save_checkpoint(work, {
                "fingerprint": fingerprint, "epoch": epoch + 1, "step": step,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": pack_rng(rng_state(train_loader)), "diagnostics": diag.state_dict(),
                "history": history, "epoch_seconds": epoch_seconds, "mlflow_run_id": tracker.run_id,
                "init_metrics": init_metrics,
            })
            log(_epoch_line(run_name, entry, epochs))

        # ---------------------------------------------------------------- final evaluation
        result = evaluate_model(
            model, test_loader, cfg, device,
            embeddings_batches=cfg.train.save_embeddings if (is_ddeq and cfg.task == "classification") else 0,
            n_samples=N_SAMPLES if cfg.task == "completion" else 0, quiet=quiet, desc="test",
        )
        if history:
            history[-1].update({f"test_{k}": v for k, v in result.metrics.items() if k != "n"})
        record = Metrics(
            name=run_name, task=cfg.task, model=cfg.model.name, dataset=cfg.data.dataset,
            n_params=n_params, device=device_label(device), epochs=epochs,
            seconds_per_epoch=statistics.median(epoch_seconds) if epoch_seconds else None,
            epoch_seconds=epoch_seconds, mlflow_run_id=tracker.run_id,
            mlflow_experiment_id=tracker.experiment_id,
            dataset_sha256=getattr(info, "sha256", None), config_flat=cfg.flat(),
            train={"loss": history[-1]["train_loss"] if history else None}, test=result.metrics,
            init=init_metrics,
        )
        metrics = record.to_json()
        # metrics.json marks a finished run: it goes first and comes back last, and side files of an
        # earlier run in this folder that this run did not write are removed, so that figures are
        # never drawn from an old run next to new metrics
        (out_dir / "metrics.json").unlink(missing_ok=True)
        write_run_files(out_dir, cfg, model)
        write_json(out_dir / "history.json", History(epochs=history).to_json())
        written = write_eval_artifacts(out_dir, result)
        if diag.enabled:
            written.append(write_json(out_dir / "diagnostics.json", diag.series))
        for stale in RUN_SIDE_FILES:
            if out_dir / stale not in written:
                (out_dir / stale).unlink(missing_ok=True)
        write_json(out_dir / "metrics.json", metrics)

        tracker.log_metrics({f"test_{k}": v for k, v in result.metrics.items()}, step=epochs)
        tracker.log_metrics({"seconds_per_epoch": metrics["seconds_per_epoch"], "n_params": n_params}, step=epochs)
        for name in ("model.pt", "config.yaml"):
            tracker.log_artifact(out_dir / name, "model")
        for path in [out_dir / "metrics.json", out_dir / "history.json", *written]:
            tracker.log_artifact(path)
        tracker.log_model(model, info.in_dim, cfg.task, getattr(info, "num_classes", None))  # last: moves it to CPU
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)

    if not keep_work:
        (work / "last.pt").unlink(missing_ok=True)
        if work.is_dir() and not any(work.iterdir()):
            shutil.rmtree(work, ignore_errors=True)
    log(_final_line(run_name, metrics))
    return metrics


def _epoch_line(name: str, e: dict[str, Any], epochs: int) -> str:
    parts = [f"{name}: epoch {e['epoch'] + 1}/{epochs}", f"loss {e['train_loss']:.4g}", f"lr {e['lr']:.2g}",
             f"{e['seconds']:.1f}s"]
    if e.get("inner_iters") is not None:
        parts.append(f"inner {e['inner_iters']:.0f} it")
    if e.get("inner_residual") is not None:
        parts.append(f"res {e['inner_residual']:.2e}")
    parts += [f"{k[5:]} {v:.4g}" for k, v in e.items() if k.startswith("test_") and not k.endswith("_se")]
    return ", ".join(parts)


def _metric_text(t: dict[str, Any]) -> str:
    """The headline test metrics of either task, with standard errors, on one line."""
    keys = ["accuracy", "cross_entropy", "mmd2", "w2_free", "ot_full", "chamfer"]
    return ", ".join(f"{k} {t[k]:.4g} ± {t[k + '_se']:.2g}" for k in keys if k in t)


def _final_line(name: str, m: dict[str, Any]) -> str:
    t = m["test"]
    return f"{name}: test ({t.get('n')} samples): {_metric_text(t)}"
