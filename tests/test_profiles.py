"""Snakemake profiles: the arguments Snakemake ends up with for each profile.

Snakemake loads ``profiles/default`` (the workflow profile) on top of any ``--profile`` and lets its
values win, so a local setting there would silently override the SLURM profile. The effective
arguments are read with Snakemake's own parser (``snakemake.cli.parse_args``), run in the
repository root as a user would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from snakemake.cli import parse_args

REPO = Path(__file__).resolve().parents[1]
# Keys that depend on where jobs run: they must never sit in the auto-loaded workflow profile.
EXECUTOR_KEYS = {"executor", "jobs", "cores", "resources", "default-resources", "set-resources", "latency-wait",
                 "local-cores", "max-jobs-per-second", "max-status-checks-per-second", "slurm-*"}


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO)
    return REPO


def effective(*argv: str):
    return parse_args(["all", *argv])[1]


def resources(parsed) -> dict[str, object]:
    """Parsed ``--default-resources`` / ``--resources`` / one ``--set-resources`` rule as {name: value}.

    Constants give their value; string resources (evaluated per job) their raw text.
    """
    out: dict[str, object] = {}
    for name, res in dict(parsed or {}).items():
        try:
            out[name] = res.value
        except ValueError:  # a callable resource (strings, defaults): compare its text
            out[name] = getattr(res, "raw", None)
    return out


def test_workflow_profile_holds_only_shared_settings() -> None:
    keys = set(yaml.safe_load((REPO / "profiles/default/profile.yaml").read_text()))
    assert keys, "profiles/default/profile.yaml is empty"
    assert not keys & EXECUTOR_KEYS, f"executor-specific keys in the workflow profile: {keys & EXECUTOR_KEYS}"
    assert not any(k.startswith("slurm") for k in keys)


def test_slurm_profile_values_take_effect(in_repo: Path) -> None:
    args = effective("--profile", "profiles/slurm")
    assert args.executor == "slurm"
    assert args.jobs == 64  # independent trainings are submitted together, not one at a time
    assert args.latency_wait == 60
    assert "gpu" not in resources(args.resources), "the local gpu cap leaked into the SLURM run"
    default = resources(args.default_resources)
    assert default["slurm_account"] == "YOUR_ACCOUNT"
    assert default["mem_mb"] == 16000 and default["runtime"] == 120
    train = resources(args.set_resources["train"])
    assert train["slurm_partition"] == "YOUR_GPU_PARTITION" and train["mem_mb"] == 32000
    # shared settings still come from the workflow profile
    assert args.keep_going and args.rerun_incomplete and args.printshellcmds


def test_local_profile_values(in_repo: Path) -> None:
    args = effective("--profile", "profiles/local")
    assert args.executor in (None, "local")
    assert resources(args.resources) == {"gpu": 1}
    assert args.latency_wait == 10
    assert args.keep_going and args.rerun_incomplete


def test_command_line_wins_over_profiles(in_repo: Path) -> None:
    args = effective("--profile", "profiles/slurm", "--jobs", "3")
    assert args.jobs == 3


def test_slurm_profile_names_a_tracking_server(in_repo: Path) -> None:
    args = effective("--profile", "profiles/slurm")
    assert args.config and any(c.startswith("tracking_uri=http://") for c in args.config), args.config
    local = effective("--profile", "profiles/local")
    assert not local.config  # one machine: the SQLite default
