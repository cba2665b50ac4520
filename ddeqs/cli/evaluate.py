"""``ddeqs evaluate RUN_DIR [--split test] [--set train.device=cuda] [--no-tracking]``: evaluate a trained run folder.

Loads RUN_DIR/config.yaml and RUN_DIR/model.pt, computes the split's metrics (classification:
accuracy, cross entropy; completion: Riesz MMD², W2 and OT over free particles and over the
full cloud, Chamfer; each with its standard error) and writes them to metrics.json[<split>].
Refuses when the dataset changed since training (its sha256 differs), unless --accept-new-data.
The run's own config.yaml is used; --set changes only what evaluation may change:
train.device and tracking.enabled.
"""

from __future__ import annotations

import argparse
from typing import Any

from ddeqs.cli.common import add_no_tracking, add_set, deprecated_set, tracking_overrides

EVALUATE_KEYS = ("train.device", "tracking.enabled")


def evaluation_settings(overrides: list[str]) -> dict[str, Any]:
    """``{"device": str | None, "track": bool}`` from ``--set`` entries; ConfigError for any other key."""
    import yaml

    from ddeqs.config import ConfigError

    out: dict[str, Any] = {"device": None, "track": True}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in EVALUATE_KEYS:
            raise ConfigError(f"--set {item!r}: ddeqs evaluate uses the run's config.yaml and accepts only "
                              f"{', '.join(k + '=...' for k in EVALUATE_KEYS)}; retrain to change anything else")
        if key == "train.device":
            out["device"] = value.strip()
        else:
            flag = yaml.safe_load(value)
            if not isinstance(flag, bool):
                raise ConfigError(f"--set {item!r}: tracking.enabled must be true or false")
            out["track"] = flag
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a trained run folder", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'ddeqs train'")
    p.add_argument("--split", choices=["test", "train"], default="test", help="split to evaluate (default: test)")
    add_set(p, "run setting, repeatable; evaluation accepts train.device (auto, cpu, cuda, cuda:N) and "
               "tracking.enabled, e.g. --set train.device=cuda")
    deprecated_set(p, "--device", "train.device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_no_tracking(p)
    p.add_argument("--accept-new-data", action="store_true",
                   help="the dataset changed since training: evaluate anyway and record its new sha256 "
                        "(default: refuse)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ddeqs.training import evaluate_run

    settings = evaluation_settings(tracking_overrides(args))
    m = evaluate_run(args.run_dir, args.split, device=settings["device"], quiet=args.quiet, track=settings["track"],
                     accept_new_data=args.accept_new_data)
    block = m[args.split]
    shown = ", ".join(f"{k} {v:.4g} ± {block.get(k + '_se', 0.0):.2g}" for k, v in block.items()
                      if not k.endswith("_se") and k != "n" and isinstance(v, (int, float)))
    print(f"{m.get('name')}: {args.split} ({block.get('n')} samples): {shown}", file=sys.stdout)
    return 0
