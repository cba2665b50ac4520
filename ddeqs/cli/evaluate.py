"""``ddeqs evaluate RUN_DIR [--split test]``: evaluate a trained run folder.

Loads RUN_DIR/config.yaml and RUN_DIR/model.pt, computes the split's metrics (classification:
accuracy, cross entropy; completion: Riesz MMD², W2 and OT over free particles and over the
full cloud, Chamfer; each with its standard error) and writes them to metrics.json[<split>].
Refuses when the dataset changed since training (its sha256 differs), unless --accept-new-data.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a trained run folder", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'ddeqs train'")
    p.add_argument("--split", choices=["test", "train"], default="test", help="split to evaluate (default: test)")
    p.add_argument("--device", help="override train.device (auto, cpu, cuda, cuda:N)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--accept-new-data", action="store_true",
                   help="the dataset changed since training: evaluate anyway and record its new sha256 "
                        "(default: refuse)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ddeqs.training import evaluate_run

    m = evaluate_run(args.run_dir, args.split, device=args.device, quiet=args.quiet, track=not args.no_track,
                     accept_new_data=args.accept_new_data)
    block = m[args.split]
    shown = ", ".join(f"{k} {v:.4g} ± {block.get(k + '_se', 0.0):.2g}" for k, v in block.items()
                      if not k.endswith("_se") and k != "n" and isinstance(v, (int, float)))
    print(f"{m.get('name')}: {args.split} ({block.get('n')} samples): {shown}", file=sys.stdout)
    return 0
