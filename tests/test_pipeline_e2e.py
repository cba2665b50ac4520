"""End to end: the smoke DAG through DVC in a temporary git repository (integration, slow).

The smoke configuration is trained ONCE per session (fixture `smoke`: `dvc repro` of a copy of the
working tree, which runs the smoke Snakemake DAG: every table, figure and claim); every test below
reuses its outputs. (`make demo` runs the digits runs of params/cpu.yaml instead: docs/reproduction.md.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from test_pipeline import BIN, FIGURES, REPO, TABLES, env, job_counts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SMOKE = ["--configfile", "params/smoke.yaml"]


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    proc = subprocess.run([exe, *cmd[1:]], cwd=cwd, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def git(cwd: Path, *args: str) -> None:
    sh(cwd, "git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("pipeline")
    repo = root / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    (repo / "params.yaml").write_text("profile: smoke\nconfig: params/smoke.yaml\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "workflow")
    t0 = time.monotonic()
    proc = sh(repo, "dvc", "repro")
    seconds = time.monotonic() - t0
    print(f"\nsmoke DAG through dvc repro: {seconds:.0f} s")
    git(repo, "add", "dvc.lock")
    git(repo, "commit", "-q", "-m", "dvc.lock")
    return SimpleNamespace(root=root, repo=repo, seconds=seconds, log=proc.stdout + proc.stderr)


def test_smoke_dag_writes_every_table_and_figure(smoke: SimpleNamespace) -> None:
    repo = smoke.repo
    expected = [f"results/smoke/tables/{t}.{e}" for t in TABLES for e in ("csv", "md", "tex")]
    expected += [f"results/smoke/figures/{f}.{e}" for f in FIGURES for e in ("png", "pdf")]
    expected += ["results/smoke/summary.json", "results/smoke/README.md", "results/smoke/claims.md",
                 "results/smoke/claims.json"]
    empty = [p for p in expected if not (repo / p).is_file() or (repo / p).stat().st_size == 0]
    assert not empty, f"missing or empty: {empty}"
    summary = json.loads((repo / "results/smoke/summary.json").read_text())
    assert "table1/mnist/ddeq/accuracy" in summary and 0.0 <= summary["table1/mnist/ddeq/accuracy"] <= 100.0
    metrics = json.loads((repo / "results/smoke/runs/mnist-cpl-ddeq--noise-0.2/metrics.json").read_text())
    assert metrics["dataset"] == "digits" and metrics["test"]["n"] > 0
    assert (repo / "results/smoke/plots/mnist-cls-ddeq.csv").read_text().startswith("epoch")
    assert (repo / "results/smoke/plots/training_curves.png").stat().st_size > 0
    # no wall-time assertion (speed is shown by `ddeqs bench`, not by timed tests): the fixture prints
    # the DAG's seconds and `pytest --durations` lists it, to keep CI under its 30-minute goal


def test_second_run_does_nothing(smoke: SimpleNamespace) -> None:
    proc = sh(smoke.repo, "snakemake", "--profile", "profiles/local", *SMOKE, "--cores", "2", "all")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert "up to date" in sh(smoke.repo, "dvc", "status").stdout


def test_config_changes_rerun_only_affected_jobs(smoke: SimpleNamespace) -> None:
    path = smoke.repo / "params/smoke.yaml"
    original = path.read_text()
    try:
        raw = yaml.safe_load(original)
        raw["grids"]["noise"]["values"] = [0, 0.05, 0.5, 0.8]  # 0.2 -> 0.5
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        out = sh(smoke.repo, "snakemake", "all", "-n", *SMOKE).stdout
        trained = set(re.findall(r"^rule train:\n(?:\s+.*\n)*?\s+wildcards: run=(\S+)", out, re.M))
        assert trained == {"mnist-cpl-ddeq--noise-0.5", "mnist-cpl-pcn--noise-0.5"}
        # + params, curves (2 each), combined curves, tables, figures, claims, report, all
        assert job_counts(out)["total"] == 12

        raw = yaml.safe_load(original)  # a main run's setting: that run and its grid children
        raw["runs"]["mnist-cpl-pcn"] = {"train": {"lr": 0.002}}
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        out = sh(smoke.repo, "snakemake", "all", "-n", *SMOKE).stdout
        trained = set(re.findall(r"^rule train:\n(?:\s+.*\n)*?\s+wildcards: run=(\S+)", out, re.M))
        # (not noise 5 %: the main run's own setting, read from the main run)
        assert trained == {"mnist-cpl-pcn"} | {f"mnist-cpl-pcn--noise-{v}" for v in ("0", "0.2", "0.8")}
        assert "flow_figures" not in job_counts(out)
    finally:
        path.write_text(original)
    assert "Nothing to be done" in sh(smoke.repo, "snakemake", "all", "-n", *SMOKE).stdout


def test_snakemake_report_gathers_tables_and_figures(smoke: SimpleNamespace) -> None:
    sh(smoke.repo, "snakemake", "all", *SMOKE, "--report", "results/report.html")
    html = (smoke.repo / "results/report.html").read_text(errors="replace")
    for name in ("table1.csv", "table_d5.md", "fig10.png", "fig16.png", "README.md", "training_curves.png"):
        assert name in html, name
    # one caption per figure: the paper's caption and what was reproduced
    for caption in ("Figure 10 (paper, App. D.2)", "Figure 16 (paper, App. D.9)", "z_particles ablation grid"):
        assert caption in html, caption


def test_dvc_metrics_and_exp_run_keep_every_result(smoke: SimpleNamespace) -> None:
    """`dvc metrics show` / `dvc exp show` read the smoke results; a `dvc exp run` that changes one
    setting (the flow figures' iterations) reruns only that, and every other file of the finished
    smoke workspace (runs, tables, prepared data) is still there, byte for byte. Results are not in
    the DVC cache (dvc.yaml: cache false), so there is nothing to push; dvc.lock records their hashes."""
    repo = smoke.repo
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert "results/smoke/summary.json" in flat and "table1/mnist/ddeq/accuracy" in flat
    exps = sh(repo, "dvc", "exp", "show", "--json").stdout
    assert "params/smoke.yaml" in exps and "table1/mnist/ddeq/accuracy" in exps
    kept = sorted(p for p in [*(repo / "results/smoke").rglob("*"), *(repo / "data/processed").rglob("*")]
                  if p.is_file() and "figures" not in p.parts and "logs" not in p.parts
                  and "benchmarks" not in p.parts and p.name not in ("README.md",)
                  and not p.name.startswith("claims."))  # the claims check the flow too: rebuilt by this change
    before = {p: p.read_bytes() for p in kept}
    proc = sh(repo, "dvc", "exp", "run", "-S", "profile=smoke", "-S", "config=params/smoke.yaml",
              "-S", "params/smoke.yaml:flow.iters=400")
    assert "won't be created" not in proc.stdout + proc.stderr
    changed = [str(p.relative_to(repo)) for p, data in before.items() if not p.is_file() or p.read_bytes() != data]
    assert not changed, changed
    assert "flow_figures" in proc.stdout + proc.stderr and "rule train" not in proc.stdout + proc.stderr
