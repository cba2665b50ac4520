"""The run record's names: how a run folder is called, with one formatter and one parser.

Main runs are ``<role>-<task>-<model>`` (task ``cls``/``cpl``, model ``ddeq``/``pointnet``/``pt``/
``pcn``); grid children are ``<main run>--<grid>-<value>`` with the value spelled by
:func:`format_value` (``true``, ``0.05``, ``1``: floats without a trailing ``.0``). The experiment plan
(:mod:`ddeqs.plan`) names the runs it schedules with these functions, and the paper builders
(:mod:`ddeqs.paper`) find them by the same names; no other spelling is looked up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

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
