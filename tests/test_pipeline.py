"""The Snakemake DAG and the DVC stage, without training: dry runs, lint, params files, errors.

Each test works on a copy of the workflow files in a temporary folder, so nothing is written
to the repository. The end-to-end runs are in test_pipeline_e2e.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ["Snakefile", "workflow", "params", "profiles", "environment.yml", "dvc.yaml", "params.yaml"]

# The run-name contract (shared with training and the paper artifacts), written out by hand so
# that the DAG is checked against the contract, not against itself.
MAIN_RUNS = [
    "mnist-cls-ddeq", "mnist-cls-pointnet", "mnist-cls-pt",
    "modelnet-cls-ddeq", "modelnet-cls-pointnet", "modelnet-cls-pt",
    "mnist-cpl-ddeq", "mnist-cpl-pcn", "modelnet-cpl-ddeq", "modelnet-cpl-pcn",
]
PAPER_ABLATIONS = (
    [f"{r}--z_particles-{v}" for r in ("mnist-cls-ddeq", "modelnet-cls-ddeq") for v in (1, 2, 4, 8, 10, 16, 32, 64)]
    + [f"{r}--pushforward-true" for r in ("mnist-cls-ddeq", "modelnet-cls-ddeq", "mnist-cpl-ddeq")]
    + [f"mnist-cpl-ddeq--iters-{v}" for v in (10, 50, 100, 200, 500, 1000)]
    + [f"{r}--noise-{v}" for r in ("mnist-cpl-ddeq", "mnist-cpl-pcn") for v in ("0", "0.05", "0.2", "0.8")]
    + [f"mnist-cpl-ddeq--input_share-{v}" for v in ("0.2", "0.4", "0.6", "0.8", "1")]
    + [f"mnist-cpl-ddeq--solver-{v}" for v in ("fixed_point", "anderson", "broyden")]
)
# grid children whose value is their main run's setting: not trained, the tables read the main run
PAPER_REPEATS = ["mnist-cls-ddeq--z_particles-10", "modelnet-cls-ddeq--z_particles-10", "mnist-cpl-ddeq--iters-200",
                 "mnist-cpl-ddeq--noise-0.05", "mnist-cpl-pcn--noise-0.05", "mnist-cpl-ddeq--input_share-1"]
TABLES = ["table1", "table2", "table3", "table4", "table5", "table6", "table_d5"]
FIGURES = [f"fig{i:02d}" for i in (1, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)]


def env() -> dict[str, str]:
    e = dict(os.environ, DVC_NO_ANALYTICS="1", MPLBACKEND="Agg")
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


def snakemake(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    return tmp_path


def test_paper_dry_run_lists_every_job(wf: Path) -> None:
    proc = snakemake(wf, "-n", "all")
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    runs = MAIN_RUNS + [name for name in PAPER_ABLATIONS if name not in PAPER_REPEATS]
    assert counts["train"] == len(runs) == 45  # Figure 10 has a curve per classification dataset
    for name in PAPER_REPEATS:
        assert f"results/paper/runs/{name}/" not in out, name
    assert counts["run_params"] == counts["training_curve"] == len(runs)
    assert counts["fetch"] == counts["prepare"] == 2
    for name in runs:
        assert f"results/paper/runs/{name}/metrics.json" in out, name
    for ds in ("mnist-pc", "modelnet40-s"):
        assert f"data/processed/{ds}/train.npz" in out
    for t in TABLES:
        assert f"results/paper/tables/{t}.csv" in out and f"results/paper/tables/{t}.tex" in out
    for f in FIGURES:
        assert f"results/paper/figures/{f}.png" in out and f"results/paper/figures/{f}.pdf" in out
    assert "results/paper/summary.json" in out and "results/paper/README.md" in out
    assert "results/paper/claims.md" in out and "results/paper/claims.json" in out
    assert " paper claims --runs results/paper/runs" in out
    # training jobs declare one GPU each; every job has a log
    assert re.search(r"rule train:.*?resources: [^\n]*gpu=1", out, re.S)
    assert "Shell command" in out and " train --params results/paper/params/" in out


def test_smoke_is_the_same_dag_on_embedded_data(wf: Path) -> None:
    out = snakemake(wf, "all", "-n", "--configfile", "params/smoke.yaml").stdout
    counts = job_counts(out)
    # 10 main runs + grid children: z_particles 3 x 2, pushforward 3, iters 6, noise 4 x 2 less 5 % x 2,
    # input_share 5 less 1.0, solver 3 (the values left out would repeat their main run)
    assert counts["train"] == 10 + 6 + 3 + 6 + 6 + 4 + 3
    assert "results/smoke/runs/mnist-cpl-pcn--noise-0.05/" not in out
    assert "results/smoke/runs/modelnet-cls-ddeq--z_particles-64/metrics.json" in out
    assert "data/processed/digits/train.npz" in out and "data/processed/shapes/test.npz" in out
    assert "mnist-pc" not in out and "modelnet40-s" not in out  # nothing of the paper leaks in
    for t in TABLES:
        assert f"results/smoke/tables/{t}.md" in out
    for f in FIGURES:
        assert f"results/smoke/figures/{f}.png" in out
    assert "--profile smoke --roles mnist=digits,modelnet=shapes" in out
    assert "results/paper" not in out  # the smoke profile writes only under results/smoke/
    assert "--runs results/smoke/runs" in out
    # the rules' command is the Python running Snakemake (a global in the shell line, not a param)
    assert re.search(r'^Shell command: "[^"]*python[^"]*" -m ddeqs train --params results/smoke/params/', out, re.M)


def test_cpu_profile_and_the_demo_selected_from_it(wf: Path) -> None:
    """params/cpu.yaml is the whole DAG on embedded data; params/demo.yaml over it trains only its 4 digits runs."""
    full = job_counts(snakemake(wf, "all", "-n", "--configfile", "params/cpu.yaml").stdout)
    # 10 main runs + grid children: z_particles 3 x 2, pushforward 3, iters 3 less 50, noise 3 x 2 less 5 % x 2,
    # input_share 3 less 1.0, solver 4 (its own "wgf" reference: the grid's `set` trains it unlike the main run)
    assert full["train"] == 10 + 6 + 3 + 2 + 4 + 2 + 4
    assert "results/cpu/figures/fig10.png" in snakemake(wf, "all", "-n", "--configfile", "params/cpu.yaml").stdout
    out = snakemake(wf, "all", "-n", "--configfile", "params/cpu.yaml", "params/demo.yaml").stdout
    counts = job_counts(out)
    assert counts["train"] == 4 and counts["paper_claims"] == counts["paper_tables"] == 1
    # a figure of one run is its own job, drawn once that run is done (not after the last training)
    assert counts["paper_figure_fig11"] == counts["paper_figure_fig04"] == 1 and "paper_figure_fig05" not in counts
    assert re.search(r"rule paper_figure_fig11:\n(?:\s+.*\n)*?\s+input: results/demo/runs/mnist-cls-ddeq/metrics.json\n", out)
    for name in ("mnist-cls-ddeq", "mnist-cls-pointnet", "mnist-cpl-ddeq", "mnist-cpl-pcn"):
        assert f"results/demo/runs/{name}/metrics.json" in out, name
    assert "results/cpu" not in out and "data/processed/shapes" not in out  # only the demo's data, only results/demo
    assert "--config params/cpu.yaml --config params/demo.yaml" in out  # the paper rules read the same plan
    # figures that need runs the demo does not train are not declared (they would be skipped, then missing)
    assert "results/demo/figures/fig04.png" in out and "results/demo/figures/fig13.png" in out
    # ... and so is Figure 10, drawn from the z_particles children only (none in the demo)
    for fig in ("fig05", "fig12", "fig14", "fig15", "fig10"):
        assert f"results/demo/figures/{fig}.png" not in out, fig


@pytest.mark.parametrize("configfile", [None, "params/smoke.yaml"])
def test_lint_is_clean(wf: Path, configfile: str | None) -> None:
    """Lint is clean except two deliberate choices (docs/pipeline.md): no per-rule conda env (one
    environment runs Snakemake and every job), and the interpreter as the global DDEQS in shell
    commands (a machine path must not sit in params, where it would rerun jobs)."""
    args = ["--lint"] + (["--configfile", configfile] if configfile else [])
    proc = snakemake(wf, *args, check=False)
    out = proc.stdout + proc.stderr
    lints = re.findall(r"^\s+\* (.+?):?$", out, re.M)
    allowed = {"Specify a conda environment or container for each rule.", "Shell command directly uses variable DDEQS from outside of the rule"}
    assert lints and set(lints) <= allowed, out[-3000:]


@pytest.mark.slow
def test_params_file_of_an_ablation_child(wf: Path) -> None:
    """The params rule writes a complete, valid ExperimentConfig; iters keeps step x iters = 1000."""
    from ddeqs.config import load_config

    target = "results/paper/params/mnist-cpl-ddeq--iters-50.yaml"
    snakemake(wf, "--cores", "1", target)
    cfg = load_config(wf / target)
    assert cfg.task == "completion" and cfg.model.name == "ddeq"
    assert cfg.data.dataset == "mnist-pc" and cfg.data.noise == 0.05
    assert cfg.solver.iters == 50 and cfg.solver.step == pytest.approx(20.0)
    assert cfg.train.epochs == 5 and cfg.train.batch_size == 64 and cfg.train.lr == 1e-3
    assert cfg.tracking.run_name == "mnist-cpl-ddeq--iters-50"
    assert cfg.tracking.parent_run == "mnist-cpl-ddeq--iters"
    assert cfg.tracking.rule == "train"
    # the main run it derives from keeps the paper's 200 iterations with step 5
    snakemake(wf, "--cores", "1", "results/paper/params/mnist-cls-ddeq.yaml", "results/paper/params/modelnet-cls-pt.yaml")
    main = load_config(wf / "results/paper/params/mnist-cls-ddeq.yaml")
    assert (main.solver.iters, main.solver.step, main.model.cross_layers) == (200, 5.0, 1)
    assert main.tracking.parent_run is None
    pt = load_config(wf / "results/paper/params/modelnet-cls-pt.yaml")
    assert pt.model.name == "point-transformer" and pt.train.optimizer == "sgd" and pt.train.epochs == 20


def _edit(path: Path, fn) -> None:
    raw = yaml.safe_load(path.read_text())
    fn(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_misspelled_run_setting_fails_at_dag_build(wf: Path) -> None:
    _edit(wf / "params/config.yaml", lambda c: c["runs"]["mnist-cls-pt"].update(solver={"iter": 3}))
    proc = snakemake(wf, "-n", "all", check=False)
    assert proc.returncode != 0
    msg = proc.stdout + proc.stderr
    assert "mnist-cls-pt" in msg and "solver.iter" in msg and "did you mean 'solver.iters'" in msg


def test_grid_on_unknown_run_and_bad_structure_fail(wf: Path) -> None:
    _edit(wf / "params/config.yaml", lambda c: c["grids"]["noise"].update(runs=["mnist-cpl-foo"]))
    proc = snakemake(wf, "-n", "all", check=False)
    assert proc.returncode != 0 and "mnist-cpl-foo" in proc.stdout + proc.stderr

    _edit(wf / "params/config.yaml", lambda c: c.update(gridz={}))
    proc = snakemake(wf, "-n", "all", check=False)
    assert proc.returncode != 0 and "gridz" in proc.stdout + proc.stderr


def _touch_smoke_dag(wf: Path, smoke: list[str]) -> None:
    """Mark a complete smoke DAG as done: empty outputs, then --touch (records each job's metadata)."""
    summary = snakemake(wf, *smoke, "--summary").stdout
    for line in summary.splitlines()[1:]:
        f = wf / line.split("\t", 1)[0]
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    snakemake(wf, *smoke, "--cores", "1", "--touch")
    assert "Nothing to be done" in snakemake(wf, *smoke, "-n").stdout


@pytest.mark.slow
def test_another_interpreter_reruns_nothing(wf: Path) -> None:
    """Started from another Python (another clone, conda env, mount point), nothing is out of date:
    the interpreter path is not part of any job's params."""
    smoke = ["all", "--configfile", "params/smoke.yaml"]
    _touch_smoke_dag(wf, smoke)
    out = snakemake(wf, *smoke, "-n", "--config", "command=/elsewhere/bin/python -m ddeqs").stdout
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_new_grid_value_schedules_only_its_jobs(wf: Path) -> None:
    """Mark a complete smoke DAG as done (empty outputs + --touch), then change one noise value."""
    smoke = ["all", "--configfile", "params/smoke.yaml"]  # target first: --configfile takes several
    _touch_smoke_dag(wf, smoke)

    text = (wf / "params/smoke.yaml").read_text()
    (wf / "params/smoke.yaml").write_text(text.replace("values: [0, 0.05, 0.2, 0.8]", "values: [0, 0.05, 0.5, 0.8]"))
    out = snakemake(wf, *smoke, "-n").stdout
    counts = job_counts(out)
    assert counts == {
        "run_params": 2, "train": 2, "training_curve": 2, "training_curves": 1,
        "paper_tables": 1, "paper_figures": 1, "paper_claims": 1, "paper_report": 1, "all": 1, "total": 12,
    }
    trained = set(re.findall(r"^rule train:\n(?:\s+.*\n)*?\s+wildcards: run=(\S+)", out, re.M))
    assert trained == {"mnist-cpl-ddeq--noise-0.5", "mnist-cpl-pcn--noise-0.5"}


def test_dvc_stage_and_config(wf: Path) -> None:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["pipeline"]
    assert stage["cmd"].startswith("snakemake ") and stage["cmd"].split()[1] == "all"  # before --configfile (it takes several files)
    outs = [next(iter(o)) for o in stage["outs"]]
    assert {"data/processed", "results/${profile}/runs", "results/${profile}/tables", "results/${profile}/figures"} <= set(outs)
    # never cached: `dvc exp run` checks out (deletes or rolls back) cached outputs before running
    declared = [*stage["outs"], *stage["metrics"]]
    assert all(next(iter(o.values()))["persist"] and next(iter(o.values()))["cache"] is False for o in declared)
    assert next(iter(stage["metrics"][0])) == "results/${profile}/summary.json"
    assert "dvc_profile=${profile}" in stage["cmd"]
    # the DVC plot is one static image (readable offline, no Vega from a CDN), inside a declared out
    assert "plots" not in stage
    assert yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] == ["results/${profile}/plots/training_curves.png"]
    assert "results/${profile}/plots" in outs
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["config"] == "params/config.yaml" and params["profile"] == "paper"
    config = (REPO / ".dvc/config").read_text()
    assert re.search(r"analytics\s*=\s*false", config)
    assert re.search(r"remote\s*=\s*local", config)


def test_every_figure_has_its_own_caption() -> None:
    for fig in FIGURES:
        text = (REPO / "workflow/report/figures" / f"{fig}.rst").read_text()
        assert f"**Figure {int(fig[3:])} (paper" in text and "**Reproduced:**" in text, fig


@pytest.mark.slow
def test_report_captions_and_params_of_flow_figures(wf: Path) -> None:
    """The MMD-flow figures (no training): each file carries its own caption in the report, and the
    job params recorded there hold no interpreter path."""
    targets = ["results/smoke/figures/fig16.png", "results/smoke/figures/fig17.png", "--configfile", "params/smoke.yaml"]
    snakemake(wf, *targets, "--cores", "2")
    snakemake(wf, *targets, "--report", "report.html")
    html = (wf / "report.html").read_text(errors="replace")
    assert "2\\u03c0/5" in html and "2\\u03c0/8" in html  # fig16's and fig17's own captions
    assert "500 iterations of 60 particles" in html  # what the smoke configuration reproduced
    params = re.findall(r'"params": "([^"]*)"', html)
    assert params and not any(sys.executable in p or str(BIN) in p for p in params), params
