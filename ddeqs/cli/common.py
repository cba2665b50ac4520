"""The options every ``ddeqs`` command spells the same way, and the hidden deprecated old spellings.

* ``--set KEY=VALUE`` (repeatable): a run setting, a key of :class:`ddeqs.config.ExperimentConfig`
  (``train.device``, ``solver.momentum``, ...); ``--params FILE`` the YAML they override;
* ``--out PATH``: where the command writes its result (a run folder, a JSON file, a figure folder);
* ``--no-tracking``: do not log to MLflow (same as ``--set tracking.enabled=false``);
* ``--dataset NAME``: the dataset, spelled as in ``data.dataset``.

An old spelling (e.g. ``--json``, ``--no-track``, ``--device``) still works, hidden from ``--help``,
and prints one line naming its replacement.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_set(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--set KEY=VALUE`` into ``args.overrides`` (a list, in the order given)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=help or "run setting (config override), repeatable, e.g. --set solver.iters=50")


def add_no_tracking(p: argparse.ArgumentParser) -> None:
    """``--no-tracking`` into ``args.no_tracking`` (old spelling ``--no-track``)."""
    p.add_argument("--no-tracking", dest="no_tracking", action="store_true",
                   help="do not log to MLflow (same as --set tracking.enabled=false)")
    p.add_argument("--no-track", dest="no_tracking", action=Deprecated, nargs=0, const=True, new="--no-tracking",
                   help=argparse.SUPPRESS)


def tracking_overrides(args: argparse.Namespace) -> list[str]:
    """``args.overrides`` plus ``tracking.enabled=false`` when ``--no-tracking`` was given."""
    return [*args.overrides, *(["tracking.enabled=false"] if args.no_tracking else [])]


class Deprecated(argparse.Action):
    """A hidden old spelling: stores like the new option (``nargs=0``: ``const``) and says which one to use."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"ddeqs: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(ns, self.dest, self.const if self.nargs == 0 else values)


class DeprecatedSet(argparse.Action):
    """A hidden old option for one run setting: appends ``KEY=VALUE`` to ``args.overrides`` (flag: ``=true``)."""

    def __init__(self, option_strings: list[str], dest: str, key: str, **kw: Any) -> None:
        super().__init__(option_strings, "overrides", **kw)
        self.key = key

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        value = "true" if self.nargs == 0 else values
        print(f"ddeqs: {option_string} is deprecated; use --set {self.key}={value}", file=sys.stderr)
        setattr(ns, "overrides", [*(getattr(ns, "overrides", None) or []), f"{self.key}={value}"])


def deprecated_set(p: argparse.ArgumentParser, option: str, key: str, flag: bool = False) -> None:
    """Hidden ``option`` [VALUE] meaning ``--set key=VALUE`` (``flag``: no value, ``key=true``)."""
    p.add_argument(option, action=DeprecatedSet, key=key, nargs=0 if flag else None, help=argparse.SUPPRESS)
