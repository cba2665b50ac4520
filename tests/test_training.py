"""Training loop, evaluation, run folder, checkpoints/resume, diagnostics and the train/evaluate CLI.

Most tests use a tiny in-memory stand-in dataset (rings of 2-D points, the radius is the class)
and tiny models, so they run in seconds on CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from ddeqs.batch import CloudBatch, pad_clouds
from ddeqs.config import ExperimentConfig, load_config
from ddeqs.models import build_model
from ddeqs.training import DataSource, evaluate_run, milestone_epochs, train_run

TESTS = Path(__file__).resolve().parent


class _Loader:
    """Re-iterable batches of a fixed list of clouds; ``stall_file``: in the 2nd pass, after one batch,
    touch the file and sleep (so a test can kill the process in the middle of epoch 2)."""

    def __init__(self, items, batch_size, shuffle, task, stall_file=None):
        self.items, self.batch_size, self.shuffle, self.task = items, batch_size, shuffle, task
        self.stall_file, self.passes = stall_file, 0

    def __iter__(self):
        clouds, labels, targets = self.items
        order = torch.randperm(len(clouds)).tolist() if self.shuffle else list(range(len(clouds)))
        self.passes += 1
        for k, start in enumerate(range(0, len(order), self.batch_size)):
            ii = order[start : start + self.batch_size]
            pts, mask = pad_clouds([clouds[i] for i in ii])
            b = CloudBatch(pts, mask, labels=torch.as_tensor(labels[ii]).long(), index=torch.as_tensor(ii))
            if self.task == "completion":
                b.target, b.target_mask = pad_clouds([targets[i] for i in ii])
                b.missing, b.missing_mask = pad_clouds([targets[i][len(clouds[i]):] for i in ii])
            if self.stall_file and self.passes == 2 and k == 1:
                Path(self.stall_file).write_text("in epoch 2")
                time.sleep(300)
            yield b


def make_source(task: str = "classification", n_train: int = 48, n_test: int = 24, stall_file: str | None = None) -> DataSource:
    """Stand-in for ddeqs.data: noisy rings whose radius is the class (3 classes); completion input =
    the first two thirds of the ring's points, target = the whole ring, missing = its last third."""
    rng = np.random.default_rng(0)

    def make(n):
        clouds, labels, targets = [], [], []
        for i in range(n):
            lab = i % 3
            m = int(rng.integers(12, 20))
            ang = rng.uniform(0, 2 * np.pi, m)
            full = ((0.5 + 0.7 * lab) * np.stack([np.cos(ang), np.sin(ang)], 1) + 0.05 * rng.normal(size=(m, 2)))
            full = full.astype(np.float32)
            clouds.append(full[: 2 * m // 3] if task == "completion" else full)
            targets.append(full)
            labels.append(lab)
        return clouds, np.array(labels), targets

    data = {"train": make(n_train), "test": make(n_test)}

    def loader(split, shuffle=None, batch_size=None):
        return _Loader(data[split], batch_size or 16, bool(shuffle), task, stall_file if split == "train" else None)

    info = SimpleNamespace(in_dim=2, num_classes=3, sha256="ab" * 32, n_train=n_train, n_test=n_test)
    return DataSource(info=info, loader=loader)


TINY = [
    "model.z_dim=16", "model.bilinear_dim=4", "model.heads=2", "model.ffn_dim=32", "model.cross_layers=1",
    "model.coupling_width=8", "model.pcn_points=16", "solver.iters=4", "train.batch_size=16",
    "train.deterministic=true", "train.threads=1", "train.quiet=true",
]


def tiny_cfg(task: str = "classification", model: str = "ddeq", *extra: str, tracking: bool = False) -> ExperimentConfig:
    return load_config(None, [f"task={task}", f"model.name={model}", *TINY, f"tracking.enabled={str(tracking).lower()}", *extra])


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded digits dataset, prepared once into a temporary data root."""
    from ddeqs.data import prepare_dataset

    root = tmp_path_factory.mktemp("data")
    prepare_dataset("digits", raw_root=root / "raw", root=root, progress=False)
    return root


def test_milestone_epochs() -> None:
    assert milestone_epochs([0.4, 0.8], 5) == [2, 4]
    assert milestone_epochs([0.4, 0.8], 20) == [8, 16]
    assert milestone_epochs([0.4, 0.8], 1) == []


def test_classification_ddeq_run_folder(tmp_path: Path) -> None:
    cfg = tiny_cfg("classification", "ddeq", "train.epochs=5", "train.diagnostics_every=2", "train.save_embeddings=2",
                   "train.eval_every=2")
    out = tmp_path / "mnist-cls-ddeq"
    m = train_run(cfg, out, source=make_source())
    for name in ("config.yaml", "model.pt", "metrics.json", "history.json", "diagnostics.json", "embeddings.npz"):
        assert (out / name).is_file(), name
    assert not (out / ".work").exists()  # checkpoint removed after success
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind
    disk = json.loads((out / "metrics.json").read_text())
    assert disk == json.loads(json.dumps(m))
    assert disk["name"] == "mnist-cls-ddeq" and disk["task"] == "classification" and disk["model"] == "ddeq"
    assert disk["device"] == "cpu" and disk["epochs"] == 5 and len(disk["epoch_seconds"]) == 5
    assert disk["mlflow_run_id"] is None and disk["dataset_sha256"] == "ab" * 32
    assert disk["config_flat"]["solver.iters"] == 4
    t = disk["test"]
    assert t["n"] == 24 and 0.0 <= t["accuracy"] <= 1.0 and t["cross_entropy"] > 0
    assert t["accuracy_se"] > 0 and t["cross_entropy_se"] > 0
    # the learning-rate schedule: x0.1 at 40 % and 80 % of 5 epochs
    hist = json.loads((out / "history.json").read_text())["epochs"]
    assert [h["lr"] for h in hist] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5])
    assert all(h["inner_iters"] == 4 and h["inner_residual"] >= 0 for h in hist)
    assert "test_accuracy" in hist[1] and "test_accuracy" in hist[3] and "test_accuracy" not in hist[0]
    assert hist[-1]["test_accuracy"] == t["accuracy"]
    # diagnostics every 2 steps: 3 batches x 5 epochs = 15 steps
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["step"] == list(range(2, 16, 2))
    assert all(v > 0 for k in ("b10", "b11", "b12") for v in diag[k])
    # embeddings of the first 2 test batches (16 + 8 samples), 10 particles of width 16
    emb = np.load(out / "embeddings.npz")
    assert emb["z_star"].shape == (24, 10, 16) and emb["fz_star"].shape == (24, 10, 16)
    assert emb["z_mask"].all() and emb["pooled"].shape == (24, 16) and emb["labels"].shape == (24,)
    # ... with the input clouds of those samples, zero-padded to the largest one (paper figures)
    clouds, labels, _ = make_source().loader("test").items  # 24 test clouds = the 2 saved batches
    n_max = max(len(c) for c in clouds)
    assert emb["inputs"].shape == (24, n_max, 2) and emb["inputs"].dtype == np.float32
    assert emb["input_mask"].shape == (24, n_max) and emb["input_mask"].dtype == bool
    assert emb["input_mask"].sum(1).tolist() == [len(c) for c in clouds]
    for i, c in enumerate(clouds):
        np.testing.assert_array_equal(emb["inputs"][i, : len(c)], c)
        assert not emb["inputs"][i, len(c):].any()
    assert emb["labels"].tolist() == labels.tolist()
    assert "mlflow_experiment_id" in disk and disk["mlflow_experiment_id"] is None  # tracking off
    # model.pt is a plain state dict; evaluating it again gives the very same metrics
    state = torch.load(out / "model.pt", weights_only=True)
    fresh = build_model(cfg, 2, 3)
    fresh.load_state_dict(state)
    again = evaluate_run(out, "test", source=make_source(), track=False)
    assert again["test"] == t
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 5  # other keys kept


def test_tracked_run_records_mlflow_experiment_id(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_cfg("classification", "ddeq", "train.epochs=1", "train.save_embeddings=1", f"tracking.uri={uri}",
                   tracking=True)
    out = tmp_path / "digits-cls-ddeq"
    m = train_run(cfg, out, source=make_source())
    disk = json.loads((out / "metrics.json").read_text())
    assert disk["mlflow_run_id"] == m["mlflow_run_id"] and isinstance(disk["mlflow_run_id"], str)
    assert isinstance(disk["mlflow_experiment_id"], str) and disk["mlflow_experiment_id"]
    client = MlflowClient(uri)
    assert client.get_run(disk["mlflow_run_id"]).info.experiment_id == disk["mlflow_experiment_id"]
    assert client.get_experiment(disk["mlflow_experiment_id"]).name == "ddeqs-classification"
    emb = np.load(out / "embeddings.npz")  # one test batch of 16 clouds with 12-19 points
    n = emb["inputs"].shape[1]
    assert emb["inputs"].shape == (16, n, 2) and emb["input_mask"].shape == (16, n) and 12 <= n <= 19
    assert emb["input_mask"].any(1).all() and emb["input_mask"].sum(1).max() == n
    logged = {a.path for a in client.list_artifacts(disk["mlflow_run_id"])}
    assert {"metrics.json", "embeddings.npz"} <= logged


@pytest.mark.parametrize("model", ["ddeq", "pcn"])
def test_completion_run_folder(tmp_path: Path, model: str) -> None:
    cfg = tiny_cfg("completion", model, "train.epochs=1", "train.diagnostics_every=1")
    out = tmp_path / f"mnist-cpl-{model}"
    m = train_run(cfg, out, source=make_source("completion", n_test=20))
    t = m["test"]
    for k in ("mmd2", "w2_free", "w2_free_target", "w2_full", "ot_free", "ot_free_target", "ot_full", "chamfer"):
        assert np.isfinite(t[k]) and t[k] >= 0 and t[f"{k}_se"] >= 0, k
    assert t["n"] == 20
    s = np.load(out / "samples.npz")
    assert s["inputs"].shape[0] == 16 and s["outputs"].shape[0] == 16 and s["targets"].shape[0] == 16
    assert s["index"].tolist() == list(range(16))  # the same first test samples for every completion run
    assert s["free_mask"].shape == s["output_mask"].shape
    assert s["missing"].shape[0] == 16 and (s["missing_mask"].sum(1) > 0).all()  # the part the input lacks
    assert (s["free_mask"] <= s["output_mask"]).all()
    if model == "pcn":  # every output point is generated: free == full
        assert t["w2_free_target"] == t["w2_full"] and t["ot_free_target"] == t["ot_full"]
        assert (s["free_mask"] == s["output_mask"]).all()
        assert not (out / "diagnostics.json").exists()  # DDEQ only
    else:
        # DDEQ: the input particles are part of the output, so the full cloud is closer to the target
        assert t["w2_full"] < t["w2_free"]
        n_in = s["input_mask"].sum(1)
        assert (s["free_mask"].sum(1) == np.ceil(n_in * 0.275 - 1e-6)).all()
        assert (out / "diagnostics.json").is_file()


def test_pcn_run_uses_its_papers_lr_and_decays_it_per_step(tmp_path: Path) -> None:
    """PCN: Adam 1e-4, x0.7 after every sixth of the training steps (48 clouds / 16 = 3 steps per epoch)."""
    cfg = tiny_cfg("completion", "pcn", "train.epochs=4")
    m = train_run(cfg, tmp_path / "pcn", source=make_source("completion", n_test=8))
    lrs = [e["lr"] for e in json.loads((tmp_path / "pcn" / "history.json").read_text())["epochs"]]
    # 12 steps, decay every 2: epochs start at steps 0, 3, 6, 9 -> 0.7^0, 0.7^1, 0.7^3, 0.7^4
    assert lrs == pytest.approx([1e-4, 7e-5, 1e-4 * 0.7**3, 1e-4 * 0.7**4])
    assert m["config_flat"]["train.lr"] == 1e-4 and m["config_flat"]["train.schedule"] == "exponential"


_RESUME_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_training import make_source, tiny_cfg
    from ddeqs.training import train_run
    cfg = tiny_cfg("classification", "ddeq", "train.epochs=3", "train.diagnostics_every=2",
                   "tracking.uri=" + {uri!r}, tracking=True)
    train_run(cfg, sys.argv[1], source=make_source(stall_file=(sys.argv[2] if len(sys.argv) > 2 else None)))
    """
)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_metrics(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "run.py"
    script.write_text(_RESUME_SCRIPT.format(tests=str(TESTS), uri=uri))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    killed, ref, stall = tmp_path / "killed", tmp_path / "ref", tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), str(stall)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not stall.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "training never reached epoch 2"
            time.sleep(0.05)
        assert (killed / ".work" / "last.pt").is_file()  # epoch-1 checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (killed / "metrics.json").exists()
    ckpt = torch.load(killed / ".work" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["mlflow_run_id"]
    # the same command again resumes from epoch 1; a third process trains uninterrupted
    resumed = subprocess.run([sys.executable, str(script), str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "after epoch 1 of 3" in resumed.stderr
    full = subprocess.run([sys.executable, str(script), str(ref)], env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    a = json.loads((killed / "metrics.json").read_text())
    b = json.loads((ref / "metrics.json").read_text())
    assert a["test"] == b["test"]  # exact equality
    ha = json.loads((killed / "history.json").read_text())["epochs"]
    hb = json.loads((ref / "history.json").read_text())["epochs"]
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert json.loads((killed / "diagnostics.json").read_text()) == json.loads((ref / "diagnostics.json").read_text())
    assert a["mlflow_run_id"] == ckpt["mlflow_run_id"]  # the resumed run logs into the same MLflow run
    from mlflow.tracking import MlflowClient

    hist = MlflowClient(uri).get_metric_history(a["mlflow_run_id"], "train_loss")
    assert sorted(m.step for m in hist) == [1, 2, 3]


def test_checkpoint_of_another_configuration_is_not_resumed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_run(tiny_cfg("classification", "ddeq", "train.epochs=1"), out, source=make_source(), keep_work=True)
    assert (out / ".work" / "last.pt").is_file()
    logs: list[str] = []
    m = train_run(tiny_cfg("classification", "ddeq", "train.epochs=2"), out, source=make_source(), log=logs.append)
    assert any("different configuration" in line for line in logs)
    assert len(m["epoch_seconds"]) == 2
    # same configuration, finished checkpoint kept: rerunning only re-evaluates, with the same result
    cfg = tiny_cfg("classification", "ddeq", "train.epochs=1")
    first = train_run(cfg, tmp_path / "b", source=make_source(), keep_work=True)
    logs.clear()
    second = train_run(cfg, tmp_path / "b", source=make_source(), log=logs.append)
    assert any("after epoch 1 of 1" in line for line in logs)
    assert second["test"] == first["test"]


def test_diagnostics_match_autograd() -> None:
    from ddeqs.mmd import riesz_mmd2
    from ddeqs.training.diagnostics import b10_ratio, b11_quantity, b12_quantity

    torch.manual_seed(0)
    z = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, -1] = False
    gen = torch.Generator().manual_seed(3)
    got = b10_ratio(z, mask, n_mu=1, generator=gen)
    mu = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64).requires_grad_(True)
    f = 0.5 * riesz_mmd2(mu, mask, z, mask)
    (g,) = torch.autograd.grad(f.sum(), mu)
    n = mask.sum(1).double()
    wg = g * n[:, None, None]  # Wasserstein gradient: divide by the mass 1/n
    norm = (wg.pow(2).sum(-1) * mask).sum(1) / n
    assert torch.allclose(got, f.detach() / norm, rtol=1e-6)

    cfg = tiny_cfg("classification", "ddeq")
    model = build_model(cfg, 2, 3).double()
    x = torch.randn(2, 7, 2, dtype=torch.float64)
    xm = torch.ones(2, 7, dtype=torch.bool)
    zs = torch.randn(2, 10, 16, dtype=torch.float64)
    zm = torch.ones(2, 10, dtype=torch.bool)
    got11 = b11_quantity(model, x, xm, zs, zm, zm, step=4)
    zr = zs.clone().requires_grad_(True)
    G = 0.5 * riesz_mmd2(zr, zm, model.core.fmap(zr, zm, x, xm), zm)
    (gz,) = torch.autograd.grad(G.sum(), zr)
    ref = ((gz * 10).pow(2).sum(-1)).sum(1) / 10 / min(1.0, 4 ** -0.5)
    assert torch.allclose(got11, ref, rtol=1e-5)
    assert b12_quantity(5.0, 1) is None
    assert b12_quantity(5.0, 9) == pytest.approx(5.0 / (3 * np.log(9) ** 2))


def test_cli_reports_config_errors_with_exit_code_2(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from ddeqs.cli import main

    assert main(["train", "--set", "train.epoch=3", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.epoch'" in err and "did you mean 'train.epochs'" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("solver:\n  iter: 3\n")
    assert main(["train", "--params", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "solver.iter" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "config.yaml not found" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_train_on_digits_killed_in_epoch_2_resumes_to_identical_metrics(tmp_path: Path, digits_root: Path) -> None:
    """Acceptance: SIGKILL a ``ddeqs train`` subprocess during epoch 2 of 3, rerun the same command, and get
    exactly the metrics of an uninterrupted run (CPU, train.deterministic)."""
    params = tmp_path / "run.yaml"
    params.write_text(yaml.safe_dump({"data": {"dataset": "digits", "root": str(digits_root), "max_train": 96, "max_test": 32}}))
    sets = [f"--set={s}" for s in TINY + ["train.epochs=3", "solver.iters=10", "train.diagnostics_every=3",
                                           "tracking.enabled=false"]]
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "ddeqs", "train", "--params", str(params), *sets, "--out", str(out), "--quiet"]

    killed, ref = tmp_path / "killed", tmp_path / "ref"
    ckpt_file = killed / ".work" / "last.pt"
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while not ckpt_file.exists():  # appears when epoch 1 is done: epoch 2 is running
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no epoch checkpoint within 180 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    done = torch.load(ckpt_file, weights_only=True)["epoch"]
    assert done in (1, 2)  # killed in epoch 2 (or, on a very slow poll, epoch 3), never after the end
    again = subprocess.run(cmd(killed), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"after epoch {done} of 3" in again.stderr
    full = subprocess.run(cmd(ref), env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    a = json.loads((killed / "metrics.json").read_text())
    b = json.loads((ref / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["test"]["n"] == 32
    assert a["dataset"] == "digits" and len(a["dataset_sha256"]) == 64
    assert [h["train_loss"] for h in json.loads((killed / "history.json").read_text())["epochs"]] == \
        [h["train_loss"] for h in json.loads((ref / "history.json").read_text())["epochs"]]
    assert not ckpt_file.exists()  # removed after success
    # ddeqs evaluate recomputes the same test metrics from config.yaml + model.pt
    ev = subprocess.run([sys.executable, "-m", "ddeqs", "evaluate", str(ref), "--quiet", "--no-tracking"], env=env,
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert "accuracy" in ev.stdout
    assert json.loads((ref / "metrics.json").read_text())["test"] == b["test"]


class _CrashInEpoch2:
    """A real training DataLoader that raises after one batch of its 2nd pass (a crash in epoch 2);
    exposes the loader's generators so that the trainer reseeds them as it does the real one."""

    def __init__(self, loader):
        self.loader, self.generator, self.sampler = loader, loader.generator, loader.sampler
        self.batch_sampler, self.passes = loader.batch_sampler, 0

    def __iter__(self):
        self.passes += 1
        for k, b in enumerate(self.loader):
            if self.passes == 2 and k == 1:
                raise RuntimeError("simulated crash in epoch 2")
            yield b


@pytest.mark.slow
def test_completion_with_fresh_partials_and_noise_resumes_to_identical_metrics(tmp_path: Path) -> None:
    """Training partials and noise are re-drawn every epoch (data.redraw_partial, data.noise): a run
    that crashed in epoch 2 and is resumed from its epoch-1 checkpoint ends bit-identical to one that
    was not interrupted, through the real loader (prepared split, VisitSampler)."""
    from ddeqs.data.registry import split_path
    from ddeqs.data.store import pack, save_split
    from ddeqs.training.source import default_source

    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 8)):
        clouds = [rng.normal(size=(int(rng.integers(60, 90)), 2)).astype(np.float32) for _ in range(n)]
        save_split(split_path(tmp_path / "data", "digits", split), pack(clouds, [i % 2 for i in range(n)], ["a", "b"]), {})
    cfg = tiny_cfg("completion", "ddeq", "train.epochs=3", "data.dataset=digits", f"data.root={tmp_path / 'data'}",
                   "data.noise=0.2", "train.batch_size=8")
    ref = train_run(cfg, tmp_path / "ref", source=default_source(cfg))
    crashing = default_source(cfg)
    real_loader = crashing.loader
    crashing.loader = lambda split, **kw: (_CrashInEpoch2(real_loader(split, **kw)) if split == "train"
                                           else real_loader(split, **kw))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(cfg, tmp_path / "run", source=crashing)
    logs: list[str] = []
    resumed = train_run(cfg, tmp_path / "run", source=default_source(cfg), log=logs.append)
    assert any("after epoch 1 of 3" in line for line in logs)
    assert resumed["test"] == ref["test"]  # exact
    ha = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"]
    hb = json.loads((tmp_path / "ref" / "history.json").read_text())["epochs"]
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    # and the draws do change the training: with fixed partials and no noise the losses differ
    fixed = tiny_cfg("completion", "ddeq", "train.epochs=3", "data.dataset=digits", f"data.root={tmp_path / 'data'}",
                     "data.noise=0.2", "train.batch_size=8", "data.redraw_partial=false")
    other = train_run(fixed, tmp_path / "fixed", source=default_source(fixed))
    assert other["test"]["mmd2"] != ref["test"]["mmd2"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ddeq", "pcn"])
def test_eval_init_records_the_untrained_model_without_changing_training(tmp_path: Path, model: str) -> None:
    """train.eval_init evaluates the untrained model (metrics.json 'init'); training is unchanged by it."""
    base = ["train.epochs=2", "train.lr=0.01"]
    plain = train_run(tiny_cfg("completion", model, *base), tmp_path / "plain", source=make_source("completion", n_test=20))
    with_init = train_run(tiny_cfg("completion", model, *base, "train.eval_init=true"), tmp_path / "init",
                          source=make_source("completion", n_test=20))
    assert plain["init"] is None
    init, test = with_init["init"], with_init["test"]
    assert init["n"] == test["n"] == 20 and np.isfinite(init["w2_free"]) and np.isfinite(init["mmd2"])
    assert init["mmd2"] != test["mmd2"]  # the trained model differs from the initial one
    for k in ("mmd2", "w2_free", "chamfer"):  # the evaluation drew from a forked RNG: same training
        assert with_init["test"][k] == plain["test"][k], k
    assert json.loads((tmp_path / "init" / "metrics.json").read_text())["init"]["w2_free"] == init["w2_free"]
