"""Table builders on fixture run folders: values, paper columns, missing cells, writers."""

from __future__ import annotations

import csv
import json
import math

import pytest

from ddeqs.errors import DataError
from ddeqs.paper import values as V
from ddeqs.paper.runs import RunStore, ablation_name, make_context, parse_roles
from ddeqs.paper.tables import build_tables, fmt_seconds, summary, write_tables
from fixtures.paper_runs import make_runs


@pytest.fixture()
def runs(tmp_path):
    return make_runs(tmp_path / "runs")


def _tables(root, **kw):
    ctx = make_context("smoke", "mnist=digits,modelnet=shapes")
    return {t.name: t for t in build_tables(RunStore(root, **kw), ctx)}, ctx


def test_table1_values_and_paper(runs):
    t, _ = _tables(runs)
    c = t["table1"].cell("DDEQ (776k/1.2M)", "MNIST-pc")
    assert c.value == pytest.approx(91.0) and c.se == pytest.approx(0.91) and c.paper == 98.1
    assert c.runs == ["mnist-cls-ddeq"] and c.unit == "%"
    assert t["table1"].cell("PT (3.5M)", "ModelNet40-s").value == pytest.approx(72.0)


def test_table2_uses_ablations_and_main_fallback(runs):
    t, _ = _tables(runs)
    tab = t["table2"]
    assert tab.cell("W2 (DDEQ)", "5%").runs == ["mnist-cpl-ddeq"]  # main run trained with 5 % noise
    assert tab.cell("W2 (DDEQ)", "5%").value == pytest.approx(0.3)  # w2_free of the main run
    assert tab.cell("W2 (DDEQ)", "80%").value == pytest.approx(0.3 * 1.8)
    assert tab.cell("W2 (PCN)", "20%").value == pytest.approx(0.2 * 2.2)  # PCN uses w2_full
    assert tab.cell("W2 (PCN)", "0%").paper == 0.49
    # the other reading of App. D.8 as an extra row, not in the paper
    extra = tab.cell("W2 (DDEQ, free vs whole target)", "5%")
    assert extra.value == pytest.approx(0.7) and math.isnan(extra.paper)
    assert any("points the partial input lacks" in n for n in tab.notes)
    assert any("Test inputs are clean at every level" in n for n in tab.notes)


def test_free_particle_cells_of_runs_evaluated_against_the_whole_target_are_not_shown(tmp_path):
    """A metrics.json written before w2_free/ot_free compared with the missing part (no *_target twin)
    must not fill the DDEQ free-particle cells with the old meaning."""
    root = make_runs(tmp_path / "runs")
    for name in ("mnist-cpl-ddeq", "modelnet-cpl-ddeq"):
        path = root / name / "metrics.json"
        m = json.loads(path.read_text())
        for k in ("w2_free_target", "ot_free_target", "w2_free_target_se", "ot_free_target_se"):
            del m["test"][k]
        path.write_text(json.dumps(m))
    t, _ = _tables(root)
    c = t["table2"].cell("W2 (DDEQ)", "5%")
    assert math.isnan(c.value) and c.runs == ["mnist-cpl-ddeq"] and c.missing == []
    assert any("`mnist-cpl-ddeq`" in n and "ddeqs evaluate" in n for n in t["table2"].notes)
    assert t["table2"].cell("W2 (DDEQ)", "20%").value == pytest.approx(0.36)  # an up-to-date ablation run
    assert math.isnan(t["table6"].cell("OT distance", "DDEQ free particles").value)
    assert t["table6"].cell("OT distance", "DDEQ full point cloud").value == pytest.approx(0.45)
    assert math.isnan(t["table_d5"].cell("Broyden", "W2 ratio").value)
    assert t["table_d5"].cell("Broyden", "MMD² ratio").value == pytest.approx(14.0)


