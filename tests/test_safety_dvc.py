"""`dvc exp run` never removes or rolls back an earlier result (issue: data loss before a run).

Each test copies the workflow into a temporary git repository (one commit, DVC_NO_ANALYTICS=1),
puts earlier results of BOTH profiles and prepared data in place, runs
``dvc exp run -S profile=smoke -S config=params/smoke.yaml`` as docs/pipeline.md documents it,
and checks that every earlier file is still there, byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FILES = ["ddeqs", "Snakefile", "workflow", "params", "profiles", "environment.yml", "dvc.yaml", "params.yaml",
         ".gitignore", ".dvcignore", "scripts"]

EARLIER = {  # one file in every folder dvc.yaml declares, for both profiles, plus prepared data
    "data/processed/digits/train.npz": b"prepared digits",
    "data/processed/mnist-pc/train.npz": b"days of preparation",
    **{f"results/{p}/{k}": f"{p} {k}".encode() for p in ("paper", "smoke") for k in (
        "runs/mnist-cls-ddeq/metrics.json", "runs/mnist-cls-ddeq/model.pt", "tables/table1.csv",
        "figures/fig04.png", "plots/mnist-cls-ddeq.csv", "summary.json", "README.md")},
}


def _env(path_first: Path | None = None) -> dict[str, str]:
    e = dict(os.environ, DVC_NO_ANALYTICS="1", MPLBACKEND="Agg", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
             GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    e["PATH"] = os.pathsep.join([*(str(p) for p in [path_first] if p), str(BIN), e.get("PATH", "")])
    e["PYTHONPATH"] = str(REPO)
    return e


def _repo(tmp: Path, env: dict[str, str], smoke_subset: bool = False, earlier: bool = True) -> Path:
    wf = tmp / "wf"
    wf.mkdir()
    for name in FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, wf / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, wf / name)
    run = lambda *a: subprocess.run(a, cwd=wf, env=env, check=True, capture_output=True, text=True)  # noqa: E731
    if smoke_subset:  # see test_smoke_exp_run_keeps_every_earlier_result
        import yaml

        smoke = yaml.safe_load((wf / "params/smoke.yaml").read_text())
        smoke["runs"], smoke["grids"], smoke["flow"] = {"mnist-cls-pointnet": {}}, {}, {"particles": 10, "iters": 20}
        (wf / "params/smoke.yaml").write_text(yaml.safe_dump(smoke, sort_keys=False))
    run("git", "init", "-q")
    run(str(BIN / "dvc"), "init", "-q")
    shutil.copy(REPO / ".dvc/config", wf / ".dvc/config")  # the project's remote: ../ddeqs-dvc-storage
    run("git", "add", "-A")
    run("git", "commit", "-qm", "workflow")
    for rel, data in EARLIER.items() if earlier else ():
        (wf / rel).parent.mkdir(parents=True, exist_ok=True)
        (wf / rel).write_bytes(data)
    return wf


def _survived(wf: Path, skip: set[str] = frozenset()) -> None:
    lost = [rel for rel, data in EARLIER.items()
            if rel not in skip and (not (wf / rel).is_file() or (wf / rel).read_bytes() != data)]
    assert not lost, f"dvc exp run removed or changed earlier results: {lost}"


def test_failing_exp_run_keeps_every_earlier_result(tmp_path: Path) -> None:
    """The command fails at once (a stand-in `snakemake` that exits 1): DVC's own reset and checkout
    before the command are what deleted everything; nothing may go."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "snakemake").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\nexit 1\n')
    (stub / "snakemake").chmod(0o755)
    env = _env(stub)
    wf = _repo(tmp_path, env)
    proc = subprocess.run([str(BIN / "dvc"), "exp", "run", "-S", "profile=smoke", "-S", "config=params/smoke.yaml"],
                          cwd=wf, env=env, capture_output=True, text=True)
    assert proc.returncode != 0  # the stand-in failed ...
    assert "--configfile params/smoke.yaml" in (tmp_path / "args").read_text()  # ... after being called
    assert "dvc_profile=smoke" in (tmp_path / "args").read_text()
    assert "won't be created" not in proc.stdout + proc.stderr
    _survived(wf)


