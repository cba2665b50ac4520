"""The paper tables and figures follow the plan of the profile they are built for (ddeqs.plan): a
grid value added to a profile gets its table column / row and its figure point, an added grid its
rows, a published value without a run stays a missing cell. Fixture run folders, no training."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ddeqs.cli import main
from ddeqs.paper.figures.ablation import fig10
from ddeqs.paper.runs import RunStore, make_context
from ddeqs.paper.tables import build_tables
from fixtures.paper_runs import _write, cpl_metrics, make_runs

REPO = Path(__file__).resolve().parents[1]
BASE = {"data.noise": 0.05, "solver.iters": 200, "data.input_share": 1.0, "solver.kind": "wgf"}


def _profile(tmp_path: Path, edit) -> Path:
    """params/smoke.yaml, edited, as a temporary profile file."""
    raw = yaml.safe_load((REPO / "params/smoke.yaml").read_text())
    edit(raw)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _extra(raw: dict) -> None:
    g = raw["grids"]
    g["noise"]["values"].append(0.4)
    g["iters"]["values"].append(300)
    g["input_share"]["values"].append(0.5)
    g["z_particles"]["values"].append(128)
    g["heads"] = {"key": "model.heads", "runs": ["mnist-cls-ddeq", "mnist-cpl-ddeq"], "values": [2, 8]}


@pytest.fixture()
def extra_runs(tmp_path: Path) -> Path:
    """The fixture runs plus one run per added grid value, with recognisable numbers."""
    root = make_runs(tmp_path / "runs")
    _write(root, "mnist-cpl-ddeq--noise-0.4", "completion", "ddeq", cpl_metrics(7.0), {**BASE, "data.noise": 0.4})
    _write(root, "mnist-cpl-pcn--noise-0.4", "completion", "pcn", cpl_metrics(9.0), {"data.noise": 0.4})
    _write(root, "mnist-cpl-ddeq--iters-300", "completion", "ddeq", cpl_metrics(1.0), {**BASE, "solver.iters": 300},
           seconds=333.0)
    _write(root, "mnist-cpl-ddeq--input_share-0.5", "completion", "ddeq", cpl_metrics(1.0),
           {**BASE, "data.input_share": 0.5}, seconds=55.0)
    for role in ("mnist", "modelnet"):
        _write(root, f"{role}-cls-ddeq--z_particles-128", "classification", "ddeq",
               {"accuracy": 0.42, "cross_entropy": 2.0}, {"model.z_particles": 128})
    _write(root, "mnist-cls-ddeq--heads-2", "classification", "ddeq", {"accuracy": 0.61, "cross_entropy": 1.1},
           {"model.heads": 2})
    _write(root, "mnist-cpl-ddeq--heads-8", "completion", "ddeq", cpl_metrics(5.0), {**BASE, "model.heads": 8},
           seconds=88.0)
    return root


def _tables(root: Path, ctx) -> dict:
    return {t.name: t for t in build_tables(RunStore(root), ctx)}


def test_an_added_grid_value_gets_its_column_and_figure_point(tmp_path: Path, extra_runs: Path) -> None:
    ctx = make_context(config=_profile(tmp_path, _extra))
    t = _tables(extra_runs, ctx)
    t2 = t["table2"]
    assert t2.columns == ["0%", "5%", "20%", "40%", "80%"]  # in order, the new level among the paper's
    c = t2.cell("W2 (DDEQ)", "40%")
    assert c.value == pytest.approx(0.3 * 7.0) and c.runs == ["mnist-cpl-ddeq--noise-0.4"]
    assert math.isnan(c.paper)
    assert t2.cell("W2 (PCN)", "40%").value == pytest.approx(0.2 * 9.0)
    assert t2.cell("W2 (PCN)", "0%").paper == 0.49  # the paper's values stay where they were
    t4 = t["table4"]
    assert t4.columns == ["10", "50", "100", "200", "300", "500", "1000", "PCN"]
    assert t4.cell("Runtime (1 epoch)", "300").value == pytest.approx(333.0)
    assert math.isnan(t4.cell("Runtime (1 epoch)", "300").paper)
    assert t["table5"].cell("Runtime (1 epoch)", "50%").value == pytest.approx(55.0)
    # the Markdown says the paper has no such value
    from ddeqs.paper.tables import to_markdown

    row = next(line for line in to_markdown(t2).splitlines() if line.startswith("| W2 (DDEQ) |"))
    assert "2.10 ± 0.02 | not reported" in row
    # Figure 10: a point at 128 particles on both curves
    ax = fig10(RunStore(extra_runs), ctx).axes[0]
    for container in ax.containers:
        x, y = container.lines[0].get_xdata(), container.lines[0].get_ydata()
        assert list(x)[-1] == 128 and y[-1] == pytest.approx(42.0)
    assert 128 in list(ax.get_xticks())


def test_an_added_grid_gets_its_rows(tmp_path: Path, extra_runs: Path) -> None:
    ctx = make_context(config=_profile(tmp_path, _extra))
    g = _tables(extra_runs, ctx)["table_grids"]
    rows = [r for r in g.rows if "heads" in r]
    assert rows == ["mnist-cls-ddeq, heads = 2", "mnist-cls-ddeq, heads = 8",
                    "mnist-cpl-ddeq, heads = 2", "mnist-cpl-ddeq, heads = 8"]
    assert g.cell("mnist-cls-ddeq, heads = 2", "accuracy").value == pytest.approx(61.0)
    assert g.cell("mnist-cpl-ddeq, heads = 8", "MMD²").value == pytest.approx(0.05)
    assert g.cell("mnist-cpl-ddeq, heads = 8", "W2").value == pytest.approx(0.3 * 5.0)  # DDEQ: free particles
    assert g.cell("mnist-cpl-ddeq, heads = 8", "runtime").value == pytest.approx(88.0)
    assert g.cell("mnist-cls-ddeq, heads = 2", "MMD²") is None  # a metric of the other task: no cell
    # runs not trained yet are missing cells, named
    assert g.cell("mnist-cls-ddeq, heads = 8", "accuracy").is_missing
    assert "mnist-cls-ddeq--heads-8" in g.missing_runs
    # every other grid of the profile has its rows too
    assert "mnist-cpl-ddeq, noise = 0.4" in g.rows and "modelnet-cls-ddeq, z_particles = 128" in g.rows


def test_without_the_value_in_the_plan_there_is_no_column(tmp_path: Path, extra_runs: Path) -> None:
    """The column comes from the plan, not from the run folders lying around."""
    t = _tables(extra_runs, make_context(config=REPO / "params/smoke.yaml"))
    assert t["table2"].columns == ["0%", "5%", "20%", "80%"]
    assert not any("heads" in r for r in t["table_grids"].rows)
    ax = fig10(RunStore(extra_runs), make_context(config=REPO / "params/smoke.yaml")).axes[0]
    assert all(128 not in list(c.lines[0].get_xdata()) for c in ax.containers)


def test_a_published_value_without_a_run_stays_a_missing_cell(tmp_path: Path) -> None:
    def drop(raw: dict) -> None:
        raw["grids"]["noise"]["values"] = [0, 0.05, 0.8]  # a profile without the paper's 20 %

    root = make_runs(tmp_path / "runs", skip=("mnist-cpl-ddeq--noise-0.2", "mnist-cpl-pcn--noise-0.2"))
    t2 = _tables(root, make_context(config=_profile(tmp_path, drop)))["table2"]
    assert t2.columns == ["0%", "5%", "20%", "80%"]
    cell = t2.cell("W2 (DDEQ)", "20%")
    assert cell.is_missing and cell.paper == 0.19 and cell.missing == ["mnist-cpl-ddeq--noise-0.2"]


def test_the_cli_reads_the_plan_of_several_files(tmp_path: Path, extra_runs: Path) -> None:
    """`ddeqs paper tables --config A --config B` merges the files as Snakemake merges --configfile."""
    base = _profile(tmp_path, lambda raw: None)
    extra = tmp_path / "extra.yaml"
    extra.write_text("grids:\n  noise: {key: data.noise, runs: [mnist-cpl-ddeq, mnist-cpl-pcn], values: [0.4]}\n")
    out = tmp_path / "tables"
    rc = main(["paper", "tables", "--runs", str(extra_runs), "--out", str(out), "--summary", str(tmp_path / "s.json"),
               "--config", str(base), "--config", str(extra)])
    assert rc == 0
    md = (out / "table2.md").read_text()
    assert "40% (reproduced)" in md and "2.10 ± 0.02" in md
    assert "mnist-cpl-ddeq, noise = 0.4" in (out / "table_grids.md").read_text()


def test_a_bad_plan_is_an_error_naming_the_key(tmp_path: Path, extra_runs: Path) -> None:
    bad = _profile(tmp_path, lambda raw: raw["grids"]["noise"].update(valuez=[1]))
    rc = main(["paper", "tables", "--runs", str(extra_runs), "--out", str(tmp_path / "t"), "--config", str(bad)])
    assert rc != 0
    with pytest.raises(Exception, match="valuez"):
        make_context(config=bad)


@pytest.mark.slow
def test_the_dag_passes_its_configuration_files_to_the_paper_rules(tmp_path: Path) -> None:
    for name in ("Snakefile", "workflow", "params", "profiles"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    _profile(tmp_path / "params", _extra)
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "all", "--configfile",
                           "params/mine.yaml"], cwd=tmp_path, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for rule in ("tables", "figures", "claims", "report"):
        assert re.search(rf" paper {rule} .*--config params/mine\.yaml", out), rule
    assert "results/smoke/runs/mnist-cls-ddeq--heads-8/metrics.json" in out
    assert "results/smoke/tables/table_grids.md" in out
