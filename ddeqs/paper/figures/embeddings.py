"""Figures 11-14: fixed points Z* vs F(Z*) (UMAP) and max-pooled class embeddings (UMAP / t-SNE)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ddeqs.paper.figures.style import MARKERS, TEXT_WIDTH, MissingData, new_figure, scatter_cloud
from ddeqs.paper.runs import ROLE_LABELS, PaperContext, RunStore, run_name


def load_embeddings(store: RunStore, role: str) -> dict[str, np.ndarray]:
    """``embeddings.npz`` of ``<role>-cls-ddeq`` (raises :class:`MissingData` when absent)."""
    name = run_name(role, "cls", "ddeq")
    run = store.get(name)
    e = run.npz("embeddings.npz") if run is not None else None
    if e is None:
        raise MissingData(f"{store.root / name / 'embeddings.npz'} not found")
    return e


def umap_2d(x: np.ndarray, n_neighbors: int, seed: int = 0) -> np.ndarray:
    """UMAP to 2-D; ``n_neighbors`` is clamped below the number of points (tiny smoke data)."""
    import umap  # slow import (numba): only when a UMAP figure is drawn

    n = len(x)
    nn = int(max(2, min(n_neighbors, n - 1)))
    # spectral init needs a connected graph of enough points; random init is robust on tiny sets
    init = "spectral" if n > 4 * nn and n >= 50 else "random"
    reducer = umap.UMAP(n_neighbors=nn, n_components=2, init=init, random_state=seed, n_jobs=1)
    return reducer.fit_transform(np.asarray(x, dtype=np.float32))


def tsne_2d(x: np.ndarray, perplexity: float, seed: int = 0) -> np.ndarray:
    """t-SNE to 2-D (scikit-learn); perplexity is clamped below the number of points."""
    from sklearn.manifold import TSNE

    p = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=p, init="pca", random_state=seed).fit_transform(np.asarray(x, dtype=np.float32))


def fixed_points_figure(store: RunStore, ctx: PaperContext, role: str, n_rows: int = 4) -> plt.Figure:
    """Rows = test samples. Columns: input (if saved), Z* and F(Z*) with UMAP n_neighbors=2, then =30.

    One UMAP per n_neighbors is fitted on the Z* and F(Z*) particles of the shown samples together,
    so both columns share coordinates and a perfect fixed point would look identical. Particle k has
    the same colour in Z* and F(Z*).
    """
    e = load_embeddings(store, role)
    z, fz = e["z_star"], e["fz_star"]
    zm = e["z_mask"].astype(bool) if "z_mask" in e else np.ones(z.shape[:2], bool)
    rows = min(n_rows, len(z))
    if rows == 0:
        raise MissingData(f"embeddings.npz of {run_name(role, 'cls', 'ddeq')} holds no samples")
    parts = [np.concatenate([z[i][zm[i]], fz[i][zm[i]]]) for i in range(rows)]
    stacked = np.concatenate(parts)
    proj = {nn: umap_2d(stacked, nn) for nn in (2, 30)}
    has_inputs = "inputs" in e
    cols = 5 if has_inputs else 4
    fig = new_figure(min(TEXT_WIDTH, 1.35 * cols), 1.35 * rows)
    offset = 0
    titles = ["Z* (UMAP nn=2)", "F(Z*) (nn=2)", "Z* (UMAP nn=30)", "F(Z*) (nn=30)"]
    for r in range(rows):
        k = int(zm[r].sum())
        c = 1
        if has_inputs:
            ax = fig.add_subplot(rows, cols, r * cols + 1, projection="3d" if e["inputs"].shape[-1] == 3 else None)
            im = e["input_mask"][r].astype(bool) if "input_mask" in e else slice(None)
            scatter_cloud(ax, e["inputs"][r][im], "input", size=2)
            _bare(ax)
            if r == 0:
                ax.set_title("input")
            c = 2
        for nn_i, nn in enumerate((2, 30)):
            p = proj[nn][offset: offset + 2 * k]
            lim = (p.min(0), p.max(0))
            for j, pts in enumerate((p[:k], p[k:])):
                ax = fig.add_subplot(rows, cols, r * cols + c + 2 * nn_i + j)
                ax.scatter(pts[:, 0], pts[:, 1], c=np.arange(k), cmap="viridis", s=12,
                           marker=MARKERS[j], edgecolors="k", linewidths=0.3)
                pad = 0.1 * (lim[1] - lim[0] + 1e-9)
                ax.set_xlim(lim[0][0] - pad[0], lim[1][0] + pad[0])
                ax.set_ylim(lim[0][1] - pad[1], lim[1][1] + pad[1])
                _bare(ax)
                if r == 0:
                    ax.set_title(titles[2 * nn_i + j])
        offset += 2 * k
    fig.suptitle(f"Fixed points for {ROLE_LABELS[role]} classification ({ctx.dataset_label(role)})", y=1.01)
    fig.tight_layout()
    return fig


def _bare(ax: Any) -> None:
    if hasattr(ax, "zaxis"):
        ax.set_axis_off()
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def pooled_figure(store: RunStore, ctx: PaperContext, role: str, method: str, max_classes: int | None) -> plt.Figure:
    """Max-pooled fixed points of the saved test samples, projected to 2-D and coloured by class."""
    e = load_embeddings(store, role)
    pooled, labels = e["pooled"], e["labels"].astype(int)
    classes = sorted(set(labels.tolist()))
    if max_classes is not None:
        classes = classes[:max_classes]
    keep = np.isin(labels, classes)
    x, y = pooled[keep], labels[keep]
    if len(x) < 3:
        raise MissingData(f"embeddings.npz of {run_name(role, 'cls', 'ddeq')} has fewer than 3 pooled samples")
    if method == "umap":
        xy, how = umap_2d(x, 80), "UMAP, n_neighbors=80"
    else:
        xy, how = tsne_2d(x, 30.0), "t-SNE, perplexity=30"
    fig = new_figure(3.4, 3.0)
    ax = fig.add_subplot(1, 1, 1)
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for i, c in enumerate(classes):
        sel = y == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=cmap(i % cmap.N), marker=MARKERS[i % len(MARKERS)],
                   linewidths=0.3, edgecolors="k", label=str(c))
    _bare(ax)
    ax.legend(title="class", fontsize=6, ncol=2 if len(classes) > 10 else 1, frameon=False,
              bbox_to_anchor=(1.0, 1.0), loc="upper left")
    ax.set_title(f"Max-pooled fixed points, {ROLE_LABELS[role]} ({ctx.dataset_label(role)}); {how}")
    fig.tight_layout()
    return fig


def fig11(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 11: Z* vs F(Z*) for MNIST-pc classification."""
    return fixed_points_figure(store, ctx, "mnist")


def fig12(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 12: Z* vs F(Z*) for ModelNet40-s classification."""
    return fixed_points_figure(store, ctx, "modelnet")


def fig13(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 13: max-pooled class embeddings on MNIST-pc, UMAP n_neighbors=80."""
    return pooled_figure(store, ctx, "mnist", "umap", None)


def fig14(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 14: max-pooled class embeddings on ModelNet40-s (20 classes), t-SNE perplexity 30."""
    return pooled_figure(store, ctx, "modelnet", "tsne", 20)
