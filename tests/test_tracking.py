"""MLflow tracking: what a training logs, nesting under grid parents, the REST view of a server,
and training going on (one warning) when the tracking server is unreachable."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ddeqs.tracking import DEFAULT_URI, NullTracker, experiment_name, open_tracker, resolve_uri, sqlite_path
from ddeqs.training import train_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import digits_root, make_source, tiny_cfg  # noqa: E402,F401  (stand-in data, digits fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_uri_and_experiment_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri() == DEFAULT_URI == "sqlite:///results/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_uri() == "sqlite:///elsewhere.db"
    assert resolve_uri("http://host:5000") == "http://host:5000"
    assert experiment_name("classification") == "ddeqs-classification"
    assert experiment_name("completion", "mine") == "mine"
    cfg = tiny_cfg("classification", "ddeq", tracking=False)
    assert isinstance(open_tracker(cfg, "x"), NullTracker) and not open_tracker(cfg, "x").active


@pytest.mark.slow
@pytest.mark.network
def test_sqlite_path_of_each_uri_form() -> None:
    # SQLite's URI filename form (read-only stores) names the same file: its lock must not be
    # created under a folder called "file:" in the working directory
    assert sqlite_path("sqlite:///results/mlflow/mlflow.db") == Path("results/mlflow/mlflow.db")
    assert sqlite_path("sqlite:////data/db/mlflow.db?timeout=30") == Path("/data/db/mlflow.db")
    assert sqlite_path("sqlite:///file:/data/db/mlflow.db?mode=ro&uri=true") == Path("/data/db/mlflow.db")
    assert sqlite_path("http://127.0.0.1:5000") is None


def test_training_logs_params_metrics_model_and_server_lists_the_run(tmp_path: Path, digits_root: Path) -> None:
    """Acceptance: a 2-epoch training on embedded digits logs to a temporary SQLite store, and an
    ``mlflow server`` on that store lists the run through its REST API."""
    from mlflow.tracking import MlflowClient

    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    cfg = tiny_cfg("classification", "ddeq", "train.epochs=2", "train.diagnostics_every=1", f"tracking.uri={uri}",
                   "tracking.rule=train", "data.dataset=digits", f"data.root={digits_root}", "data.max_train=48",
                   "data.max_test=32", tracking=True)
    m = train_run(cfg, tmp_path / "mnist-cls-ddeq", source=None)
    run_id = m["mlflow_run_id"]
    assert run_id and db.is_file()
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "mnist-cls-ddeq"
    assert client.get_experiment(run.info.experiment_id).name == "ddeqs-classification"
    assert run.data.params["solver.iters"] == "4" and run.data.params["model.name"] == "ddeq"
    assert run.data.tags["ddeqs.dataset_sha256"] == m["dataset_sha256"] and len(m["dataset_sha256"]) == 64
    assert run.data.tags["ddeqs.rule"] == "train" and m["test"]["n"] == 32
    assert [h.step for h in client.get_metric_history(run_id, "train_loss")] == [1, 2]
    assert run.data.metrics["test_accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert len(client.get_metric_history(run_id, "b10")) == 6  # diagnostics at each of 2 x 3 steps
    assert len(client.get_metric_history(run_id, "inner_objective_trace/epoch_002")) == 4  # one per inner iteration
    arts = {a.path for a in client.list_artifacts(run_id, "model")}
    assert arts == {"model/model.pt", "model/config.yaml"}
    assert (db.parent / "artifacts").is_dir()  # artifacts next to the database

    port = _free_port()
    # own session: the server's workers are stopped with it, by the group id of the process started here;
    # no job-runner/huey consumers (MLflow 3 starts them by default)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, env=env, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            assert server.poll() is None, "mlflow server exited"
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "mlflow server did not answer within 90 s"
            time.sleep(0.5)
        body = json.dumps({"experiment_ids": [run.info.experiment_id], "max_results": 10}).encode()
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            runs = json.loads(r.read())["runs"]
        assert run_id in [r["info"]["run_id"] for r in runs]
    finally:
        _stop_group(server)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group led by ``proc`` (started with start_new_session)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; make sure no worker of its group survives it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break


@pytest.mark.slow
def test_grid_children_nest_under_one_parent(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = []
    for z in (1, 2):
        cfg = tiny_cfg("classification", "ddeq", "train.epochs=1", f"model.z_particles={z}", f"tracking.uri={uri}",
                       "tracking.parent_run=mnist-cls-ddeq--z_particles", f"tracking.run_name=mnist-cls-ddeq--z_particles-{z}",
                       tracking=True)
        ids.append(train_run(cfg, tmp_path / f"r{z}", source=make_source(n_train=16, n_test=8))["mlflow_run_id"])
    client = MlflowClient(uri)
    parents = {client.get_run(i).data.tags["mlflow.parentRunId"] for i in ids}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.info.run_name == "mnist-cls-ddeq--z_particles"
    exp = parent.info.experiment_id
    assert len(client.search_runs([exp], "tags.`ddeqs.parent_name` = 'mnist-cls-ddeq--z_particles'")) == 1
    # the parent carries the summary of its grid: a row per child with its value and test metrics, a plot
    pid = parent.info.run_id
    summary = json.loads((Path(client.download_artifacts(pid, "grid_summary.json", str(tmp_path / "dl")))).read_text())
    assert [r["value"] for r in summary["children"]] == ["1", "2"]
    assert all(0 <= r["test_accuracy"] <= 1 for r in summary["children"])
    assert "| run | value |" in Path(client.download_artifacts(pid, "grid_summary.md", str(tmp_path / "dl"))).read_text()
    assert Path(client.download_artifacts(pid, "grid_summary.png", str(tmp_path / "dl"))).stat().st_size > 1000
    parent = client.get_run(pid)
    assert "2 finished children" in parent.data.tags["mlflow.note.content"]
    assert parent.data.tags["mlflow.source.name"] == "ddeqs train"  # the UI's Source and Dataset columns
    assert [d.dataset.name for d in parent.inputs.dataset_inputs] == [client.get_run(ids[0]).inputs.dataset_inputs[0].dataset.name]


def test_unreachable_server_warns_once_and_training_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    port = _free_port()  # nothing listens there
    cfg = tiny_cfg("classification", "ddeq", "train.epochs=2", f"tracking.uri=http://127.0.0.1:{port}", tracking=True)
    logs: list[str] = []
    t0 = time.time()
    m = train_run(cfg, tmp_path / "run", source=make_source(n_train=16, n_test=8), log=logs.append)
    assert time.time() - t0 < 60
    warnings = [line for line in logs if "MLflow tracking" in line]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0] and "run folder" in warnings[0]
    assert m["mlflow_run_id"] is None
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["n"] == 8


@pytest.mark.slow
def test_copied_results_folder_is_a_store_of_its_own(tmp_path: Path) -> None:
    """Train, copy the results folder, train in the copy: the copy's runs and artifacts live in the
    copy, the original gets nothing new, and the original run's artifacts resolve inside the copy."""
    import shutil
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    def train(root: Path, name: str) -> str:
        uri = f"sqlite:///{root / 'results/mlflow/mlflow.db'}"
        cfg = tiny_cfg("classification", "pointnet", "train.epochs=1", f"tracking.uri={uri}", f"tracking.run_name={name}",
                       tracking=True)
        return train_run(cfg, root / "results/runs" / name, source=make_source(n_train=16, n_test=8))["mlflow_run_id"]

    first = train(tmp_path / "a", "first")
    before = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a/results/mlflow").rglob("*") if p.is_file())
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    second = train(tmp_path / "b", "second")

    after = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a/results/mlflow").rglob("*") if p.is_file())
    assert after == before, "training in the copy wrote into the original store"
    client = MlflowClient(f"sqlite:///{tmp_path / 'b/results/mlflow/mlflow.db'}")
    copy_root = (tmp_path / "b/results/mlflow/artifacts").resolve()
    for run_id in (first, second):
        path = Path(urlparse(client.get_run(run_id).info.artifact_uri).path)
        assert path.is_relative_to(copy_root), path
        assert (path / "metrics.json").is_file()  # the first run's artifacts were copied along and are found
    exp = client.get_experiment(client.get_run(second).info.experiment_id)
    assert Path(urlparse(exp.artifact_location).path) == copy_root
    assert "classification" in exp.tags["mlflow.note.content"]
    # with the original gone, the copy still serves the first run's files and its MLflow model
    import mlflow
    import mlflow.pytorch

    shutil.rmtree(tmp_path / "a")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'b/results/mlflow/mlflow.db'}")
    assert mlflow.pytorch.load_model(f"runs:/{first}/pytorch") is not None
    assert Path(client.download_artifacts(first, "model/config.yaml", str(tmp_path / "dl"))).is_file()


