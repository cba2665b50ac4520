"""``ddeqs bench composition``: alone vs padded-batch solves of a DDEQ, same initial state.

In float64 the two agree to rounding (padding is masked everywhere); the tool must report that, and
must see a difference when one is planted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ddeqs.bench.composition import measure_composition
from ddeqs.config import ExperimentConfig, load_config
from ddeqs.models import build_model

TINY = ["model.z_dim=16", "model.bilinear_dim=4", "model.heads=2", "model.ffn_dim=32", "model.cross_layers=1",
        "model.coupling_width=8", "solver.iters=4", "train.batch_size=16", "train.threads=1", "train.quiet=true"]


def tiny_cfg(task: str, *extra: str) -> ExperimentConfig:
    return load_config(None, [f"task={task}", "model.name=ddeq", *TINY, "tracking.enabled=false", *extra])


def _clouds(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=(int(rng.integers(20, 60)), 2)) for _ in range(n)]


@pytest.mark.parametrize("task", ["classification", "completion"])
def test_float64_solves_do_not_depend_on_batch_mates(task: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(task, "solver.iters=5")  # untrained flows are chaotic: few steps keep rounding small
    model = build_model(cfg, 2, 3).double()
    clouds = _clouds(6, np.random.default_rng(1))
    r = measure_composition(model, task, clouds, [0, 1, 2, 0, 1, 2] if task == "classification" else None,
                            batch=3, extra_pad=7, dtype=torch.float64)
    assert r.clouds == 6 and r.iters == 5 and r.dtype == "float64"
    assert r.max_abs_diff < 1e-8, r
    assert r.flips == 0 and abs(r.mmd2_between) < 1e-10
    assert next(model.parameters()).dtype == torch.float64  # the model is given back in its own precision


def test_a_leak_is_detected() -> None:
    """A model whose output depends on the padded rows must show a large difference."""
    torch.manual_seed(0)
    cfg = tiny_cfg("classification", "solver.iters=5")
    model = build_model(cfg, 2, 3).double()
    forward = model.forward

    def leaky(points, mask, z0=None, generator=None):  # noqa: ANN001, ANN202
        out = forward(points, mask, z0=z0, generator=generator)
        out.logits = out.logits + points.sum(dim=(1, 2))[:, None] * 1e-3  # reads the padding
        return out

    model.forward = leaky  # type: ignore[method-assign]
    r = measure_composition(model, "classification", _clouds(4, np.random.default_rng(2)), batch=4, extra_pad=5,
                            dtype=torch.float64)
    assert r.max_abs_diff > 1e-2


@pytest.mark.slow
def test_cli_on_a_trained_digits_run(tmp_path: Path) -> None:
    from ddeqs.data import prepare_dataset

    root = tmp_path / "data"
    prepare_dataset("digits", raw_root=root / "raw", root=root, progress=False)
    params = tmp_path / "run.yaml"
    params.write_text(yaml.safe_dump({"data": {"dataset": "digits", "root": str(root), "max_train": 64, "max_test": 16}}))
    run = tmp_path / "run"
    sets = [f"--set={s}" for s in TINY + ["train.epochs=1", "tracking.enabled=false"]]
    train = subprocess.run([sys.executable, "-m", "ddeqs", "train", "--params", str(params), *sets, "--out", str(run),
                            "--quiet"], capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    out = tmp_path / "composition.json"
    res = subprocess.run([sys.executable, "-m", "ddeqs", "bench", "composition", str(run), "--clouds", "6", "--batch",
                          "3", "--iters", "20", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "float32" in res.stdout and "float64" in res.stdout and "accuracy of the alone solves" in res.stdout
    rows = {r["dtype"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["float64"]["max_abs_diff"] < 1e-6 and rows["float64"]["iters"] == 20
    assert rows["float32"]["clouds"] == 6 and np.isfinite(rows["float32"]["max_abs_diff"])
    bad = subprocess.run([sys.executable, "-m", "ddeqs", "bench", "composition", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "not found" in bad.stderr and "Traceback" not in bad.stderr
