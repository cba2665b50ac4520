"""Run names (ddeqs.record): one formatter, one parser, used by the plan and the paper builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ddeqs.plan import build_runs, load_plan
from ddeqs.record import RunName, child_name, format_value, main_name, parse_name

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value,text", [(True, "true"), (False, "false"), (0.05, "0.05"), (1.0, "1"), (0, "0"),
                                        (1000, "1000"), (np.float32(0.2), "0.2"), (np.int64(8), "8"),
                                        ("fixed_point", "fixed_point")])
def test_format_value(value, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize("profile", ["config.yaml", "smoke.yaml"])
def test_every_planned_run_name_parses_back(profile: str) -> None:
    plan = load_plan(REPO / "params" / profile)
    for name, cfg in build_runs(plan).items():
        parsed = parse_name(name)
        assert str(parsed) == name
        assert plan.roles[parsed.role] == cfg["data"]["dataset"]
        if parsed.grid is not None:
            grid = plan.grids[parsed.grid]
            assert parsed.main in grid.runs
            assert any(child_name(parsed.main, parsed.grid, v) == name for v in grid.values)


def test_parse_name_parts_and_errors() -> None:
    assert parse_name("mnist-cpl-ddeq--input_share-0.2") == RunName("mnist", "cpl", "ddeq", "input_share", "0.2")
    assert parse_name("modelnet-cls-pt") == RunName("modelnet", "cls", "pt")
    assert parse_name("mnist-cpl-ddeq--solver-fixed_point").value == "fixed_point"
    assert main_name("mnist", "cls", "ddeq") == "mnist-cls-ddeq"
    for bad in ("mnist-cls-resnet", "mnist-classification-ddeq", "mnist-cls-ddeq--noise", "Mnist-cls-ddeq"):
        with pytest.raises(ValueError, match="is not <role>"):
            parse_name(bad)


# metrics.json as train_run wrote it before the typed record (keys in that order), plus a key a
# newer or older version may have written
OLD_METRICS = {
    "name": "mnist-cpl-pcn", "task": "completion", "model": "pcn", "dataset": "digits", "n_params": 1234,
    "device": "cpu (Intel Xeon)", "epochs": 2, "seconds_per_epoch": 1.5, "epoch_seconds": [1.4, 1.6],
    "mlflow_run_id": None, "mlflow_experiment_id": None, "dataset_sha256": "0" * 64,
    "config_flat": {"data.noise": 0.05, "model.name": "pcn"}, "train": {"loss": 0.25},
    "test": {"mmd2": 0.01, "mmd2_se": 0.001, "w2_full": 0.3, "w2_full_se": None, "n": 32},
    "from_the_future": {"kept": [1, 2]},
}


def test_an_existing_metrics_json_loads_and_is_written_back_unchanged(tmp_path: Path) -> None:
    import json

    from ddeqs.record import Metrics

    path = tmp_path / "run" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps(OLD_METRICS))
    m = Metrics.read(path)
    assert m.test_metric("mmd2") == (0.01, 0.001, 32)
    v, se, n = m.test_metric("w2_full")
    assert v == 0.3 and np.isnan(se) and n == 32
    assert np.isnan(m.test_metric("accuracy")[0])
    assert m.config_flat["data.noise"] == 0.05 and m.n_params == 1234
    assert m.to_json() == OLD_METRICS and list(m.to_json()) == list(OLD_METRICS)


def test_a_malformed_metrics_json_is_an_error_naming_the_file_and_key(tmp_path: Path) -> None:
    import json

    from ddeqs.errors import DataError
    from ddeqs.record import Metrics

    path = tmp_path / "mnist-cls-ddeq" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**OLD_METRICS, "n_params": "many"}))
    with pytest.raises(DataError, match=r"metrics.json.*n_params.*re-run the training rule for mnist-cls-ddeq"):
        Metrics.read(path)
    path.write_text("{")
    with pytest.raises(DataError, match="metrics.json"):
        Metrics.read(path)


def test_records_take_numpy_numbers_and_write_non_finite_as_null() -> None:
    from ddeqs.record import Epoch, History, Metrics

    m = Metrics(name="r", seconds_per_epoch=np.float32(2.5), test={"accuracy": np.float64(0.5), "cross_entropy": float("inf"),
                                                                    "n": np.int64(10)})
    assert m.to_json() == {"name": "r", "seconds_per_epoch": 2.5, "test": {"accuracy": 0.5, "cross_entropy": None, "n": 10}}
    h = History(epochs=[Epoch(epoch=0, train_loss=0.5, lr=1e-3, seconds=1.0, inner_iters=None, test_accuracy=0.9)])
    assert h.to_json() == {"epochs": [{"epoch": 0, "train_loss": 0.5, "lr": 1e-3, "seconds": 1.0, "inner_iters": None,
                                       "test_accuracy": 0.9}]}
    assert History.model_validate(h.to_json()).epochs[0].model_extra == {"test_accuracy": 0.9}
