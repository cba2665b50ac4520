"""Read finished run folders (``results/<profile>/runs/<run_name>/``) by the naming contract.

Run names: ``<role>-<task>-<model>`` (role ``mnist``/``modelnet``, task ``cls``/``cpl``,
model ``ddeq``/``pointnet``/``pt``/``pcn``); ablations ``<main>--<grid>-<value>``.
Which dataset plays a role, which configuration produced the runs (``paper`` or
``smoke``) and which grid values it ran is a :class:`PaperContext`, read from arguments or the
pipeline YAML the DAG ran with (its experiment plan, :mod:`ddeqs.plan`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ddeqs.data.registry import DATASETS, dataset_label, role_datasets
from ddeqs.errors import DataError
from ddeqs.paper import values as V
from ddeqs.plan import Grid
from ddeqs.record import Metrics, child_name, main_name, parse_name

#: The dataset playing each role when the profile names no roles: the paper's datasets, or (``smoke``)
#: their embedded stand-ins (:mod:`ddeqs.data.registry`).
PROFILE_ROLES: dict[str, dict[str, str]] = {"paper": role_datasets(paper=True), "smoke": role_datasets(paper=False)}
#: How the paper names each role's dataset (table headers): ``{"mnist": "MNIST-pc", ...}``.
ROLE_LABELS = {role: DATASETS[name].label for role, name in PROFILE_ROLES["paper"].items()}
MODEL_LABELS = {"ddeq": "DDEQ", "pointnet": "PointNet", "pt": "PT", "pcn": "PCN"}


def _same(a: Any, b: Any) -> bool:
    """Equal grid values, a bool never equal to a number (``True`` is not ``1``)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


@dataclass
class PaperContext:
    """Which configuration produced the runs, which dataset plays each role, and the grids of its plan
    (``None``: no plan given, the tables show the grid values the paper reports)."""

    profile: str = "paper"
    roles: dict[str, str] = field(default_factory=lambda: dict(PROFILE_ROLES["paper"]))
    grids: dict[str, Grid] | None = None

    def grid_values(self, grid: str) -> list[Any]:
        """Values of ``grid`` a table or figure shows: those the paper reports and those the plan
        configures, each once, in ascending order when numeric (published values first otherwise)."""
        configured = list(self.grids[grid].values) if self.grids and grid in self.grids else []
        out: list[Any] = []
        for v in (*V.PUBLISHED_GRIDS.get(grid, ()), *configured):
            if not any(_same(v, w) for w in out):
                out.append(v)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in out):
            out.sort(key=float)
        return out

    def plan_grids(self) -> dict[str, Grid]:
        """The grids of the plan (empty without one), in the plan's order."""
        return dict(self.grids or {})

    def dataset(self, role: str) -> str:
        return self.roles.get(role, PROFILE_ROLES["paper"].get(role, role))

    def dataset_label(self, role: str) -> str:
        return dataset_label(self.dataset(role))

    def describe(self) -> str:
        roles = ", ".join(f"{r} = {self.dataset_label(r)}" for r in sorted(self.roles))
        return f"configuration '{self.profile}' ({roles})"


