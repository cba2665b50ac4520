"""The ``ddeqs`` command line.

Each sub-command lives in its own module ``ddeqs/cli/<name>.py`` exposing
``register(subparsers)``; that function adds a parser whose ``func`` attribute
handles the parsed arguments and returns an exit code. Keep module top levels
light (import torch inside handlers) so ``ddeqs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
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
        importlib.import_module(f"ddeqs.cli.{name}").register(sub)
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
    except OSError as err:  # read-only folder, a file where a folder should be, disk full, ...
        print(f"ddeqs: error: {os_error_message(err)}", file=sys.stderr)
        return 1


_OS_ADVICE = {
    errno.EACCES: "make it writable (chmod/chown) or pass another path",
    errno.EPERM: "make it writable (chmod/chown) or pass another path",
    errno.EROFS: "the file system is read-only: pass a path on a writable one",
    errno.ENOSPC: "the disk is full: free space (e.g. old checkpoints, .work folders) and run the command again; "
                  "finished results are kept and interrupted trainings resume",
    errno.EDQUOT: "the disk quota is exhausted: free space and run the command again",
    errno.ENOTDIR: "a file stands where a folder is needed: move it away or pass another path",
    errno.EISDIR: "a folder stands where a file is needed: pass a file path",
    errno.EEXIST: "a file of that name is in the way: move it away or pass another path",
    errno.ENOENT: "check the path",
}


def os_error_message(err: OSError) -> str:
    """One line for an OS error: the path, what went wrong and what to do."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None) or "(no path)"
    advice = _OS_ADVICE.get(err.errno, "check the path and the disk")
    return f"{where}: {err.strerror or err}; {advice}"
