"""The WGF loop on fixed buffers, replayed from a CUDA graph (``solver.cuda_graph``).

Why: on a GPU one inner iteration is a few hundred small kernels (F's Z branch and its VJP, the MMD
gradient, the particle update), each launched from Python, and a paper training step runs 200 of
them: the eager loop is bound by kernel launches, not by the GPU. A CUDA graph records one iteration
once and replays it with a single launch (PyTorch's ``torch.cuda.CUDAGraph``; ``torch.compile``'s
``reduce-overhead`` mode cannot capture this iteration, which takes an autograd VJP inside it).

What capture needs, and how the loop provides it:

* every tensor the iteration reads or writes lives at a fixed address: the iterate, the momentum
  buffer, the best iterate and its objective, the last evaluation and the objective trace are
  allocated once and written in place (:class:`StaticLoop`); the trace column comes from a device
  counter;
* no host synchronisation inside the iteration: the per-sample stop tests (``solver.tol``,
  ``solver.objective_ratio``) need one per iteration, so the graph runs a fixed number of
  iterations, as the paper and both presets do (``tol = 0``, ``objective_ratio = 0``); the MMD
  takes every distance from explicit differences (``PairedMMD(capturable=True)``): its Gram-matrix
  path finds close pairs with ``nonzero``, a host sync;
* warm-up: the first :data:`WARMUP` iterations run eagerly on a side stream (lazy initialisations,
  dropout masks sampled once per solve), then one iteration is captured and replayed for the rest.

The loop gives :func:`ddeqs.solver.loop.wgf_loop`'s values with ``tol = ratio = 0`` for the same
gradient function: the same operations in the same order (tested bitwise on CPU, where
:class:`StaticLoop` runs the same way without a graph). With the capturable MMD the values differ
from the eager fast path by float rounding only (exact distances instead of Gram ones). Where
capture fails the solver warns once and runs the eager loop.
"""

from __future__ import annotations

import torch

from ddeqs.errors import warn_once
from ddeqs.solver.loop import Func, GradientFn, ParticleUpdate, fixed_point_residual
from ddeqs.solver.wgf import FastGradient

WARMUP = 3
"""Eager iterations before capture (PyTorch asks for a few on a side stream before capturing)."""