@pytest.mark.slow
def test_run_shows_dataset_and_source(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_cfg("classification", "pointnet", "train.epochs=1", f"tracking.uri={uri}", "tracking.rule=train", tracking=True)
    run_id = train_run(cfg, tmp_path / "r", source=make_source(n_train=16, n_test=8))["mlflow_run_id"]
    run = MlflowClient(uri).get_run(run_id)
    (ds_input,) = run.inputs.dataset_inputs
    profile = json.loads(ds_input.dataset.profile)
    assert ds_input.dataset.name == cfg.data.dataset
    assert profile["train_clouds"] == 16 and profile["test_clouds"] == 8
    sha = run.data.tags.get("ddeqs.dataset_sha256")
    assert sha and ds_input.dataset.digest == sha[:36] and profile["sha256"] == sha
    assert run.data.tags["mlflow.source.name"] == "ddeqs train"
    # the model, with its signature, in the Models column; it loads back as the trained module
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import get_model_info

    mlflow.set_tracking_uri(uri)
    model_uri = f"runs:/{run_id}/pytorch"
    info = get_model_info(model_uri)
    names = [spec.name for spec in info.signature.inputs.inputs]
    assert names == ["points", "mask"] and info.signature.inputs.inputs[0].shape == (-1, -1, 2)
    assert info.signature.outputs.inputs[0].shape == (-1, 3)  # logits of the 3 stand-in classes
    loaded = mlflow.pytorch.load_model(model_uri)
    state = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())


