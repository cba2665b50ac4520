"""Figures 16, 17: MMD flow towards the rotation of the current particles (App. D.9; no training)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ddeqs.paper.figures.style import TEXT_WIDTH, POINTS, new_figure
from ddeqs.paper.flow import FlowResult, rotation_flow


def flow_figure(result: FlowResult) -> plt.Figure:
    """Columns: the snapshots (initialisation, 10, 50, ... iterations) and the last iterate with its rotation (red)."""
    its = sorted(result.snapshots)
    cols = len(its) + 1
    fig = new_figure(TEXT_WIDTH, TEXT_WIDTH / cols + 0.35)
    axes = fig.subplots(1, cols)
    for ax, t in zip(axes, its):
        p = result.snapshots[t]
        ax.scatter(p[:, 0], p[:, 1], s=3, color="k", linewidths=0)
        ax.set_title("init" if t == 0 else f"t = {t}")
    last, rot = result.final, result.rotated_final()
    ax = axes[-1]
    ax.scatter(last[:, 0], last[:, 1], s=3, color="k", linewidths=0, label="last iterate")
    ax.scatter(rot[:, 0], rot[:, 1], s=6, color=POINTS["rotated"]["color"], marker="x", linewidths=0.5, label="rotated")
    ax.set_title(f"t = {its[-1]} + rotated")
    lim = 1.05 * max(float(np.abs(p).max()) for p in result.snapshots.values())
    for ax in axes:  # shared limits: the drift from (-10, 0) to the origin stays visible
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    fig.suptitle(f"MMD flow towards the rotation by 2π/{result.order}: η = {result.params['eta']:g}, "
                 f"decay {result.params['gamma']:g}, {result.params['n_particles']} particles; "
                 f"MMD²(Z, T#Z) {result.mmd2[0]:.3g} → {result.mmd2[-1]:.2g}", y=1.02)
    fig.tight_layout()
    return fig


def rotation_figure(order: int, n_particles: int = 100, iters: int = 2000, seed: int = 0) -> plt.Figure:
    """Run the flow and draw it."""
    snaps = tuple(s for s in (0, 10, 50, 200, 1000, 2000) if s < iters) + (iters,)
    return flow_figure(rotation_flow(order, n_particles=n_particles, iters=iters, seed=seed, snapshots=snaps))

