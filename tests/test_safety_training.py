"""Run folders: only the current run's files, one writer at a time, data hash checked, early clear errors."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ddeqs.cli import main
from ddeqs.errors import DataError, DDEQError
from ddeqs.training import evaluate_run, train_run
from ddeqs.training.checkpoint import REQUIRED_KEYS
from ddeqs.training.lock import RunFolderBusy
from test_training import TESTS, make_source, tiny_cfg


def test_retrain_leaves_no_stale_side_files(tmp_path: Path) -> None:
    """A DDEQ run writes embeddings.npz and diagnostics.json; a PointNet run retrained into the same
    folder writes neither, and the old ones must not stay next to its metrics."""
    out = tmp_path / "run"
    train_run(tiny_cfg("classification", "ddeq", "train.diagnostics_every=1", "train.save_embeddings=1"), out,
              source=make_source())
    assert (out / "embeddings.npz").is_file() and (out / "diagnostics.json").is_file()
    (out / "samples.npz").write_bytes(b"an old completion run's samples")
    m = train_run(tiny_cfg("classification", "pointnet"), out, source=make_source())
    assert m["model"] == "pointnet"
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == ["config.yaml", "history.json", "metrics.json", "model.pt"], left


_HOLD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_training import make_source, tiny_cfg
    from ddeqs.training import train_run
    cfg = tiny_cfg("classification", "pointnet", "train.epochs=3")
    train_run(cfg, sys.argv[1], source=make_source(stall_file=sys.argv[2]))
    """
)


