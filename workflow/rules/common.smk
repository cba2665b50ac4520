# Run table of the pipeline: every training run (main runs and ablation children) as a
# resolved ExperimentConfig dict, derived from the pipeline configuration (params/*.yaml) by the
# experiment plan, ddeqs.plan (the model of the configuration, run naming and merge order live there).
#
# Outputs of a profile live under results/<profile>/ (ROOT below).
#
# Run names: main runs "<role>-<task>-<model>", ablation children "<main run>--<grid>-<value>".
# Values are merged in this order (later wins):
#   defaults < tasks[<task>] < models[<model>] < runs[<main run>] < grid value (+ coupled key)
# and validated with ddeqs.config at DAG build time, so a typo fails before any job starts.

import os
from pathlib import Path
import re
import shlex
import sys

import yaml

from snakemake.utils import validate

from ddeqs.config import ConfigError
from ddeqs.data.registry import PROCESSED_ROOT, RAW_ROOT, processed_files
from ddeqs.paper.figures import NEEDS_RUNS, buildable
from ddeqs.plan import build_runs, plan_from_dict, read_config


def processed(dataset, suffix=".npz"):
    """data/processed/<dataset>/{train,test}<suffix> (the layout is ddeqs.data.registry's)."""
    return [str(p) for p in processed_files(PROCESSED_ROOT, dataset, suffix)]


def dataset_files(wildcards):
    """Prepared train/test files of the dataset a run reads."""
    return processed(RUNS[wildcards.run]["data"]["dataset"])


def metrics_of(names):
    return expand(f"{ROOT}/runs/{{run}}/metrics.json", run=names)


def figure_outputs(figs):
    """PNG and PDF of each figure, each with its own report caption (workflow/report/figures/<fig>.rst:
    the paper's caption and what this pipeline reproduced)."""
    # (no line may start with `report(`: Snakemake's parser would read it as the report: keyword)
    files = [(fig, f"{ROOT}/figures/{fig}.{ext}") for fig in figs for ext in ("png", "pdf")]
    return [report(f, caption=f"../report/figures/{fig}.rst", category="Figures", subcategory=fig) for fig, f in files]


def write_curve(history_json, out_csv, log_file):
    """history.json (ddeqs.record.History) -> CSV with one row per epoch (from 1) and its scalar columns."""
    import csv

    from ddeqs.record import History

    # history.json counts epochs from 0; MLflow logs epoch e at step e + 1: the CSV counts like MLflow
    rows = [{**e.to_json(), "epoch": e.epoch + 1} for e in History.read(history_json).epochs]
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, (list, dict))))
    with open(out_csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys or ["epoch"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    Path(log_file).write_text(f"{len(rows)} epochs -> {out_csv}\n")


def write_training_curves(csvs, out_png, log_file):
    """Every run's training curve in one figure (ddeqs.paper.curves): the DVC plot."""
    from ddeqs.paper.curves import plot_training_curves

    plot_training_curves(csvs, out_png, title=f"Training loss per epoch, {config['profile']} configuration")
    Path(log_file).write_text(f"{len(csvs)} runs -> {out_png}\n")




def _relative(path):
    """A path below the working directory as a relative path (params/smoke.yaml): no machine path in a
    job's params, where it would rerun the job in another clone."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# The configuration files Snakemake read (several --configfile are merged in order).
CONFIG_FILES = [_relative(p) for p in (workflow.overwrite_configfiles or workflow.configfiles)]
# Snakemake's YAML reader keeps the last of two equal keys silently: re-read the files strictly
# (ddeqs.plan.read_config raises on a repeated key). Then check the structure against the schema
# generated from ddeqs.plan.Plan, and against the model itself (its messages name the key).
try:
    _FILE_CONFIG = read_config(CONFIG_FILES)
except ConfigError as err:
    raise ValueError(str(err)) from None
validate(config, schema="../schemas/config.schema.yaml")
try:
    PLAN = plan_from_dict(config, "the pipeline configuration (" + ", ".join(CONFIG_FILES) + " and --config)")
except ConfigError as err:
    raise ValueError(str(err)) from None
# `ddeqs paper` reads the grids and roles from the configuration files (PLAN_ARGS below); a grid
# or role given only with --config on the command line would not reach it.
for _key in ("grids", "roles"):
    if _FILE_CONFIG.get(_key) != config.get(_key):
        raise ValueError(f"'{_key}' must be set in the configuration file (--configfile), not with --config: "
                         "the paper tables and figures read it from the file")
# Every output of a profile lives under results/<profile>/ (runs, params, tables, figures, plots,
# summary.json, README.md, logs, benchmarks): the paper and the smoke configuration never write,
# or read, each other's files. data/ is shared: datasets are named per profile (mnist-pc, digits).
ROOT = f"results/{PLAN.profile}"
if PLAN.dvc_profile and PLAN.dvc_profile != PLAN.profile:
    raise ValueError(
        f"params.yaml says profile {PLAN.dvc_profile!r} but the configuration file says "
        f"{PLAN.profile!r}: pass both, e.g. dvc exp run -S profile=smoke -S config=params/smoke.yaml"
    )
try:
    RUNS = build_runs(PLAN)
except ConfigError as err:  # fail at DAG build, naming the run, not inside a job
    raise ValueError(str(err)) from None
# The ddeqs command of the Python running Snakemake: works without an activated venv or conda env.
# Rules use it as the global {DDEQS} in their shell command, never in `params:`: params are part of
# the job's recorded state, and a machine path there would rerun every job when Snakemake is
# started from another Python (another clone, a conda env, a compute node's mount point).
DDEQS = config.get("command") or f'"{sys.executable}" -m ddeqs'
# MLflow store for every job (profiles/slurm sets an `mlflow server` on the login node: many nodes
# writing one SQLite file on a shared file system is unsafe). Passed as the environment variable
# MLFLOW_TRACKING_URI, which jobs inherit (SLURM jobs re-read this file with the same config), so
# it is not part of any run's params and switching stores reruns nothing.
# (set here, not read: Snakemake's `envvars:` directive would instead require it from the caller)
if config.get("tracking_uri"):
    os.environ.update(MLFLOW_TRACKING_URI=str(config["tracking_uri"]))
ROLES_ARG = ",".join(f"{role}={ds}" for role, ds in PLAN.roles.items())
# How `ddeqs paper` finds the plan (grid values, roles) of this profile: the same files, merged alike.
PLAN_ARGS = " ".join(f"--config {shlex.quote(p)}" for p in CONFIG_FILES)
DATASETS = sorted({run["data"]["dataset"] for run in RUNS.values()})


wildcard_constraints:
    run="|".join(re.escape(name) for name in sorted(RUNS, key=len, reverse=True)),
    dataset="|".join(re.escape(name) for name in DATASETS) if DATASETS else "(?!)",
