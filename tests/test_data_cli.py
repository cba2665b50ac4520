"""`ddeqs data` on the embedded datasets (offline) and the training loader API on the result."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ddeqs.config import load_config
from ddeqs.errors import DataError


def _ddeqs(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddeqs", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Both embedded datasets prepared through the CLI with the default sizes."""
    d = tmp_path_factory.mktemp("data")
    t0 = time.perf_counter()
    r = _ddeqs("data", "prepare", "digits", "shapes", "--raw-root", "raw", "--root", "proc", "--quiet", cwd=d)
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t0 < 60
    return d


@pytest.mark.slow
def test_prepare_embedded_offline_and_idempotent(prepared: Path) -> None:
    for name in ("digits", "shapes"):
        for split in ("train", "test"):
            assert (prepared / "proc" / name / f"{split}.npz").is_file()
            assert (prepared / "proc" / name / f"{split}.json").is_file()
    offs = list((prepared / "raw" / "shapes").rglob("*.off"))
    assert len(offs) == 8 * 65 and any(p.read_text().split("\n", 1)[0] != "OFF" for p in offs)  # some one-line headers
    r = _ddeqs("data", "prepare", "digits", "shapes", "--raw-root", "raw", "--root", "proc", cwd=prepared)
    assert r.returncode == 0 and r.stdout.count("nothing to do") == 4
    r = _ddeqs("data", "fetch", "digits", "shapes", "--raw-root", "raw", cwd=prepared)
    assert r.returncode == 0 and r.stdout.count("nothing to download") == 2
    r = _ddeqs("data", "info", "proc/shapes", cwd=prepared)
    assert r.returncode == 0 and "clouds: 320" in r.stdout and "clouds: 200" in r.stdout and "classes: 8" in r.stdout
    assert "per class: airplane 40, bathtub 40" in r.stdout and "per class: airplane 25, bathtub 25" in r.stdout


@pytest.mark.slow
def test_info_and_missing_dataset_errors(prepared: Path) -> None:
    r = _ddeqs("data", "info", "proc/nothing", cwd=prepared)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "proc/nothing" in r.stderr
    (prepared / "tampered").mkdir(exist_ok=True)
    for ext in ("npz", "json"):
        (prepared / "tampered" / f"train.{ext}").write_bytes((prepared / "proc" / "digits" / f"train.{ext}").read_bytes())
    with open(prepared / "tampered" / "train.npz", "ab") as f:
        f.write(b"x")
    r = _ddeqs("data", "info", "tampered/train.npz", cwd=prepared)
    assert r.returncode == 1 and "sha256" in r.stderr


def _cfg(root: Path, *over: str):
    return load_config(None, [f"data.root={root / 'proc'}", *over])


@pytest.mark.slow
def test_classification_loader(prepared: Path) -> None:
    from ddeqs.data import dataset_info, make_loader

    cfg = _cfg(prepared, "data.dataset=digits", "data.max_train=40", "train.batch_size=16")
    info = dataset_info(cfg)
    assert (info.in_dim, info.num_classes, info.n_train, info.n_test) == (2, 10, 40, 360) and len(info.sha256) == 64
    batches = list(make_loader(cfg, "train"))
    assert [len(b) for b in batches] == [16, 16, 8]
    b = batches[0]
    assert b.points.shape[2] == 2 and b.mask.dtype == torch.bool and b.target is None
    assert (b.mask.sum(1) >= 118).all() and len(set(torch.cat([x.index for x in batches]).tolist())) == 40
    idx1 = [x.index.tolist() for x in make_loader(cfg, "train")]
    assert idx1 == [x.index.tolist() for x in batches]  # seeded shuffling
    test = next(iter(make_loader(cfg, "test", batch_size=8)))
    assert test.index.tolist() == list(range(8))  # test split: not shuffled


@pytest.mark.slow
def test_completion_loader_and_class_selection(prepared: Path) -> None:
    from ddeqs.data import dataset_info, make_loader

    cfg = _cfg(prepared, "data.dataset=shapes", "task=completion", "model.name=pcn", "data.noise=0.2",
               "data.classes=[chair,cone]", "train.batch_size=4")
    info = dataset_info(cfg)
    assert info.class_names == ["chair", "cone"] and (info.n_train, info.n_test) == (80, 50) and info.in_dim == 3
    b = next(iter(make_loader(cfg, "test", shuffle=False)))
    assert set(b.labels.tolist()) <= {0, 1} and b.target.shape[0] == 4
    assert (b.mask.sum(1) < b.target_mask.sum(1)).all()  # partial inputs are smaller than the targets
    again = next(iter(make_loader(cfg, "test", shuffle=False)))
    assert torch.equal(b.points, again.points)  # same seed -> same derived inputs
    shared = next(iter(make_loader(_cfg(prepared, "data.dataset=shapes", "task=completion", "model.name=pcn",
                                        "data.noise=0.2", "data.classes=[chair,cone]", "data.input_share=0.5"),
                                   "test", shuffle=False, batch_size=4)))
    np.testing.assert_allclose(shared.mask.sum(1).numpy(), np.round(b.mask.sum(1).numpy() * 0.5), atol=1)
    with pytest.raises(DataError, match="sofa"):
        dataset_info(_cfg(prepared, "data.dataset=shapes", "data.classes=[sofa]"))


def test_missing_prepared_dataset_says_which_command(tmp_path: Path) -> None:
    from ddeqs.data import make_loader

    with pytest.raises(DataError, match="ddeqs data prepare mnist-pc"):
        make_loader(load_config(None, [f"data.root={tmp_path}", "data.dataset=mnist-pc"]), "train")
