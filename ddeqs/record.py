"""The run record: how a run folder is called (one formatter, one parser) and its typed files
``metrics.json`` (:class:`Metrics`) and ``history.json`` (:class:`History`).

Main runs are ``<role>-<task>-<model>`` (task ``cls``/``cpl``, model ``ddeq``/``pointnet``/``pt``/
``pcn``); grid children are ``<main run>--<grid>-<value>`` with the value spelled by
:func:`format_value` (``true``, ``0.05``, ``1``: floats without a trailing ``.0``). The experiment plan
(:mod:`ddeqs.plan`) names the runs it schedules with these functions, and the paper builders
(:mod:`ddeqs.paper`) find them by the same names; no other spelling is looked up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import Self

#: Task part of a run name -> ExperimentConfig ``task``.
TASKS = {"cls": "classification", "cpl": "completion"}
#: Model part of a run name -> ExperimentConfig ``model.name``.
MODELS = {"ddeq": "ddeq", "pointnet": "pointnet", "pt": "point-transformer", "pcn": "pcn"}
_MAIN = rf"(?P<role>[a-z0-9]+)-(?P<task>{'|'.join(TASKS)})-(?P<model>{'|'.join(MODELS)})"
#: A main run name (the pattern of the plan's ``runs`` keys).
MAIN_PATTERN = rf"^[a-z0-9]+-({'|'.join(TASKS)})-({'|'.join(MODELS)})$"
_NAME_RE = re.compile(rf"^{_MAIN}(?:--(?P<grid>[a-z_]+)-(?P<value>.+))?$")


def format_value(value: Any) -> str:
    """A grid value as spelled in a run name: ``True -> 'true'``, ``0.05 -> '0.05'``, ``1.0 -> '1'``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format(float(value), "g")
    return str(value)


def main_name(role: str, task: str, model: str) -> str:
    """``main_name('mnist', 'cls', 'ddeq') == 'mnist-cls-ddeq'``."""
    return f"{role}-{task}-{model}"


def child_name(parent: str, grid: str, value: Any) -> str:
    """``child_name('mnist-cpl-ddeq', 'noise', 0.05) == 'mnist-cpl-ddeq--noise-0.05'``."""
    return f"{parent}--{grid}-{format_value(value)}"


@dataclass(frozen=True)
class RunName:
    """A parsed run name: ``role``, ``task`` (``cls``/``cpl``), ``model`` (``ddeq``, ``pt``, ...), and for a
    grid child the ``grid`` and the ``value`` as spelled in the name (``None`` for a main run)."""

    role: str
    task: str
    model: str
    grid: str | None = None
    value: str | None = None

    @property
    def main(self) -> str:
        """The main run (itself, or a child's parent)."""
        return main_name(self.role, self.task, self.model)

    def __str__(self) -> str:
        return self.main if self.grid is None else f"{self.main}--{self.grid}-{self.value}"


def parse_name(name: str) -> RunName:
    """Split a run name into its parts; ``ValueError`` naming the expected form when it is not one."""
    m = _NAME_RE.match(name)
    if not m:
        raise ValueError(f"run name {name!r} is not <role>-<{'|'.join(TASKS)}>-<{'|'.join(MODELS)}>"
                         f"[--<grid>-<value>]")
    return RunName(*m.group("role", "task", "model", "grid", "value"))


# ---------------------------------------------------------------------------
# the run folder's records: metrics.json and history.json


def to_jsonable(obj: Any) -> Any:
    """Numpy/torch scalars and arrays to plain Python; non-finite floats to None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "detach"):  # torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class _Record(BaseModel):
    """Keys this version does not know (older or newer files) are kept and written back unchanged;
    numpy/torch numbers become plain ones and non-finite floats ``None``, as in the JSON file."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, data: Any) -> Any:
        return to_jsonable(data)

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """Load the file; ``DataError`` naming it when it is not valid JSON of this record."""
        from ddeqs.errors import DataError

        path = Path(path)
        try:
            return cls.model_validate_json(path.read_bytes())
        except (ValidationError, UnicodeDecodeError) as err:
            raise DataError(f"{path} is not a valid {path.name} ({_first_error(err)}); "
                            f"re-run the training rule for {path.parent.name}") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON content: the keys that were set (a field never given is not written)."""
        return self.model_dump(mode="json", exclude_unset=True)


def _first_error(err: Exception) -> str:
    if isinstance(err, ValidationError):
        e = err.errors()[0]
        return f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}"
    return str(err)


#: One split's test metrics: ``<metric>`` (mean over samples), ``<metric>_se`` (its standard error), ``n``.
Block = dict[str, float | int | None]


class Metrics(_Record):
    """``metrics.json`` of a finished run: written by :func:`ddeqs.training.trainer.train_run` (the file
    marks the run as finished) and updated by :func:`ddeqs.training.evaluate.evaluate_run`; read by the
    paper builders. Accuracies are fractions, losses in nats, times in seconds."""

    name: str | None = None
    task: str | None = None
    model: str | None = None
    dataset: str | None = None
    n_params: int | None = None
    device: str | None = None
    epochs: int | None = None
    seconds_per_epoch: float | None = Field(None, description="median wall time of a training epoch, s")
    epoch_seconds: list[float | None] = Field(default_factory=list, description="every epoch's wall time, s")
    mlflow_run_id: str | None = None
    mlflow_experiment_id: str | None = None
    dataset_sha256: str | None = None
    dataset_sha256_trained: str | None = Field(None, description="the data's hash at training, when evaluated on newer data")
    config_flat: dict[str, Any] = Field(default_factory=dict, description="the run's ExperimentConfig, dotted keys")
    train: Block = Field(default_factory=dict, description="final training loss, and train-split metrics if evaluated")
    test: Block = Field(default_factory=dict, description="test-split metrics")
    init: Block | None = Field(None, description="test-split metrics of the untrained model (train.eval_init), else null")

    def test_metric(self, key: str) -> tuple[float, float, int | None]:
        """``(value, standard error, n)`` of a test metric; NaN where absent."""
        value, se, n = self.test.get(key), self.test.get(f"{key}_se"), self.test.get("n")
        return (float(value) if value is not None else float("nan"), float(se) if se is not None else float("nan"),
                int(n) if n is not None else None)


class Epoch(_Record):
    """One epoch of ``history.json`` (epochs count from 0); ``test_<metric>`` keys when evaluated that epoch."""

    epoch: int
    train_loss: float | None = None
    lr: float | None = None
    seconds: float | None = None
    inner_iters: float | None = Field(None, description="mean inner solver iterations (DDEQ)")
    inner_residual: float | None = Field(None, description="mean inner solver residual (DDEQ)")


class History(_Record):
    """``history.json``: the per-epoch training record."""

    epochs: list[Epoch] = Field(default_factory=list)
