"""Inner (forward) solvers of the DDEQ and their torchdeq backward.

* :mod:`ddeqs.solver.loop`: the one Wasserstein gradient flow loop on ``½ MMD²(Z, F(Z, X))``
  (update, stopping, diagnostics); it takes a gradient function:
* :mod:`ddeqs.solver.wgf`: the fast gradient (``solver.impl = "fast"``);
* :mod:`ddeqs.solver.naive`: the naive reference gradient (``"naive"``; tests, benchmarks).
* :mod:`ddeqs.solver.graph`: the loop's stop-free form on fixed buffers, replayed from a CUDA graph
  (``solver.cuda_graph``).
* :mod:`ddeqs.solver.deq`: torchdeq registration, classical solvers, ``build_deq``.
"""

from ddeqs.solver.deq import build_deq, solver_kwargs, solver_name
from ddeqs.solver.loop import GradientFn, wgf_loop
from ddeqs.solver.naive import NaiveGradient, naive_gradient, naive_wgf_solve
from ddeqs.solver.wgf import FastGradient, wgf_gradient, wgf_solve

__all__ = [
    "FastGradient",
    "GradientFn",
    "NaiveGradient",
    "build_deq",
    "naive_gradient",
    "naive_wgf_solve",
    "solver_kwargs",
    "solver_name",
    "wgf_gradient",
    "wgf_loop",
    "wgf_solve",
]