@pytest.mark.slow
def test_smoke_exp_run_keeps_every_earlier_result(tmp_path: Path) -> None:
    """The real dvc.yaml and Snakemake on the smoke configuration. To stay a test (the whole smoke DAG,
    53 trainings, takes many minutes on 2 cores; the full DAG is exercised through DVC by
    test_pipeline_e2e.py), the committed params/smoke.yaml keeps its settings but only one run, no
    grids and a 20-iteration flow: the DAG prepares digits, trains one PointNet and goes on to the
    tables and figures (which may fail for lack of runs). Whether it succeeds or not, every earlier
    result, including the smoke ones, must survive."""
    env = _env()
    wf = _repo(tmp_path, env, smoke_subset=True)
    proc = subprocess.run(
        [str(BIN / "dvc"), "exp", "run", "-S", "profile=smoke", "-S", "config=params/smoke.yaml"],
        cwd=wf, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert "won't be created" not in out
    # Snakemake ran the smoke configuration into results/smoke/ (not into the paper's folders)
    assert (wf / "results/smoke/runs/mnist-cls-pointnet/metrics.json").is_file(), out[-3000:]
    # Snakemake itself replaces what this run rebuilds (digits were incomplete; tables, figures, summary
    # and report depend on the new run); everything else, above all every other run folder and all of
    # the paper's results, is byte for byte what it was
    rebuilt = {"data/processed/digits/train.npz", *(f"results/smoke/{k}" for k in (
        "tables/table1.csv", "figures/fig04.png", "summary.json", "README.md"))}
    assert (wf / "results/smoke/runs/mnist-cls-ddeq/model.pt").read_bytes() == b"smoke runs/mnist-cls-ddeq/model.pt"
    _survived(wf, skip=rebuilt)


def test_profile_mismatch_is_refused(tmp_path: Path) -> None:
    """`-S config=params/smoke.yaml` without `-S profile=smoke` would declare the paper's folders:
    the pipeline refuses before any job."""
    env = _env()
    wf = tmp_path
    for name in FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wf / name)
    proc = subprocess.run([str(BIN / "snakemake"), "all", "-n", "--configfile", "params/smoke.yaml",
                           "--config", "dvc_profile=paper"], cwd=wf, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "dvc exp run -S profile=smoke -S config=params/smoke.yaml" in proc.stdout + proc.stderr


def _tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.mark.slow
def test_snapshot_push_pull_restore_has_nothing_to_recompute(tmp_path: Path) -> None:
    """The DVC story of docs/pipeline.md end to end: train (a one-run smoke slice), `make dvc-snapshot`
    (scripts/dvc_snapshot.py save), commit, `dvc push` to the project's default local remote (a
    folder next to the repository, here inside tmp_path); a failing `dvc exp run` then removes
    nothing; a second clone gets everything with `dvc pull` + `make dvc-restore`, and Snakemake has
    nothing to recompute there. Without the restore's `--touch`, the clone would retrain."""
    env = _env()
    wf = _repo(tmp_path, env, smoke_subset=True, earlier=False)
    run = lambda cwd, *a: subprocess.run(a, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)  # noqa: E731
    smk = [str(BIN / "snakemake"), "--profile", "profiles/local", "--configfile", "params/smoke.yaml"]
    # what the one-run slice can complete (paper_figures needs runs the slice does not train)
    targets = ["main_runs", "results/smoke/summary.json", "results/smoke/claims.md",
               "results/smoke/plots/training_curves.png", "results/smoke/figures/fig16.png"]
    proc = run(wf, *smk, "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (wf / "results/mlflow/mlflow.db").is_file()
    results = _tree(wf / "results/smoke")
    # the DVC plot: one image, so the page has no Vega <script> (nothing from a CDN); epochs from 1
    # (params.yaml names the paper profile: a plain-snakemake smoke result is shown by its path)
    plots = run(wf, str(BIN / "dvc"), "plots", "show", "-o", str(tmp_path / "dvc_plots"),
                "results/smoke/plots/training_curves.png")
    assert plots.returncode == 0, plots.stdout + plots.stderr
    html = (tmp_path / "dvc_plots/index.html").read_text()
    assert "<img" in html and "training_curves" in html and "<script" not in html
    assert (wf / "results/smoke/plots/mnist-cls-pointnet.csv").read_text().splitlines()[1].startswith("1,")

    snap = run(wf, sys.executable, "scripts/dvc_snapshot.py", "save", "smoke")
    assert snap.returncode == 0, snap.stdout + snap.stderr
    assert (wf / "snapshots/smoke.dvc").is_file()
    assert _tree(wf / "results/smoke") == results  # saving reads only
    for cmd in (["git", "add", "snapshots/smoke.dvc", "snapshots/.gitignore"], ["git", "commit", "-qm", "snapshot"],
                [str(BIN / "dvc"), "push"]):
        proc = run(wf, *cmd)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ddeqs-dvc-storage").is_dir()  # the default remote of .dvc/config

    # issue 16: with the snapshot tracked, a failing `dvc exp run` still removes nothing
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "snakemake").write_text("#!/bin/sh\nexit 1\n")
    (stub / "snakemake").chmod(0o755)
    snapshot = _tree(wf / "snapshots/smoke")
    proc = subprocess.run([str(BIN / "dvc"), "exp", "run", "-S", "profile=smoke", "-S", "config=params/smoke.yaml"],
                          cwd=wf, env=_env(stub), capture_output=True, text=True)
    assert proc.returncode != 0
    assert _tree(wf / "results/smoke") == results and _tree(wf / "snapshots/smoke") == snapshot

    # a second clone: git clone, dvc pull; before the restore Snakemake would retrain
    proc = run(tmp_path, "git", "clone", "-q", str(wf), "clone")
    clone = tmp_path / "clone"
    proc = run(clone, str(BIN / "dvc"), "pull")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mnist-cls-pointnet" in run(clone, *smk, "-n", *targets).stdout
    restore = run(clone, sys.executable, "scripts/dvc_snapshot.py", "restore", "smoke")
    assert restore.returncode == 0, restore.stdout + restore.stderr
    restored = _tree(clone / "results/smoke")
    assert all(restored.get(k) == v for k, v in results.items() if not k.endswith(".ddeqs.lock")), (
        sorted(k for k, v in results.items() if restored.get(k) != v))
    assert _tree(clone / "data/processed") == _tree(wf / "data/processed")
    assert (clone / "results/mlflow/mlflow.db").read_bytes() != b""
    dry = run(clone, *smk, "-n", *targets)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]

    # restoring never overwrites: a file with other content stops it before anything is written
    (clone / "results/smoke/summary.json").write_text("{}")
    (clone / "results/smoke/claims.md").unlink()
    again = run(clone, sys.executable, "scripts/dvc_snapshot.py", "restore", "smoke")
    assert again.returncode != 0 and "results/smoke/summary.json" in again.stderr
    assert (clone / "results/smoke/summary.json").read_text() == "{}"
    assert not (clone / "results/smoke/claims.md").exists()
