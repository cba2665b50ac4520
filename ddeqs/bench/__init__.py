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

from ddeqs.bench.problem import BenchProblem, ProblemSpec, build_problem
from ddeqs.bench.step import StepResult, compare_fixed_points, run_step_bench

__all__ = ["BenchProblem", "ProblemSpec", "StepResult", "build_problem", "compare_fixed_points", "run_step_bench"]
