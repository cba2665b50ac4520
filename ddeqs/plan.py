"""The experiment plan: the pipeline configuration (``params/*.yaml``) as a typed model, and the run
table built from it.

A plan names its ``profile``, the dataset playing each role (``roles``), the resources of a training
job, the ExperimentConfig fields shared by every run (``defaults``) or by a task, a model or one main
run (``tasks``, ``models``, ``runs``), the ablation ``grids`` and the App. D.9 ``flow``. Snakemake
(``workflow/rules/common.smk``) and ``ddeqs paper`` both read it through this module; the JSON schema
``workflow/schemas/config.schema.yaml`` is generated from :class:`Plan`
(``python -m ddeqs.plan --schema workflow/schemas/config.schema.yaml``).

Run names: main runs ``<role>-<task>-<model>`` (task ``cls``/``cpl``, model ``ddeq``/``pointnet``/
``pt``/``pcn``), grid children ``<main run>--<grid>-<value>``. Values are merged in this order
(later wins): ``defaults < tasks[<task>] < models[<model>] < runs[<main run>] < grids[<grid>].set
< grids[<grid>].set_runs[<main run>] < grid value (+ coupled key)``. A grid's ``set`` trains every child of
that grid alike but unlike its main run (e.g. fewer epochs for an ablation on a CPU), ``set_runs`` the
children of one main run; without them a child whose value is its main run's setting would repeat the
main run, so it is not trained and the tables read the main run instead (:func:`build_runs`).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Annotated, Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ddeqs.config import (ConfigError, DatasetName, expand_preset, format_errors, from_dict, load_yaml,
                          omit_late_defaults, suggest)
from ddeqs.record import MAIN_PATTERN, MODELS, TASKS, child_name, parse_name

RUN_PATTERN = MAIN_PATTERN
GridValue = bool | int | float | str
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+$")]
RunName = Annotated[str, StringConstraints(pattern=RUN_PATTERN)]
GridName = Annotated[str, StringConstraints(pattern=r"^[a-z_]+$")]
Fields = dict[str, Any]


class _Strict(BaseModel):
    """Unknown keys are errors. A field typed ``X = Field(None)`` may be left out but not set to null
    (pydantic does not validate defaults), as the pipeline has always read these keys."""

    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    """Resources of one training job."""

    gpu: int = Field(None, ge=0, description="GPUs per training job (0 on CPU)")
    threads: int = Field(None, ge=1, description="CPU threads per training job")
    mem_mb: int = Field(None, ge=1, description="memory per training job, MB")
    runtime: int = Field(None, ge=1, description="minutes (SLURM time limit)")


class TaskFields(_Strict):
    """ExperimentConfig fields per task part of a run name."""

    cls: Fields = Field(None, description="classification runs (<role>-cls-<model>)")
    cpl: Fields = Field(None, description="completion runs (<role>-cpl-<model>)")


class ModelFields(_Strict):
    """ExperimentConfig fields per model part of a run name."""

    ddeq: Fields = Field(None)
    pointnet: Fields = Field(None)
    pt: Fields = Field(None, description="Point Transformer")
    pcn: Fields = Field(None)


class Coupled(_Strict):
    """A second key set to ``product / value`` for each grid value (Table 4: step x iters constant)."""

    key: str = Field(description="dotted ExperimentConfig key")
    product: float = Field(gt=0)


class Grid(_Strict):
    """An ablation grid: one child run ``<run>--<grid>-<value>`` per parent run and value."""

    key: str = Field(description="dotted ExperimentConfig key varied by the grid")
    runs: list[str] = Field(min_length=1, description="main runs the grid varies")
    values: list[GridValue] = Field(description="values of the key, one child run each")
    coupled: Coupled = Field(None, description="a second key set to product / value (step x iters constant)")
    set: Fields = Field(
        None, description="ExperimentConfig fields of every child of this grid, over its main run's (e.g. "
                          "train: {epochs: 4} for a shorter ablation); the grid value still wins for its key")
    set_runs: dict[RunName, Fields] = Field(
        None, description="ExperimentConfig fields of the children of one main run, over `set` (e.g. a longer "
                          "training for a dataset whose model needs it); the grid value still wins for its key")

    @model_validator(mode="after")
    def _set_runs_are_grid_runs(self) -> Grid:
        extra = sorted(set(self.set_runs or {}) - set(self.runs))
        if extra:
            raise ValueError(f"set_runs names {extra}, not among this grid's runs {self.runs}")
        return self

    def child_fields(self, parent: str) -> dict[str, Any]:
        """The fields this grid sets on every child of main run ``parent``: ``set`` merged with ``set_runs[parent]``."""
        return deep_merge(self.set, (self.set_runs or {}).get(parent))


class Flow(_Strict):
    """The App. D.9 MMD flow of Figures 16-17 (no training)."""

    particles: int = Field(None, ge=2, description="particles of the flow (paper 100)")
    iters: int = Field(None, ge=1, description="flow iterations (paper 2000)")


class Select(_Strict):
    """The part of a profile to build (a demo layered over a full profile by a second --configfile)."""

    runs: list[RunName] = Field(None, description="main runs to train (default: every run of 'runs')")
    grids: list[GridName] = Field(None, description="ablation grids to train (default: every grid of 'grids')")


class Plan(_Strict):
    """Pipeline configuration (params/config.yaml, params/smoke.yaml). Run settings under
    defaults/tasks/models/runs are ExperimentConfig fields (ddeqs/config.py), validated per run by
    :func:`build_runs`; this model checks the pipeline's own structure."""

    model_config = ConfigDict(extra="forbid", title="Pipeline configuration")

    profile: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = Field(
        description="configuration name (paper or smoke): shown in tables and the report, names the results "
                    "root results/<profile>/ and the MLflow experiments ddeqs-<profile>-<task>")
    dvc_profile: str = Field(
        None, description="set by dvc.yaml (--config dvc_profile=${profile}); must equal profile, so that DVC's "
                          "declared outputs results/<profile>/... are the folders Snakemake writes")
    roles: dict[RoleName, DatasetName] = Field(description="dataset playing each role of the run names (mnist, modelnet)")
    command: str | None = Field(None, description="how to call the ddeqs CLI (null = the Python running Snakemake, -m ddeqs)")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI for every training job (null = $MLFLOW_TRACKING_URI, else SQLite "
                          "results/mlflow/mlflow.db). Set by profiles/slurm to an `mlflow server` on the login node; "
                          "not part of any run's params, so switching it reruns nothing.")
    prepare: dict[str, str] = Field(
        None, description='extra arguments of `ddeqs data prepare` per dataset (e.g. "--max-points 800")')
    resources: Resources = Field(None, description="resources of training jobs")
    defaults: Fields = Field(None, description="ExperimentConfig fields shared by every run")
    tasks: TaskFields = Field(None, description="ExperimentConfig fields per task part of a run name (cls, cpl)")
    models: ModelFields = Field(None, description="ExperimentConfig fields per model part of a run name")
    runs: Annotated[dict[RunName, Fields | None], Field(min_length=1)] = Field(
        description="main runs <role>-<cls|cpl>-<ddeq|pointnet|pt|pcn> -> ExperimentConfig fields")
    grids: dict[GridName, Grid] = Field(
        None, description="ablation grids; each value of a grid is one child run <run>--<grid>-<value>")
    flow: Flow = Field(None, description="the App. D.9 MMD flow of Figures 16-17 (no training)")
    select: Select = Field(
        None, description="build only part of the profile (e.g. params/demo.yaml over params/cpu.yaml): the named "
                          "main runs and grids; tables and figures show what was built, and the claims that need the "
                          "rest say 'not measurable'")

    @model_validator(mode="after")
    def _names_resolve(self) -> Plan:
        for name in self.runs:
            role = parse_name(name).role
            if role not in self.roles:
                raise ValueError(f"run {name!r}: role {role!r} is not a key of 'roles' ({', '.join(self.roles)})")
        for grid, spec in (self.grids or {}).items():
            for parent in spec.runs:
                if parent not in self.runs:
                    raise ValueError(f"grid {grid!r} refers to run {parent!r}, which is not in 'runs'"
                                     f"{suggest(parent, list(self.runs))}")
        sel = self.select
        if sel is not None:
            for name in sel.runs or []:
                if name not in self.runs:
                    raise ValueError(f"select.runs names {name!r}, which is not in 'runs'{suggest(name, list(self.runs))}")
            for grid in sel.grids or []:
                if grid not in (self.grids or {}):
                    raise ValueError(f"select.grids names {grid!r}, which is not in 'grids'"
                                     f"{suggest(grid, list(self.grids or {}))}")
            for grid, spec in self.selected_grids().items():
                left = [r for r in spec.runs if r not in self.selected_runs()]
                if left:
                    raise ValueError(f"grid {grid!r} trains children of {', '.join(left)}, which select.runs leaves out; "
                                     f"add them to select.runs or leave {grid!r} out of select.grids")
        return self

    def selected_runs(self) -> list[str]:
        """The main runs this configuration trains: ``select.runs``, else every run of ``runs``."""
        if self.select is not None and self.select.runs is not None:
            return list(self.select.runs)
        return list(self.runs)

    def selected_grids(self) -> dict[str, Grid]:
        """The ablation grids this configuration trains: ``select.grids``, else every grid."""
        grids = dict(self.grids or {})
        if self.select is not None and self.select.grids is not None:
            return {g: grids[g] for g in self.select.grids}
        return grids

    def grid(self, name: str) -> Grid | None:
        """The grid called ``name``, or None when the plan has no such grid."""
        return (self.grids or {}).get(name)


