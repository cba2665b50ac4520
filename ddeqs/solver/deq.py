"""torchdeq integration: the WGF solver and the classical DEQ solvers behind one ``get_deq``.

* ``wgf``: :func:`ddeqs.solver.wgf.wgf_solve` (``impl="fast"``) or the naive reference
  (``impl="naive"``), registered with ``torchdeq.solver.register_solver`` as ``"ddeqs_wgf"`` by
  :func:`register_solvers`, which :func:`build_deq` calls (nothing is registered at import).
* ``fixed_point`` / ``anderson`` / ``broyden`` (paper App. D.5): torchdeq's
  ``fixed_point_iter`` / ``anderson`` / ``broyden`` on the same ``f(z) = where(movable, F(z), z)``
  (fixed and padded rows stay where they are), registered as thin wrappers that also return ``z*``.

The backward is torchdeq's: ``get_deq(core="sliced", grad=grad_steps, tau=tau)``: in training the
solve runs without graph and one (``grad_steps``) phantom-gradient application of ``f`` to the
detached ``z*`` carries the gradient; in eval the solver output is returned as is.
"""

from __future__ import annotations

from typing import Callable

import torch
from torchdeq import get_deq
from torchdeq.solver import get_solver, register_solver
from torchdeq.solver.stat import SolverStat

from ddeqs.config import SolverConfig
from ddeqs.solver.graph import graph_solve
from ddeqs.solver.loop import GradientFn, wgf_loop
from ddeqs.solver.naive import NaiveGradient
from ddeqs.solver.wgf import FastGradient

CLASSICAL = {"fixed_point": "fixed_point_iter", "anderson": "anderson", "broyden": "broyden"}


def _stat(z: torch.Tensor, info: dict) -> SolverStat:
    rel = info["rel_residual"]
    return SolverStat(
        abs_lowest=rel.new_full(rel.shape, -1.0),
        rel_lowest=rel,
        abs_trace=rel.new_full((rel.shape[0], 1), -1.0),
        rel_trace=rel.unsqueeze(1),
        nstep=rel.new_full(rel.shape, float(info["iters"])),
        objective=info["objective"],
        rel_residual=rel,
        iters=info["iters"],
        converged=info["converged"],
        z_star=z.detach(),
    )


def ddeqs_wgf_solver(
    func: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    max_iter: int = 200,
    tol: float = 0.0,
    stop_mode: str = "rel",
    indexing: list[int] | None = None,
    *,
    mask: torch.Tensor,
    movable: torch.Tensor | None = None,
    step: float = 5.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    objective_ratio: float = 0.0,
    impl: str = "fast",
    cuda_graph: bool = False,
    full_func: Callable[[torch.Tensor], torch.Tensor] | None = None,
    solve_func: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **_: object,
) -> tuple[torch.Tensor, list[torch.Tensor], SolverStat]:
    """torchdeq solver signature around the WGF; ``mask``/``movable`` ``(B, K)`` come via ``solver_kwargs``.

    ``solve_func`` (fast path, optional): the function evaluated at every inner step instead of
    torchdeq's ``func`` (same values; e.g. detached X branch, movable rows only, compiled).
    ``cuda_graph`` (fast path, ``solver.cuda_graph``): the loop of :mod:`ddeqs.solver.graph`.
    ``full_func`` (naive path): F with its X branch recomputed at every call.
    """
    movable = mask if movable is None else movable & mask
    gradient: GradientFn
    if impl == "naive":
        if full_func is None:
            raise ValueError("solver.impl='naive' needs full_func (F with its X branch) in solver_kwargs")
        gradient = NaiveGradient(full_func, mask, movable)
    else:
        if cuda_graph:
            result = graph_solve(solve_func or func, x0, mask, movable, int(max_iter), step, tol, momentum, nesterov,
                                 objective_ratio)
            if result is not None:
                z, info = result
                return z, ([z] if indexing else []), _stat(z, info)
        gradient = FastGradient(solve_func or func, mask, movable, x0.dtype)
    z, info = wgf_loop(gradient, x0, mask, int(max_iter), step, tol, momentum, nesterov, objective_ratio)
    return z, ([z] if indexing else []), _stat(z, info)


