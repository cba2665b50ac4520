#!/usr/bin/env python3
"""Put a profile's results into the DVC cache, or restore them in another clone.

    python scripts/dvc_snapshot.py save smoke      # = make dvc-snapshot PROFILE=smoke
    python scripts/dvc_snapshot.py restore smoke   # = make dvc-restore PROFILE=smoke

The `pipeline` stage of dvc.yaml keeps its outputs out of the DVC cache (`cache: false`), so that
`dvc exp run` can never delete or roll back a result (docs/pipeline.md, "DVC"). `save` copies what
a clone needs to have nothing to recompute into ``snapshots/<profile>/`` (same relative layout):

* ``results/<profile>/`` (runs, params, tables, figures, plots, logs, benchmarks, ...),
* ``results/mlflow/`` (the SQLite store and its artifacts; the store holds every profile),
* ``data/processed/`` and the ``data/raw/.fetched-*`` markers,

and runs ``dvc add snapshots/<profile>``: a separate path, so the pipeline stage's outputs stay
uncached. It only reads the workspace; it replaces nothing but the previous snapshot copy.

`restore` (``dvc pull snapshots/<profile>.dvc`` first if the copy is missing) copies the snapshot
back. It never overwrites: a file that exists with other content stops it before anything is
written. Files get new modification times (git clone, dvc pull), so Snakemake would retrain
everything; `restore` then marks the profile's DAG up to date with ``snakemake all --touch`` and
re-roots the MLflow store's artifact paths at this clone. ``snakemake -n all`` then has nothing to do.

Hand-written (stdlib only) because it is a few file copies around two commands; DVC itself has
no "copy this output elsewhere" step that leaves the stage outputs uncached.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

CONFIGS = {"paper": "params/config.yaml", "smoke": "params/smoke.yaml"}
SKIP = shutil.ignore_patterns(".work", "*.part", ".ddeqs.lock", ".ddeqs.lock.json", "__pycache__")


def _parts(profile: str) -> list[Path]:
    """Relative paths (folders or files) a snapshot of ``profile`` holds, those that exist."""
    parts = [Path("results") / profile, Path("results/mlflow"), Path("data/processed")]
    parts += sorted(Path("data/raw").glob(".fetched-*"))
    return [p for p in parts if p.exists()]


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode:
        sys.exit(f"error: `{' '.join(cmd)}` failed (exit {proc.returncode})")


def _tool(name: str) -> str:
    """``name`` next to this Python (a venv's bin folder) or on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def save(profile: str) -> None:
    root = Path("results") / profile
    if not root.is_dir() or not any(root.iterdir()):
        sys.exit(f"error: {root}/ is missing or empty: run the {profile} configuration first "
                 f"(snakemake all --profile profiles/local --configfile {CONFIGS[profile]})")
    snap = Path("snapshots") / profile
    tmp = Path("snapshots") / f".{profile}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for part in _parts(profile):
        dest = tmp / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        if part.is_dir():
            shutil.copytree(part, dest, ignore=SKIP)
        else:
            shutil.copy2(part, dest)
    shutil.rmtree(snap, ignore_errors=True)  # only the previous copy; its content is in the DVC cache
    tmp.rename(snap)
    _run([_tool("dvc"), "add", str(snap)])
    print(f"\nSnapshot of {root}/ in the DVC cache. Publish it:\n"
          f"  git add snapshots/{profile}.dvc snapshots/.gitignore && git commit -m 'results snapshot: {profile}'"
          f" && dvc push\nIn another clone: dvc pull && make dvc-restore PROFILE={profile}")


def restore(profile: str, configfile: str) -> None:
    snap = Path("snapshots") / profile
    if not snap.is_dir():
        _run([_tool("dvc"), "pull", f"{snap}.dvc"])
    files = [f for f in snap.rglob("*") if f.is_file()]
    if not files:
        sys.exit(f"error: {snap}/ is empty: was `make dvc-snapshot PROFILE={profile}` committed and pushed?")
    conflicts = [f.relative_to(snap) for f in files
                 if (t := f.relative_to(snap)).exists() and not filecmp.cmp(f, t, shallow=False)]
    if conflicts:
        listed = "\n  ".join(str(c) for c in conflicts[:10])
        sys.exit(f"error: {len(conflicts)} file(s) exist here with other content; nothing was restored "
                 f"(restore into a fresh clone, or move them away first):\n  {listed}")
    copied = 0
    for f in files:
        target = f.relative_to(snap)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
            copied += 1
    print(f"restored {copied} file(s) from {snap}/ ({len(files) - copied} already identical)")
    db = Path("results/mlflow/mlflow.db")
    if db.is_file():
        try:
            from ddeqs.tracking import relocate_artifacts
        except ImportError:  # ddeqs not importable: the first training re-roots the store anyway
            print("note: ddeqs not importable; the MLflow store's artifact paths are re-rooted by the next training")
        else:
            relocate_artifacts(db)
    # New mtimes from git clone and dvc pull: mark every existing output of the DAG up to date
    _run([_tool("snakemake"), "all", "--profile", "profiles/local", "--configfile", configfile,
          "--cores", "1", "--touch", "--quiet"])
    print(f"\nDone: `snakemake -n all --profile profiles/local --configfile {configfile}` has nothing to do.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("profile", choices=sorted(CONFIGS))
    parser.add_argument("--configfile", help="pipeline configuration of the profile (default: params/<...>.yaml "
                        "as for the profile: paper params/config.yaml, smoke params/smoke.yaml)")
    args = parser.parse_args(argv)
    if not Path("dvc.yaml").is_file():
        sys.exit("error: run from the repository root (no dvc.yaml here)")
    if args.action == "save":
        save(args.profile)
    else:
        restore(args.profile, args.configfile or CONFIGS[args.profile])


if __name__ == "__main__":
    main()