# ---------------------------------------------------------------------------
# loading


def _format_errors(err: ValidationError, source: str) -> str:
    return format_errors(err, f"invalid pipeline configuration in {source}:",
                         lambda key: " (see workflow/schemas/config.schema.yaml)")


def plan_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Plan:
    """Validate a pipeline configuration dict; :class:`ConfigError` names the source and the key."""
    try:
        return Plan.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def deep_merge(base: dict[str, Any] | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    """Recursive dict merge: values of ``extra`` win; returns a new dict."""
    out = copy.deepcopy(base or {})
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config(paths: str | Path | Iterable[str | Path]) -> dict[str, Any]:
    """The raw pipeline configuration of one or more YAML files, merged in order (as Snakemake merges
    several ``--configfile``); duplicate keys in a file are errors."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    merged: dict[str, Any] = {}
    for p in map(Path, paths):
        raw = load_yaml(p, "pipeline configuration not found: {path} (e.g. params/config.yaml, params/smoke.yaml)",
                        "a mapping with keys profile, roles, runs, ...")
        merged = deep_merge(merged, raw)
    return merged


def load_plan(paths: str | Path | Iterable[str | Path]) -> Plan:
    """Read and validate the plan of one or more pipeline YAML files (merged in order)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    return plan_from_dict(read_config(paths), ", ".join(map(str, paths)))


# ---------------------------------------------------------------------------
# the run table


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, 'solver.iters', 50)``: ``d['solver']['iters'] = 50``, creating sections."""
    node = d
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def main_run_fields(plan: Plan, name: str) -> dict[str, Any]:
    """The merged, not yet validated ExperimentConfig dict of main run ``name``."""
    parsed = parse_name(name)
    role, task, model = parsed.role, parsed.task, parsed.model
    # each layer's solver.preset replaces the solver fields of the layers below it (as --set does)
    raw = deep_merge(expand_preset(plan.defaults), expand_preset(getattr(plan.tasks, task, None) if plan.tasks else None))
    raw = deep_merge(raw, expand_preset(getattr(plan.models, model, None) if plan.models else None))
    raw = deep_merge(raw, expand_preset(plan.runs[name]))
    raw["task"] = TASKS[task]
    set_dotted(raw, "data.dataset", plan.roles[role])
    set_dotted(raw, "model.name", MODELS[model])
    set_dotted(raw, "tracking.run_name", name)
    set_dotted(raw, "tracking.rule", "train")
    # one MLflow experiment per profile and task: smoke runs never land next to paper runs
    if not raw.get("tracking", {}).get("experiment"):
        set_dotted(raw, "tracking.experiment", f"ddeqs-{plan.profile}-{TASKS[task]}")
    return raw


def _validated(raw: dict[str, Any], name: str) -> dict[str, Any]:
    # fields added later, at their defaults, are left out: a run resolves exactly as before they existed,
    # its resolved params (Snakemake's rerun trigger) stay byte-identical and adding a field retrains nothing
    return omit_late_defaults(from_dict(raw, f"run {name!r} of the pipeline configuration").model_dump(mode="json"))


#: fields that change what a run reports, not what it trains: the MLflow names, and whether the untrained
#: model is evaluated too (a grid may turn that off for its children and still repeat its main run)
NOT_TRAINING = {"tracking": ("run_name", "parent_run"), "train": ("eval_init", "quiet")}


def _same_training(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two validated run configs train the same model (they differ at most in :data:`NOT_TRAINING`)."""
    def strip(c: dict[str, Any]) -> dict[str, Any]:
        return {**c, **{sec: {k: v for k, v in c[sec].items() if k not in keys} for sec, keys in NOT_TRAINING.items()}}
    return strip(a) == strip(b)


