"""``ddeqs bench momentum``: inner iterations momentum needs to match plain descent.

For one paper-sized problem (:mod:`ddeqs.bench.problem`, eval mode, shared weights, batch and
``Z0``): plain Wasserstein gradient descent runs ``reference_iters`` iterations (paper: 200) and
its final objective ½MMD²(Z, F(Z)) per sample is the target. Each momentum setting then runs
``max_iters`` iterations from the same start; its scores are the first iteration at which
*every* sample's objective is at or below its target (``reach_iters``) and the first from which the
iterate the solver would return stays there until ``max_iters`` (``stay_iters``; None if never).
With momentum the solver returns each sample's lowest-objective iterate
(:class:`ddeqs.solver.loop.StopRule`), so that is the running minimum of the trace. Each
setting is then run again with the relative-objective stopping rule ``solver.objective_ratio``
set to the ratio plain descent reached (``min_b target_b / objective_b(Z0)``, so every sample must
get to its own target): the iteration at which the last sample stopped (``stop_iters``) and
whether the returned iterates are at or below their targets are reported. ``tol > 0`` adds the
same for the rate rule ``solver.tol`` instead.

Use the completion problem: with the paper's step size 5, plain descent on an untrained
classification F oscillates instead of converging, so its 200-iteration objective is no target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from ddeqs.bench.problem import ProblemSpec, build_problem


@dataclass
class MomentumRow:
    """One setting: iterations to reach (``reach_iters``) and to stay at (``stay_iters``) the target."""

    momentum: float
    nesterov: bool
    reach_iters: int | None
    stay_iters: int | None
    final_objective: float
    stop_iters: int | None = None
    stop_objective: float | None = None
    stop_reached: bool | None = None
    tol_stop_iters: int | None = None
    tol_stop_reached: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def objective_trace(spec: ProblemSpec, tol: float = 0.0, ratio: float = 0.0) -> torch.Tensor:
    """``(B, T)`` ½MMD² at every evaluated inner iterate of one eval-mode solve of ``spec``."""
    overrides = tuple(o for o in spec.overrides if not o.startswith(("solver.tol=", "solver.objective_ratio=")))
    overrides += (f"solver.tol={tol}", f"solver.objective_ratio={ratio}")
    problem = build_problem(replace(spec, overrides=overrides))
    problem.model.eval()
    torch.manual_seed(spec.seed + 1)  # same Z0 / free-particle noise for every setting
    with torch.no_grad():
        out = problem.model(problem.batch.points, problem.batch.mask)
    return out.solver["objective"].detach().double().cpu()


def returned_objective(trace: torch.Tensor, momentum: float) -> torch.Tensor:
    """``(B, T)`` objective of the iterate the solver returns if stopped after each iteration.

    With momentum that is the best iterate so far (running minimum); plain descent returns its last one.
    """
    return torch.cummin(trace, dim=1).values if momentum > 0 else trace


def first_reach(trace: torch.Tensor, target: torch.Tensor) -> int | None:
    """Iterations (1-based) after which every sample ``b`` has ``trace[b, t] <= target[b]``; None if never.

    ``trace[:, t]`` is the objective *at* iterate t (before update t+1): reaching it at index t
    means t update steps were taken.
    """
    ok = (trace <= target[:, None]).all(0)
    hit = ok.nonzero().flatten()
    return int(hit[0]) if hit.numel() else None


def first_stay(trace: torch.Tensor, target: torch.Tensor) -> int | None:
    """First iteration from which every sample stays at or below its target to the end; None if never."""
    ok = (trace <= target[:, None]).all(0)
    if not bool(ok[-1]):
        return None
    bad = (~ok).nonzero().flatten()
    return int(bad[-1]) + 1 if bad.numel() else 0


def momentum_study(
    spec: ProblemSpec,
    settings: list[tuple[float, bool]],
    reference_iters: int = 200,
    max_iters: int | None = None,
    tol: float = 0.0,
) -> tuple[torch.Tensor, float, list[MomentumRow]]:
    """Plain-descent target ``(B,)``, the objective ratio it reached and one :class:`MomentumRow` per setting."""
    max_iters = max_iters or reference_iters
    plain = objective_trace(replace(spec, iters=reference_iters + 1, momentum=0.0, nesterov=False))
    target = plain[:, reference_iters]  # objective after reference_iters update steps
    ratio = float((target / plain[:, 0]).min())
    rows = []
    for mom, nest in settings:
        trace = objective_trace(replace(spec, iters=max_iters + 1, momentum=mom, nesterov=nest))
        returned = returned_objective(trace, mom)
        row = MomentumRow(mom, nest, first_reach(trace, target), first_stay(returned, target),
                          float(returned[:, -1].mean()))
        stopped = objective_trace(replace(spec, iters=max_iters + 1, momentum=mom, nesterov=nest), ratio=ratio)
        row.stop_iters = stopped.shape[1] - 1  # update steps taken before the last evaluation
        row.stop_objective = float(returned_objective(stopped, mom)[:, -1].mean())
        row.stop_reached = bool((returned_objective(stopped, mom)[:, -1] <= target).all())
        if tol > 0:
            stopped = objective_trace(replace(spec, iters=max_iters + 1, momentum=mom, nesterov=nest), tol=tol)
            row.tol_stop_iters = stopped.shape[1] - 1
            row.tol_stop_reached = bool((returned_objective(stopped, mom)[:, -1] <= target).all())
        rows.append(row)
    return target, ratio, rows
