"""Figures 7, 8, 9: App. D.1 quantities (Assumption B.10, B.11, Theorem B.12) over training, EMA-smoothed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ddeqs.paper.figures.style import SERIES, TEXT_WIDTH, MissingData, ema, new_figure
from ddeqs.paper.runs import ROLE_LABELS, PaperContext, RunStore, run_name

#: The four DDEQ main runs ("all four datasets") and the paper's names for them (MNIST-pc,
#: ModelNet40-s, MNIST-pc-partial, ModelNet40-s-partial).
DATASETS = [(role, task, ROLE_LABELS[role] + ("-partial" if task == "cpl" else ""))
            for task in ("cls", "cpl") for role in ("mnist", "modelnet")]
QUANTITIES = {
    "b10": ("Assumption B.10", r"$\mathcal{F}(\mu)\,/\,\|\nabla_W \mathcal{F}(\mu)\|^2_{L^2(\mu)}$"),
    "b11": ("Assumption B.11", r"$\|\nabla_W \mathcal{G} - \nabla_W \mathcal{F}\|^2_{L^2(\mu_t)}\,/\,\epsilon_t$"),
    "b12": ("Theorem B.12", r"$\int_0^T \|\nabla L(\theta_t)\|^2 dt\,/\,(\sqrt{T}\,(\log T)^2)$"),
}


def diagnostics_figure(store: RunStore, ctx: PaperContext, key: str, weight: float = 0.9) -> plt.Figure:
    """One panel per dataset: raw quantity (thin, light) and its EMA (thick) against the training step."""
    series = []
    for role, task, label in DATASETS:
        run = store.get(run_name(role, task, "ddeq"))
        d = run.json("diagnostics.json") if run is not None else None
        if not d or key not in d or "step" not in d:
            continue
        step = np.asarray(d["step"], dtype=float)
        y = np.asarray([np.nan if v is None else v for v in d[key]], dtype=float)
        n = min(len(step), len(y))
        if n == 0:
            continue
        series.append((f"{label}\n({ctx.dataset_label(role)})", step[:n], y[:n]))
    if not series:
        raise MissingData(f"no diagnostics.json with '{key}' in any DDEQ main run under {store.root}")
    title, ylabel = QUANTITIES[key]
    fig = new_figure(TEXT_WIDTH, 1.9)
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (label, step, y), st in zip(axes, series, SERIES):
        smooth = ema(y, weight)
        ax.plot(step, y, color=st["color"], alpha=0.25, linewidth=0.6, label="raw")
        ax.plot(step, smooth, color=st["color"], linestyle=st["linestyle"], linewidth=1.4, label="EMA")
        pos = y[np.isfinite(y)]
        if len(pos) and (pos > 0).all() and pos.max() / max(pos.min(), 1e-300) > 100:
            ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(frameon=False)
    fig.suptitle(f"Empirical verification of {title} (EMA weight {weight})", y=1.03)
    fig.tight_layout()
    return fig


def fig07(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 7: Assumption B.10."""
    return diagnostics_figure(store, ctx, "b10")


def fig08(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 8: Assumption B.11."""
    return diagnostics_figure(store, ctx, "b11")


def fig09(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 9: Theorem B.12."""
    return diagnostics_figure(store, ctx, "b12")