def build_runs(plan: Plan) -> dict[str, dict[str, Any]]:
    """``{run name: ExperimentConfig dict (JSON mode)}`` for every selected main run and grid child
    (all of them without ``select``), less the children that would repeat their main run (a value equal
    to the main run's setting in a grid without ``set``, e.g. noise 5 %): the tables read the main run
    for those (:func:`ddeqs.paper.tables.find_ablation`).

    Every run is validated by :mod:`ddeqs.config`; a bad field raises :class:`ConfigError` naming the run.
    """
    mains = {name: main_run_fields(plan, name) for name in plan.selected_runs()}
    runs = {name: _validated(raw, name) for name, raw in mains.items()}
    for grid, spec in plan.selected_grids().items():
        for parent in spec.runs:
            for value in spec.values:
                child = child_name(parent, grid, value)
                raw = deep_merge(mains[parent], expand_preset(spec.child_fields(parent)))
                set_dotted(raw, spec.key, value)
                if spec.key == "solver.preset":  # a grid over presets: each value's fields, as --set would
                    raw = deep_merge(raw, expand_preset({"solver": {"preset": value}}))
                if spec.coupled:  # e.g. solver.step = product / solver.iters (Table 4: step x iters constant)
                    set_dotted(raw, spec.coupled.key, float(spec.coupled.product) / float(value))
                set_dotted(raw, "tracking.run_name", child)
                set_dotted(raw, "tracking.parent_run", f"{parent}--{grid}")
                cfg = _validated(raw, child)
                if not _same_training(cfg, runs[parent]):
                    runs[child] = cfg
    return runs


