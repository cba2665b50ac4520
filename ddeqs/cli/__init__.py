"""The ``ddeqs`` command line.

Each sub-command lives in its own module ``ddeqs/cli/<name>.py`` exposing
``register(subparsers)``; that function adds a parser whose ``func`` attribute
handles the parsed arguments and returns an exit code. Keep module top levels
light (import torch inside handlers) so ``ddeqs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ddeqs import __version__

# order = order in --help
COMMAND_MODULES = ["data", "info", "train", "evaluate", "bench", "paper", "flow"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddeqs",
        description="Distributional Deep Equilibrium Models: data, training, evaluation, benchmarks and paper artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"ddeqs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ddeqs.cli.{name}")
        except ModuleNotFoundError as err:  # a command module not written yet
            if err.name == f"ddeqs.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ddeqs.config import ConfigError
    from ddeqs.errors import DDEQError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"ddeqs: {err}", file=sys.stderr)
        return 2
    except DDEQError as err:
        print(f"ddeqs: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ddeqs: interrupted", file=sys.stderr)
        return 130
