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
