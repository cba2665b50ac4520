"""The experiment plan (ddeqs.plan): the pipeline configuration model, its run table and its schema."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from ddeqs.config import ConfigError
from ddeqs.plan import build_runs, child_name, load_plan, plan_from_dict, read_config, schema_text

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
PROFILES = sorted(p for p in (REPO / "params").glob("*.yaml") if "runs" in (yaml.safe_load(p.read_text()) or {}))


def test_committed_schema_is_generated_from_the_model() -> None:
    """Regenerate with: python -m ddeqs.plan --schema workflow/schemas/config.schema.yaml"""
    assert SCHEMA.read_text() == schema_text()


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_loads_and_passes_the_schema(path: Path) -> None:
    raw = read_config(path)
    jsonschema.validate(raw, yaml.safe_load(SCHEMA.read_text()))
    runs = build_runs(load_plan(path))
    assert runs and all("--" not in n or n.split("--")[0] in runs for n in runs)


def test_run_table_of_the_paper_profile() -> None:
    plan = load_plan(REPO / "params/config.yaml")
    runs = build_runs(plan)
    # 51 runs less the 6 grid children that would repeat their main run (z_particles 10 x 2, iters 200,
    # noise 5 % x 2, input share 1): the tables read the main run for those cells
    assert len(runs) == 45
    assert not {"mnist-cls-ddeq--z_particles-10", "mnist-cpl-ddeq--iters-200", "mnist-cpl-ddeq--noise-0.05",
                "mnist-cpl-pcn--noise-0.05", "mnist-cpl-ddeq--input_share-1"} & set(runs)
    child = runs["mnist-cpl-ddeq--iters-50"]
    assert child["solver"]["iters"] == 50 and child["solver"]["step"] == pytest.approx(20.0)
    assert child["tracking"]["parent_run"] == "mnist-cpl-ddeq--iters"
    assert runs["mnist-cls-ddeq"]["model"]["cross_layers"] == 1 and runs["mnist-cls-ddeq"]["data"]["dataset"] == "mnist-pc"
    assert runs["modelnet-cls-pt"]["model"]["name"] == "point-transformer"
    assert runs["mnist-cls-ddeq"]["tracking"]["experiment"] == "ddeqs-paper-classification"
    assert child_name("mnist-cpl-ddeq", "input_share", 0.8) in runs
    assert child_name("mnist-cpl-ddeq", "input_share", 1.0) == "mnist-cpl-ddeq--input_share-1"  # 1.0 -> "1"
    assert child_name("mnist-cls-ddeq", "pushforward", True) == "mnist-cls-ddeq--pushforward-true"


def test_grid_set_trains_its_children_alike_and_unlike_the_main_run() -> None:
    """grids.<g>.set applies to every child (over the main run, under the grid value), so a child whose value
    is the main run's setting is trained too; without set it is not (it would repeat the main run)."""
    raw = _smoke()
    raw["grids"]["noise"]["set"] = {"train": {"epochs": 3}, "data": {"noise": 0.5, "max_test": 8}}
    runs = build_runs(plan_from_dict(raw))
    for v in ("0", "0.05", "0.2", "0.8"):
        child = runs[f"mnist-cpl-ddeq--noise-{v}"]
        assert child["train"]["epochs"] == 3 and child["data"]["max_test"] == 8
        assert child["data"]["noise"] == float(v)  # the grid value wins over set
    assert runs["mnist-cpl-ddeq"]["train"]["epochs"] == 1 and runs["mnist-cpl-ddeq"]["data"]["max_test"] == 32
    assert "mnist-cpl-ddeq--input_share-1" not in runs  # no set: would repeat the main run (input share 1)
    raw["grids"]["noise"]["set"] = {"train": {"epoch": 3}}
    with pytest.raises(ConfigError, match=r"(?s)mnist-cpl-ddeq--noise-0.*train.epoch.*did you mean .train.epochs"):
        build_runs(plan_from_dict(raw))