def test_table3_to_6_and_d5(runs):
    t, _ = _tables(runs)
    t3 = t["table3"]
    acc = t3.cell("pushforward", "MNIST-pc acc.")  # the paper's column without printed values
    assert acc.value == pytest.approx(89.0) and acc.unit == "%" and math.isnan(acc.paper)
    assert t3.cell("full architecture", "MNIST-pc acc.").value == pytest.approx(91.0)
    assert t3.columns[0] == "MNIST-pc acc."
    assert t3.cell("pushforward", "ModelNet40-s acc.").value == pytest.approx(69.0)
    assert t3.cell("full architecture", "MNIST-pc cross-entr.").value == pytest.approx(0.28)
    assert t3.cell("pushforward", "MNIST-pc-partial MMD²").value == pytest.approx(0.015)
    assert t3.cell("full architecture", "ModelNet40-s cross-entr.").paper == 0.888
    t4 = t["table4"]
    assert t4.cell("Runtime (1 epoch)", "10").value == 10.0
    assert t4.cell("Runtime (1 epoch)", "200").runs == ["mnist-cpl-ddeq"]
    assert t4.cell("Runtime (1 epoch)", "PCN").value == 5.0 and t4.cell("Runtime (1 epoch)", "PCN").device == "cpu"
    assert t4.cell("Runtime (1 epoch)", "1000").paper == 14 * 3600 + 53 * 60
    assert t["table5"].cell("Runtime (1 epoch)", "40%").value == pytest.approx(80.0)
    t6 = t["table6"]
    assert t6.cell("OT distance", "DDEQ free particles").value == pytest.approx(3.3)
    assert t6.cell("OT distance", "DDEQ free vs whole target").value == pytest.approx(4.8)
    assert math.isnan(t6.cell("OT distance", "DDEQ free vs whole target").paper)
    assert t6.cell("OT distance", "PCN").value == pytest.approx(0.6)
    assert t6.cell("OT distance", "DDEQ full point cloud").paper == 0.154
    d5 = t["table_d5"]
    assert d5.cell("fixed point", "MMD² ratio").value == pytest.approx(13.0)
    assert d5.cell("Broyden", "W2 ratio").value == pytest.approx(4.0)
    assert d5.cell("Anderson", "MMD² ratio").paper == V.D5_RATIOS["mmd2"]


def test_missing_runs_are_nan_and_noted(tmp_path):
    root = make_runs(tmp_path / "runs", skip=("mnist-cls-pt", "mnist-cpl-ddeq--noise-0.8"))
    t, ctx = _tables(root)
    c = t["table1"].cell("PT (3.5M)", "MNIST-pc")
    assert math.isnan(c.value) and c.missing == ["mnist-cls-pt"] and c.paper == 98.6
    written = write_tables(list(t.values()), tmp_path / "tables", ctx, summary_path=tmp_path / "summary.json")
    assert {p.name for p in written} >= {"table1.csv", "table1.md", "table1.tex", "table_d5.csv", "summary.json"}
    rows = list(csv.DictReader(open(tmp_path / "tables" / "table1.csv")))
    assert list(rows[0]) == ["table", "row", "column", "value", "se", "paper", "unit", "runs", "device"]
    pt = next(r for r in rows if r["row"].startswith("PT") and r["column"] == "MNIST-pc")
    assert pt["value"] == "NaN" and float(pt["paper"]) == 98.6 and pt["runs"] == "mnist-cls-pt"
    md3 = (tmp_path / "tables" / "table3.md").read_text()
    assert "| MNIST-pc acc. (reproduced) | MNIST-pc acc. (paper) |" in md3 and "| 89.0 ± 0.9 | not reported |" in md3
    md = (tmp_path / "tables" / "table1.md").read_text()
    assert "— (missing)" in md and "`mnist-cls-pt`" in md and "98.6" in md and "91.0 ± 0.9" in md
    assert "configuration 'smoke'" in md
    assert "`mnist-cpl-ddeq--noise-0.8`" in (tmp_path / "tables" / "table2.md").read_text()
    tex = (tmp_path / "tables" / "table1.tex").read_text()
    assert r"\begin{tabular}" in tex and "98.6" in tex and r"\toprule" in tex
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["table1/mnist/ddeq/accuracy"] == pytest.approx(91.0)
    assert "table1/mnist/pt/accuracy" not in s and all(math.isfinite(v) for v in s.values())


