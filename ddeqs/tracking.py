"""MLflow tracking for training and evaluation runs; never the source of truth, never fatal.

* Store: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///results/mlflow/mlflow.db``
  (MLflow 3 refuses the old ``./mlruns`` file store). For SQLite stores the folder is created and
  new experiments put their artifacts in ``artifacts/`` next to the database file. MLflow stores
  artifact locations as absolute paths; every time a tracker opens a SQLite store it re-roots them
  at ``<database folder>/artifacts`` (:func:`relocate_artifacts`), so a copied or cloned results
  folder reads and writes its own artifacts, never the original's.
* Dataset: :meth:`Tracker.log_dataset` logs the run's dataset as an MLflow dataset input (name,
  digest = start of its sha256, split sizes in the profile), shown in the UI's Dataset column.
* Experiment: ``tracking.experiment``, else one per task family (``ddeqs-classification``,
  ``ddeqs-completion``).
* Ablation grids: ``tracking.parent_run`` names a parent run, found by its tag
  ``ddeqs.parent_name`` (or created) in the same experiment; the run is nested under it.
* Tags: ``ddeqs.dataset_sha256``, ``mlflow.source.git.commit`` (inside a git checkout),
  ``mlflow.source.name`` (``ddeqs <rule>``), ``ddeqs.rule`` (``tracking.rule``), task/model/dataset/run
  name. Experiments get a description (``mlflow.note.content``) when created.

Every call goes through :meth:`Tracker._safe`: if the server is unreachable or MLflow raises,
one warning is printed, tracking switches off and training goes on (the run folder always gets
its files). MLflow is imported lazily: it takes seconds to import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlparse

__all__ = [
    "DEFAULT_URI", "NullTracker", "Tracker", "experiment_name", "git_commit", "open_tracker", "relocate_artifacts",
    "resolve_uri",
]

DEFAULT_URI = "sqlite:///results/mlflow/mlflow.db"
PARENT_TAG = "ddeqs.parent_name"
_PARAM_MAX = 6000  # MLflow 3 limit on a param value's length
_BATCH_PARAMS = 100
_BATCH_METRICS = 1000


def resolve_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_URI`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URI (else None).

    SQLite's own URI form, ``sqlite:///file:/path/db?mode=ro&uri=true``, names ``/path/db``.
    """
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest[len("file:"):] if rest.startswith("file:") else rest)


def relocate_artifacts(db: str | Path) -> int:
    """Re-root the artifact locations of SQLite store ``db`` at ``<db folder>/artifacts``.

    MLflow resolves every artifact location to an absolute path when it creates an experiment or a
    run, so a copied results folder would still point into the original. Rewrites, for experiments
    whose location is a ``file:`` URI ending in ``/artifacts`` (the layout this module creates),
    the experiment location, its runs' artifact URIs and its logged models' locations. Plain SQL
    (stdlib sqlite3): MLflow has no API to move a store. Returns the number of experiments moved.
    """
    import sqlite3

    db = Path(db)
    if not db.is_file():
        return 0
    root = (db.parent.resolve() / "artifacts").as_uri()
    con = sqlite3.connect(db, timeout=30)
    moved = 0
    try:
        with con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "experiments" not in tables:
                return 0
            rows = con.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
            for exp_id, old in rows:
                if not old or old == root or not old.startswith("file:") or not old.endswith("/artifacts"):
                    continue
                n = len(old)
                con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (root, exp_id))
                for table, col in (("runs", "artifact_uri"), ("logged_models", "artifact_location")):
                    if table in tables:
                        con.execute(
                            f"UPDATE {table} SET {col} = ? || substr({col}, ?) WHERE experiment_id = ? "
                            f"AND substr({col}, 1, ?) = ?",
                            (root, n + 1, exp_id, n, old),
                        )
                moved += 1
    finally:
        con.close()
    return moved


EXPERIMENT_DESCRIPTIONS = {
    "classification": "DDEQs reproduction, point-cloud classification (paper Tables 1, 3, 5, App. D.5): "
    "one run per model and dataset; ablation grids are parent runs with one child per value.",
    "completion": "DDEQs reproduction, point-cloud completion (paper Tables 2, 4, 6): one run per model "
    "and dataset; ablation grids are parent runs with one child per value.",
}


