"""Benchmarks of the DDEQ forward solver (``ddeqs bench``).

* :mod:`ddeqs.bench.problem`: the synthetic, paper-sized problem (model, batch, loss) a benchmark times;
* :mod:`ddeqs.bench.step`: full training steps (inner solve + phantom-gradient backward + optimizer
  step), fast vs naive inner solve, median time per step and per inner iteration, peak memory;
* :mod:`ddeqs.bench.momentum`: inner iterations that heavy-ball / Nesterov momentum need to reach
  the objective plain descent reaches after a given number of iterations;
* :mod:`ddeqs.bench.train`: one configuration trained under several solver settings (time to
  accuracy), each through the normal training path into its own run folder.

Benchmarks print figures; they are not timed tests (machines are noisy: quote medians and the
ratios of one run).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names and their modules, imported on first use (PEP 562): ``python -m ddeqs.bench.gpu_check``
#: must start without pydantic or torchdeq, to say which packages are missing instead of a traceback.
_LAZY = {"BenchProblem": "problem", "ProblemSpec": "problem", "build_problem": "problem",
         "StepResult": "step", "compare_fixed_points": "step", "run_step_bench": "step"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"ddeqs.bench.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ddeqs.bench' has no attribute {name!r}")