# ---------------------------------------------------------------------------
# the JSON schema


SCHEMA_HEADER = ("# Generated from ddeqs.plan.Plan by `python -m ddeqs.plan --schema workflow/schemas/config.schema.yaml`;\n"
                 "# do not edit by hand (tests/test_plan.py checks that it matches the model).\n")


def _tidy(node: Any) -> Any:
    """Drop ``default`` (Snakemake's validate would write them into the config, e.g. ``flow: null``) and
    pydantic's ``title`` noise; a mapping whose keys follow a pattern (run names, grid names) rejects
    other keys, as the model does."""
    if isinstance(node, dict):
        out = {k: _tidy(v) for k, v in node.items() if k not in ("default", "title")}
        if "patternProperties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


def json_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of :class:`Plan`, as Snakemake's ``validate`` reads it."""
    schema = _tidy(Plan.model_json_schema())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """The committed schema file's text."""
    return SCHEMA_HEADER + yaml.safe_dump(json_schema(), sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddeqs.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--schema", metavar="FILE", nargs="?", const="-",
                   help="write the JSON schema of the pipeline configuration to FILE (default: stdout)")
    p.add_argument("--runs", metavar="CONFIG", nargs="+", help="list the run names of these pipeline YAML files")
    args = p.parse_args(argv)
    if args.schema:
        if args.schema == "-":
            sys.stdout.write(schema_text())
        else:
            Path(args.schema).write_text(schema_text())
        return 0
    if args.runs:
        try:
            print("\n".join(build_runs(load_plan(args.runs))))
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 2
        return 0
    p.print_help()
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
