"""The training loop: any model of the package on any prepared dataset, resumable, tracked.

``train_run(cfg, out_dir)`` trains ``cfg.model`` for ``cfg.train.epochs`` epochs, checkpoints every
epoch to the work folder (default ``<out_dir>/.work``, not a pipeline output), resumes from it
when started again with the same configuration, evaluates the final model on the test split
(:mod:`ddeqs.training.evaluate`) and writes the run folder atomically:

``config.yaml``, ``model.pt`` (state dict), ``history.json``, ``metrics.json``, and per model/task
``diagnostics.json`` (DDEQ, when ``train.diagnostics_every > 0``), ``embeddings.npz``
(classification DDEQ), ``samples.npz`` (completion). Everything is also logged to MLflow
(:mod:`ddeqs.tracking`), which may fail without stopping training.

The phases (setup, resume, fit, finish) live in :mod:`ddeqs.training.session`, progress, MLflow,
diagnostics and checkpoints in the callbacks of :mod:`ddeqs.training.callbacks`; this module
holds the run-folder locks around them.

Reproducibility: model initialisation is seeded by ``cfg.seed``, each epoch reseeds every RNG
from ``(seed, epoch)``; with ``train.deterministic`` on CPU, a killed-and-resumed run ends with
bit-identical metrics to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Callable

from ddeqs.config import ExperimentConfig
from ddeqs.training.callbacks import default_callbacks, final_line
from ddeqs.training.lock import LOCK_FILE, run_folder_lock
from ddeqs.training.optim import make_optimizer, make_scheduler, milestone_epochs, steps_per_batch, steps_per_decay
from ddeqs.training.runfolder import WORK_DIR, ensure_writable
from ddeqs.training.session import stderr_log, clean_work, fit_and_finish, resume, setup, write_run_files
from ddeqs.training.source import DataSource

__all__ = ["make_optimizer", "make_scheduler", "milestone_epochs", "steps_per_batch", "steps_per_decay", "train_run",
           "write_run_files"]


def train_run(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    work_dir: str | Path | None = None,
    *,
    source: DataSource | None = None,
    quiet: bool | None = None,
    keep_work: bool = False,
    log: Callable[[str], None] = stderr_log,
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
    state = setup(cfg, out_dir, work, source=source, quiet=quiet, log=log)
    resume(state)
    metrics = fit_and_finish(state, default_callbacks(state))
    clean_work(work, keep_work)
    log(final_line(state.run_name, metrics))
    return metrics