def test_grid_set_runs_sets_the_children_of_one_main_run() -> None:
    """grids.<g>.set_runs.<run> applies over set to that run's children only; it must name a run of the grid."""
    raw = _smoke()
    raw["grids"]["noise"]["set"] = {"train": {"epochs": 3}}
    raw["grids"]["noise"]["set_runs"] = {"mnist-cpl-pcn": {"train": {"epochs": 7, "lr": 0.01}, "data": {"noise": 0.9}}}
    runs = build_runs(plan_from_dict(raw))
    ddeq, pcn = runs["mnist-cpl-ddeq--noise-0.2"], runs["mnist-cpl-pcn--noise-0.2"]
    assert ddeq["train"]["epochs"] == 3 and pcn["train"]["epochs"] == 7 and pcn["train"]["lr"] == 0.01
    assert pcn["data"]["noise"] == 0.2  # the grid value still wins
    assert runs["mnist-cpl-pcn"]["train"]["epochs"] != 7
    raw["grids"]["noise"]["set_runs"] = {"mnist-cls-ddeq": {"train": {"epochs": 7}}}
    with pytest.raises(ConfigError, match="set_runs names .*mnist-cls-ddeq.*not among this grid's runs"):
        plan_from_dict(raw)


def test_a_run_preset_replaces_the_solver_fields_of_the_defaults() -> None:
    """solver.preset in a run (or a grid's set) replaces the solver fields the defaults gave, as --set
    does; fields next to it win; the children of its grids inherit it; a grid over presets sets each."""
    from ddeqs.config import SOLVER_PRESETS

    fast = SOLVER_PRESETS["fast-train"]
    raw = _smoke()  # defaults: solver {kind: wgf, iters: 5, step: 5.0}
    raw["runs"]["mnist-cls-ddeq"] = {"solver": {"preset": "fast-train"}}
    raw["runs"]["mnist-cpl-ddeq"] = {"solver": {"preset": "fast-train", "eval_iters": 7}}
    runs = build_runs(plan_from_dict(raw))
    cls = runs["mnist-cls-ddeq"]["solver"]
    assert {k: cls[k] for k in fast} == fast and cls["preset"] == "fast-train"
    cpl = runs["mnist-cpl-ddeq"]["solver"]
    assert (cpl["iters"], cpl["eval_iters"], cpl["momentum"]) == (fast["iters"], 7, fast["momentum"])
    # a run without a preset resolves as before the key existed (its params, Snakemake's rerun trigger, unchanged)
    assert runs["modelnet-cls-ddeq"]["solver"]["iters"] == 5 and "preset" not in runs["modelnet-cls-ddeq"]["solver"]
    child = runs["mnist-cls-ddeq--pushforward-true"]["solver"]  # a grid child inherits its main run's solver
    assert {k: child[k] for k in fast} == fast
    raw["grids"]["pushforward"]["set"] = {"solver": {"preset": "paper"}}
    assert build_runs(plan_from_dict(raw))["mnist-cls-ddeq--pushforward-true"]["solver"]["iters"] == 200
    raw["grids"]["presets"] = {"key": "solver.preset", "runs": ["modelnet-cls-ddeq"], "values": ["paper", "fast-train"]}
    runs = build_runs(plan_from_dict(raw))
    assert runs["modelnet-cls-ddeq--presets-paper"]["solver"]["iters"] == 200
    assert runs["modelnet-cls-ddeq--presets-fast-train"]["solver"]["momentum"] == fast["momentum"]


def _smoke() -> dict:
    return read_config(REPO / "params/smoke.yaml")


@pytest.mark.parametrize("where", ["top", "grid", "resources", "tasks", "flow"])
def test_unknown_keys_are_errors_naming_the_key(where: str) -> None:
    raw = _smoke()
    node = {"top": raw, "grid": raw["grids"]["noise"], "resources": raw["resources"], "tasks": raw["tasks"],
            "flow": raw["flow"]}[where]
    node["gridz"] = 1
    with pytest.raises(ConfigError, match="unknown key '.*gridz'"):
        plan_from_dict(raw, "test.yaml")
    with pytest.raises(jsonschema.ValidationError, match="gridz"):
        jsonschema.validate(raw, yaml.safe_load(SCHEMA.read_text()))


