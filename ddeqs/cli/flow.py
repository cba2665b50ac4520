"""``ddeqs flow``: the App. D.9 MMD flow with a rotation target (Figures 16, 17); alias of ``ddeqs paper flow``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from ddeqs.cli.paper import add_flow_args, flow_handler

    p = subparsers.add_parser("flow", help="MMD flow towards a rotation of the particles (paper App. D.9)",
                              description=__doc__)
    add_flow_args(p)
    p.set_defaults(func=flow_handler)
