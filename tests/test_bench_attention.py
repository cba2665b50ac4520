"""``ddeqs bench attention``: runs on CPU, reports every variant, and turns CUDA timings into the ``auto`` decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddeqs.bench import gpu_check
from ddeqs.bench.attention import (BACKENDS, MODES, AttentionResult, as_json, auto_cuda_decision, decision_lines,
                                   one_line, run_attention_bench, variants)
from ddeqs.cli import main

CUDA = torch.device("cuda")  # a device object only: nothing runs on it here


def test_bench_attention_on_cpu_reports_every_variant(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    js = tmp_path / "attention.json"
    assert main(["bench", "attention", "--set", "train.device=cpu", "--batch", "2", "--shapes", "cls-z-self",
                 "cls-cross", "--dtypes", "float32", "--repeats", "1", "--out", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["device_type"] == "cpu" and data["heads"] == 32 and data["head_width"] == 4 and data["complete"]
    res = data["results"]
    assert len(res) == 2 * len(MODES) * len(variants())  # shapes x modes x variants, none skipped
    current = {r["shape"]: r["kernel"] for r in res if r["variant"] == "current"}
    assert current == {"cls-z-self": "short", "cls-cross": "const_kv"}  # the CPU kernels of the inner solve
    ok = [r for r in res if r["status"] == "ok"]
    assert {r["variant"] for r in ok} >= {"current", "sdpa", "sdpa_pad8", "sdpa[math]", "sdpa_pad8[math]"}
    assert all(r["median_us"] > 0 and r["max_abs_diff"] < 1e-5 for r in ok)  # float32 vs float64 math
    refused = [r for r in res if r["status"] == "not eligible"]
    assert {r["backend"] for r in refused} >= {"cudnn", "efficient"} and all(r["reason"] for r in refused)
    assert all(r["picked"] in (None, "MATH", "FLASH_ATTENTION") for r in res)  # CPU backends
    assert {(s["shape"], s["mode"]) for s in data["summary"]} == {(s, m) for s in ("cls-z-self", "cls-cross")
                                                                   for m in MODES}
    assert data["decision"]["value"] is None  # off CUDA: nothing to decide
    out = capsys.readouterr().out
    assert "not eligible" in out and "solver.attention=auto on CUDA: not decided here" in out
    assert "cls-cross sdpa" in one_line(data) or "cls-cross current" in one_line(data)


def test_unknown_shape_is_a_config_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "attention", "--shapes", "cls-selfie"]) == 2
    assert "--shapes must be among cls-z-self" in capsys.readouterr().err


def test_a_spent_budget_skips_the_rest() -> None:
    res = run_attention_bench(torch.device("cpu"), batch=1, dtypes=("float32",), budget_s=0.0)
    assert res and all(r.status == "skipped" for r in res)
    assert not as_json(res, torch.device("cpu"), {})["complete"]


def _timed(shape: str, dtype: str, sdpa_us: float, pad8_us: float, pad8_diff: float = 1e-6) -> list[AttentionResult]:
    mode = "forward+backward"
    return [AttentionResult(shape, dtype, mode, "sdpa", "sdpa", None, "MATH", "ok", median_us=sdpa_us,
                            max_abs_diff=1e-6),
            AttentionResult(shape, dtype, mode, "sdpa_pad8", "sdpa_pad8", None, "EFFICIENT_ATTENTION", "ok",
                            median_us=pad8_us, max_abs_diff=pad8_diff)]


@pytest.mark.parametrize(("timings", "value"), [
    ([(100, 50), (200, 100)], "sdpa_pad8"),  # 2x everywhere
    ([(100, 95), (200, 190)], "sdpa"),  # 1.05x: not worth a change
    ([(100, 30), (100, 110)], "sdpa"),  # much faster on one shape, 10 % slower on another
    ([], "sdpa"),  # nothing measured
])
def test_auto_cuda_decision_rule(timings: list, value: str) -> None:
    res = [r for i, (s, p) in enumerate(timings) for r in _timed(f"shape{i}", "float32", s, p)]
    dec = auto_cuda_decision(res, CUDA)
    assert dec["value"] == value and dec["current"] == "sdpa" and dec["reason"]


def test_a_less_accurate_pad8_is_not_chosen() -> None:
    res = _timed("cls-cross", "bfloat16", 100, 50, pad8_diff=1e-2)
    dec = auto_cuda_decision(res, CUDA)
    assert dec["value"] == "sdpa" and "less accurate at cls-cross bfloat16" in dec["reason"]


def test_gpu_check_report_carries_the_decision(tmp_path: Path) -> None:
    res = _timed("cls-cross", "float32", 100, 40) + _timed("cls-z-self", "float32", 80, 40)
    data = as_json(res, CUDA, {"device": "test GPU"})
    info = {"gpu": "test GPU", "torch": "x", "cuda": "y", "date": "d", "commit": "c", "seconds": 1.0}
    part = gpu_check.Part("bench-attention", ["ddeqs"], 0, 20.0, 45.0, str(tmp_path / "log"), one_line(data))
    md, js = gpu_check.write_report(tmp_path, info, [part], None, data)
    text = md.read_text()
    assert "auto on CUDA -> sdpa_pad8" in text  # the part's one-line summary
    assert '**sdpa_pad8** (now `sdpa`: set `AUTO_CUDA = "sdpa_pad8"`' in text
    assert "| cls-cross | float32 | 100 (MATH) | 2.50x faster | sdpa_pad8 | 40 |" in text
    assert json.loads(js.read_text())["attention_decision"]["value"] == "sdpa_pad8"
    assert "Not decided" in "\n".join(decision_lines(None))
    assert set(BACKENDS) == {"flash", "efficient", "cudnn", "math"}