def test_strict_raises_on_missing(tmp_path):
    root = make_runs(tmp_path / "runs", skip=("modelnet-cpl-pcn",))
    with pytest.raises(DataError, match="modelnet-cpl-pcn"):
        _tables(root, strict=True)


def test_corrupt_metrics_is_reported(tmp_path):
    root = make_runs(tmp_path / "runs")
    (root / "mnist-cls-pt" / "metrics.json").write_text("{not json")
    with pytest.warns(UserWarning, match="mnist-cls-pt"):
        t, _ = _tables(root)
    assert math.isnan(t["table1"].cell("PT (3.5M)", "MNIST-pc").value)
    with pytest.raises(DataError, match="metrics.json"):
        _tables(root, strict=True)


def test_context_and_names(tmp_path):
    assert parse_roles("mnist=digits, modelnet=shapes") == {"mnist": "digits", "modelnet": "shapes"}
    with pytest.raises(DataError):
        parse_roles("mnist")
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text("profile: smoke\nroles: {mnist: digits}\nother: 1\n")
    ctx = make_context(config=cfg)
    assert ctx.profile == "smoke" and ctx.roles == {"mnist": "digits", "modelnet": "shapes"}
    assert make_context().roles == {"mnist": "mnist-pc", "modelnet": "modelnet40-s"}
    assert make_context(config=cfg, roles="mnist=mnist-pc").roles["mnist"] == "mnist-pc"
    with pytest.raises(DataError, match="not found"):
        make_context(config=tmp_path / "nope.yaml")
    assert ablation_name("mnist-cpl-ddeq", "noise", 0.05) == "mnist-cpl-ddeq--noise-0.05"
    assert ablation_name("mnist-cls-ddeq", "pushforward", True) == "mnist-cls-ddeq--pushforward-true"
    assert fmt_seconds(3 * 3600 + 60) == "3h01m" and fmt_seconds(125) == "2m05s" and fmt_seconds(4.2) == "4.2 s"


def test_only_the_canonical_run_name_is_read(tmp_path):
    """Run names have one spelling (ddeqs.record.child_name, the one the DAG writes): a folder under
    another spelling is not the run, and the missing cell names the canonical folder."""
    root = make_runs(tmp_path / "runs")
    t, _ = _tables(root)
    assert summary(list(t.values()))["table2/ddeq/noise-0.2/w2"] == pytest.approx(0.36)
    (root / "mnist-cpl-ddeq--noise-0.2").rename(root / "mnist-cpl-ddeq--noise-0.20")
    t, _ = _tables(root)
    cell = t["table2"].cell("W2 (DDEQ)", "20%")
    assert cell.is_missing and cell.missing == ["mnist-cpl-ddeq--noise-0.2"]
    assert "table2/ddeq/noise-0.2/w2" not in summary(list(t.values()))


def test_report_lists_each_reading_with_the_recorded_settings(tmp_path):
    """results/README.md: "What differs from the paper" names every ambiguous passage, the reading used
    and the other one, with the settings the runs recorded (older run folders: the old behaviour)."""
    from ddeqs.paper.readings import READINGS
    from ddeqs.paper.report import build_report

    root = make_runs(tmp_path / "runs")
    t, ctx = _tables(root)
    text = build_report(RunStore(root), ctx, list(t.values()), None, tmp_path / "res" / "README.md",
                        tmp_path / "res" / "figures", tmp_path / "res" / "tables")
    section = text.split("## What differs from the paper", 1)[1].split("## Tables", 1)[0]
    for topic in ("Noise mode", "Noise on which split", "Noise share", "Free-particle reference", "W2 of App. D.5",
                  "Partial clouds", "Input share", "Table 3, MNIST-pc accuracy"):
        assert f"**{topic}" in section, topic
    assert len(READINGS) == section.count("Other reading:")
    noise = next(line for line in section.splitlines() if line.startswith("- **Noise mode"))
    # 19 DDEQ completion runs record add; the 5 PCN runs predate the key (today's default then: replace)
    assert "`data.noise_mode` = add (19 runs), replace (5 runs, written before `data.noise_mode` existed)" in noise
    assert "data.noise_mode=replace" in noise
    assert "`data.redraw_partial` = true (19 runs)" in section and "data.noise_test=true" in section
    assert (tmp_path / "res" / "README.md").read_text() == text


