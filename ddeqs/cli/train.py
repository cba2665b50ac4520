"""``ddeqs train --params FILE [--set key=value ...] --out RUN_DIR [--no-tracking] [--quiet]``: train one run.

Trains the configured model on its prepared dataset (CUDA when present, else CPU), checkpoints
every epoch to RUN_DIR/.work (or --work DIR) and resumes from there when the same command is run
again, evaluates on the test split and writes the run folder (metrics.json, history.json,
model.pt, config.yaml, ...). Logs to MLflow (see docs/training.md). A RUN_DIR that already holds a
finished run (metrics.json, and no checkpoint to resume) is refused unless --overwrite: retraining
would replace its results. (The pipeline deletes a job's declared outputs before it retrains it.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ddeqs.cli.common import add_no_tracking, add_set, tracking_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model and write its run folder", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", metavar="FILE", help="run configuration YAML (ExperimentConfig); default: built-in defaults")
    add_set(p, "run setting (config override), repeatable (e.g. --set solver.iters=50 --set train.epochs=2)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write (e.g. results/paper/runs/mnist-cls-ddeq)")
    add_no_tracking(p)
    p.add_argument("--work", metavar="DIR", help="checkpoint folder (default: RUN_DIR/.work)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch)")
    p.add_argument("--keep-work", action="store_true", help="keep the last checkpoint after a successful run")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain even when RUN_DIR holds a finished run, replacing its results (default: refuse)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddeqs.config import load_config
    from ddeqs.training import train_run

    cfg = load_config(args.params, tracking_overrides(args))
    refuse_finished_run(Path(args.out), Path(args.work) if args.work else None, args.overwrite)
    train_run(cfg, args.out, args.work, quiet=True if args.quiet else None, keep_work=args.keep_work)
    return 0


def refuse_finished_run(out: Path, work: Path | None, overwrite: bool) -> None:
    """Raise when ``out`` holds a finished run (``metrics.json``) that training would replace.

    A checkpoint in the work folder means the same command resumes (or, after ``--keep-work``,
    only re-evaluates), so that case proceeds; so does ``overwrite``.
    """
    from ddeqs.errors import DDEQError
    from ddeqs.training.checkpoint import CHECKPOINT
    from ddeqs.training.runfolder import WORK_DIR

    if overwrite or not (out / "metrics.json").is_file():
        return
    if ((work or out / WORK_DIR) / CHECKPOINT).is_file():
        return
    raise DDEQError(f"{out} holds a finished run (metrics.json); training again would replace its results. "
                    "Pass --overwrite to retrain it there, or choose another --out")
