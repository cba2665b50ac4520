"""Every figure of the paper that is not an architecture diagram (1, 4, 5, 7-17), as PNG and PDF.

Each figure function takes a :class:`~ddeqs.paper.runs.RunStore` and a
:class:`~ddeqs.paper.runs.PaperContext` and returns a matplotlib figure, or raises
:class:`MissingData` naming the missing run files (the figure is then skipped, not an error,
unless ``strict``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ddeqs.paper.runs import PaperContext, RunStore
from ddeqs.record import parse_name

FIGURES: dict[str, str] = {
    "fig01": "completion illustration (input, DDEQ output, target)",
    "fig04": "MNIST-pc-partial samples, DDEQ vs PCN",
    "fig05": "ModelNet40-s-partial samples, DDEQ vs PCN",
    "fig07": "Assumption B.10 over training (EMA)",
    "fig08": "Assumption B.11 over training (EMA)",
    "fig09": "Theorem B.12 over training (EMA)",
    "fig10": "accuracy vs particles in Z",
    "fig11": "Z* vs F(Z*), MNIST-pc (UMAP)",
    "fig12": "Z* vs F(Z*), ModelNet40-s (UMAP)",
    "fig13": "max-pooled class embeddings, MNIST-pc (UMAP)",
    "fig14": "max-pooled class embeddings, ModelNet40-s (t-SNE)",
    "fig15": "more ModelNet40-s-partial samples",
    "fig16": "MMD flow with a rotation target, 2π/5",
    "fig17": "MMD flow with a rotation target, 2π/8",
}

#: The main runs a figure cannot be drawn without (the others draw from whatever runs exist: Figure 1
#: from either completion DDEQ, Figures 7-10 from the classification DDEQs present). The DAG builds a
#: figure only when its profile trains these runs (a profile with ``select`` may leave them out).
NEEDS_RUNS: dict[str, tuple[str, ...]] = {
    "fig04": ("mnist-cpl-ddeq",),
    "fig05": ("modelnet-cpl-ddeq",),
    "fig11": ("mnist-cls-ddeq",),
    "fig12": ("modelnet-cls-ddeq",),
    "fig13": ("mnist-cls-ddeq",),
    "fig14": ("modelnet-cls-ddeq",),
    "fig15": ("modelnet-cpl-ddeq",),
}


#: Figures drawn from the children of one ablation grid only (the main run is one of their points only
#: where it was trained like them, ``grids.<g>.set``): the DAG builds them when its profile trains a child.
NEEDS_GRID: dict[str, str] = {"fig10": "z_particles"}


def buildable(names: list[str], runs: set[str] | list[str]) -> list[str]:
    """The figures of ``names`` whose :data:`NEEDS_RUNS` are all among ``runs`` and, for those of
    :data:`NEEDS_GRID`, with a child of their grid (``<run>--<grid>-<value>``) among ``runs``."""
    have = set(runs)
    grids = {parse_name(r).grid for r in have}
    return [n for n in names if all(r in have for r in NEEDS_RUNS.get(n, ()))
            and (n not in NEEDS_GRID or NEEDS_GRID[n] in grids)]


@dataclass
class FlowOptions:
    """Size of the App. D.9 flow (paper: 2000 iterations; particle count not stated, 100 by default)."""

    n_particles: int = 100
    iters: int = 2000
    seed: int = 0


@dataclass
class FigureReport:
    """What :func:`make_figures` did: written files per figure, and why others were skipped."""

    written: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _function(name: str, flow: FlowOptions) -> Callable[[RunStore, PaperContext], object]:
    from ddeqs.paper.figures import ablation, completion, diagnostics, embeddings, flowfig

    if name in ("fig16", "fig17"):
        from ddeqs.paper import values as V

        order = V.FLOW["orders"][name]
        return lambda store, ctx: flowfig.rotation_figure(order, flow.n_particles, flow.iters, flow.seed)
    for mod in (completion, diagnostics, ablation, embeddings):
        fn = getattr(mod, name, None)
        if fn is not None:
            return fn
    raise KeyError(name)


def make_figures(
    store: RunStore,
    ctx: PaperContext,
    out: str | Path,
    only: list[str] | None = None,
    flow: FlowOptions | None = None,
    strict: bool = False,
) -> FigureReport:
    """Draw the requested figures (all by default) to ``<out>/<name>.png`` and ``.pdf``."""
    import matplotlib.pyplot as plt

    from ddeqs.errors import DDEQError
    from ddeqs.paper.figures.style import RC, MissingData, save

    names = only or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise DDEQError(f"unknown figure(s) {unknown}; choose from {', '.join(FIGURES)}")
    flow = flow or FlowOptions()
    report = FigureReport()
    for name in names:
        try:
            with plt.rc_context(RC), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # UMAP/numba chatter on tiny data
                fig = _function(name, flow)(store, ctx)
                report.written[name] = save(fig, out, name)
        except MissingData as err:
            if strict:
                raise DDEQError(f"{name}: {err}") from None
            report.skipped[name] = str(err)
    return report


__all__ = ["FIGURES", "FigureReport", "FlowOptions", "make_figures"]
