"""Training curves of every run of a profile in one figure (the DVC plot and a report figure).

Reads the per-run CSVs that the `training_curve` rule writes (``results/<profile>/plots/<run>.csv``:
one row per epoch, ``epoch`` counted from 1 as MLflow's step, ``train_loss`` ...) and draws one
panel per task (classification, completion), one line per run: main runs coloured and in the
legend, ablation children (``<main run>--<grid>-<value>``) as thin grey lines. A static PNG, so
``dvc plots show`` renders it without loading Vega from a CDN (readable offline).
"""

from __future__ import annotations

import csv
from pathlib import Path

TASKS = {"cls": "classification", "cpl": "completion"}


def read_curve(path: str | Path) -> tuple[list[int], list[float]]:
    """``(epochs, train_loss)`` of one run's CSV (epochs from 1); rows without a loss are skipped."""
    epochs, losses = [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("train_loss") not in (None, ""):
                epochs.append(int(float(row["epoch"])))
                losses.append(float(row["train_loss"]))
    return epochs, losses


def plot_training_curves(csvs: list[str | Path], out: str | Path, title: str = "") -> Path:
    """Write the figure of the runs in ``csvs`` (file stem = run name) to ``out`` (PNG, 100 dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100, squeeze=False)
    for ax, (key, task) in zip(axes[0], TASKS.items()):
        mains = 0
        for path in sorted(map(Path, csvs)):
            run = path.stem
            if f"-{key}-" not in run:
                continue
            epochs, losses = read_curve(path)
            if not epochs:
                continue
            child = "--" in run
            style = dict(color="0.75", lw=0.7, zorder=1) if child else dict(lw=1.6, zorder=2, label=run)
            ax.plot(epochs, losses, marker="o" if len(epochs) == 1 else None, ms=4, **style)
            mains += not child
        n = len(ax.lines)
        ax.set(title=f"{task} ({n} run{'' if n == 1 else 's'})", xlabel="epoch (from 1, as MLflow's step)",
               ylabel="training loss")
        last = max([1, *(max(line.get_xdata()) for line in ax.lines)])
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not n:
            ax.text(0.5, 0.5, "no runs of this task", ha="center", va="center", transform=ax.transAxes)
        if ax.lines and min(min(line.get_ydata()) for line in ax.lines) > 0:
            ax.set_yscale("log")
        if mains:
            ax.legend(fontsize=7, title="main runs (grey: ablations)", title_fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
