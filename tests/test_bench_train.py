"""``ddeqs bench train``: settings parsing, and a tiny digits run of the default settings through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ddeqs.bench.train import DEFAULT_SETTINGS, parse_setting, resolve_settings
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
    s = {x.name: x for x in resolve_settings([], base)}
    assert list(s) == DEFAULT_SETTINGS
    q = load_config(None, ["solver.iters=40", "solver.eval_iters=20", *s["plain-quarter"].overrides])
    assert (q.solver.iters, q.solver.eval_iters) == (10, 5)
    m = load_config(None, s["momentum"].overrides).solver
    assert m.momentum > 0 and m.objective_ratio > 0 and m.eval_momentum is None
    e = load_config(None, s["momentum-eval"].overrides).solver
    assert e.momentum == 0 and e.objective_ratio == 0 and e.eval_momentum > 0 and e.eval_objective_ratio > 0
    with pytest.raises(ConfigError, match="twice"):
        resolve_settings(["plain", "plain:solver.iters=3"], base)


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
    table = [ln for ln in lines if ln.split() and ln.split()[0] in DEFAULT_SETTINGS]
    assert [ln.split()[0] for ln in table] == DEFAULT_SETTINGS  # one row per setting, in order
    assert "CPU:" in text and "accuracy ± s.e." in text
    data = json.loads(js.read_text())
    for key in ("cpu", "cores", "device", "task", "reference", "metrics", "settings", "params", "overrides", "epochs"):
        assert key in data, key
    assert data["reference"] == "plain" and data["metrics"] == ["accuracy"]
    rows = {r["name"]: r for r in data["settings"]}
    assert list(rows) == DEFAULT_SETTINGS
    for r in rows.values():
        for key in ("train_seconds", "eval_seconds", "inner_iters", "test", "time_ratio", "run_dir", "overrides",
                    "load_avg"):
            assert key in r, key
        assert 0.0 <= r["test"]["accuracy"] <= 1.0 and r["test"]["accuracy_se"] >= 0 and r["test"]["n"] == 32
        run = Path(r["run_dir"])  # a normal run folder
        assert (run / "metrics.json").is_file() and (run / "model.pt").is_file() and (run / "config.yaml").is_file()
    assert rows["plain"]["time_ratio"] == 1.0
    assert rows["plain"]["inner_iters"] == 8 and rows["plain-quarter"]["inner_iters"] == 2
    assert rows["momentum-eval"]["inner_iters"] == 8  # plain descent in training
    assert rows["momentum"]["solver"]["momentum"] == 0.5 and rows["momentum-eval"]["solver"]["momentum"] == 0.0
    assert rows["momentum-eval"]["solver"]["eval_momentum"] == 0.5
    cfg = yaml.safe_load((out / "plain-quarter" / "config.yaml").read_text())
    assert cfg["solver"]["iters"] == 2 and cfg["data"]["max_train"] == 64


def test_bench_train_rejects_a_bad_setting_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["bench", "train", "--setting", "plain", "--setting", "odd:solver.itters=3", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc != 0 and "odd" in err and "solver.iters" in err  # names the setting and suggests the key
    assert not (tmp_path / "b").exists()  # nothing trained