class StaticLoop:
    """State of the fixed-iteration WGF loop in preallocated buffers; :meth:`iteration` updates it in place.

    ``z0`` ``(B, K, p)``; ``iters``: the trace length. Same update, stop-free bookkeeping and result
    as :func:`ddeqs.solver.loop.wgf_loop` with ``tol = 0`` and ``ratio = 0``.
    """

    def __init__(self, gradient: GradientFn, z0: torch.Tensor, iters: int, step: float,
                 momentum: float = 0.0, nesterov: bool = False) -> None:
        self.gradient = gradient
        z = z0.detach().clone()
        B = z.shape[0]
        self.z = z
        self.keep_best = momentum > 0
        # the eager loop's update rule; its momentum buffer allocated now (a fixed address), m·0 + g = g at first
        self.update = ParticleUpdate(step, momentum, nesterov)
        if self.keep_best:
            self.update.buf = torch.zeros_like(z)
        self.z_eval = torch.zeros_like(z)
        self.fz = torch.zeros_like(z)
        if self.keep_best:  # +inf: the first objective always wins, as the eager first clone
            self.best_obj = torch.full((B,), float("inf"), dtype=z.dtype, device=z.device)
        self.trace = z.new_zeros(B, iters)
        self.t = torch.zeros(1, dtype=torch.long, device=z.device)
        self.done = 0

    def iteration(self) -> None:
        """One evaluation of the gradient at ``z`` and one update, all writes in place."""
        obj, g, fz = self.gradient(self.z)
        self.trace.index_copy_(1, self.t, obj.unsqueeze(1))
        self.t += 1
        if self.keep_best:
            better = obj < self.best_obj
            rows = better[:, None, None]
            self.best_obj.copy_(torch.where(better, obj, self.best_obj))
            self.z_eval.copy_(torch.where(rows, self.z, self.z_eval))  # best iterate
            self.fz.copy_(torch.where(rows, fz, self.fz))  # its F
        else:
            self.z_eval.copy_(self.z)
            self.fz.copy_(fz)
        # every sample active (no stop test): the eager loop's z - step·d·1, in place
        self.z.sub_(self.update.step * self.update.direction(g))

    def result(self, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``(z_star, info)`` as :func:`ddeqs.solver.loop.wgf_loop` returns them (``converged``: all False)."""
        z = self.z_eval if self.keep_best else self.z
        trace = self.trace[:, : self.done]
        info = {"objective": trace, "rel_residual": fixed_point_residual(self.z_eval, self.fz, mask),
                "iters": self.done, "converged": torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)}
        return z.clone(), info

    def run(self, iters: int, capture: bool) -> None:
        """Run ``iters`` iterations: eagerly, or :data:`WARMUP` eagerly and the rest from a CUDA graph."""
        if not capture or iters <= WARMUP:
            for _ in range(iters):
                self.iteration()
            self.done += iters
            return
        main = torch.cuda.current_stream(self.z.device)
        side = torch.cuda.Stream(device=self.z.device)
        side.wait_stream(main)
        graph = torch.cuda.CUDAGraph()
        # capture_begin/end, not the torch.cuda.graph context: that one also runs gc.collect() and
        # empty_cache() on entry, which would return the allocator's cache at every solve
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                self.iteration()
            graph.capture_begin()
            try:
                self.iteration()  # recorded, not run: the state is still that after the warm-up
            except BaseException:
                try:
                    graph.capture_end()
                except Exception:  # noqa: BLE001 - the capture is invalid anyway; report the first error
                    pass
                raise
            graph.capture_end()
        main.wait_stream(side)
        self.done += WARMUP
        for _ in range(iters - WARMUP):
            graph.replay()
        self.done = iters


def graph_wgf_loop(
    gradient: GradientFn,
    z0: torch.Tensor,
    mask: torch.Tensor,
    iters: int = 200,
    step: float = 5.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    capture: bool | None = None,
) -> tuple[torch.Tensor, dict]:
    """:func:`ddeqs.solver.loop.wgf_loop` without stop tests, on fixed buffers; CUDA-graph replayed.

    ``capture`` None: capture when ``z0`` is on CUDA. Raises what capture raises (the caller falls back).
    """
    if capture is None:
        capture = z0.device.type == "cuda"
    loop = StaticLoop(gradient, z0, iters, step, momentum, nesterov)
    loop.run(iters, capture)
    return loop.result(mask)


def graph_solve(func: Func, x0: torch.Tensor, mask: torch.Tensor, movable: torch.Tensor, iters: int, step: float,
                tol: float, momentum: float, nesterov: bool, ratio: float) -> tuple[torch.Tensor, dict] | None:
    """The fast WGF solve of ``func`` (``solver.cuda_graph``) by :func:`graph_wgf_loop`, captured on CUDA.

    ``x0`` ``(B, K, p)``, ``mask``/``movable`` ``(B, K)``. None, with one warning, where the caller's eager
    loop must run instead: a stop test is set (``tol`` or ``ratio`` > 0), or capture failed.
    """
    if tol > 0 or ratio > 0:
        warn_once("cuda-graph-stop", "solver.cuda_graph needs a fixed number of inner iterations (solver.tol = 0 "
                  "and solver.objective_ratio = 0); the inner loop runs eagerly")
        return None
    capture = x0.device.type == "cuda"
    if not capture:
        warn_once("cuda-graph-cpu", "solver.cuda_graph: no CUDA device; the fixed-buffer inner loop runs without a "
                  "graph (the eager loop's values up to float rounding, and slower than it on CPU)")
    gradient = FastGradient(func, mask, movable, x0.dtype, capturable=True)
    try:
        return graph_wgf_loop(gradient, x0, mask, iters, step, momentum, nesterov, capture=capture)
    except Exception as err:  # noqa: BLE001 - any capture failure: the eager loop gives the same values
        warn_once("cuda-graph-capture", f"solver.cuda_graph: capture failed ({type(err).__name__}: {err}); "
                  "the inner loop runs eagerly")
        return None
