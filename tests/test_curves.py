"""The combined training-curve figure (the DVC plot): epochs from 1, one panel per task, labelled axes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ddeqs.paper.curves import plot_training_curves, read_curve


def _csv(folder: Path, run: str, epochs: int) -> Path:
    path = folder / f"{run}.csv"
    rows = ["epoch,train_loss,lr"] + [f"{e},{1.0 / e},0.001" for e in range(1, epochs + 1)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_one_figure_for_every_run_with_labelled_axes(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    csvs = [_csv(tmp_path, "mnist-cls-ddeq", 5), _csv(tmp_path, "mnist-cls-ddeq--pushforward-true", 5),
            _csv(tmp_path, "mnist-cpl-pcn", 1)]
    out = plot_training_curves(csvs, tmp_path / "curves.png", title="t")
    img = mpimg.imread(out)
    assert img.shape[0] >= 300 and img.shape[1] >= 800 and np.ptp(img[..., :3]) > 0.5
    assert read_curve(csvs[0]) == ([1, 2, 3, 4, 5], [1.0, 0.5, 1 / 3, 0.25, 0.2])


def test_training_curve_csv_counts_epochs_from_one(tmp_path: Path) -> None:
    """The rule's CSV counts like MLflow's step (epoch + 1), not like history.json (from 0)."""
    src = (Path(__file__).resolve().parents[1] / "workflow/rules/common.smk").read_text()
    start = src.index("def write_curve")
    scope: dict = {"Path": Path}
    exec(src[start:src.index("\n\n\n", start)], scope)  # the helper alone, without the Snakemake context
    hist = tmp_path / "history.json"
    hist.write_text(json.dumps({"epochs": [{"epoch": 0, "train_loss": 2.0}, {"epoch": 1, "train_loss": 1.0}]}))
    scope["write_curve"](hist, tmp_path / "c.csv", tmp_path / "log")
    assert read_curve(tmp_path / "c.csv") == ([1, 2], [2.0, 1.0])
