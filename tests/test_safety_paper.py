"""Paper artifacts never read another profile's runs and never replace filled tables by emptier ones."""

from __future__ import annotations

import json

import pytest

from ddeqs.cli import main
from ddeqs.errors import DataError
from ddeqs.paper.runs import RunStore, make_context
from fixtures.paper_runs import make_runs


def _tables(runs, out, *extra):
    return main(["paper", "tables", "--runs", str(runs), "--out", str(out / "tables"),
                 "--summary", str(out / "summary.json"), *extra])


def test_tables_never_read_runs_of_another_profile(tmp_path, capsys):
    """The fixture's runs are smoke runs (digits, shapes): the paper profile must not use them."""
    runs = make_runs(tmp_path / "runs")
    store = RunStore(runs, ctx=make_context("paper"))
    with pytest.warns(UserWarning, match="another profile"):
        assert store.get("mnist-cls-ddeq") is None
    assert "mnist-cls-ddeq" in store.problems and "'digits'" in store.problems["mnist-cls-ddeq"]
    assert RunStore(runs, ctx=make_context("smoke")).get("mnist-cls-ddeq") is not None
    strict = RunStore(runs, strict=True, ctx=make_context("paper"))
    with pytest.raises(DataError, match="belongs to another profile"):
        strict.get("mnist-cls-ddeq")


def test_pipeline_runs_get_a_results_root_and_mlflow_experiment_per_profile(tmp_path):
    """The same run name under the two profiles: different files, different MLflow experiments."""
    import shutil
    import subprocess

    from ddeqs.config import load_config
    from test_pipeline import BIN, REPO, WORKFLOW_FILES, env

    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    for extra in ([], ["--configfile", "params/smoke.yaml"]):
        proc = subprocess.run([str(BIN / "snakemake"), "--cores", "1", *extra, "--",
                               f"results/{'smoke' if extra else 'paper'}/params/mnist-cls-ddeq.yaml"],
                              cwd=tmp_path, env=env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    paper = load_config(tmp_path / "results/paper/params/mnist-cls-ddeq.yaml")
    smoke = load_config(tmp_path / "results/smoke/params/mnist-cls-ddeq.yaml")
    assert paper.tracking.experiment == "ddeqs-paper-classification"
    assert smoke.tracking.experiment == "ddeqs-smoke-classification"
    assert not (tmp_path / "results/params").exists() and not (tmp_path / "results/runs").exists()


def test_typo_in_runs_folder_is_an_error_and_keeps_tables(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs")
    assert _tables(runs, tmp_path, "--profile", "smoke") == 0
    before = (tmp_path / "summary.json").read_text()
    table1 = (tmp_path / "tables/table1.csv").read_text()
    assert len(json.loads(before)) > 10
    # a typo in --runs: error, nothing overwritten
    assert _tables(tmp_path / "run", tmp_path, "--profile", "smoke") == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _tables(tmp_path / "empty", tmp_path, "--profile", "smoke") == 1
    assert "no run folder" in capsys.readouterr().err
    # runs of another profile fill nothing: refused without --force
    assert _tables(runs, tmp_path, "--profile", "paper") == 1
    err = capsys.readouterr().err
    assert "would become missing" in err and "--force" in err
    assert (tmp_path / "summary.json").read_text() == before
    assert (tmp_path / "tables/table1.csv").read_text() == table1
    # --force replaces them
    assert _tables(runs, tmp_path, "--profile", "paper", "--force") == 0
    assert json.loads((tmp_path / "summary.json").read_text()) == {}


def test_unknown_profile_is_an_error(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs")
    assert _tables(runs, tmp_path, "--profile", "smok") == 1
    assert "unknown profile 'smok'" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()
    with pytest.raises(DataError, match="unknown profile"):
        make_context("papr")
    # a new profile with its datasets given is fine
    assert make_context("mine", "mnist=digits,modelnet=shapes").roles["mnist"] == "digits"
