"""Bad input fails early with one clear message: config structure, YAML, archives, checksums, CLI flags."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ddeqs.cli import main
from ddeqs.config import ConfigError, load_config, safe_load_unique
from ddeqs.errors import DataError, DownloadError
from test_data_download import PAYLOAD, server  # noqa: F401 (fixture)


@pytest.mark.parametrize("sets, needle", [
    (["model.z_dim=30", "model.heads=4"], "model.heads=4 does not divide model.z_dim=30"),
    (["task=completion", "data.dataset=shapes", "model.z_dim=5", "model.heads=1"], "must be even"),
    (["task=completion", "data.dataset=shapes", "model.z_dim=4", "model.heads=2"], "too small for the 3-D points"),
])
def test_structural_model_constraints_fail_at_config_validation(sets, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(None, sets)


def test_config_with_valid_structure_builds(tmp_path: Path) -> None:
    from ddeqs.models import build_model

    cfg = load_config(None, ["model.z_dim=24", "model.heads=6", "model.ffn_dim=16", "model.bilinear_dim=4"])
    build_model(cfg, 2, 10)  # what validation accepts, the model accepts
    heads_for_baseline = load_config(None, ["model.name=pointnet", "model.z_dim=30", "model.heads=4"])
    assert heads_for_baseline.model.heads == 4  # DDEQ-only constraints do not bind baselines


def test_cli_reports_heads_error_without_traceback(capsys) -> None:
    assert main(["train", "--out", "unused", "--set", "model.heads=5", "--set", "tracking.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert "model.heads=5 does not divide model.z_dim=128" in err and "Traceback" not in err


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("solver:\n  iters: 5\ntrain:\n  epochs: 2\nsolver:\n  step: 1.0\n")
    with pytest.raises(ConfigError, match="duplicate key 'solver'"):
        load_config(f)
    f.write_text("train:\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'epochs' \(first at line 2\)"):
        load_config(f)
    assert safe_load_unique("a: 1\nb: {a: 2}\n") == {"a": 1, "b": {"a": 2}}  # same key in two mappings is fine


def test_duplicate_keys_in_a_pipeline_config_stop_the_dag(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from test_pipeline import BIN, REPO, WORKFLOW_FILES, env

    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    smoke = tmp_path / "params/smoke.yaml"
    smoke.write_text(smoke.read_text() + "\nflow:\n  particles: 10\n")  # a second 'flow:'
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "all", "--configfile", "params/smoke.yaml"], cwd=tmp_path,
                          env=env(), capture_output=True, text=True)
    assert proc.returncode != 0 and "duplicate key 'flow'" in proc.stdout + proc.stderr


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_is_refused_before_writing(tmp_path: Path) -> None:
    from ddeqs.data.archive import safe_extract

    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(_zip({"a.off": b"\0" * (64 * 2**20)}))  # 64 MiB of zeros: ~64 KB zipped
    assert bomb.stat().st_size < 2**20
    with pytest.raises(DataError, match="nothing was extracted"):
        safe_extract(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    normal = tmp_path / "ok.zip"  # an ordinary archive is extracted
    normal.write_bytes(_zip({"m/a.off": PAYLOAD}))
    assert (safe_extract(normal, tmp_path / "ok") / "m/a.off").read_bytes() == PAYLOAD
    with pytest.raises(DataError, match="caps"):  # the absolute cap
        safe_extract(normal, tmp_path / "ok2", max_bytes=100)


def test_unknown_hash_algorithm_is_a_clear_error_and_leaves_nothing(server, tmp_path: Path) -> None:  # noqa: F811
    from ddeqs.data.download import download

    url, h = server
    h.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="unknown hash algorithm 'sha265'"):
        download(url + "/a.bin", dest, checksum="sha265:00ff", progress=False)
    assert list(tmp_path.iterdir()) == [] and h.ranges == []  # no request, no .part


def test_per_class_train_zero_is_refused_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["data", "prepare", "shapes", "--per-class-train", "0"])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert "--per-class-train: must be at least 1 (got 0)" in msg and "messages above" not in msg


def _prepared(root: Path, bad_row: int, bad: np.ndarray) -> None:
    """A tiny prepared 'digits' dataset whose train row ``bad_row`` is ``bad``; sources named per row."""
    from ddeqs.data.store import pack, save_split

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        clouds = [rng.normal(size=(int(rng.integers(20, 30)), 2)).astype(np.float32) for _ in range(n)]
        if split == "train":
            clouds[bad_row] = bad
        names = [f"digit-{split}-{i:03d}.png" for i in range(n)]
        save_split(root / "digits" / split, pack(clouds, [i % 3 for i in range(n)], ["0", "1", "2"], names),
                   {"dataset": "digits"})


def test_bad_cloud_in_a_shuffled_batch_names_split_row_and_source(tmp_path: Path) -> None:
    from ddeqs.training import train_run

    bad = np.random.default_rng(1).normal(size=(25, 2)).astype(np.float32)
    bad[3, 1] = np.nan
    _prepared(tmp_path / "data", 13, bad)
    from test_training import TINY

    cfg = load_config(None, [*TINY, "data.dataset=digits", f"data.root={tmp_path / 'data'}", "train.batch_size=8",
                             "tracking.enabled=false", "train.epochs=1"])
    with pytest.raises(DataError) as err:
        train_run(cfg, tmp_path / "run")
    msg = str(err.value)
    assert "NaN/inf coordinates in the digits train split" in msg
    assert "row 13 (source digit-train-013.png)" in msg and "train.npz" in msg
    assert "batch samples" not in msg  # not the position inside the shuffled batch


def test_identical_completion_cloud_names_the_cloud_and_the_problem(tmp_path: Path) -> None:
    from ddeqs.data.loader import CloudDataset

    _prepared(tmp_path / "data", 5, np.full((25, 2), 0.3, np.float32))
    cfg = load_config(None, ["task=completion", "data.dataset=digits", f"data.root={tmp_path / 'data'}"])
    ds = CloudDataset(cfg, "train")
    with pytest.raises(DataError) as err:
        ds[5]
    msg = str(err.value)
    assert "digits train split, row 5 (source digit-train-005.png)" in msg
    assert "same point" in msg and "partial_radius" not in msg
