"""``ddeqs flow``: deprecated old spelling of ``ddeqs paper flow`` (App. D.9 MMD flow, Figures 16, 17).

The one entry point for the flow figures is ``ddeqs paper flow``; this hidden command runs it and
says so.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from ddeqs.cli.paper import add_flow_args

    p = subparsers.add_parser("flow", description=__doc__)  # no help=: hidden from 'ddeqs --help'
    add_flow_args(p)
    p.set_defaults(func=_deprecated_flow)


def _deprecated_flow(args: argparse.Namespace) -> int:
    from ddeqs.cli.paper import flow_handler

    print("ddeqs: 'ddeqs flow' is deprecated; use 'ddeqs paper flow'", file=sys.stderr)
    return flow_handler(args)
