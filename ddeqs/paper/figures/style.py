"""Shared figure style: Agg backend, paper-sized fonts, greyscale-safe cycles, PNG + PDF output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: pipelines and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Full text width of a two-column AISTATS page, inches.
TEXT_WIDTH = 6.75

#: Colour + marker + line style per series, distinguishable in greyscale too.
SERIES = [
    {"color": "#000000", "marker": "o", "linestyle": "-"},
    {"color": "#d55e00", "marker": "s", "linestyle": "--"},
    {"color": "#0072b2", "marker": "^", "linestyle": "-."},
    {"color": "#009e73", "marker": "D", "linestyle": ":"},
    {"color": "#cc79a7", "marker": "v", "linestyle": (0, (5, 1))},
    {"color": "#e69f00", "marker": "P", "linestyle": (0, (3, 1, 1, 1))},
]
#: Roles of points in completion figures (paper Figure 1 colours, plus distinct markers).
POINTS = {
    "input": {"color": "#d62728", "marker": "o"},
    "free": {"color": "#1f77b4", "marker": "^"},
    "output": {"color": "#1f77b4", "marker": "o"},
    "target": {"color": "#2ca02c", "marker": "o"},
    "rotated": {"color": "#d62728", "marker": "x"},
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
}


class MissingData(Exception):
    """A figure cannot be drawn because its run files are missing (the message names them)."""


def new_figure(width: float = TEXT_WIDTH, height: float = 2.0, **kw: Any) -> plt.Figure:
    return plt.figure(figsize=(width, height), **kw)


def save(fig: plt.Figure, out: str | Path, name: str) -> list[Path]:
    """Write ``<out>/<name>.png`` and ``.pdf``; closes the figure. Returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=RC["savefig.dpi"], bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def ema(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average (NaNs are skipped, carried forward)."""
    out = np.empty(len(values))
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            acc = weight * acc + (1 - weight) * v
            norm = weight * norm + (1 - weight)
        out[i] = acc / norm if norm > 0 else np.nan
    return out


def scatter_cloud(ax: Any, pts: np.ndarray, kind: str = "output", size: float = 2.0, **kw: Any) -> None:
    """Scatter an ``(n, 2)`` or ``(n, 3)`` cloud on a 2-D or 3-D axis with the style of ``kind``."""
    st = dict(POINTS.get(kind, POINTS["output"]))
    st.update(kw)
    if len(pts) == 0:
        return
    if pts.shape[1] == 3:
        ax.scatter(pts[:, 0], pts[:, 2], pts[:, 1], s=size, linewidths=0, depthshade=False, **st)
    else:
        ax.scatter(pts[:, 0], pts[:, 1], s=size, linewidths=0 if st.get("marker") != "x" else 0.6, **st)


def clean_axis(ax: Any, dim: int, lim: float | None = None) -> None:
    """No ticks, equal aspect; ``lim``: symmetric limits."""
    if dim == 3:
        ax.set_axis_off()
        ax.view_init(elev=20, azim=-60)
        if lim is not None:
            for f in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
                f(-lim, lim)
        ax.set_box_aspect((1, 1, 1))
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        if lim is not None:
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal", adjustable="box")
        else:
            ax.set_aspect("equal", adjustable="datalim")
