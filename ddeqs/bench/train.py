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

**Time to target**: the target is the reference's final primary metric (accuracy; completion: W2
of the free particles) one standard error towards worse; a setting reaches it at the first
evaluated epoch whose test metric is at least that good. With ``--set train.eval_every=1`` every
epoch is evaluated (at the setting's evaluation solver; not counted as training time); otherwise
only the last. Per setting the table gives that epoch, the training seconds up to it, their ratio
to the reference's own time to target and their share of the reference's whole training time.

A setting whose folder ``OUT/<name>`` already holds its finished run is read, not retrained (rerun
the same command after an interruption, or add a setting); a folder holding a finished run of
another configuration stops the bench, naming it, before anything trains.

The settings train one after the other, not interleaved as in ``ddeqs bench step``: on a shared
machine whose speed drifts, the seconds (and the ratio) move with the load, while inner
iterations and test metrics do not. The 1-minute load average before and after each run is
printed next to it (above the number of cores: other work shared them). Quote times from a quiet
machine, or rerun and compare.

Named presets (``PRESETS``); the default settings are ``paper fast-train plain momentum``:

* ``paper``: the paper's solver (``solver.preset=paper``: plain descent, 200 iterations in training
  and evaluation): the reference of the issue's question.
* ``fast-train``: ``solver.preset=fast-train`` (heavy ball 0.5, 25 iterations in training, 200 at
  evaluation), the setting that met it (docs/benchmarks.md).

and, relative to the configuration's ``solver.iters`` = N:

* ``plain``: plain descent, N iterations (momentum 0, no early stop).
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
    # the configuration-level solver presets (ddeqs.config.SOLVER_PRESETS), whatever N is
    "paper": lambda c: ["solver.preset=paper"],
    "fast-train": lambda c: ["solver.preset=fast-train"],
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
DEFAULT_SETTINGS = ["paper", "fast-train", "plain", "momentum"]
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
    eval_seconds: float | None  # None: a reused run (its evaluation time was not recorded)
    total_seconds: float | None
    inner_iters: float | None
    epochs: int
    device: str
    test: dict[str, float]
    time_ratio: float = 1.0
    solver: dict[str, Any] = field(default_factory=dict)
    load_avg: list[float] | None = None  # 1-minute load average of the machine before and after the run
    reused: bool = False  # OUT/<name> already held this setting's finished run: read, not retrained
    # test metrics after each evaluated epoch: {"epoch" (1-based), "seconds" (training time so far), <metric>: ...}
    curve: list[dict[str, float]] = field(default_factory=list)
    target: float | None = None  # the reference's final primary metric, one s.e. towards worse
    target_epoch: int | None = None  # first evaluated epoch at or past the target (None: never reached)
    target_seconds: float | None = None  # training seconds up to that epoch
    target_ratio: float | None = None  # target_seconds / the reference's target_seconds
    target_share: float | None = None  # target_seconds / the reference's whole training time (train_seconds)

    def as_dict(self) -> dict:
        return asdict(self)


def _load() -> float | None:
    """1-minute load average (None where the OS has none): shows other work sharing the cores."""
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def metric_curve(history: list[dict[str, Any]], final: dict[str, float], epoch_seconds: list[float]) -> list[dict[str, float]]:
    """Test metrics per evaluated epoch with the training seconds spent so far.

    ``history``: ``history.json`` rows (``test_<metric>`` where ``train.eval_every`` evaluated that
    epoch); ``final``: ``metrics.json`` ``test`` (the last epoch, which history never evaluates).
    """
    out: list[dict[str, float]] = []
    spent = 0.0
    last = len(epoch_seconds)
    for i, sec in enumerate(epoch_seconds, start=1):
        spent += float(sec)
        row = history[i - 1] if i - 1 < len(history) else {}
        vals = final if i == last else {k[5:]: v for k, v in row.items() if k.startswith("test_")}
        if vals:
            out.append({"epoch": i, "seconds": spent, **{k: float(v) for k, v in vals.items()}})
    return out


def primary_metric(task: str) -> tuple[str, bool]:
    """``(metric, higher_is_better)`` that decides time to target: the first of :func:`metric_columns`
    (accuracy, or W2 of the free particles)."""
    return metric_columns(task)[0], task == "classification"


