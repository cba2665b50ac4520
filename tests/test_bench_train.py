"""``ddeqs bench train``: settings parsing, and a tiny digits run of the default settings through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ddeqs.bench.train import (DEFAULT_SETTINGS, TrainBenchRow, apply_target, parse_setting, resolve_settings,
                               metric_curve)
from ddeqs.cli import main
from ddeqs.config import ConfigError, load_config

TINY = ["model.z_dim=16", "model.bilinear_dim=4", "model.heads=2", "model.ffn_dim=32", "model.cross_layers=1",
        "model.z_particles=4", "solver.iters=8", "train.batch_size=32", "train.epochs=1", "train.threads=1",
        "train.deterministic=true", "train.diagnostics_every=0", "train.save_embeddings=0", "tracking.enabled=false"]


def test_parse_setting_keeps_list_values_whole_and_rejects_bad_input() -> None:
    s = parse_setting("slow:solver.iters=12, train.milestones=[0.6,0.9],solver.momentum=0.3")
    assert s.name == "slow" and s.overrides == ["solver.iters=12", "train.milestones=[0.6,0.9]", "solver.momentum=0.3"]
    assert parse_setting("momentum").overrides == []  # a preset: filled in by resolve_settings
    for bad in ("nosuchpreset", "a/b:solver.iters=3", "x:", "x:solver.iters"):
        with pytest.raises(ConfigError):
            parse_setting(bad)


def test_presets_scale_with_the_configured_iterations() -> None:
    base = load_config(None, ["solver.iters=40", "solver.eval_iters=20"])
    assert [x.name for x in resolve_settings([], base)] == DEFAULT_SETTINGS
    s = {x.name: x for x in resolve_settings(["paper", "fast-train", "plain-quarter", "momentum", "momentum-eval"], base)}
    paper = load_config(None, ["solver.iters=40", "solver.momentum=0.3", *s["paper"].overrides]).solver
    assert (paper.preset, paper.iters, paper.eval_iters, paper.momentum) == ("paper", 200, None, 0.0)
    fast = load_config(None, ["solver.iters=40", *s["fast-train"].overrides]).solver
    assert (fast.preset, fast.iters, fast.eval_iters, fast.momentum) == ("fast-train", 25, 200, 0.5)
    q = load_config(None, ["solver.iters=40", "solver.eval_iters=20", *s["plain-quarter"].overrides])
    assert (q.solver.iters, q.solver.eval_iters) == (10, 5)
    m = load_config(None, s["momentum"].overrides).solver
    assert m.momentum > 0 and m.objective_ratio > 0 and m.eval_momentum is None
    e = load_config(None, s["momentum-eval"].overrides).solver
    assert e.momentum == 0 and e.objective_ratio == 0 and e.eval_momentum > 0 and e.eval_objective_ratio > 0
    with pytest.raises(ConfigError, match="twice"):
        resolve_settings(["plain", "plain:solver.iters=3"], base)


def _row(name: str, test: dict[str, float], curve: list[dict[str, float]]) -> TrainBenchRow:
    return TrainBenchRow(name=name, overrides=[], run_dir=name, train_seconds=curve[-1]["seconds"], eval_seconds=0.0,
                         total_seconds=0.0, inner_iters=None, epochs=len(curve), device="cpu", test=test, curve=curve)


def test_time_to_target_is_the_first_epoch_within_one_se_of_the_reference() -> None:
    history = [{"epoch": 0, "test_accuracy": 0.5, "test_accuracy_se": 0.03}, {"epoch": 1, "test_accuracy": 0.8},
               {"epoch": 2}]  # the last epoch is never in history: metrics.json holds it
    final = {"accuracy": 0.9, "accuracy_se": 0.02, "n": 100}
    curve = metric_curve(history, final, [10.0, 20.0, 30.0])
    assert [(c["epoch"], c["seconds"], c["accuracy"]) for c in curve] == [(1, 10.0, 0.5), (2, 30.0, 0.8), (3, 60.0, 0.9)]
    assert metric_curve([{"epoch": 0}, {"epoch": 1}], final, [5.0, 5.0]) == [{"epoch": 2, "seconds": 10.0, **final}]
    ref = _row("ref", final, curve)
    fast = _row("fast", {"accuracy": 0.87}, [{"epoch": 1, "seconds": 2.0, "accuracy": 0.7},
                                             {"epoch": 2, "seconds": 4.0, "accuracy": 0.885},
                                             {"epoch": 3, "seconds": 6.0, "accuracy": 0.87}])
    low = _row("low", {"accuracy": 0.879}, [{"epoch": 1, "seconds": 1.0, "accuracy": 0.879}])
    apply_target([ref, fast, low], "classification")
    assert ref.target == pytest.approx(0.88)  # one s.e. below the reference's final accuracy
    assert (ref.target_epoch, ref.target_seconds, ref.target_ratio) == (3, 60.0, 1.0)
    assert (fast.target_epoch, fast.target_seconds) == (2, 4.0) and fast.target_ratio == pytest.approx(4 / 60)
    assert fast.target_share == pytest.approx(4 / 60) and ref.target_share == 1.0  # ref: trained 60 s in all
    assert low.target_epoch is None and low.target_seconds is None and low.target_ratio is None
    # completion: W2 of the free particles, lower is better, so the target is one s.e. above
    cref = _row("ref", {"w2_free": 1.5, "w2_free_se": 0.1}, [{"epoch": 1, "seconds": 8.0, "w2_free": 1.5}])
    cfast = _row("fast", {"w2_free": 1.58}, [{"epoch": 1, "seconds": 2.0, "w2_free": 1.58}])
    cbad = _row("bad", {"w2_free": 1.61}, [{"epoch": 1, "seconds": 1.0, "w2_free": 1.61}])
    apply_target([cref, cfast, cbad], "completion")
    assert cref.target == pytest.approx(1.6) and cfast.target_ratio == pytest.approx(0.25) and cbad.target_epoch is None


@pytest.fixture(scope="module")
def digits_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ddeqs.data import prepare_dataset

    root = tmp_path_factory.mktemp("data")
    prepare_dataset("digits", raw_root=root / "raw", root=root, progress=False)
    params = root / "tiny.yaml"
    params.write_text(yaml.safe_dump({"task": "classification",
                                      "data": {"dataset": "digits", "root": str(root), "max_train": 64, "max_test": 32}}))
    return params


@pytest.mark.slow
def test_bench_train_default_settings_on_digits(tmp_path: Path, digits_params: Path, capsys: pytest.CaptureFixture) -> None:
    out, js = tmp_path / "bench", tmp_path / "bench.json"
    sets = [f"--set={s}" for s in TINY]
    assert main(["bench", "train", "--params", str(digits_params), *sets, "--out", str(out), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    table = [ln.split()[0] for ln in lines if ln.split() and ln.split()[0] in DEFAULT_SETTINGS]
    assert table == DEFAULT_SETTINGS * 2  # one row per setting, in order: the main table, then time to target
    assert "CPU:" in text and "accuracy ± s.e." in text and "time to target: accuracy >=" in text
    data = json.loads(js.read_text())
    for key in ("cpu", "cores", "device", "task", "reference", "metrics", "settings", "params", "overrides", "epochs"):
        assert key in data, key
    assert data["reference"] == "paper" and data["metrics"] == ["accuracy"]
    rows = {r["name"]: r for r in data["settings"]}
    assert list(rows) == DEFAULT_SETTINGS
    for r in rows.values():
        for key in ("train_seconds", "eval_seconds", "inner_iters", "test", "time_ratio", "run_dir", "overrides",
                    "load_avg", "curve", "target", "target_epoch", "target_seconds", "target_ratio", "target_share"):
            assert key in r, key
        assert 0.0 <= r["test"]["accuracy"] <= 1.0 and r["test"]["accuracy_se"] >= 0 and r["test"]["n"] == 32
        run = Path(r["run_dir"])  # a normal run folder
        assert (run / "metrics.json").is_file() and (run / "model.pt").is_file() and (run / "config.yaml").is_file()
        # one epoch, evaluated at its end: the curve is the final metric
        assert [c["epoch"] for c in r["curve"]] == [1] and r["curve"][0]["accuracy"] == r["test"]["accuracy"]
    ref = rows["paper"]
    assert ref["time_ratio"] == 1.0 and ref["target_epoch"] == 1 and ref["target_ratio"] == 1.0
    assert ref["target"] == pytest.approx(ref["test"]["accuracy"] - ref["test"]["accuracy_se"])
    assert [rows[n]["inner_iters"] for n in DEFAULT_SETTINGS] == [200, 25, 8, 8]  # momentum: the ratio never stops it here
    assert rows["fast-train"]["solver"]["eval_iters"] == 200 and rows["fast-train"]["solver"]["momentum"] == 0.5
    assert rows["momentum"]["solver"]["momentum"] == 0.5 and rows["plain"]["solver"]["momentum"] == 0.0
    cfg = yaml.safe_load((out / "fast-train" / "config.yaml").read_text())
    assert cfg["solver"]["preset"] == "fast-train" and cfg["solver"]["iters"] == 25 and cfg["data"]["max_train"] == 64


def test_bench_train_rejects_a_bad_setting_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["bench", "train", "--setting", "plain", "--setting", "odd:solver.itters=3", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc != 0 and "odd" in err and "solver.iters" in err  # names the setting and suggests the key
    assert not (tmp_path / "b").exists()  # nothing trained


@pytest.mark.slow
def test_bench_train_reuses_a_finished_setting_and_never_overwrites_another(
        tmp_path: Path, digits_params: Path, capsys: pytest.CaptureFixture) -> None:
    """Rerunning a bench reads the settings already trained (an interrupted bench resumes); a folder
    holding a finished run of another configuration stops the bench before anything trains."""
    out = tmp_path / "bench"
    sets = [f"--set={s}" for s in TINY]
    args = ["bench", "train", "--params", str(digits_params), *sets, "--out", str(out)]
    assert main([*args, "--setting", "a:solver.iters=2"]) == 0
    first = (out / "a" / "model.pt").read_bytes(), (out / "a" / "metrics.json").read_text()
    capsys.readouterr()
    assert main([*args, "--setting", "a:solver.iters=2", "--setting", "b:solver.iters=3"]) == 0
    text = capsys.readouterr().out
    assert "reused" in text and (out / "b" / "metrics.json").is_file()
    assert ((out / "a" / "model.pt").read_bytes(), (out / "a" / "metrics.json").read_text()) == first
    rc = main([*args, "--setting", "a:solver.iters=4", "--setting", "c:solver.iters=2"])
    err = capsys.readouterr().err
    assert rc != 0 and str(out / "a") in err and "another configuration" in err
    assert ((out / "a" / "model.pt").read_bytes(), (out / "a" / "metrics.json").read_text()) == first
    assert not (out / "c").exists()  # refused before anything trained