def test_bad_names_and_nulls_are_errors() -> None:
    raw = _smoke()
    raw["grids"]["noise"]["runs"] = ["mnist-cpl-foo"]
    with pytest.raises(ConfigError, match="mnist-cpl-foo"):
        plan_from_dict(raw)
    raw = _smoke()
    raw["runs"]["other-cls-ddeq"] = {}
    with pytest.raises(ConfigError, match="role 'other'"):
        plan_from_dict(raw)
    raw = _smoke()
    raw["runs"]["mnist-cls-resnet"] = {}
    with pytest.raises(ConfigError, match="mnist-cls-resnet"):
        plan_from_dict(raw)
    raw = _smoke()
    raw["flow"] = None  # absent is fine, null is not (the pipeline reads flow.particles)
    with pytest.raises(ConfigError, match="flow"):
        plan_from_dict(raw)
    del raw["flow"]
    assert plan_from_dict(raw).flow is None


def test_a_bad_run_setting_names_the_run() -> None:
    raw = _smoke()
    raw["runs"]["mnist-cls-pt"] = {"solver": {"iter": 3}}
    with pytest.raises(ConfigError, match="mnist-cls-pt(.|\n)*did you mean 'solver.iters'"):
        build_runs(plan_from_dict(raw))


def test_several_files_merge_in_order(tmp_path: Path) -> None:
    extra = tmp_path / "gpu.yaml"
    extra.write_text("resources: {gpu: 1}\n")
    plan = load_plan([REPO / "params/smoke.yaml", extra])
    assert plan.resources.gpu == 1 and plan.resources.threads == 1
    dup = tmp_path / "dup.yaml"
    dup.write_text("profile: a\nprofile: b\n")
    with pytest.raises(ConfigError, match="duplicate key"):
        read_config(dup)


def test_select_builds_only_the_named_part_of_a_profile(tmp_path: Path) -> None:
    """params/demo.yaml over params/cpu.yaml: the demo's runs, with the cpu profile's settings."""
    full = build_runs(load_plan(REPO / "params/cpu.yaml"))
    demo = build_runs(load_plan([REPO / "params/cpu.yaml", REPO / "params/demo.yaml"]))
    wanted = set(yaml.safe_load((REPO / "params/demo.yaml").read_text())["select"]["runs"])
    assert set(demo) == wanted and len(full) > len(demo)
    for name in demo:  # same settings as in the full profile, apart from the profile's name
        a, b = dict(full[name]), dict(demo[name])
        a.pop("tracking"), b.pop("tracking")
        assert a == b, name
        assert demo[name]["tracking"]["experiment"].startswith("ddeqs-demo-")
    raw = _smoke()
    raw["select"] = {"runs": ["mnist-cls-ddeq"], "grids": ["z_particles"]}  # its parents are not all selected
    with pytest.raises(ConfigError, match="z_particles(.|\n)*modelnet-cls-ddeq(.|\n)*select.runs"):
        plan_from_dict(raw)
    raw["select"] = {"runs": ["mnist-cpl-pt"]}
    with pytest.raises(ConfigError, match="select.runs names 'mnist-cpl-pt', which is not in 'runs'"):
        plan_from_dict(raw)
    raw["select"] = {"grids": ["z_particle"]}
    with pytest.raises(ConfigError, match="select.grids names 'z_particle'(.|\n)*did you mean 'z_particles'"):
        plan_from_dict(raw)
    raw["select"] = {"runs": ["mnist-cls-ddeq", "modelnet-cls-ddeq"], "grids": ["z_particles"]}
    runs = build_runs(plan_from_dict(raw))
    assert sorted(n for n in runs if "--" not in n) == ["mnist-cls-ddeq", "modelnet-cls-ddeq"]
    assert len(runs) == 2 + 2 * 3  # 1, 16, 64 each
