"""Completion samples (Figures 1, 4, 5, 15): input, DDEQ output (free particles marked), PCN output, target."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ddeqs.paper.figures.style import TEXT_WIDTH, MissingData, clean_axis, new_figure, scatter_cloud
from ddeqs.paper.runs import ROLE_LABELS, PaperContext, RunStore, run_name

PAPER_NAMES = {role: f"{label}-partial" for role, label in ROLE_LABELS.items()}  # MNIST-pc-partial, ...


def load_samples(store: RunStore, role: str, model: str) -> dict[str, np.ndarray] | None:
    """``samples.npz`` of ``<role>-cpl-<model>``, or None when the run or file is missing."""
    run = store.get(run_name(role, "cpl", model))
    return run.npz("samples.npz") if run is not None else None


def _clouds(s: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Unpadded input / output / free / fixed / target clouds of sample ``i``."""
    inp = s["inputs"][i][s["input_mask"][i].astype(bool)]
    om = s["output_mask"][i].astype(bool)
    free = s["free_mask"][i].astype(bool) & om if "free_mask" in s else om
    out = {
        "input": inp,
        "output": s["outputs"][i][om],
        "free": s["outputs"][i][free],
        "fixed": s["outputs"][i][om & ~free],
        "target": s["targets"][i][s["target_mask"][i].astype(bool)],
    }
    return out


def _pick(ddeq: dict[str, np.ndarray], pcn: dict[str, np.ndarray] | None, n: int, distinct: bool) -> list[tuple[int, int | None]]:
    """Pairs (row in DDEQ samples, row in PCN samples) for the same test samples (matched by ``index``)."""
    idx = ddeq.get("index", np.arange(len(ddeq["inputs"])))
    pcn_pos = {}
    if pcn is not None:
        pidx = pcn.get("index", np.arange(len(pcn["inputs"])))
        pcn_pos = {int(v): j for j, v in enumerate(pidx)}
    order = list(range(len(idx)))
    if distinct and "labels" in ddeq:  # one sample per class first (Figure 15)
        seen, first, rest = set(), [], []
        for i in order:
            lab = int(ddeq["labels"][i])
            (first if lab not in seen else rest).append(i)
            seen.add(lab)
        order = first + rest
    return [(i, pcn_pos.get(int(idx[i]))) for i in order[:n]]


def _axis(fig: plt.Figure, rows: int, cols: int, k: int, dim: int) -> Any:
    return fig.add_subplot(rows, cols, k, projection="3d" if dim == 3 else None)


def completion_grid(store: RunStore, ctx: PaperContext, role: str, n_rows: int, distinct: bool = False) -> plt.Figure:
    """Rows = test samples; columns = input, DDEQ, PCN, target (PCN column dropped if its run is missing)."""
    ddeq = load_samples(store, role, "ddeq")
    if ddeq is None:
        raise MissingData(f"{store.root / run_name(role, 'cpl', 'ddeq') / 'samples.npz'} not found")
    pcn = load_samples(store, role, "pcn")
    pairs = _pick(ddeq, pcn, n_rows, distinct)
    dim = ddeq["inputs"].shape[-1]
    titles = ["input", "DDEQ", "PCN", "target"] if pcn is not None else ["input", "DDEQ", "target"]
    cols = len(titles)
    rows = len(pairs)
    fig = new_figure(min(TEXT_WIDTH, 1.5 * cols), 1.5 * rows)
    size = 3.0 if dim == 2 else 2.5
    for r, (i, j) in enumerate(pairs):
        c = _clouds(ddeq, i)
        lim = 1.05 * float(np.abs(np.concatenate([c["target"], c["output"]])).max()) if len(c["target"]) else None
        panels = [("input", [(c["input"], "input")]),
                  ("DDEQ", [(c["fixed"], "input"), (c["free"], "free")])]
        if pcn is not None:
            panels.append(("PCN", [(_clouds(pcn, j)["output"], "output")] if j is not None else []))
        panels.append(("target", [(c["target"], "target")]))
        for k, (title, layers) in enumerate(panels):
            ax = _axis(fig, rows, cols, r * cols + k + 1, dim)
            for pts, kind in layers:
                scatter_cloud(ax, pts, kind, size=size)
            if not layers:
                ax.text(0.5, 0.5, "sample not in\nPCN samples.npz", ha="center", va="center", transform=ax.transAxes)
            clean_axis(ax, dim, lim)
            if r == 0:
                ax.set_title(title)
    handles = [
        plt.Line2D([], [], linestyle="", label="input / fixed particles", markersize=4, **_mk("input")),
        plt.Line2D([], [], linestyle="", label="DDEQ free particles", markersize=4, **_mk("free")),
        plt.Line2D([], [], linestyle="", label="target", markersize=4, **_mk("target")),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"{PAPER_NAMES[role]} samples ({ctx.dataset_label(role)})", y=1.0)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig


def _mk(kind: str) -> dict[str, str]:
    from ddeqs.paper.figures.style import POINTS

    return {"color": POINTS[kind]["color"], "marker": POINTS[kind]["marker"]}


def fig01(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 1: one completion, partial input X (red) -> DDEQ output Y* (free particles blue) vs target (green)."""
    for role in ("modelnet", "mnist"):
        s = store.peek(run_name(role, "cpl", "ddeq"))
        s = s.npz("samples.npz") if s is not None else None
        if s is not None:
            store.get(run_name(role, "cpl", "ddeq"))
            break
    else:
        raise MissingData("no samples.npz in modelnet-cpl-ddeq or mnist-cpl-ddeq")
    i = 0
    if role == "modelnet" and "labels" in s:  # the paper shows an airplane (class 0 of the 8 completion classes)
        hits = np.flatnonzero(s["labels"] == 0)
        i = int(hits[0]) if len(hits) else 0
    c = _clouds(s, i)
    dim = s["inputs"].shape[-1]
    lim = 1.05 * float(np.abs(np.concatenate([c["target"], c["output"]])).max())
    fig = new_figure(TEXT_WIDTH, 1.9)
    panels = [
        ("partial input X", [(c["input"], "input")]),
        ("DDEQ output Y* (free particles ▲)", [(c["fixed"], "input"), (c["free"], "free")]),
        ("target", [(c["target"], "target")]),
        ("Y* over target", [(c["target"], "target"), (c["free"], "free")]),
    ]
    for k, (title, layers) in enumerate(panels):
        ax = _axis(fig, 1, 4, k + 1, dim)
        for pts, kind in layers:
            scatter_cloud(ax, pts, kind, size=3.0 if dim == 2 else 2.0)
        clean_axis(ax, dim, lim)
        ax.set_title(title)
    fig.suptitle(f"Point cloud completion with a DDEQ ({PAPER_NAMES[role]}, {ctx.dataset_label(role)}); "
                 "loss: MMD² between Y* and the target", y=1.02)
    fig.tight_layout()
    return fig


def fig04(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 4: MNIST-pc-partial samples, DDEQ vs PCN."""
    return completion_grid(store, ctx, "mnist", n_rows=4)


def fig05(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 5: ModelNet40-s-partial samples, DDEQ vs PCN."""
    return completion_grid(store, ctx, "modelnet", n_rows=3)


def fig15(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 15: more ModelNet40-s-partial samples, one per class first."""
    return completion_grid(store, ctx, "modelnet", n_rows=8, distinct=True)