@pytest.mark.slow
def test_second_train_on_the_same_folder_is_refused_naming_the_holder(tmp_path: Path, capsys) -> None:
    script = tmp_path / "hold.py"
    script.write_text(_HOLD.format(tests=str(TESTS)))
    out, stall = tmp_path / "run", tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(stall)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not stall.exists():  # the first training is inside epoch 2, holding the folder
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline
            time.sleep(0.05)
        with pytest.raises(RunFolderBusy) as err:
            train_run(tiny_cfg("classification", "pointnet"), out, source=make_source())
        msg = str(err.value)
        assert f"pid {proc.pid}" in msg and socket.gethostname() in msg and "started 20" in msg
        assert (out / ".work" / "last.pt").is_file()  # the holder's checkpoint is untouched
        # the CLI says the same in one line, exit code 1
        assert main(["train", "--out", str(out), "--set", "tracking.enabled=false"]) == 1
        assert f"pid {proc.pid}" in capsys.readouterr().err
        with pytest.raises(RunFolderBusy):  # evaluate too
            evaluate_run(out, source=make_source(), track=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # a killed holder releases the lock (kernel lock): the same folder trains again and resumes
    logs: list[str] = []
    cfg = tiny_cfg("classification", "pointnet", "train.epochs=3")
    train_run(cfg, out, source=make_source(), log=logs.append)
    assert any("resuming" in line for line in logs)


def test_evaluate_refuses_a_changed_dataset(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    train_run(tiny_cfg("classification", "pointnet"), out, source=make_source())
    before = (out / "metrics.json").read_text()
    changed = make_source()
    changed.info.sha256 = "cd" * 32
    with pytest.raises(DataError, match="changed since .* was trained") as err:
        evaluate_run(out, source=changed, track=False)
    assert "--accept-new-data" in str(err.value)
    assert (out / "metrics.json").read_text() == before  # nothing written
    logs: list[str] = []
    m = evaluate_run(out, source=changed, track=False, accept_new_data=True, log=logs.append)
    assert m["dataset_sha256"] == "cd" * 32 and m["dataset_sha256_trained"] == "ab" * 32
    assert any("recording its hash" in line for line in logs)
    assert json.loads((out / "metrics.json").read_text())["dataset_sha256"] == "cd" * 32
    # same data: no complaint, hash unchanged
    assert evaluate_run(out, source=changed, track=False)["dataset_sha256"] == "cd" * 32


def test_unwritable_work_folder_fails_before_training(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root ignores permissions: use a file where the folder should be instead
        work = tmp_path / "work"
        work.write_text("a file")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        work = ro / "work"
    calls = []
    src = make_source()
    loader = src.loader

    def counting(split, **kw):
        calls.append(split)
        return loader(split, **kw)

    src.loader = counting
    with pytest.raises(DDEQError, match="checkpoint folder") as err:
        train_run(tiny_cfg("classification", "pointnet"), tmp_path / "run", work_dir=work, source=src)
    assert str(work) in str(err.value)
    assert calls == []  # no data loaded, no epoch trained


def test_os_errors_are_one_line_with_the_path(tmp_path: Path, capsys, monkeypatch) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the run folder's parent should be")
    rc = main(["train", "--out", str(blocker / "run"), "--set", "tracking.enabled=false"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(blocker / "run") in err
    # an OSError raised anywhere below the CLI: one line naming the path and what to do
    from ddeqs.cli import os_error_message

    full = OSError(28, "No space left on device", str(tmp_path / "x.npz"))
    assert os_error_message(full).startswith(str(tmp_path / "x.npz")) and "free space" in os_error_message(full)

    def boom(args):
        raise PermissionError(13, "Permission denied", "/some/where/metrics.json")

    import ddeqs.cli.evaluate

    monkeypatch.setattr(ddeqs.cli.evaluate, "run", boom)
    rc = main(["evaluate", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip() == ("ddeqs: error: /some/where/metrics.json: Permission denied; "
                                       "make it writable (chmod/chown) or pass another path")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_model_file_message(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_run(tiny_cfg("classification", "pointnet"), out, source=make_source())
    torch.save({"w": _Evil()}, out / "model.pt")
    with pytest.raises(DataError) as err:
        evaluate_run(out, source=make_source(), track=False)
    msg = str(err.value)
    assert "not a plain weights file" in msg and "Do not load it with weights_only=False" in msg
    assert "does not fit the model" not in msg
    assert "If you trust the source" not in msg  # torch's advice is not passed on


def test_checkpoint_with_right_fingerprint_but_missing_keys(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_cfg("classification", "pointnet")
    train_run(cfg, out, source=make_source(), keep_work=True)
    ckpt = out / ".work" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["scaler"], state["rng"]
    torch.save(state, ckpt)
    with pytest.raises(DDEQError, match=r"lacks scaler, rng") as err:
        train_run(cfg, out, source=make_source())
    assert str(ckpt) in str(err.value) and "delete it" in str(err.value)
    assert "scaler" in REQUIRED_KEYS


_TRACK = textwrap.dedent(
    """
    from ddeqs.config import load_config
    from ddeqs.tracking import open_tracker
    cfg = load_config(None, ["tracking.uri=" + {uri!r}])
    t = open_tracker(cfg, "run")
    t.log_metrics({{"a": 1.0}}, step=1)
    t.end()
    """
)


@pytest.mark.slow
def test_read_only_mlflow_database_is_one_warning_line(tmp_path: Path) -> None:
    db = tmp_path / "db" / "mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    made = subprocess.run([sys.executable, "-c", _TRACK.format(uri=f"sqlite:///{db}")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0 and db.is_file(), made.stderr
    db.chmod(0o444)  # read-only for users; root ignores modes, so SQLite's read-only URI mode stands in for it
    ro = f"sqlite:///file:{db}?mode=ro&uri=true"
    # cwd: MLflow reads SQLite's URI filename form as a relative path and creates its folders
    # ('file:/...') in the working directory; they belong in tmp_path, not in the checkout
    proc = subprocess.run([sys.executable, "-c", _TRACK.format(uri=ro)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr[:3000]
    assert lines[0].startswith("ddeqs: warning: MLflow tracking") and "readonly database" in lines[0]
    assert not (Path.cwd() / "file:").exists()


def test_train_refuses_to_replace_a_finished_run(tmp_path: Path, capsys) -> None:
    """``ddeqs train --out`` on a finished run folder would retrain and replace its results: refused
    (one line naming the folder and --overwrite), nothing touched; a checkpoint there means resume."""
    from ddeqs.cli.train import refuse_finished_run

    out = tmp_path / "run"
    train_run(tiny_cfg("classification", "pointnet"), out, source=make_source())
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()  # the training's own epoch lines
    assert main(["train", "--out", str(out), "--set", "tracking.enabled=false"]) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    refuse_finished_run(out, None, overwrite=True)  # --overwrite: training goes ahead
    refuse_finished_run(tmp_path / "new", None, overwrite=False)  # nothing there yet
    (out / ".work").mkdir()
    (out / ".work" / "last.pt").write_bytes(b"checkpoint")
    refuse_finished_run(out, None, overwrite=False)  # a checkpoint: the same command resumes it
    with pytest.raises(DDEQError, match="finished run"):
        refuse_finished_run(out, tmp_path / "elsewhere", overwrite=False)  # --work elsewhere holds none