def parse_roles(text: str) -> dict[str, str]:
    """``'mnist=digits,modelnet=shapes'`` -> ``{'mnist': 'digits', 'modelnet': 'shapes'}``."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in item:
            raise DataError(f"--roles item {item!r} is not role=dataset (e.g. mnist=digits,modelnet=shapes)")
        k, v = (s.strip() for s in item.split("=", 1))
        out[k] = v
    return out


def make_context(
    profile: str | None = None, roles: str | dict[str, str] | None = None,
    config: str | Path | list[str | Path] | None = None,
) -> PaperContext:
    """Build the context: the pipeline YAML(s) the DAG ran with (merged in order, as Snakemake merges
    several ``--configfile``; a file with ``runs`` is validated as an experiment plan, whose grids the
    tables and figures then show), then explicit arguments win.

    Without roles, the profile's default mapping is used (paper: MNIST-pc/ModelNet40-s,
    smoke: digits/shapes).
    """
    cfg_profile, cfg_roles, cfg_grids = None, None, None
    if config is not None:
        from ddeqs.config import ConfigError
        from ddeqs.plan import plan_from_dict, read_config

        paths = [config] if isinstance(config, (str, Path)) else list(config)
        where = ", ".join(map(str, paths))
        for path in map(Path, paths):
            if not path.is_file():
                raise DataError(f"pipeline configuration not found: {path} (pass --config params/config.yaml or --profile)")
        try:
            raw = read_config(paths)
            if "runs" in raw:  # a whole pipeline configuration: its experiment plan, validated
                plan = plan_from_dict(raw, where)
                cfg_profile, cfg_roles, cfg_grids = plan.profile, plan.roles, plan.grids
            else:  # a file naming only the profile and its roles (and perhaps grids)
                cfg_profile, cfg_roles = raw.get("profile"), raw.get("roles")
                if raw.get("grids") is not None:
                    cfg_grids = {str(k): Grid.model_validate(v) for k, v in raw["grids"].items()}
        except (ConfigError, ValueError) as err:
            raise DataError(f"{where}: {err}") from None
        if cfg_roles is not None and not isinstance(cfg_roles, dict):
            raise DataError(f"{where}: 'roles' must map role -> dataset, e.g. {{mnist: mnist-pc, modelnet: modelnet40-s}}")
    prof = profile or cfg_profile or "paper"
    if isinstance(roles, str):
        roles = parse_roles(roles)
    if prof not in PROFILE_ROLES and not (roles or cfg_roles):
        # a typo ('smok') must not silently read the runs as the paper's
        raise DataError(f"unknown profile {prof!r}: use one of {', '.join(PROFILE_ROLES)}, "
                        f"or give its datasets with --roles mnist=...,modelnet=... (or --config FILE)")
    mapping = dict(PROFILE_ROLES.get(prof, PROFILE_ROLES["paper"]))
    mapping.update({str(k): str(v) for k, v in (cfg_roles or {}).items()})
    mapping.update(roles or {})
    return PaperContext(profile=str(prof), roles=mapping, grids=cfg_grids)


#: Run names are formatted and parsed by :mod:`ddeqs.record` only (the plan names the runs it
#: schedules with the same functions): ``run_name('mnist', 'cls', 'ddeq') == 'mnist-cls-ddeq'``,
#: ``ablation_name('mnist-cpl-ddeq', 'noise', 0.05) == 'mnist-cpl-ddeq--noise-0.05'``.
run_name = main_name
ablation_name = child_name


def _nan() -> float:
    return float("nan")


@dataclass
class Run:
    """One finished run folder: its ``metrics.json`` (:class:`ddeqs.record.Metrics`) and lazily read side files."""

    name: str
    path: Path
    record: Metrics

    def test_metric(self, key: str) -> tuple[float, float, int | None]:
        """``(value, standard error, n)`` of a test metric; NaN where absent."""
        return self.record.test_metric(key)

    @property
    def seconds_per_epoch(self) -> float:
        v = self.record.seconds_per_epoch
        return float(v) if v is not None else _nan()

    @property
    def device(self) -> str:
        return str(self.record.device or "unknown device")

    @property
    def mlflow_run_id(self) -> str | None:
        return self.record.mlflow_run_id

    @property
    def dataset(self) -> str | None:
        return self.record.dataset

    def json(self, filename: str) -> dict[str, Any] | None:
        """A JSON side file (``history.json``, ``diagnostics.json``), or None when absent."""
        p = self.path / filename
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{p} is not valid JSON ({err}); re-run the training rule for {self.name}") from None

    def npz(self, filename: str) -> dict[str, np.ndarray] | None:
        """An ``.npz`` side file as a dict of arrays, or None when absent."""
        p = self.path / filename
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise DataError(f"{p} is not a readable .npz file ({err}); re-run the training rule for {self.name}") from None


class RunStore:
    """Finds runs under a folder; remembers which were used and which were missing.

    A missing or unreadable run is ``None`` (and listed in :attr:`missing` /
    :attr:`problems`) unless ``strict``, where it raises :class:`DataError`.
    """

    def __init__(self, root: str | Path, strict: bool = False, ctx: PaperContext | None = None) -> None:
        self.root = Path(root)
        self.strict = strict
        self.ctx = ctx
        self._cache: dict[str, Run | None] = {}
        self.missing: list[str] = []
        self.problems: dict[str, str] = {}
        self.used: list[str] = []

    def _load(self, name: str) -> Run | None:
        folder = self.root / name
        path = folder / "metrics.json"
        if not path.is_file():
            return None
        try:
            metrics = Metrics.read(path)
        except DataError as err:
            msg = str(err)
            if self.strict:
                raise DataError(msg) from None
            warnings.warn(msg, stacklevel=3)
            self.problems[name] = msg
            return None
        wrong = self._foreign(name, metrics)
        if wrong:
            if self.strict:
                raise DataError(wrong)
            warnings.warn(wrong, stacklevel=3)
            self.problems[name] = wrong
            return None
        return Run(name=name, path=folder, record=metrics)

    def _foreign(self, name: str, metrics: Metrics) -> str | None:
        """Why a run belongs to another profile (its dataset is not the role's), or None."""
        if self.ctx is None:
            return None
        try:
            role = parse_name(name).role
        except ValueError:
            role = name.split("-", 1)[0]
        expected, found = self.ctx.roles.get(role), metrics.dataset
        if expected is None or found is None or found == expected:
            return None
        return (f"{self.root / name} was trained on {found!r}, but {self.ctx.describe()} uses {expected!r} for "
                f"role {role!r}: it belongs to another profile and is not used (each profile has its own "
                f"results/<profile>/runs; check --runs and --profile)")

    def peek(self, name: str) -> Run | None:
        """Like :meth:`get` but never strict and never recorded as missing."""
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def get(self, name: str) -> Run | None:
        """The run called ``name``, or None (recorded as missing; an error when strict)."""
        run = self.peek(name)
        if run is None:
            if name not in self.missing:
                self.missing.append(name)
            if self.strict:
                raise DataError(
                    f"run folder {self.root / name} has no metrics.json; train it first "
                    f"(snakemake ... {self.root / name}/metrics.json) or drop --strict"
                )
        elif name not in self.used:
            self.used.append(name)
        return run

    def ablation(self, main: str, grid: str, value: Any, fallback_main: bool = False) -> Run | None:
        """The ablation run ``<main>--<grid>-<value>`` (the name :func:`ddeqs.record.child_name` gives).

        ``fallback_main``: when no ablation folder exists, use the main run (the grid value
        equals the main run's setting, e.g. noise 5 %, 200 iterations).
        """
        name = child_name(main, grid, value)
        if self.peek(name) is None and fallback_main and self.peek(main) is not None:
            return self.get(main)
        return self.get(name)

    def names(self) -> list[str]:
        """Every run folder that has a metrics.json."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/metrics.json"))

