"""One CLI convention: --set for run settings, --out for outputs, --no-tracking, --dataset; old spellings hidden."""

from __future__ import annotations

import argparse

import pytest

from ddeqs.cli import build_parser, main
from ddeqs.config import ConfigError


def _sub(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _options(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions if a.help != argparse.SUPPRESS for o in a.option_strings}


@pytest.mark.parametrize("path, tracking", [(("train",), True), (("evaluate",), True), (("bench", "step"), False),
                                            (("bench", "momentum"), False), (("bench", "train"), True)])
def test_every_run_command_takes_set_out_and_the_same_tracking_switch(path: tuple[str, ...], tracking: bool) -> None:
    shown = _options(_sub(*path))
    if path != ("evaluate",):  # evaluate writes into its RUN_DIR
        assert "--out" in shown
    assert "--set" in shown
    assert ("--no-tracking" in shown) is tracking
    old = {"--json", "--no-track", "--device", "--dataset-shape", "--momentum", "--compile", "--bf16"}
    if path == ("bench", "momentum"):
        old.remove("--momentum")  # there the list of momentum values it studies, not a run setting
    if path == ("bench", "train"):
        old.remove("--json")  # its --out is the folder of run folders; --json the summary file next to them
    assert not shown & old


def test_old_spellings_still_parse_and_say_what_replaces_them(capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    args = parser.parse_args(["evaluate", "run", "--device", "cpu", "--no-track"])
    assert args.overrides == ["train.device=cpu"] and args.no_tracking
    args = parser.parse_args(["bench", "step", "--dataset-shape", "modelnet", "--momentum", "0.5", "--nesterov",
                              "--compile", "--bf16", "--device", "cuda", "--json", "x.json", "--set", "seed=3"])
    assert args.overrides == ["solver.momentum=0.5", "solver.nesterov=true", "solver.compile=true",
                              "solver.bf16=true", "train.device=cuda", "seed=3"]
    assert args.json_out == "x.json" and args.shape == "modelnet"
    err = capsys.readouterr().err
    for old, new in [("--device", "--set train.device=cpu"), ("--no-track", "--no-tracking"),
                     ("--momentum", "--set solver.momentum=0.5"), ("--json", "--out"), ("--dataset-shape", "--dataset")]:
        assert f"ddeqs: {old} is deprecated; use {new}" in err


def test_bench_dataset_is_named_as_in_the_config() -> None:
    from ddeqs.bench.problem import problem_config
    from ddeqs.cli.bench import _spec, _validate

    args = build_parser().parse_args(["bench", "step", "--dataset", "modelnet40-s", "--set", "model.z_dim=16",
                                      "--set", "model.heads=4", "--set", "model.bilinear_dim=4"])
    _validate(args)
    spec = _spec(args, iters=2)
    assert spec.shape == "modelnet" and problem_config(spec).data.dataset == "modelnet40-s"
    assert problem_config(spec).model.cross_layers == 3


def test_evaluate_set_accepts_device_and_tracking_only() -> None:
    from ddeqs.cli.evaluate import evaluation_settings

    assert evaluation_settings([]) == {"device": None, "track": True}
    assert evaluation_settings(["train.device=cpu", "tracking.enabled=false"]) == {"device": "cpu", "track": False}
    with pytest.raises(ConfigError, match="solver.iters=5.*accepts only train.device"):
        evaluation_settings(["solver.iters=5"])
    with pytest.raises(ConfigError, match="true or false"):
        evaluation_settings(["tracking.enabled=maybe"])
    assert main(["evaluate", "nowhere", "--set", "model.z_dim=8"]) == 2  # refused before anything is read


def test_train_no_tracking_turns_tracking_off(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import ddeqs.training as training

    seen = {}
    monkeypatch.setattr(training, "train_run", lambda cfg, *a, **k: seen.setdefault("cfg", cfg))
    assert main(["train", "--set", "train.epochs=1", "--out", str(tmp_path / "r"), "--no-tracking"]) == 0
    assert seen["cfg"].tracking.enabled is False and seen["cfg"].train.epochs == 1


def test_flow_has_one_entry_point(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert "paper" in listed and "\n    flow" not in listed  # 'ddeqs flow' is a hidden old spelling
    assert "flow" in _options(_sub("paper", "flow")) | {"flow"} and "--order" in _options(_sub("paper", "flow"))
