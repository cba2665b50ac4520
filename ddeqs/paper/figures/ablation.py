"""Figure 10: classification accuracy vs number of particles in Z (App. D.2)."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ddeqs.paper import values as V
from ddeqs.paper.figures.style import SERIES, MissingData, new_figure
from ddeqs.paper.runs import ROLE_LABELS, PaperContext, RunStore, run_name
from ddeqs.paper.tables import find_ablation


def z_particles_curve(store: RunStore, role: str, values: Sequence[int] = V.Z_PARTICLES
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(particles, accuracy %, standard error %)`` over the z_particles grid ``values`` (the main run
    stands for its own value)."""
    main = run_name(role, "cls", "ddeq")
    xs, ys, ses = [], [], []
    for z in values:
        run = find_ablation(store, main, "z_particles", z)
        if run is None:
            continue
        acc, se, _ = run.test_metric("accuracy")
        if np.isfinite(acc):
            xs.append(z)
            ys.append(100 * acc)
            ses.append(100 * se if np.isfinite(se) else 0.0)
    return np.array(xs), np.array(ys), np.array(ses)


def fig10(store: RunStore, ctx: PaperContext) -> plt.Figure:
    """Figure 10: accuracy (± standard error) vs particles in Z, one line per classification dataset
    (MNIST-pc and ModelNet40-s, as in the paper); a dataset without runs is named in the figure."""
    fig = new_figure(3.25, 2.2)
    ax = fig.add_subplot(1, 1, 1)
    absent = []
    values = ctx.grid_values("z_particles")  # the paper's points and every value the plan configures
    for role, st in zip(("mnist", "modelnet"), SERIES):
        x, y, se = z_particles_curve(store, role, values)
        if len(x) == 0:
            absent.append(role)
            continue
        ax.errorbar(x, y, yerr=se, capsize=2, markersize=4, label=f"{ROLE_LABELS[role]} ({ctx.dataset_label(role)})", **st)
    if len(absent) == 2:
        raise MissingData("no z_particles ablation runs (mnist-cls-ddeq--z_particles-*, "
                          f"modelnet-cls-ddeq--z_particles-*) under {store.root}")
    if absent:
        ax.text(0.02, 0.02, "no runs: " + ", ".join(f"{run_name(r, 'cls', 'ddeq')}--z_particles-*" for r in absent),
                transform=ax.transAxes, fontsize=5, color="0.4")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(values))
    ax.set_xticklabels([str(z) for z in values])
    ax.set_xlabel("particles in Z")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
