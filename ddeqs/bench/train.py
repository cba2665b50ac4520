"""``ddeqs bench train``: time to accuracy of one configuration under several solver settings.

The same run configuration (``--params`` + ``--set``) is trained once per **setting** (a name and
extra ``--set`` overrides), one after the other, each through the normal training path
(:func:`ddeqs.training.train_run`) into its own run folder ``OUT/<name>``, so every run folder is
an ordinary one (``metrics.json``, ``history.json``, ``model.pt``, ...). Per setting the table
reports the wall time of training (sum of ``metrics.json`` ``epoch_seconds``), of the rest of
:func:`train_run` (``eval_seconds``: mostly the final test evaluation, plus setup, data loading
and writing the run folder; the first setting also pays one-off warm-up), the inner iterations run
per training step (mean over steps, from ``history.json``), the test metric with its standard
error, and the training-time ratio to the first setting (the reference). Inner iterations of
the evaluation solves are not counted; their cost shows in the evaluation seconds.

The settings train one after the other, not interleaved as in ``ddeqs bench step``: on a shared
machine whose speed drifts, the seconds (and the ratio) move with the load, while inner
iterations and test metrics do not. The 1-minute load average before and after each run is
printed next to it (above the number of cores: other work shared them). Quote times from a quiet
machine, or rerun and compare.

Named presets (``PRESETS``), relative to the configuration's ``solver.iters`` = N:

* ``plain``: plain descent, N iterations (momentum 0, no early stop): the reference.
* ``plain-quarter``: plain descent, N/4 iterations in training and evaluation.
* ``momentum``: heavy-ball momentum 0.5 and the relative-objective stop ``solver.objective_ratio``
  0.01 in training and evaluation, at most N iterations (``ddeqs bench momentum``: on the paper's
  completion problem, heavy ball 0.5 reaches plain descent's 200-iteration objective, about 1 % of
  the Z0 objective, in 32 iterations).
* ``momentum-eval``: plain descent in training, momentum + ratio stop in evaluation only
  (``solver.eval_momentum``, ``solver.eval_objective_ratio``).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ddeqs.config import ConfigError, ExperimentConfig, load_config

MOMENTUM = 0.5  # heavy ball; best of ddeqs bench momentum at the paper's step 5 (docs/benchmarks.md)
OBJECTIVE_RATIO = 0.01  # plain descent's 200-iteration objective / Z0 objective there: 0.0100


def _eval_iters(cfg: ExperimentConfig) -> int:
    return cfg.solver.eval_iters or cfg.solver.iters


PRESETS: dict[str, Callable[[ExperimentConfig], list[str]]] = {
    "plain": lambda c: ["solver.momentum=0", "solver.objective_ratio=0", "solver.tol=0",
                        "solver.eval_momentum=null", "solver.eval_objective_ratio=null"],
    "plain-quarter": lambda c: ["solver.momentum=0", "solver.objective_ratio=0", "solver.tol=0",
                                "solver.eval_momentum=null", "solver.eval_objective_ratio=null",
                                f"solver.iters={max(1, c.solver.iters // 4)}",
                                f"solver.eval_iters={max(1, _eval_iters(c) // 4)}"],
    "momentum": lambda c: [f"solver.momentum={MOMENTUM}", "solver.nesterov=false",
                           f"solver.objective_ratio={OBJECTIVE_RATIO}", "solver.tol=0",
                           "solver.eval_momentum=null", "solver.eval_objective_ratio=null"],
    "momentum-eval": lambda c: ["solver.momentum=0", "solver.objective_ratio=0", "solver.tol=0",
                                "solver.nesterov=false", f"solver.eval_momentum={MOMENTUM}",
                                f"solver.eval_objective_ratio={OBJECTIVE_RATIO}"],
}
DEFAULT_SETTINGS = ["plain", "plain-quarter", "momentum", "momentum-eval"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Setting:
    """One solver setting: a run-folder-safe ``name`` and the ``--set`` overrides it adds."""

    name: str
    overrides: list[str]


def parse_setting(text: str) -> Setting:
    """``'name:key=value,key=value'`` (or a preset name) -> :class:`Setting` (preset overrides filled in later).

    Commas split overrides only where a ``key=`` follows, so list values like
    ``train.milestones=[0.6,0.9]`` stay whole.
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise ConfigError(f"--setting {text!r}: the name {name!r} must be letters, digits, '.', '_' or '-' "
                          "(it names the run folder), e.g. --setting 'fewer:solver.iters=10'")
    if not sep:
        if name not in PRESETS:
            raise ConfigError(f"--setting {text!r}: unknown preset {name!r} (presets: {', '.join(PRESETS)}); "
                              "or give overrides: 'NAME:key=value,key=value'")
        return Setting(name, [])
    items = [s.strip() for s in re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", rest) if s.strip()]
    bad = [s for s in items if "=" not in s]
    if not items or bad:
        raise ConfigError(f"--setting {text!r}: expected 'NAME:key=value,key=value' (e.g. 'fewer:solver.iters=10')")
    return Setting(name, items)


def resolve_settings(texts: list[str], base: ExperimentConfig) -> list[Setting]:
    """Settings in order (the first is the reference); presets expanded against ``base``; names unique."""
    out: list[Setting] = []
    for text in texts or DEFAULT_SETTINGS:
        s = parse_setting(text)
        if not s.overrides:
            s = Setting(s.name, PRESETS[s.name](base))
        if any(o.name == s.name for o in out):
            raise ConfigError(f"setting name {s.name!r} given twice; each setting needs its own name (run folder)")
        out.append(s)
    return out


@dataclass
class TrainBenchRow:
    """Figures of one setting's run (seconds; ``inner_iters``: mean inner iterations per training step)."""

    name: str
    overrides: list[str]
    run_dir: str
    train_seconds: float
    eval_seconds: float
    total_seconds: float
    inner_iters: float | None
    epochs: int
    device: str
    test: dict[str, float]
    time_ratio: float = 1.0
    solver: dict[str, Any] = field(default_factory=dict)
    load_avg: list[float] | None = None  # 1-minute load average of the machine before and after the run

    def as_dict(self) -> dict:
        return asdict(self)


def _load() -> float | None:
    """1-minute load average (None where the OS has none): shows other work sharing the cores."""
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _mean_inner_iters(history: list[dict[str, Any]]) -> float | None:
    vals = [e["inner_iters"] for e in history if e.get("inner_iters") is not None]
    return sum(vals) / len(vals) if vals else None  # every epoch has the same number of steps


def run_train_bench(
    params: str | None,
    overrides: list[str],
    settings: list[Setting],
    out: str | Path,
    *,
    source: Any = None,
    quiet: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[TrainBenchRow]:
    """Train ``params`` + ``overrides`` once per setting into ``out/<name>`` and return one row each.

    Every configuration is validated before the first run starts. ``source``: data (default: the
    prepared dataset of the configuration), passed to :func:`ddeqs.training.train_run`.
    """
    from ddeqs.training import train_run
    from ddeqs.training.runfolder import read_json

    cfgs = []
    for s in settings:
        try:
            cfgs.append(load_config(params, [*overrides, *s.overrides]))
        except ConfigError as err:
            raise ConfigError(f"setting {s.name!r}: {err}") from None
    out = Path(out)
    rows: list[TrainBenchRow] = []
    for s, cfg in zip(settings, cfgs):
        run_dir = out / s.name
        kw = {"log": log} if log is not None else {}
        load0 = _load()
        t0 = time.perf_counter()
        metrics = train_run(cfg, run_dir, source=source, quiet=quiet, **kw)
        total = time.perf_counter() - t0
        load1 = _load()
        history = read_json(run_dir / "history.json")["epochs"]
        train_s = float(sum(metrics["epoch_seconds"]))
        sv = cfg.solver
        rows.append(TrainBenchRow(
            name=s.name, overrides=s.overrides, run_dir=str(run_dir), train_seconds=train_s,
            eval_seconds=max(total - train_s, 0.0), total_seconds=total, inner_iters=_mean_inner_iters(history),
            epochs=int(metrics["epochs"]), device=str(metrics["device"]), test=dict(metrics["test"]),
            solver={"iters": sv.iters, "eval_iters": sv.eval_iters or sv.iters, "momentum": sv.momentum,
                    "nesterov": sv.nesterov, "objective_ratio": sv.objective_ratio, "tol": sv.tol,
                    "eval_momentum": sv.momentum if sv.eval_momentum is None else sv.eval_momentum,
                    "eval_objective_ratio": (sv.objective_ratio if sv.eval_objective_ratio is None
                                             else sv.eval_objective_ratio)},
            load_avg=None if load0 is None or load1 is None else [load0, load1],
        ))
    ref = rows[0].train_seconds
    for r in rows:
        r.time_ratio = r.train_seconds / ref if ref > 0 else float("nan")
    return rows


def metric_columns(task: str) -> list[str]:
    """Test metrics reported per task: accuracy (classification); w2_free and mmd2 (completion)."""
    return ["accuracy"] if task == "classification" else ["w2_free", "mmd2"]
