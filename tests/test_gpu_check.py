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


def test_a_missing_package_stops_it_at_once_naming_the_package_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(gpu_check, "NEEDED_MODULES", ("numpy", "ddeqs_no_such_module"))
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ddeqs_no_such_module" in err[0] and "numpy" not in err[0].split("packages")[1].split(",")[0]
    assert "make gpu-wheels" in err[0] and not (tmp_path / "out").exists()
    assert gpu_check.missing_modules_reason() is None  # the test environment has every real one


def test_without_pydantic_and_torchdeq_it_names_them_instead_of_a_traceback(tmp_path: Path) -> None:
    """As on a CUDA image of PyTorch before the wheels are installed: ``python -m ddeqs.bench.gpu_check`` starts
    on the standard library alone (``ddeqs.bench`` imports its members lazily) and says what is missing."""
    code = ("import runpy, sys\n"
            "sys.modules['pydantic'] = sys.modules['torchdeq'] = None  # import fails, find_spec says None\n"
            "sys.argv = ['gpu_check']\n"
            "runpy.run_module('ddeqs.bench.gpu_check', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OUT": str(tmp_path / "out")},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "packages pydantic, torchdeq" in line and "make gpu-wheels" in line
    assert not (tmp_path / "out").exists()


def _tiny_wheel(folder: Path, name: str = "ddeqs_probe_pkg", version: str = "0.1") -> Path:
    """A minimal valid wheel holding one module, for pip's offline ``--no-index`` install."""
    import base64
    import hashlib
    import zipfile

    files = {f"{name}/__init__.py": b"VALUE = 42\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()]
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join([*record, f"{name}-{version}.dist-info/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, d in files.items():
            zf.writestr(p, d)
    return path


@pytest.mark.slow
def test_offline_runner_installs_the_wheels_aside_and_runs_the_check_from_any_folder(tmp_path: Path) -> None:
    """scripts/gpu_check.sh, as on a GPU machine without internet: the wheels of .whl/ go into a scratch
    folder (not into the interpreter), the checkout is importable without being installed, and the check
    itself runs (here it stops at once: no GPU is visible)."""
    repo = Path(__file__).resolve().parents[1]
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    _tiny_wheel(wheels)
    env = {**os.environ, "PYTHON": sys.executable, "GPU_WHEELS": str(wheels), "GPU_SITE": str(site),
           "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path / "out"), "PIP_NO_INDEX": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(repo / "scripts" / "gpu_check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "needs a CUDA GPU" in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    assert (site / "ddeqs_probe_pkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_its_parts_import_nothing_beyond_torch_and_the_wheel_list(tmp_path: Path) -> None:
    """What a CUDA image of PyTorch with the scientific stack has plus ``scripts/gpu_wheels.sh``'s wheels is
    enough: the parts' commands (tiny sizes, CPU) import, beyond the standard library, torch, scikit-learn
    (digits preparation) and what those two import, only :data:`gpu_check.NEEDED_MODULES` and their
    dependencies. A new import of mlflow, open3d,
    matplotlib, ... on these paths would break gpu-check on such a machine and fails here instead."""
    script = tmp_path / "probe.py"
    script.write_text(f"""
import importlib.metadata as md, json, re, sys
import torch
import sklearn.datasets, sklearn.model_selection  # digits preparation; sklearn imports pandas, rich, ... if present
before = {{k.split('.')[0] for k in sys.modules}}
from ddeqs.cli import main

def dist_modules(dist, seen):
    if dist in seen:
        return set()
    seen.add(dist)
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return set()
    mods = {{n.split('.')[0] for n in (d.read_text('top_level.txt') or '').split()}}
    mods |= {{p.parts[0].removesuffix('.py') for p in (d.files or []) if p.suffix == '.py' and '.dist-info' not in p.parts[0]}}
    for req in d.requires or []:
        if 'extra ==' not in req:
            mods |= dist_modules(re.split(r'[ ;<>=!~\\[(]', req, maxsplit=1)[0], seen)
    return mods

tiny = [a for o in ("model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32",
                    "model.coupling_width=8") for a in ("--set", o)]
assert main(["bench", "step", "--task", "completion", "--batch", "2", "--points", "12", "--iters", "2", "--impl", "fast",
             "graph", "naive", "--repeats", "1", "--warmup", "0", "--no-isolate", "--check", "--check-iters", "2", *tiny,
             "--out", r"{tmp_path / 's.json'}"]) == 0
assert main(["bench", "attention", "--batch", "2", "--repeats", "1", "--budget-s", "2", "--out", r"{tmp_path / 'a.json'}"]) == 0
assert main(["bench", "bf16", "--task", "completion", "--batch", "2", "--points", "12", "--iters", "2", *tiny,
             "--out", r"{tmp_path / 'b.json'}"]) == 0
assert main(["data", "prepare", "digits", "--raw-root", r"{tmp_path / 'raw'}", "--root", r"{tmp_path / 'data'}", "--quiet"]) == 0
assert main(["train", "--params", "params/digits-ddeq.yaml", "--set", "train.epochs=1", "--set", "solver.iters=2",
             "--set", r"data.root={tmp_path / 'data'}", *tiny, "--no-tracking", "--quiet", "--out", r"{tmp_path / 'run'}"]) == 0
allowed = dist_modules("torch", set()) | {{"torch", "torchgen", "functorch", "ddeqs", "cython_runtime", "pydot"}}
for dist in ("pydantic", "torchdeq", "numpy", "scipy", "pyyaml", "tqdm", "filelock", "typing-extensions"):
    allowed |= dist_modules(dist, set())
std = set(sys.stdlib_module_names)
extra = sorted(m for m in {{k.split('.')[0] for k in sys.modules}} - before
               if m not in std and not m.startswith('_') and m not in allowed)
print(json.dumps(extra))
""")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(script)], cwd=repo, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra = json.loads(proc.stdout.strip().splitlines()[-1])
    assert extra == [], f"imported beyond torch and the wheel list: {extra}"


def test_only_runs_the_named_parts_and_says_why_there_is_no_estimate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``--only digits`` (a rerun after a fix): the other parts' commands never start, the report lists what ran."""
    started: list[str] = []

    def fake_run_part(name: str, command: list[str], limit_s: float, log_dir: Path) -> gpu_check.Part:
        started.append(name)
        log = log_dir / f"{name}.log"
        log.write_text("$ " + " ".join(command) + "\nok\n")
        return gpu_check.Part(name, command, 0, 0.1, limit_s, str(log))

    monkeypatch.setattr(gpu_check, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu_check, "run_part", fake_run_part)
    monkeypatch.setattr("torch.cuda.get_device_name", lambda *a: "Test GPU")
    assert gpu_check.main(["--out", str(tmp_path), "--only", "digits"]) == 0
    assert started == ["digits-prepare", "digits-train"]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["parts_run"] == ["digits"] and [p["name"] for p in report["parts"]] == ["digits-train"]
    assert "the bench step part was not run (--only)" in (tmp_path / "gpu-check.md").read_text()
    started.clear()
    assert gpu_check.main(["--out", str(tmp_path), "--only", "bench-step"]) == 1  # ran, but gave no step time
    assert started == ["bench-step"]
    assert "gave no fast-path step time" in (tmp_path / "gpu-check.md").read_text()
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "bench-steps"])
    assert "invalid choice: 'bench-steps'" in capsys.readouterr().err
