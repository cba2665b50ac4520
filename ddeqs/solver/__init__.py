"""Inner (forward) solvers of the DDEQ and their torchdeq backward.

* :mod:`ddeqs.solver.wgf`: fast Wasserstein gradient flow on ``½ MMD²(Z, F(Z, X))``.
* :mod:`ddeqs.solver.naive`: the naive reference of the same flow (tests, benchmarks).
* :mod:`ddeqs.solver.deq`: torchdeq registration, classical solvers, ``build_deq``.
"""

from ddeqs.solver.deq import build_deq, solver_kwargs, solver_name
from ddeqs.solver.naive import naive_gradient, naive_wgf_solve
from ddeqs.solver.wgf import wgf_gradient, wgf_solve

__all__ = [
    "build_deq",
    "naive_gradient",
    "naive_wgf_solve",
    "solver_kwargs",
    "solver_name",
    "wgf_gradient",
    "wgf_solve",
]