def experiment_name(task: str, explicit: str | None = None) -> str:
    """``explicit`` or ``ddeqs-<task>`` (one experiment per task family)."""
    return explicit or f"ddeqs-{task}"


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD commit of the git checkout around ``cwd`` (None outside git or without git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class NullTracker:
    """Tracking switched off (``tracking.enabled=false``): every method is a no-op."""

    active = False
    run_id: str | None = None
    experiment_id: str | None = None
    uri: str | None = None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_metric_series(self, key: str, values: Iterable[tuple[int, float]]) -> None: ...
    def log_steps(self, items: Iterable[tuple[str, float, int]]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_dataset(self, name: str, sha256: str | None, sizes: dict[str, int | None], context: str = "training") -> None: ...
    def set_tags(self, tags: dict[str, Any]) -> None: ...
    def log_model(self, model: Any, in_dim: int, task: str, num_classes: int | None = None) -> None: ...
    def summarize_parent(self) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...


class Tracker(NullTracker):
    """One MLflow run (new, or an existing one reopened by id). All errors are caught: see module doc."""

    def __init__(self, uri: str | None = None, warn: Callable[[str], None] = _warn) -> None:
        self.uri = resolve_uri(uri)
        self._warn_fn = warn
        self.active = True
        self.client: Any = None
        self.run_id = None
        self.experiment_id = None
        self.parent_id: str | None = None
        self.parent_name: str | None = None

    # ------------------------------------------------------------------ safety net
    def _safe(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.active:
            return None
        try:
            return fn()
        except Exception as err:  # MLflow raises many types (connection, REST, SQL): all non-fatal
            self.active = False
            lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
            # the informative line (e.g. "(sqlite3.OperationalError) attempt to write a readonly database")
            msg = next((ln for ln in lines if "Error)" in ln), lines[0] if lines else type(err).__name__)
            self._warn_fn(
                f"ddeqs: warning: MLflow tracking at {self.uri} failed while {what} ({type(err).__name__}: {msg[:300]}); "
                "tracking is off for this run, metrics still go to the run folder"
            )
            return None

    # ------------------------------------------------------------------ setup
    def _connect(self) -> Any:
        scheme = urlparse(self.uri).scheme
        if scheme in ("http", "https"):  # fail fast on an unreachable server unless the user chose otherwise
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        db = sqlite_path(self.uri)
        from mlflow.tracking import MlflowClient

        for name in ("alembic", "mlflow"):  # schema migrations and store notes are noise in training logs
            logging.getLogger(name).setLevel(logging.WARNING)
        # a failing store (read-only database, locked file) logs a whole traceback per attempt at ERROR
        # level; _safe reports it in one line, so those logs are only noise
        logging.getLogger("mlflow.store").setLevel(logging.CRITICAL)

        if db is None:
            self.client = MlflowClient(tracking_uri=self.uri)
            return self.client
        # Jobs starting together on a fresh database would run MLflow's schema migration at once
        # and leave it half-made (alembic temp tables); one process at a time opens (creates or
        # migrates) the store and re-roots its artifacts (filelock: a lock file next to it).
        from filelock import FileLock

        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{db}.lock", timeout=300):
            relocate_artifacts(db)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)  # the store is opened (schema made) here at the latest
        return self.client

    def _artifact_location(self) -> str | None:
        db = sqlite_path(self.uri)
        return (db.parent.resolve() / "artifacts").as_uri() if db is not None else None

    def _experiment(self, name: str, description: str | None = None) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            tags = {"mlflow.note.content": description} if description else None
            return self.client.create_experiment(name, artifact_location=self._artifact_location(), tags=tags)
        except Exception:  # created meanwhile by a concurrent job
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _parent(self, experiment_id: str, name: str) -> str:
        """Run id of the parent run tagged ``ddeqs.parent_name = name`` (created if missing)."""
        flt = f"tags.`{PARENT_TAG}` = '{name}'"
        found = self.client.search_runs([experiment_id], filter_string=flt, order_by=["attributes.start_time ASC"])
        if found:
            return found[0].info.run_id
        run = self.client.create_run(experiment_id, run_name=name, tags={PARENT_TAG: name, "ddeqs.kind": "grid"})
        self.client.set_terminated(run.info.run_id, "FINISHED")
        # two jobs of one grid may create the parent at once: keep the oldest, delete ours if it lost
        found = self.client.search_runs([experiment_id], filter_string=flt, order_by=["attributes.start_time ASC"])
        if found and found[0].info.run_id != run.info.run_id:
            self.client.delete_run(run.info.run_id)
            return found[0].info.run_id
        return run.info.run_id

    def start(
        self, experiment: str, run_name: str, tags: dict[str, Any] | None = None, parent: str | None = None,
        run_id: str | None = None, description: str | None = None,
    ) -> "Tracker":
        """Open run ``run_id`` if it exists in this store, else create ``run_name`` in ``experiment``."""

        def go() -> None:
            self._connect()
            if run_id:
                try:
                    run = self.client.get_run(run_id)
                    self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
                    self.client.update_run(self.run_id, status="RUNNING")
                    return
                except Exception:  # not in this store (moved, other URI): start a new run
                    pass
            self.experiment_id = self._experiment(experiment, description)
            all_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
            if parent:
                self.parent_id, self.parent_name = self._parent(self.experiment_id, parent), parent
                all_tags["mlflow.parentRunId"] = self.parent_id
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id

        def go_retrying() -> None:
            # SQLite: concurrent jobs of one pipeline may find the database locked or half-created
            # (schema migration by another job); retry a few times before giving up
            attempts = 4 if sqlite_path(self.uri) is not None else 1
            for i in range(attempts):
                try:
                    return go()
                except Exception:
                    if i == attempts - 1:
                        raise
                    import time

                    time.sleep(1.0 + i)

        self._safe("starting the run", go_retrying)
        if self.run_id is None:
            self.active = False
        return self

    # ------------------------------------------------------------------ logging
    def set_tags(self, tags: dict[str, Any]) -> None:
        def go() -> None:
            for k, v in tags.items():
                if v is not None:
                    self.client.set_tag(self.run_id, k, str(v))

        self._safe("setting tags", go)

    def log_params(self, params: dict[str, Any]) -> None:
        from_items = [(k, ("null" if v is None else str(v))[:_PARAM_MAX]) for k, v in params.items()]

        def go() -> None:
            from mlflow.entities import Param

            for i in range(0, len(from_items), _BATCH_PARAMS):
                chunk = [Param(k, v) for k, v in from_items[i : i + _BATCH_PARAMS]]
                self.client.log_batch(self.run_id, params=chunk)

        self._safe("logging params", go)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log finite numeric ``metrics`` at ``step`` (non-numbers and NaN are skipped)."""
        items = [(k, float(v), step or 0) for k, v in metrics.items() if _finite(v)]
        self._log(items, "logging metrics")

    def log_metric_series(self, key: str, values: Iterable[tuple[int, float]]) -> None:
        """Log ``(step, value)`` pairs of one metric (e.g. an inner-solver trace)."""
        self._log([(key, float(v), int(s)) for s, v in values if _finite(v)], f"logging {key}")

    def log_steps(self, items: Iterable[tuple[str, float, int]]) -> None:
        """Log ``(key, value, step)`` triples in batches (per-step training metrics, diagnostics)."""
        self._log([(k, float(v), int(s)) for k, v, s in items if _finite(v)], "logging step metrics")

    def _log(self, items: list[tuple[str, float, int]], what: str) -> None:
        if not items:
            return

        def go() -> None:
            import time

            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            for i in range(0, len(items), _BATCH_METRICS):
                chunk = [Metric(k, v, ts, s) for k, v, s in items[i : i + _BATCH_METRICS]]
                self.client.log_batch(self.run_id, metrics=chunk)

        self._safe(what, go)

    def log_dataset(self, name: str, sha256: str | None, sizes: dict[str, int | None], context: str = "training") -> None:
        """Log the run's dataset as an MLflow dataset input (UI: Dataset column).

        ``digest``: the first 36 hex digits of ``sha256`` (MLflow's column limit); the full hash and
        the split sizes (e.g. ``{"train": 1000, "test": 200}``, clouds) go into the profile.
        """
        import json

        def go() -> None:
            from mlflow.entities import Dataset, DatasetInput, InputTag

            from ddeqs.data.registry import PROCESSED_ROOT, dataset_dir

            ds = Dataset(
                name=name, digest=(sha256 or "unknown")[:36], source_type="local",
                source=json.dumps({"uri": dataset_dir(PROCESSED_ROOT, name).as_posix()}),
                profile=json.dumps({"sha256": sha256, **{f"{k}_clouds": int(v) for k, v in sizes.items() if v is not None}}),
            )
            self.client.log_inputs(self.run_id, datasets=[DatasetInput(ds, [InputTag("mlflow.data.context", context)])])

        self._safe("logging the dataset", go)

    def log_model(self, model: Any, in_dim: int, task: str, num_classes: int | None = None) -> None:
        """Log the trained ``torch.nn.Module`` as an MLflow model (UI: Models column), once, at the end.

        Signature (descriptive: ``forward(points, mask)`` returns a ``ModelOutput``): inputs
        ``points`` float32 ``(B, N, in_dim)`` and ``mask`` bool ``(B, N)``; output classification
        ``logits`` ``(B, num_classes)``, completion ``points`` ``(B, M, in_dim)``. Requirements are given
        (torch, ddeqs) rather than inferred, which would import-scan the process for seconds.
        ``mlflow.pytorch.load_model("runs:/<run id>/pytorch")`` returns the module on CPU (the run folder's
        ``model.pt`` and ``config.yaml`` stay under the artifact folder ``model/``).
        """

        def go() -> None:
            import mlflow
            import mlflow.pytorch
            import numpy as np
            import torch
            from mlflow.models.signature import ModelSignature
            from mlflow.types.schema import Schema, TensorSpec

            inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, in_dim), "points"),
                             TensorSpec(np.dtype(np.bool_), (-1, -1), "mask")])
            out = (TensorSpec(np.dtype(np.float32), (-1, int(num_classes or -1)), "logits") if task == "classification"
                   else TensorSpec(np.dtype(np.float32), (-1, -1, in_dim), "points"))
            from ddeqs import __version__ as ddeqs_version

            logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its pickle-format notice, every run
            reqs = [f"torch=={torch.__version__.split('+')[0]}", f"ddeqs=={ddeqs_version}"]
            mlflow.set_tracking_uri(self.uri)
            cpu = model.to("cpu") if next(model.parameters(), torch.empty(0)).device.type != "cpu" else model
            # the fluent API needs an active run: reopen ours; the tracker sets the final status in end()
            with mlflow.start_run(run_id=self.run_id), _no_requirement_scan():
                mlflow.pytorch.log_model(cpu, name="pytorch", signature=ModelSignature(inputs, Schema([out])),
                                         pip_requirements=reqs, serialization_format="pickle")

        self._safe("logging the model", go)

    def summarize_parent(self) -> None:
        """Give this run's grid parent the summary of its finished children: ``grid_summary.json`` and
        ``grid_summary.md`` (one row per child: grid value and test metrics), ``grid_summary.png``
        (the main test metric per value) and a description. Rewritten by each child as it finishes,
        so the parent shows the grid so far."""
        if not self.parent_id:
            return

        def go() -> None:
            flt = f"tags.`mlflow.parentRunId` = '{self.parent_id}' and attributes.status = 'FINISHED'"
            children = self.client.search_runs([self.experiment_id], filter_string=flt)
            prefix = f"{self.parent_name}-"
            rows = []
            for child in children:
                name = child.info.run_name or ""
                test = {k: v for k, v in sorted(child.data.metrics.items()) if k.startswith("test_")}
                rows.append({"run": name, "value": name[len(prefix):] if name.startswith(prefix) else name, **test})
            if self.run_id not in {c.info.run_id for c in children}:  # this run is finishing now
                return
            rows.sort(key=lambda r: _as_number(r["value"]))
            keys = list(dict.fromkeys(k for r in rows for k in r))
            md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            md += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in rows]
            self.client.log_dict(self.parent_id, {"grid": self.parent_name, "children": rows}, "grid_summary.json")
            self.client.log_text(self.parent_id, "\n".join(md) + "\n", "grid_summary.md")
            main = next((k for k in ("test_accuracy", "test_mmd2", "test_chamfer") if any(k in r for r in rows)), None)
            if main:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt

                fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
                pts = [(r["value"], r[main]) for r in rows if main in r]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
                ax.set_xlabel(self.parent_name.rsplit("--", 1)[-1])
                ax.set_ylabel(main)
                ax.set_title(self.parent_name, fontsize=9)
                fig.tight_layout()
                self.client.log_figure(self.parent_id, fig, "grid_summary.png")
                plt.close(fig)
            # the parent row of the UI shows the grid's source and dataset (those of its children)
            me = self.client.get_run(self.run_id)
            for key in ("mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit", "ddeqs.dataset_sha256"):
                if key in me.data.tags:
                    self.client.set_tag(self.parent_id, key, me.data.tags[key])
            parent_inputs = self.client.get_run(self.parent_id).inputs.dataset_inputs
            if me.inputs.dataset_inputs and not parent_inputs:
                self.client.log_inputs(self.parent_id, datasets=me.inputs.dataset_inputs[:1])
            self.client.set_tag(self.parent_id, "mlflow.note.content",
                                f"Ablation grid {self.parent_name}: {len(rows)} finished children. "
                                "Artifacts: grid_summary.md (table), grid_summary.png (plot).")

        self._safe("summarizing the grid parent", go)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if Path(path).is_file():
            self._safe(f"uploading {Path(path).name}", lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        self._safe("closing the run", lambda: self.client.set_terminated(self.run_id, status))
        if status == "FINISHED":
            self.summarize_parent()
        self.active = False


def _as_number(v: str) -> tuple[int, float | str]:
    """Sort key of a grid value: numbers by value, then words (true, anderson) by name."""
    try:
        return (0, float(v))
    except ValueError:
        return (1, v)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def _finite(v: Any) -> bool:
    import math

    try:
        return not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def open_tracker(
    cfg: Any, run_name: str, tags: dict[str, Any] | None = None, run_id: str | None = None,
    warn: Callable[[str], None] = _warn,
) -> NullTracker:
    """A started :class:`Tracker` for ``cfg`` (an ExperimentConfig), or a :class:`NullTracker`.

    Tags ``ddeqs.rule`` (``tracking.rule``), ``mlflow.source.git.commit`` and task/model/dataset are
    added to ``tags``. ``run_id``: reopen that run (resume, evaluate) when it exists in the store.
    """
    if not cfg.tracking.enabled:
        return NullTracker()
    all_tags = {
        "ddeqs.run_name": run_name,
        "ddeqs.task": cfg.task,
        "ddeqs.model": cfg.model.name,
        "ddeqs.dataset": cfg.data.dataset,
        "ddeqs.rule": cfg.tracking.rule,
        "mlflow.source.git.commit": git_commit(),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": f"ddeqs {cfg.tracking.rule or 'train'}",
    }
    all_tags.update(tags or {})
    tracker = Tracker(cfg.tracking.uri, warn=warn)
    return tracker.start(
        experiment_name(cfg.task, cfg.tracking.experiment), run_name, all_tags, parent=cfg.tracking.parent_run,
        run_id=run_id, description=EXPERIMENT_DESCRIPTIONS.get(cfg.task) if not cfg.tracking.experiment else None,
    )


@contextlib.contextmanager
def _no_requirement_scan() -> Iterator[None]:
    """Skip MLflow's check that the running environment satisfies the model's pip requirements while a
    model is logged: it maps every installed distribution to its modules (~4 s per training job on CPU,
    a tenth of a smoke training), and our requirements are read from that same environment (torch and
    ddeqs versions), so it cannot find a mismatch. Nothing is patched if MLflow moves the function."""
    from mlflow.utils import environment

    name = "warn_dependency_requirement_mismatches"
    if not callable(getattr(environment, name, None)):
        yield
        return
    original = getattr(environment, name)
    setattr(environment, name, lambda *_a, **_k: None)
    try:
        yield
    finally:
        setattr(environment, name, original)
