"""Every figure renders from fixture run folders (PNG and PDF, non-empty); missing data is skipped."""

from __future__ import annotations

import numpy as np
import pytest

from ddeqs.errors import DDEQError
from ddeqs.paper.figures import FIGURES, FlowOptions, make_figures
from ddeqs.paper.figures.style import ema
from ddeqs.paper.runs import RunStore, make_context
from fixtures.paper_runs import make_runs

FAST = [n for n in FIGURES if n not in ("fig11", "fig12", "fig13")]  # UMAP figures are slow (numba jit)


def _check(report, out, names):
    assert set(report.written) == set(names), report.skipped
    for n in names:
        for ext in ("png", "pdf"):
            p = out / f"{n}.{ext}"
            assert p.is_file() and p.stat().st_size > 1000


def test_fast_figures_render(tmp_path):
    runs = make_runs(tmp_path / "runs")
    ctx = make_context("smoke")
    out = tmp_path / "figs"
    rep = make_figures(RunStore(runs), ctx, out, FAST, FlowOptions(n_particles=12, iters=30))
    _check(rep, out, FAST)


@pytest.mark.slow
def test_umap_figures_render(tmp_path):
    runs = make_runs(tmp_path / "runs")
    out = tmp_path / "figs"
    names = ["fig11", "fig12", "fig13"]
    rep = make_figures(RunStore(runs), make_context("smoke"), out, names)
    _check(rep, out, names)


def test_missing_runs_skip_figures(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=("mnist-cpl-ddeq", "mnist-cpl-pcn"))
    out = tmp_path / "figs"
    rep = make_figures(RunStore(runs), make_context("smoke"), out, ["fig04", "fig05", "fig10"])
    assert "fig04" in rep.skipped and "samples.npz" in rep.skipped["fig04"]
    assert set(rep.written) == {"fig05", "fig10"}
    assert not (out / "fig04.png").exists()
    with pytest.raises(DDEQError, match="fig04"):
        make_figures(RunStore(runs), make_context("smoke"), out, ["fig04"], strict=True)
    with pytest.raises(DDEQError, match="unknown figure"):
        make_figures(RunStore(runs), make_context("smoke"), out, ["fig99"])


def test_completion_figure_without_pcn(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=("modelnet-cpl-pcn",))
    rep = make_figures(RunStore(runs), make_context("smoke"), tmp_path / "f", ["fig05", "fig01"])
    assert set(rep.written) == {"fig05", "fig01"}


def test_ema_smooths_and_skips_nan():
    y = np.array([np.nan, 1.0, 3.0, np.nan, 3.0])
    s = ema(y, 0.5)
    assert np.isnan(s[0]) and s[1] == pytest.approx(1.0)
    assert s[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75) and s[3] == s[2]


def test_fig10_draws_one_curve_per_classification_dataset(tmp_path):
    """Figure 10 of the paper has two curves, MNIST-pc and ModelNet40-s; a missing one is named."""
    from ddeqs.paper.figures.ablation import fig10

    ctx = make_context("smoke")
    fig = fig10(RunStore(make_runs(tmp_path / "runs")), ctx)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert len(labels) == 2 and labels[0].startswith("MNIST-pc") and labels[1].startswith("ModelNet40-s")
    assert len(ax.containers) == 2 and all(len(c.lines[0].get_xdata()) == 8 for c in ax.containers)  # 7 + main run
    skip = tuple(f"modelnet-cls-ddeq--z_particles-{z}" for z in (1, 2, 4, 8, 16, 32, 64)) + ("modelnet-cls-ddeq",)
    one = fig10(RunStore(make_runs(tmp_path / "one", skip=skip)), ctx).axes[0]
    assert len(one.get_legend_handles_labels()[1]) == 1
    assert any("modelnet-cls-ddeq--z_particles-*" in t.get_text() for t in one.texts)
