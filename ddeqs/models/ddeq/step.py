"""The per-step function of the fast inner solve: ``f(z) = where(movable, F(z, X), z)``.

:func:`make_solve_func` builds, once per solve, the function the WGF evaluates at every inner
step (and differentiates w.r.t. ``z`` only); which of the cases below runs is decided by the one
dispatcher, :func:`ddeqs.models.ddeq.fastpath.plan_step`:

* the X branch (:class:`FContext`) is prepared by the caller and used detached, so no
  autograd graph reaches the parameters or X during the solve;
* masks that hide nothing are dropped once per solve (``x_mask`` / ``z_mask`` all True: the
  unmasked attention kernels run and no select is done per step; :meth:`FContext.dense`);
* only the movable rows go through the row-wise tail of F (:meth:`FMap.apply_rows`) when some
  rows are fixed (completion: the input particles) or padding; the others are returned as ``z``;
* every particle real and moving, no dropout, CPU (classification): F's Z branch runs as one
  autograd node with a hand-written input gradient (:mod:`ddeqs.models.ddeq.zbranch_vjp`);
* ``solver.bf16``: the Z branch runs under bf16 autocast of ``z``'s device (CUDA, or CPU: matmul
  inputs rounded to bf16, fp32 accumulation; LayerNorm and softmax inputs as autocast decides); its
  output is cast back, so the MMD gradient and the particle update stay in the dtype of ``z``
  (fp32). How far this moves Z*: ``ddeqs bench bf16`` (docs/benchmarks.md, "bf16 tolerance");
* ``solver.compile``: the step is ``torch.compile``-d (``dynamic=False``; one compiled graph per
  input shape). If compilation is unavailable or fails, one warning is emitted and the eager
  function is used.

All of this changes how ``F`` is evaluated, not its values: ``f(z)`` equals
``where(movable, fmap.apply(z, z_mask, ctx), z)`` up to float rounding (bf16: up to bf16 rounding).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from ddeqs.config import SolverConfig
from ddeqs.models.ddeq.fmap import FContext, FMap, RowSubset
from ddeqs.models.ddeq.fastpath import plan_step, warn_once
from ddeqs.models.ddeq.zbranch_vjp import ZBranch

StepFunc = Callable[[torch.Tensor], torch.Tensor]

_COMPILED: dict[str, Callable] = {}


def z_step(
    fmap: FMap,
    z: torch.Tensor,
    z_mask: torch.Tensor | None,
    movable: torch.Tensor | None,
    ctx: FContext,
    rows: RowSubset | None,
    bf16: bool,
) -> torch.Tensor:
    """``where(movable, F(z, X), z)`` ``(B, K, p)``, computing F only at the rows of ``rows`` (None: all).

    ``z_mask`` None: no padding; ``movable`` None: every row moves (then ``F(z)`` is returned as is).
    """
    # cache_enabled=False: the cast-weight cache must not live across a CUDA-graph capture (solver.cuda_graph),
    # and each step is its own autocast region anyway, so the cache saves nothing between steps
    amp = (torch.autocast(z.device.type, dtype=torch.bfloat16, cache_enabled=False) if bf16
           else contextlib.nullcontext())
    with amp:
        out = fmap.apply(z, z_mask, ctx) if rows is None else fmap.apply_rows(z, z_mask, ctx, rows)
    if rows is not None:
        return rows.put(z, out)  # rows = the movable rows: the others keep z
    if movable is None:
        return out.to(z.dtype)
    return torch.where(movable.unsqueeze(-1), out.to(z.dtype), z)


def _compiled_z_step() -> Callable | None:
    """``torch.compile(z_step, dynamic=False)``, created once; None when torch.compile is unusable."""
    if "step" not in _COMPILED:
        try:
            _COMPILED["step"] = torch.compile(z_step, dynamic=False)
        except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
            warn_once("compile", f"solver.compile: torch.compile is unavailable ({err}); running the inner step eagerly")
            _COMPILED["step"] = None  # type: ignore[assignment]
    return _COMPILED["step"]


def make_solve_func(
    fmap: FMap, ctx: FContext, z_mask: torch.Tensor, movable: torch.Tensor, cfg: SolverConfig
) -> StepFunc:
    """The function ``z (B, K, p) -> (B, K, p)`` evaluated at every fast inner step (see module doc).

    ``movable`` ``(B, K)`` must already be ``& z_mask``. How F is evaluated is chosen once per solve
    by :func:`ddeqs.models.ddeq.fastpath.plan_step`; host syncs: there, once.
    """
    ctx = ctx.detached().dense()
    plan = plan_step(ctx, z_mask, movable, cfg)
    step_mask, step_movable, rows, bf16 = plan.z_mask, plan.movable, plan.rows, plan.bf16

    def eager(z: torch.Tensor) -> torch.Tensor:
        if plan.kind == "zbranch":  # every row real and moving: F(z) itself, one autograd node with a hand-written VJP
            return ZBranch.apply(z, fmap, ctx)
        return z_step(fmap, z, step_mask, step_movable, ctx, rows, bf16)

    if not plan.compile:
        return eager
    compiled = _compiled_z_step()
    if compiled is None:
        return eager

    def step(z: torch.Tensor) -> torch.Tensor:
        fn = _COMPILED.get("step")
        if fn is not None:
            try:
                return fn(fmap, z, step_mask, step_movable, ctx, rows, bf16)
            except Exception as err:  # noqa: BLE001 - e.g. no C++ compiler for the CPU backend
                _COMPILED["step"] = None  # type: ignore[assignment]
                warn_once("compile", f"solver.compile: compilation failed ({type(err).__name__}: {err}); "
                          "running the inner step eagerly")
        return eager(z)

    return step
