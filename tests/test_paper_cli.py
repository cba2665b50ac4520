"""``ddeqs paper ...`` end to end on fixture runs: tables, figures, report, summary."""

from __future__ import annotations

import json

from ddeqs.cli import main
from fixtures.paper_runs import make_runs


def test_paper_all_cli(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs", skip=("modelnet-cls-pt",))
    res = tmp_path / "results"
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text("profile: smoke\nroles: {mnist: digits, modelnet: shapes}\n")
    rc = main(["paper", "all", "--runs", str(runs), "--config", str(cfg), "--tables-out", str(res / "tables"),
               "--summary", str(res / "summary.json"), "--figures-out", str(res / "figures"),
               "--only", "fig04,fig10,fig16", "--flow-iters", "20", "--flow-particles", "10",
               "--report", str(res / "README.md"), "--mlflow-ui", "http://127.0.0.1:5000"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "missing runs: modelnet-cls-pt" in out
    readme = (res / "README.md").read_text()
    assert "Configuration: **smoke**" in readme and "digits (embedded)" in readme
    assert "![fig04](figures/fig04.png)" in readme and "tables/table1.csv" in readme
    assert "http://127.0.0.1:5000/#/experiments/1/runs/abcdef0123456789" in readme
    assert "98.1" in readme and "`modelnet-cls-pt`" in readme
    assert "not comparable" in readme
    s = json.loads((res / "summary.json").read_text())
    assert s["table6/pcn/ot_full"] == 0.6000000000000001 or abs(s["table6/pcn/ot_full"] - 0.6) < 1e-9


def test_paper_tables_strict_error_is_clean(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs", skip=("mnist-cls-pt",))
    rc = main(["paper", "tables", "--runs", str(runs), "--out", str(tmp_path / "t"), "--summary",
               str(tmp_path / "s.json"), "--strict", "--profile", "smoke"])
    assert rc == 1
    assert "mnist-cls-pt" in capsys.readouterr().err


def test_flow_cli(tmp_path, capsys):
    assert main(["paper", "flow", "--order", "8", "--iters", "30", "--particles", "10", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "flow-8.npz").is_file() and (tmp_path / "flow-8.png").stat().st_size > 1000
    assert "MMD²" in capsys.readouterr().out


def test_flow_figures_need_no_runs_folder(tmp_path):
    """Snakemake may start flow_figures (no inputs) before any training made results/<profile>/runs:
    fig16/fig17 read no run, so a missing runs folder is no error for them (it still is for others)."""
    common = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig"), "--profile", "smoke",
              "--roles", "mnist=digits,modelnet=shapes"]
    assert main(["paper", "figures", *common, "--only", "fig16,fig17", "--flow-particles", "10",
                 "--flow-iters", "5"]) == 0
    assert (tmp_path / "fig/fig16.png").is_file() and (tmp_path / "fig/fig17.png").is_file()
    assert main(["paper", "figures", *common, "--only", "fig04"]) != 0
