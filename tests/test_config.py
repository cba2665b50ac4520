"""The shared configuration model: strict keys, suggestions, overrides, round trips."""

import re

import pytest
import yaml

from ddeqs.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    dump_config,
    load_config,
    valid_keys,
)


def test_defaults_are_the_paper_settings():
    cfg = ExperimentConfig()
    assert cfg.solver.iters == 200 and cfg.solver.step == 5.0
    assert cfg.model.z_dim == 128 and cfg.model.bilinear_dim == 16 and cfg.model.heads == 32
    assert cfg.model.free_share == pytest.approx(0.275)
    assert cfg.train.batch_size == 64 and cfg.train.lr == 1e-3 and cfg.train.milestones == [0.4, 0.8]


def test_optimizer_and_schedule_default_to_each_models_paper(tmp_path):
    """Fields left out (or null) take model.name's paper default; an explicit value wins."""
    pcn = load_config(None, ["task=completion", "model.name=pcn"]).train
    assert (pcn.optimizer, pcn.lr, pcn.schedule, pcn.gamma, pcn.min_lr) == ("adam", 1e-4, "exponential", 0.7, 1e-6)
    assert pcn.decay_every == pytest.approx(1 / 6)
    pt = load_config(None, ["model.name=point-transformer"]).train
    assert (pt.optimizer, pt.lr, pt.momentum, pt.weight_decay, pt.schedule) == ("sgd", 0.05, 0.9, 1e-4, "multistep")
    ddeq = ExperimentConfig().train
    assert (ddeq.optimizer, ddeq.lr, ddeq.schedule, ddeq.gamma) == ("adam", 1e-3, "multistep", 0.1)
    p = tmp_path / "pcn.yaml"
    p.write_text("task: completion\nmodel: {name: pcn}\ntrain: {lr: null, gamma: 0.5}\n")
    cfg = load_config(p)
    assert cfg.train.lr == 1e-4 and cfg.train.gamma == 0.5  # null: the paper default; explicit: wins
    assert load_config(p, ["train.lr=0.003"]).train.lr == 0.003
    assert load_config(None, ["model.name=pointnet"]).model.dropout == 0.3
    assert ExperimentConfig().model.dropout == 0.0
    assert load_config(None, ["model.name=pointnet", "model.dropout=0"]).model.dropout == 0.0
    # the resolved configuration round-trips unchanged (run folders store it)
    assert ExperimentConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    with pytest.raises(ConfigError, match="decay_every"):
        load_config(None, ["train.schedule=exponential"])


def test_unknown_key_in_file_names_key_and_suggests(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump({"solver": {"iter": 50}}))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert "solver.iter" in msg and "did you mean 'solver.iters'" in msg and str(p) in msg


def test_unknown_override_suggests_closest_key():
    with pytest.raises(ConfigError, match=r"did you mean 'model.z_particles'"):
        load_config(None, ["model.z_particle=4"])


def test_misplaced_leaf_suggests_section():
    with pytest.raises(ConfigError, match=r"did you mean 'solver.iters'"):
        load_config(None, ["iters=4"])


def test_bad_value_names_key():
    with pytest.raises(ConfigError, match=r"solver.step"):
        load_config(None, ["solver.step=-1"])


def test_overrides_parse_yaml_values_and_round_trip(tmp_path):
    cfg = load_config(None, ["solver.iters=7", "model.pushforward=true", "train.milestones=[0.5]", "data.dataset=shapes"])
    assert cfg.solver.iters == 7 and cfg.model.pushforward is True and cfg.train.milestones == [0.5]
    out = tmp_path / "config.yaml"
    dump_config(cfg, out)
    assert load_config(out) == cfg


def test_overrides_do_not_mutate_input():
    raw = {"solver": {"iters": 3}}
    apply_overrides(raw, ["solver.iters=9"])
    assert raw == {"solver": {"iters": 3}}


def test_task_model_mismatch_is_explained():
    with pytest.raises(ConfigError, match="completion network"):
        load_config(None, ["model.name=pcn"])


def test_flat_keys_are_valid_keys():
    flat = ExperimentConfig().flat()
    keys = set(valid_keys())
    assert flat and set(flat) <= keys


def test_cpu_ddeq_configs_evaluate_at_their_training_iterations() -> None:
    """A DDEQ evaluated past the iterations it was trained with runs a flow that has not converged and
    amplifies rounding, so predictions depend on batch-mates (docs/model.md, batch composition)."""
    from pathlib import Path

    params = Path(__file__).resolve().parents[1] / "params"
    cfg = load_config(params / "digits-ddeq.yaml")
    assert cfg.solver.eval_iters in (None, cfg.solver.iters)


def test_removed_data_keys_say_where_the_setting_lives(tmp_path):
    # data.max_points and data.raw_root were never read by training: --set of one is an error naming the
    # option that does it; an older run folder's config.yaml that has them still loads, with a warning
    for key, where in (("data.max_points", "ddeqs data prepare --max-points N"), ("data.raw_root", "--raw-root DIR")):
        with pytest.raises(ConfigError, match=rf"'{key}' was removed.*{re.escape(where)}"):
            load_config(None, [f"{key}=100"])
    old = tmp_path / "config.yaml"
    old.write_text("data:\n  dataset: shapes\n  max_points: 800\n  raw_root: data/raw\n  noise: 0.1\n")
    with pytest.warns(UserWarning, match=r"config.yaml: 'data\.(max_points|raw_root)' is no longer a run setting") as caught:
        cfg = load_config(old)
    assert (cfg.data.dataset, cfg.data.noise) == ("shapes", 0.1)
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["data.max_points", "data.raw_root"]


def test_solver_preset_sets_its_fields_where_it_is_given(tmp_path):
    """``solver.preset`` fills the fields it names: ``--set`` of it replaces what came before (a later
    ``--set`` wins); in a YAML mapping the fields written next to it win; a run's dumped config reloads."""
    from ddeqs.config import SOLVER_PRESETS

    assert set(SOLVER_PRESETS) == {"paper", "fast-train"}
    paper = load_config(None, ["solver.iters=7", "solver.momentum=0.3", "solver.preset=paper"]).solver
    assert (paper.iters, paper.momentum, paper.step) == (200, 0.0, 5.0)
    for name, fields in SOLVER_PRESETS.items():
        solver = load_config(None, [f"solver.preset={name}"]).solver
        assert solver.preset == name and {k: getattr(solver, k) for k in fields} == fields
    after = load_config(None, ["solver.preset=fast-train", "solver.iters=80"]).solver
    assert after.iters == 80 and after.momentum == SOLVER_PRESETS["fast-train"]["momentum"]
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"solver": {"preset": "fast-train", "iters": 30}}))
    cfg = load_config(f)
    assert cfg.solver.iters == 30 and cfg.solver.momentum == SOLVER_PRESETS["fast-train"]["momentum"]
    dump_config(cfg, tmp_path / "run.yaml")  # a run folder's config: every field written, preset kept
    assert load_config(tmp_path / "run.yaml") == cfg
    assert load_config(tmp_path / "run.yaml", ["solver.preset=paper"]).solver.iters == 200  # --set replaces
    with pytest.raises(ConfigError, match=r"solver\.preset.*'paper' or 'fast-train'"):
        load_config(None, ["solver.preset=quick"])
