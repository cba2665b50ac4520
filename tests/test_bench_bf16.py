"""``ddeqs bench bf16`` and ``solver.bf16`` on CPU: the same inner solve in float32, bf16 and float64.

bf16 keeps 8 significant bits, float32 24: after the same iterations from the same Z0, bf16 must be
far further from float32 than float32 is from float64, yet close (a few per cent), finite, and the
study must give the model back as it found it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ddeqs.bench import gpu_check
from ddeqs.bench.bf16 import PARTS, bf16_study, float32_parts, synthetic_problem, verdict
from ddeqs.bench.problem import ProblemSpec


def _problem(task: str):  # type: ignore[no-untyped-def]
    """Paper-sized F (z_dim 128, 32 heads), 3 synthetic clouds of 40 points, random weights."""
    return synthetic_problem(ProblemSpec(task=task, batch=3, points=40, device="cpu"))


@pytest.mark.parametrize("task", ["classification", "completion"])
def test_a_bf16_solve_on_cpu_is_finite_and_close_to_float32(task: str) -> None:
    problem = _problem(task)
    solver = problem.model.core.solver_cfg
    (row,) = bf16_study(problem, [8])
    b16, f32 = row.bf16_vs_fp32, row.fp32_vs_fp64
    for d in (b16, f32):
        assert all(math.isfinite(v) for v in d.values()), d
    assert row.iters == 8 and set(row.objective) == set(row.metric) == set(row.seconds) == {"float32", "bf16", "float64"}
    # bf16 rounding really happened (not declined on CPU), stays at the per-cent level, and is orders of
    # magnitude above float32's own rounding against float64
    assert 1e-4 < b16["z_rel_err"] < 0.2
    assert f32["z_rel_err"] < b16["z_rel_err"] / 100 and row.error_ratio > 100
    assert b16["z_rel_err_worst"] >= b16["z_rel_err"] * 0.5 and b16["z_max_abs"] > 0
    assert abs(row.objective["bf16"] - row.objective["float32"]) < 0.05 * row.objective["float32"]
    assert abs(row.objective["float64"] - row.objective["float32"]) < 1e-4 * row.objective["float32"]
    redraw = row.fp32_redraw  # another Z0: output fields only, and far larger changes than float64's
    assert not any(k.startswith("z_") for k in redraw)
    if task == "classification":
        assert b16["logit_max_abs"] > f32["logit_max_abs"] and 0 <= b16["flip_share"] <= 1
        assert redraw["logit_max_abs"] > f32["logit_max_abs"]
    else:
        assert 0 < f32["mmd2_between"] < b16["mmd2_between"] and b16["mmd2_between_rel"] < 0.1
        assert b16["metric_rel_change"] < 0.05 and redraw["mmd2_between"] > f32["mmd2_between"]
    assert next(problem.model.parameters()).dtype == torch.float32
    assert problem.model.core.solver_cfg is solver  # settings restored


def test_every_part_in_float32_gives_the_float32_solve_back() -> None:
    """The diagnostic covers every bf16 operation of F's Z branch, and removes itself afterwards."""
    problem = _problem("classification")
    (row,) = bf16_study(problem, [5], fp32_parts=PARTS)
    assert row.bf16_vs_fp32["z_rel_err"] < 1e-5
    with float32_parts(problem.model, PARTS, "cpu"):
        assert "attend" in problem.model.core.fmap.cross[0].attn.__dict__
    assert all("forward" not in m.__dict__ and "attend" not in m.__dict__ and "bilinear" not in m.__dict__
               for m in problem.model.modules())


def test_verdict_applies_the_stated_tolerance() -> None:
    """bf16 within 10x float32's own error against float64, for Z* and for the output."""
    yard = {"z_rel_err": 1e-3, "flips": 1}
    assert verdict({"z_rel_err": 9e-3, "flips": 1}, yard)
    assert not verdict({"z_rel_err": 2e-2, "flips": 0}, yard)  # Z* moved more than 10x float32's own
    assert not verdict({"z_rel_err": 5e-3, "flips": 2}, yard)  # more predictions changed than float32's
    cpl = {"z_rel_err": 1e-3, "mmd2_between": 1e-6}
    assert verdict({"z_rel_err": 5e-3, "mmd2_between": 5e-6}, cpl)
    assert not verdict({"z_rel_err": 5e-3, "mmd2_between": 2e-5}, cpl)  # the output moved too far


def test_cli_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "bf16.json"
    res = subprocess.run([sys.executable, "-m", "ddeqs", "bench", "bf16", "--task", "completion", "--batch", "2",
                          "--points", "30", "--iters", "3", "6", "--threads", "1", "--set", "train.device=cpu",
                          "--fp32-part", "ffn", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "random weights" in res.stdout and "bf16_vs_fp32" in res.stdout and "CPU:" in res.stdout
    data = json.loads(out.read_text())
    assert data["task"] == "completion" and data["device"] == "cpu" and data["fp32_parts"] == ["ffn"]
    assert [r["iters"] for r in data["rows"]] == [3, 6]
    for r in data["rows"]:
        assert r["bf16_vs_fp32"]["z_rel_err"] > r["fp32_vs_fp64"]["z_rel_err"]
        assert {"objective", "metric", "seconds", "error_ratio", "within_tolerance"} <= set(r)
    line = gpu_check.bf16_summary(data)  # make gpu-check's report line of this part
    assert line.startswith("3 it: Z* rel err bf16 ") and "; 6 it: " in line and "of MMD² to target" in line
    assert gpu_check.bf16_summary(None) == "no results"


def test_cli_part_choices_are_the_study_parts() -> None:
    from ddeqs.cli.bench import PARTS_BF16

    assert PARTS_BF16 == PARTS


def test_cli_on_a_run_folder(tmp_path: Path) -> None:
    """``--run``: the run's weights and first test clouds; --set beyond solver/device is refused."""
    from ddeqs.config import load_config
    from ddeqs.data import prepare_dataset
    from ddeqs.models import build_model

    root = tmp_path / "data"
    prepare_dataset("digits", raw_root=root / "raw", root=root, progress=False)
    cfg = load_config(None, ["task=classification", f"data.root={root}", "data.dataset=digits", "model.z_dim=16",
                             "model.bilinear_dim=4", "model.heads=2", "model.ffn_dim=32", "train.threads=2",
                             "tracking.enabled=false"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    torch.save(build_model(cfg, 2, 10).state_dict(), run / "model.pt")
    out = tmp_path / "bf16.json"
    res = subprocess.run([sys.executable, "-m", "ddeqs", "bench", "bf16", "--run", str(run), "--batch", "4",
                          "--iters", "4", "--set", "solver.step=2", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["source"] == f"run {run}" and data["clouds"] == 4 and "random weights" not in res.stdout
    assert data["threads"] == 1  # --threads wins over the run's own train.threads
    assert 0 <= data["rows"][0]["metric"]["float32"] <= 1  # accuracy on the run's test clouds
    bad = subprocess.run([sys.executable, "-m", "ddeqs", "bench", "bf16", "--run", str(run), "--set", "model.z_dim=8"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "solver.*" in bad.stderr and "Traceback" not in bad.stderr
