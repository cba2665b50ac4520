"""``ddeqs data``: fetch raw datasets, prepare processed splits, show information.

Every step is idempotent: rerunning on complete outputs does nothing and says so.
"""

from __future__ import annotations

import argparse

from ddeqs.data.registry import DATASETS, PROCESSED_ROOT, RAW_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    names = list(DATASETS)
    embedded = " and ".join(n for n, s in DATASETS.items() if s.embedded)
    p = subparsers.add_parser("data", help="download, prepare and inspect datasets", description=__doc__)
    sub = p.add_subparsers(dest="data_command", metavar="STEP")

    f = sub.add_parser("fetch", help=f"download raw files (no-op for the embedded {embedded})")
    f.add_argument("names", nargs="+", choices=names, metavar="NAME", help=f"one or more of {', '.join(names)}")
    f.add_argument("--raw-root", default=RAW_ROOT, help=f"folder for downloads (default: {RAW_ROOT})")
    f.add_argument("--source", choices=["auto", "kaggle", "idx"], default="auto",
                   help="mnist-pc: placed CSVs / Kaggle API / rebuild from MNIST IDX files (default: auto)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=fetch)

    r = sub.add_parser("prepare", help="normalize / voxelize into <root>/<name>/{train,test}.npz")
    r.add_argument("names", nargs="+", choices=names, metavar="NAME", help=f"one or more of {', '.join(names)}")
    r.add_argument("--raw-root", default=RAW_ROOT, help=f"folder with the raw files (default: {RAW_ROOT})")
    r.add_argument("--root", default=PROCESSED_ROOT, help=f"output folder (default: {PROCESSED_ROOT})")
    r.add_argument("--max-points", type=positive_int, default=800, help="3-D: at most this many points per cloud (default 800)")
    r.add_argument("--min-points", type=positive_int, default=500, help="3-D: voxel-size search aims at least this many (default 500)")
    r.add_argument("--workers", type=positive_int, default=1, help="3-D: processes for voxelization (default 1)")
    r.add_argument("--per-class-train", type=positive_int, default=40, help="shapes: training meshes per class (default 40)")
    r.add_argument("--per-class-test", type=positive_int, default=25, help="shapes: test meshes per class (default 25)")
    r.add_argument("--force", action="store_true", help="rebuild even when the outputs are complete")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=prepare)

    i = sub.add_parser("info", help="counts and statistics of a prepared split")
    i.add_argument("path", help="a split (<root>/<name>/train.npz or without suffix) or a dataset folder")
    i.set_defaults(func=info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--per-class-train 0`` would prepare an empty split)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def fetch(args: argparse.Namespace) -> int:
    from ddeqs.data.registry import fetch_dataset

    for name in args.names:
        print(fetch_dataset(name, args.raw_root, progress=not args.quiet, source=args.source))
    return 0


def prepare(args: argparse.Namespace) -> int:
    from ddeqs.data.registry import prepare_dataset

    for name in args.names:
        for msg in prepare_dataset(name, args.raw_root, args.root, max_points=args.max_points,
                                   min_points=args.min_points, workers=args.workers,
                                   per_class_train=args.per_class_train, per_class_test=args.per_class_test,
                                   force=args.force, progress=not args.quiet):
            print(f"{name}: {msg}")
    return 0


def info(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from ddeqs.data.registry import SPLITS
    from ddeqs.data.store import load_split
    from ddeqs.errors import DataError

    path = Path(args.path)
    if path.is_dir():
        paths = [path / s for s in SPLITS if (path / f"{s}.npz").is_file()]
        if not paths:
            raise DataError(f"{path}: no train.npz or test.npz inside; run 'ddeqs data prepare NAME'")
    else:
        paths = [path.with_suffix("") if path.suffix in (".npz", ".json") else path]
    for p in paths:
        s = load_split(p)
        lengths = s.lengths
        print(f"{p.with_suffix('.npz')}  (sha256 {s.meta.get('sha256', '?')[:16]}..., verified)")
        print(f"  clouds: {len(s)}   dim: {s.dim}   classes: {len(s.class_names)}   "
              f"skipped at preparation: {s.meta.get('n_skipped', 0)}")
        print(f"  points per cloud: min {lengths.min()}  median {np.median(lengths):g}  max {lengths.max()}  "
              f"total {lengths.sum()}")
        print(f"  coordinates: mean {np.array2string(s.points.mean(0), precision=3)}  "
              f"std {np.array2string(s.points.std(0), precision=3)}")
        counts = np.bincount(s.labels, minlength=len(s.class_names))
        print("  per class: " + ", ".join(f"{c} {n}" for c, n in zip(s.class_names, counts)))
    return 0