def test_d5_uses_the_grids_own_wgf_reference_when_trained(runs):
    """A solver grid with `set` trains its own WGF run (same shortened training as the classical solvers):
    the ratios are taken against it, not against the main run."""
    import shutil

    ref = runs / ablation_name("mnist-cpl-ddeq", "solver", "wgf")
    shutil.copytree(runs / "mnist-cpl-ddeq", ref)
    m = json.loads((ref / "metrics.json").read_text())
    m["name"] = ref.name
    m["test"]["mmd2"] *= 2.0
    (ref / "metrics.json").write_text(json.dumps(m))
    t, _ = _tables(runs)
    cell = t["table_d5"].cell("fixed point", "MMD² ratio")
    assert cell.value == pytest.approx(13.0 / 2.0) and cell.runs == ["mnist-cpl-ddeq--solver-fixed_point", ref.name]
    assert "wgf" not in " ".join(t["table_d5"].rows).lower()


def test_a_grid_trained_unlike_its_main_run_never_shows_the_main_run(runs):
    """grids.<g>.set (e.g. the cpu profile's shorter ablations): the main run has the grid value but not the
    grid's other settings, so it is not one of the grid's points; fields that change only what a run reports
    (train.eval_init) do not count."""
    from ddeqs.plan import Grid

    ctx = make_context("smoke", "mnist=digits,modelnet=shapes")
    ctx.grids = {"noise": Grid(key="data.noise", runs=["mnist-cpl-ddeq"], values=[0, 0.05, 0.2],
                               set={"data": {"noise_mode": "replace"}})}
    cell = {t.name: t for t in build_tables(RunStore(runs, ctx=ctx), ctx)}["table2"].cell("W2 (DDEQ)", "5%")
    assert math.isnan(cell.value) and cell.missing == ["mnist-cpl-ddeq--noise-0.05"]
    ctx.grids["noise"] = Grid(key="data.noise", runs=["mnist-cpl-ddeq"], values=[0, 0.05, 0.2],
                              set={"data": {"noise_mode": "add"}, "train": {"eval_init": False}})
    cell = {t.name: t for t in build_tables(RunStore(runs, ctx=ctx), ctx)}["table2"].cell("W2 (DDEQ)", "5%")
    assert cell.runs == ["mnist-cpl-ddeq"] and cell.value == pytest.approx(0.3)
    # set_runs of that main run count too; another run's do not
    ctx.grids["noise"] = Grid(key="data.noise", runs=["mnist-cpl-ddeq", "mnist-cpl-pcn"], values=[0, 0.05, 0.2],
                              set_runs={"mnist-cpl-ddeq": {"data": {"noise_mode": "replace"}}})
    table2 = {t.name: t for t in build_tables(RunStore(runs, ctx=ctx), ctx)}["table2"]
    assert math.isnan(table2.cell("W2 (DDEQ)", "5%").value)
    ctx.grids["noise"] = Grid(key="data.noise", runs=["mnist-cpl-ddeq", "mnist-cpl-pcn"], values=[0, 0.05, 0.2],
                              set_runs={"mnist-cpl-pcn": {"data": {"noise_mode": "replace"}}})
    table2 = {t.name: t for t in build_tables(RunStore(runs, ctx=ctx), ctx)}["table2"]
    assert table2.cell("W2 (DDEQ)", "5%").runs == ["mnist-cpl-ddeq"]