def _classical(name: str) -> Callable:
    base = get_solver(name)

    def solver(func, x0, max_iter=50, tol=1e-3, stop_mode="rel", indexing=None, **kwargs):  # type: ignore[no-untyped-def]
        movable = kwargs.pop("movable", None)
        for key in ("mask", "step", "momentum", "nesterov", "objective_ratio", "impl", "cuda_graph", "full_func",
                    "solve_func"):
            kwargs.pop(key, None)
        z, traj, info = base(func, x0, max_iter=max_iter, tol=tol, stop_mode=stop_mode, indexing=indexing, **kwargs)
        if movable is not None:  # Anderson/Broyden mix iterates: restore fixed rows bit-exactly
            z = torch.where(movable.unsqueeze(-1), z, x0)
        info = SolverStat(**info)
        info["z_star"] = z.detach()
        info["iters"] = int(max_iter)
        info["rel_residual"] = info["rel_lowest"]
        return z, traj, info

    solver.__name__ = f"ddeqs_{name}"
    return solver


def register_solvers() -> None:
    """Register ``ddeqs_wgf`` and ``ddeqs_{fixed_point,anderson,broyden}`` with torchdeq (idempotent).

    Called by :func:`build_deq` (where the model's DEQ is built), not at import: torchdeq's
    ``get_deq(f_solver=...)`` looks solvers up by name in its registry.
    """
    register_solver("ddeqs_wgf", ddeqs_wgf_solver)
    for kind, name in CLASSICAL.items():
        register_solver(f"ddeqs_{kind}", _classical(name))


def solver_name(kind: str) -> str:
    """torchdeq solver key registered for ``solver.kind``."""
    if kind != "wgf" and kind not in CLASSICAL:
        raise ValueError(f"unknown solver.kind {kind!r}; use wgf, fixed_point, anderson or broyden")
    return f"ddeqs_{kind}"


def build_deq(cfg: SolverConfig) -> torch.nn.Module:
    """torchdeq ``DEQSliced`` for ``cfg`` (phantom gradient with ``grad_steps`` steps and damping ``tau``).

    Registers this project's solvers with torchdeq first (:func:`register_solvers`).
    """
    register_solvers()
    return get_deq(
        core="sliced",
        f_solver=solver_name(cfg.kind),
        f_max_iter=cfg.iters,
        eval_f_max_iter=cfg.eval_iters or cfg.iters,
        f_tol=cfg.tol,
        f_stop_mode="rel",
        grad=cfg.grad_steps,
        tau=cfg.tau,
    )


def solver_kwargs(
    cfg: SolverConfig,
    mask: torch.Tensor,
    movable: torch.Tensor,
    full_func: Callable[[torch.Tensor], torch.Tensor] | None = None,
    solve_func: Callable[[torch.Tensor], torch.Tensor] | None = None,
    training: bool = True,
) -> dict:
    """``solver_kwargs`` for one ``deq(func, z0, solver_kwargs=...)`` call.

    ``training=False`` (eval mode): ``solver.eval_momentum`` / ``solver.eval_objective_ratio`` replace
    ``solver.momentum`` / ``solver.objective_ratio`` where set (as ``eval_iters`` replaces ``iters``).
    """
    if cfg.kind != "wgf":
        return dict(movable=movable)
    momentum, ratio = cfg.momentum, cfg.objective_ratio
    if not training:
        momentum = cfg.momentum if cfg.eval_momentum is None else cfg.eval_momentum
        ratio = cfg.objective_ratio if cfg.eval_objective_ratio is None else cfg.eval_objective_ratio
    return dict(
        mask=mask, movable=movable, step=cfg.step, momentum=momentum, nesterov=cfg.nesterov,
        objective_ratio=ratio, impl=cfg.impl, cuda_graph=cfg.cuda_graph, full_func=full_func, solve_func=solve_func,
    )