@pytest.mark.slow
def test_jobs_starting_together_on_a_fresh_store_all_track(tmp_path: Path) -> None:
    """Three processes open a new SQLite store at the same moment (parallel jobs of a fresh
    pipeline): each gets its run; none finds the schema half-migrated."""
    db = tmp_path / "results/mlflow/mlflow.db"
    code = (
        "import sys; from ddeqs.tracking import Tracker; "
        f"t = Tracker('sqlite:///{db}').start('ddeqs-classification', sys.argv[1]); "
        "print(t.run_id); t.end()"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen([sys.executable, "-c", code, f"job{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    ids = [o.strip() for o, _ in outs]
    assert all(len(i) == 32 for i in ids), outs  # a run id each, no "tracking is off" warning
    assert all("warning" not in err for _, err in outs), outs


def test_model_logging_skips_the_installed_package_scan_and_restores_it() -> None:
    """MLflow's requirement check maps every installed distribution (~4 s a job); our requirements come from
    the running environment, so log_model skips it, and puts MLflow's function back afterwards."""
    from mlflow.utils import environment

    from ddeqs.tracking import _no_requirement_scan

    original = environment.warn_dependency_requirement_mismatches
    with _no_requirement_scan():
        patched = environment.warn_dependency_requirement_mismatches
        assert patched is not original and patched(["torch==0.0.1"]) is None
    assert environment.warn_dependency_requirement_mismatches is original
    with pytest.raises(RuntimeError), _no_requirement_scan():
        raise RuntimeError("a failing log_model")
    assert environment.warn_dependency_requirement_mismatches is original
