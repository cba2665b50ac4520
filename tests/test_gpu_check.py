"""``make gpu-check`` (``ddeqs.bench.gpu_check``): fails fast without CUDA; its estimate, part runner and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ddeqs.bench import gpu_check
from ddeqs.cli import main


def test_without_cuda_it_stops_at_once_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path / "out")}  # no GPU visible, even on a GPU machine
    proc = subprocess.run([sys.executable, "-m", "ddeqs.bench.gpu_check"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "out").exists()  # nothing started, nothing written


def test_part_limits_fit_the_budget_so_no_part_is_squeezed_out() -> None:
    assert sum(gpu_check.LIMITS.values()) <= gpu_check.BUDGET_S == 480.0


def test_epoch_estimate_uses_the_paper_split_and_batch() -> None:
    e = gpu_check.epoch_estimate(1.5)
    assert e["steps"] == 938  # ceil(60,000 / 64)
    assert e["epoch_seconds"] == pytest.approx(938 * 1.5)
    assert e["paper_epoch_seconds"] == 10860 and e["goal_epoch_seconds"] == pytest.approx(1086)
    assert e["speedup_vs_paper"] == pytest.approx(10860 / 1407) and not e["meets_goal"]
    assert gpu_check.epoch_estimate(1.0)["meets_goal"]  # 938 s <= 1086 s
    assert gpu_check.hms(10860) == "3 h 01 min" and gpu_check.hms(1086) == "18 min 06 s"


def test_a_part_over_its_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    cmd = ["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    part = gpu_check.run_part("sleeper", cmd, 1.0, tmp_path)
    assert part.rc is None and not part.ok and part.seconds < 30
    assert "killed after its time limit" in Path(part.log).read_text()
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # the background child died with the group (allow 5 s for it)
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)


def test_report_from_a_real_bench_step_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The report is built from what ``ddeqs bench step --json`` writes (here a tiny CPU run)."""
    js = tmp_path / "step.json"
    sets = [a for o in ("model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32",
                        "model.coupling_width=8") for a in ("--set", o)]
    assert main(["bench", "step", "--task", "completion", "--set", "train.device=cpu", "--batch", "2", "--points", "12",
                 "--iters", "3", "--impl", "fast", "graph", "naive", "--repeats", "1", "--warmup", "0", "--no-isolate",
                 "--check", "--check-iters", "3", *sets, "--out", str(js)]) == 0
    med, summary = gpu_check.bench_summary(json.loads(js.read_text()))
    assert set(med) == {"fast", "graph", "naive"} and med["fast"] > 0
    assert "naive/fast" in summary and "at 3 iterations" in summary and "Z* max |fast - naive|" in summary
    assert "fast/graph" in summary
    est = gpu_check.fastest_estimate(med)
    assert est["impl"] in ("fast", "graph") and est["step_seconds"] == min(med["fast"], med["graph"])
    assert gpu_check.fastest_estimate({"graph": 2.0, "fast": 1.0, "naive": 0.5})["impl"] == "fast"
    assert gpu_check.fastest_estimate({"naive": 1.0}) is None
    ok = gpu_check.Part("bench-step", ["ddeqs"], 0, 12.0, 200.0, str(js), summary)
    bad = gpu_check.Part("cuda-tests", ["pytest"], None, 120.0, 120.0, str(js), "")
    info = {"gpu": "test GPU", "torch": "x", "cuda": "y", "date": "d", "commit": "c", "seconds": 132.0}
    md, out = gpu_check.write_report(tmp_path, info, [bad, ok], est)
    text = md.read_text()
    assert "| cuda-tests | timed out |" in text and "| bench-step | passed |" in text
    assert "938 steps" in text and "3 h 01 min" in text and f"({est['impl']}, the faster" in text
    data = json.loads(out.read_text())
    assert [p["ok"] for p in data["parts"]] == [False, True] and data["epoch_estimate"]["steps"] == 938