def apply_target(rows: list[TrainBenchRow], task: str) -> None:
    """Fill every row's time to target, the target being the first row's final metric one s.e. towards worse.

    A row reaches the target at its first evaluated epoch whose metric is at least as good; its
    ``target_ratio`` compares its training seconds to that point with the reference's own time to
    target, ``target_share`` with the reference's whole training (the question asked of a faster
    setting: the reference's metric, within one standard error, in at most 1/4 of its time).
    """
    metric, higher = primary_metric(task)
    ref = rows[0].test
    if metric not in ref:
        return
    se = float(ref.get(metric + "_se") or 0.0)
    target = float(ref[metric]) - se if higher else float(ref[metric]) + se
    for r in rows:
        r.target = target
        hit = next((c for c in r.curve if metric in c and (c[metric] >= target if higher else c[metric] <= target)),
                   None)
        r.target_epoch = None if hit is None else int(hit["epoch"])
        r.target_seconds = None if hit is None else hit["seconds"]
    base, whole = rows[0].target_seconds, rows[0].train_seconds
    for r in rows:
        r.target_ratio = None if r.target_seconds is None or not base else r.target_seconds / base
        r.target_share = None if r.target_seconds is None or not whole else r.target_seconds / whole


def _mean_inner_iters(history: list[dict[str, Any]]) -> float | None:
    vals = [e["inner_iters"] for e in history if e.get("inner_iters") is not None]
    return sum(vals) / len(vals) if vals else None  # every epoch has the same number of steps


def finished_run(run_dir: Path, cfg: ExperimentConfig) -> bool:
    """True when ``run_dir`` holds a finished run (``metrics.json``) of ``cfg``: the bench reuses it.

    A finished run of another configuration is never overwritten: :class:`ConfigError` naming the
    folder. Configurations compare as checkpoints do (:func:`ddeqs.training.checkpoint.config_fingerprint`:
    display and tracking fields aside).
    """
    from ddeqs.training.checkpoint import config_fingerprint

    if not (run_dir / "metrics.json").is_file():
        return False
    try:
        theirs = load_config(run_dir / "config.yaml")
    except ConfigError as err:
        raise ConfigError(f"{run_dir} holds a finished run whose config.yaml cannot be read ({err}); "
                          "move it away or pass another --out") from None
    if config_fingerprint(theirs) != config_fingerprint(cfg):
        raise ConfigError(f"{run_dir} holds a finished run of another configuration; it is not overwritten. "
                          "Pass another --out, or move that folder away to retrain this setting")
    return True


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

    Every configuration is validated before the first run starts. A setting whose folder already
    holds its finished run (an interrupted or extended bench) is read instead of trained
    (:func:`finished_run`; a finished run of another configuration stops the bench before it
    trains). ``source``: data (default: the prepared dataset of the configuration), passed to
    :func:`ddeqs.training.train_run`.
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
    reuse = [finished_run(out / s.name, cfg) for s, cfg in zip(settings, cfgs)]  # refuses a foreign run first
    rows: list[TrainBenchRow] = []
    for s, cfg, reused in zip(settings, cfgs, reuse):
        run_dir = out / s.name
        kw = {"log": log} if log is not None else {}
        load0 = _load()
        t0 = time.perf_counter()
        if reused:
            metrics = read_json(run_dir / "metrics.json")
            (log or print)(f"{s.name}: {run_dir} holds this setting's finished run: its figures are reused, not retrained")
        else:
            metrics = train_run(cfg, run_dir, source=source, quiet=quiet, **kw)
        total = time.perf_counter() - t0
        load1 = _load()
        history = read_json(run_dir / "history.json")["epochs"]
        train_s = float(sum(metrics["epoch_seconds"]))
        sv = cfg.solver
        rows.append(TrainBenchRow(
            name=s.name, overrides=s.overrides, run_dir=str(run_dir), train_seconds=train_s,
            eval_seconds=None if reused else max(total - train_s, 0.0), total_seconds=None if reused else total,
            inner_iters=_mean_inner_iters(history), reused=reused,
            epochs=int(metrics["epochs"]), device=str(metrics["device"]), test=dict(metrics["test"]),
            solver={"iters": sv.iters, "eval_iters": sv.eval_iters or sv.iters, "momentum": sv.momentum,
                    "nesterov": sv.nesterov, "objective_ratio": sv.objective_ratio, "tol": sv.tol,
                    "eval_momentum": sv.momentum if sv.eval_momentum is None else sv.eval_momentum,
                    "eval_objective_ratio": (sv.objective_ratio if sv.eval_objective_ratio is None
                                             else sv.eval_objective_ratio)},
            load_avg=None if reused or load0 is None or load1 is None else [load0, load1],
            curve=metric_curve(history, metrics["test"], metrics["epoch_seconds"]),
        ))
    ref = rows[0].train_seconds
    for r in rows:
        r.time_ratio = r.train_seconds / ref if ref > 0 else float("nan")
    apply_target(rows, cfgs[0].task)
    return rows


def metric_columns(task: str) -> list[str]:
    """Test metrics reported per task: accuracy (classification); w2_free and mmd2 (completion)."""
    return ["accuracy"] if task == "classification" else ["w2_free", "mmd2"]
