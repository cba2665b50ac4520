# Run table of the pipeline: every training run (main runs and ablation children) as a
# resolved ExperimentConfig dict, derived from the pipeline configuration (params/*.yaml).
#
# Outputs of a profile live under results/<profile>/ (ROOT below).
#
# Run names follow the shared run-folder contract: main runs "<role>-<task>-<model>",
# ablation children "<main run>--<grid>-<value>". The dataset of a role comes from
# config["roles"]. Values are merged in this order (later wins):
#   defaults < tasks[<task>] < models[<model>] < runs[<main run>] < grid value (+ coupled key)
# and validated with ddeqs.config at DAG build time, so a typo fails before any job starts.

import copy
import os
from pathlib import Path
import re
import sys

import yaml

from snakemake.utils import validate

from ddeqs.config import ConfigError, from_dict, safe_load_unique

TASKS = {"cls": "classification", "cpl": "completion"}
MODELS = {"ddeq": "ddeq", "pointnet": "pointnet", "pt": "point-transformer", "pcn": "pcn"}
RUN_RE = re.compile(r"^(?P<role>[a-z0-9]+)-(?P<task>cls|cpl)-(?P<model>ddeq|pointnet|pt|pcn)$")


def deep_merge(base, extra):
    """Recursive dict merge: values of `extra` win; returns a new dict."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(d, key, value):
    node = d
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def format_value(value):
    """Grid value as it appears in a run name: true, 0.05, 1 (floats without a trailing .0)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def main_run_config(cfg, name):
    m = RUN_RE.match(name)
    if not m:
        raise ValueError(
            f"run name {name!r} in 'runs' of the pipeline configuration is not <role>-<cls|cpl>-<ddeq|pointnet|pt|pcn>"
        )
    role, task, model = m.group("role", "task", "model")
    if role not in cfg["roles"]:
        raise ValueError(f"run {name!r}: role {role!r} is not a key of 'roles' ({', '.join(cfg['roles'])})")
    raw = deep_merge(cfg.get("defaults", {}), cfg.get("tasks", {}).get(task, {}))
    raw = deep_merge(raw, cfg.get("models", {}).get(model, {}))
    raw = deep_merge(raw, cfg["runs"][name] or {})
    raw["task"] = TASKS[task]
    set_dotted(raw, "data.dataset", cfg["roles"][role])
    set_dotted(raw, "model.name", MODELS[model])
    set_dotted(raw, "tracking.run_name", name)
    set_dotted(raw, "tracking.rule", "train")
    # one MLflow experiment per profile and task: smoke runs never land next to paper runs
    if not raw.get("tracking", {}).get("experiment"):
        set_dotted(raw, "tracking.experiment", f"ddeqs-{cfg['profile']}-{TASKS[task]}")
    return raw


def build_runs(cfg):
    """{run name: ExperimentConfig dict} for every main run and every ablation child."""
    runs = {name: main_run_config(cfg, name) for name in cfg["runs"]}
    for grid, spec in (cfg.get("grids") or {}).items():
        for parent in spec["runs"]:
            if parent not in runs:
                raise ValueError(f"grid {grid!r} refers to run {parent!r}, which is not in 'runs'")
            for value in spec["values"]:
                child = f"{parent}--{grid}-{format_value(value)}"
                raw = copy.deepcopy(runs[parent])
                set_dotted(raw, spec["key"], value)
                coupled = spec.get("coupled")
                if coupled:  # e.g. solver.step = product / solver.iters (Table 4: step x iters constant)
                    set_dotted(raw, coupled["key"], float(coupled["product"]) / float(value))
                set_dotted(raw, "tracking.run_name", child)
                set_dotted(raw, "tracking.parent_run", f"{parent}--{grid}")
                runs[child] = raw
    for name, raw in runs.items():  # fail at DAG build, naming the run, not inside a job
        try:
            runs[name] = from_dict(raw, f"run {name!r} of the pipeline configuration").model_dump(mode="json")
        except ConfigError as err:
            raise ValueError(str(err)) from None
    return runs


def dataset_files(wildcards):
    """Prepared train/test files of the dataset a run reads."""
    dataset = RUNS[wildcards.run]["data"]["dataset"]
    return [f"data/processed/{dataset}/train.npz", f"data/processed/{dataset}/test.npz"]


def metrics_of(names):
    return expand(f"{ROOT}/runs/{{run}}/metrics.json", run=names)


def figure_outputs(figs):
    """PNG and PDF of each figure, each with its own report caption (workflow/report/figures/<fig>.rst:
    the paper's caption and what this pipeline reproduced)."""
    # (no line may start with `report(`: Snakemake's parser would read it as the report: keyword)
    files = [(fig, f"{ROOT}/figures/{fig}.{ext}") for fig in figs for ext in ("png", "pdf")]
    return [report(f, caption=f"../report/figures/{fig}.rst", category="Figures", subcategory=fig) for fig, f in files]


def write_curve(history_json, out_csv, log_file):
    """history.json (per-epoch dicts) -> CSV with one row per epoch (from 1) and its scalar columns."""
    import csv
    import json

    rows = json.loads(Path(history_json).read_text()).get("epochs", [])
    # history.json counts epochs from 0; MLflow logs epoch e at step e + 1: the CSV counts like MLflow
    rows = [{**r, "epoch": r["epoch"] + 1} if isinstance(r.get("epoch"), int) else r for r in rows]
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


# Snakemake's YAML reader keeps the last of two equal keys silently: re-read the files strictly.
for _path in workflow.overwrite_configfiles or workflow.configfiles:
    try:
        safe_load_unique(Path(_path).read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{_path}: {err}") from None
validate(config, schema="../schemas/config.schema.yaml")
# Every output of a profile lives under results/<profile>/ (runs, params, tables, figures, plots,
# summary.json, README.md, logs, benchmarks): the paper and the smoke configuration never write,
# or read, each other's files. data/ is shared: datasets are named per profile (mnist-pc, digits).
ROOT = f"results/{config['profile']}"
if config.get("dvc_profile") and config["dvc_profile"] != config["profile"]:
    raise ValueError(
        f"params.yaml says profile {config['dvc_profile']!r} but the configuration file says "
        f"{config['profile']!r}: pass both, e.g. dvc exp run -S profile=smoke -S config=params/smoke.yaml"
    )
RUNS = build_runs(config)
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
ROLES_ARG = ",".join(f"{role}={ds}" for role, ds in config["roles"].items())
DATASETS = sorted({run["data"]["dataset"] for run in RUNS.values()})


wildcard_constraints:
    run="|".join(re.escape(name) for name in sorted(RUNS, key=len, reverse=True)),
    dataset="|".join(re.escape(name) for name in DATASETS) if DATASETS else "(?!)",
