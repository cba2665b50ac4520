"""``ddeqs paper tables|figures|report|claims|flow|all``: regenerate the paper's tables and figures from run
folders, and check the paper's claims on them."""

from __future__ import annotations

import argparse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="results/paper/runs",
                   help="folder of run folders, results/<profile>/runs (default: results/paper/runs); "
                        "a missing or empty folder is an error")
    p.add_argument("--config", default=None, action="append",
                   help="pipeline YAML the runs were made with (e.g. params/smoke.yaml; repeat to merge several, "
                        "as Snakemake merges --configfile): its profile, roles and grid values (a table column "
                        "or figure point per configured value); flags below win")
    p.add_argument("--profile", default=None, help="configuration that produced the runs: paper or smoke (default: paper); another name needs --roles")
    p.add_argument("--roles", default=None, help="role=dataset pairs, e.g. mnist=digits,modelnet=shapes "
                                                 "(default: from the profile)")
    p.add_argument("--strict", action="store_true", help="a missing run is an error instead of a NaN cell / skipped figure")
    p.add_argument("--force", action="store_true",
                   help="replace existing tables even when the new ones have fewer filled cells")


def _tables_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables-out", "--out", dest="tables_out", default="results/paper/tables", help="output folder for tables")
    p.add_argument("--summary", default="results/paper/summary.json", help="flat metrics JSON for 'dvc metrics show'")
    p.add_argument("--only-tables", dest="only_tables", default=None, help="comma-separated subset, e.g. table1,table6")


def _figures_args(p: argparse.ArgumentParser, out_flag: bool = True) -> None:
    names = ["--figures-out", "--out"] if out_flag else ["--figures-out"]
    p.add_argument(*names, dest="figures_out", default="results/paper/figures", help="output folder for figures")
    p.add_argument("--only", default=None, help="comma-separated subset, e.g. fig04,fig16")
    p.add_argument("--flow-particles", type=int, default=100, help="particles of the Figure 16/17 flow")
    p.add_argument("--flow-iters", type=int, default=2000, help="iterations of the Figure 16/17 flow (paper: 2000)")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", default="results/paper/README.md", help="report path")
    p.add_argument("--mlflow-ui", default=None, help="MLflow UI address for run links, e.g. http://127.0.0.1:5000")
    p.add_argument("--claims", default="results/claims.json",
                   help="claims JSON of 'ddeqs paper claims' summarised and linked in the report")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("paper", help="regenerate the paper's tables, figures and results/<profile>/README.md",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="paper_command", metavar="WHAT", required=True)
    p = sub.add_parser("tables", help="Tables 1-6 and App. D.5 as CSV, Markdown, LaTeX + results/<profile>/summary.json")
    _common(p)
    _tables_args(p)
    p.set_defaults(func=_tables)
    p = sub.add_parser("figures", help="Figures 1, 4, 5, 7-17 as PNG and PDF")
    _common(p)
    _figures_args(p)
    p.set_defaults(func=_figures)
    p = sub.add_parser("report", help="results/<profile>/README.md: every table and figure next to the paper's values")
    _common(p)
    p.add_argument("--tables-out", dest="tables_out", default="results/paper/tables")
    p.add_argument("--figures-out", dest="figures_out", default="results/paper/figures")
    p.add_argument("--summary", default="results/paper/summary.json")
    _report_args(p)
    p.set_defaults(func=_report)
    p = sub.add_parser("all", help="tables, figures and report in one go")
    _common(p)
    _tables_args(p)
    _figures_args(p, out_flag=False)
    _report_args(p)
    p.set_defaults(func=_all)
    p = sub.add_parser("claims", help="check every claim of the paper on the runs: results/claims.md, .json "
                                      "and a one-screen summary",
                       description="Check each claim of the paper (tables, figures, text) on the reproduced numbers "
                                   "with a margin of 2 standard errors; verdict: reproduced / not reproduced / not "
                                   "measurable (missing runs, or too few samples to decide). Writes a Markdown table "
                                   "and a JSON file and prints a one-screen summary. With --summary, only prints the "
                                   "summary of an existing JSON file.")
    _common(p)
    _claims_args(p)
    p.set_defaults(func=_claims)
    p = sub.add_parser("flow", help="App. D.9 MMD flow with a rotation target (Figures 16, 17), no training")
    add_flow_args(p)
    p.set_defaults(func=flow_handler)


def _claims_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--md", default="results/claims.md", help="Markdown table of the claims (default: results/claims.md)")
    p.add_argument("--json", default="results/claims.json", help="claims as JSON (default: results/claims.json)")
    p.add_argument("--summary", action="store_true",
                   help="only print the one-screen summary of the existing --json file (nothing is computed)")
    p.add_argument("--only-claims", dest="only_claims", default=None,
                   help="comma-separated claim ids, e.g. cls-competitive,cpl-w2-vs-pcn")
    p.add_argument("--flow-particles", type=int, default=100, help="particles of the Figure 16/17 flow check")
    p.add_argument("--flow-iters", type=int, default=2000, help="iterations of the Figure 16/17 flow check (paper: 2000)")
    p.add_argument("--flow-seeds", type=int, default=3, help="seeds of the Figure 16/17 flow check (each must pass)")


def add_flow_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--order", type=int, default=5, help="rotation by 2π/ORDER (paper: 5 and 8)")
    p.add_argument("--particles", type=int, default=100)
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/flow", help="folder for flow-<order>.npz/.png/.pdf")


def flow_handler(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib.pyplot as plt

    from ddeqs.paper.figures.flowfig import flow_figure
    from ddeqs.paper.figures.style import RC, save
    from ddeqs.paper.flow import invariance_ratio, rotation_flow, save_flow

    snaps = tuple(s for s in (0, 10, 50, 200, 1000, 2000) if s < args.iters) + (args.iters,)
    res = rotation_flow(args.order, n_particles=args.particles, iters=args.iters, seed=args.seed, snapshots=snaps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_flow(res, str(out / f"flow-{args.order}.npz"))
    with plt.rc_context(RC):
        paths = save(flow_figure(res), out, f"flow-{args.order}")
    print(f"MMD²(Z, T#Z): {res.mmd2[0]:.4g} -> {res.mmd2[-1]:.3g} (ratio {invariance_ratio(res):.2e}); "
          f"wrote {out / f'flow-{args.order}.npz'}, {', '.join(map(str, paths))}")
    return 0


# Figures drawn from the MMD flow alone (App. D.9): they read no run folder.
RUNLESS_FIGURES = frozenset({"fig16", "fig17"})


def _setup(args: argparse.Namespace, need_runs: bool = True):
    from ddeqs.paper.runs import RunStore, make_context

    from ddeqs.errors import DataError

    ctx = make_context(args.profile, args.roles, args.config)
    store = RunStore(args.runs, strict=args.strict, ctx=ctx)
    if not need_runs:  # e.g. the flow figures, which Snakemake may start before any training
        return store, ctx
    if not store.root.is_dir():
        raise DataError(f"runs folder {store.root} does not exist; pass --runs results/<profile>/runs "
                        f"(e.g. results/{ctx.profile}/runs)")
    if not store.names():
        raise DataError(f"runs folder {store.root} has no run folder with a metrics.json; train first "
                        f"(snakemake all) or pass the right --runs")
    return store, ctx


def _guard_summary(tables, args) -> None:
    """Refuse to replace tables whose summary has more filled cells than the new one (unless --force)."""
    import json
    from pathlib import Path

    from ddeqs.errors import DataError
    from ddeqs.paper.tables import summary

    path = Path(args.summary)
    if getattr(args, "force", False) or not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return  # unreadable: nothing worth keeping
    names = {t.name for t in tables}
    old_filled = {k for k in old if k.split("/", 1)[0] in names}
    new_filled = set(summary(tables))
    lost = sorted(old_filled - new_filled)
    if lost:
        raise DataError(
            f"{path} has {len(old_filled)} filled cells of these tables, the new tables only {len(new_filled)} "
            f"({len(lost)} would become missing, e.g. {', '.join(lost[:3])}); nothing was written. Check --runs "
            f"and --profile, or pass --force to replace them"
        )


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _do_tables(store, ctx, args):
    from ddeqs.paper.tables import build_tables, write_tables

    tables = build_tables(store, ctx, _split(getattr(args, "only_tables", None)))
    _guard_summary(tables, args)
    write_tables(tables, args.tables_out, ctx, summary_path=args.summary)
    n_cells = sum(len(t.cells) for t in tables)
    n_missing = sum(c.is_missing for t in tables for c in t.cells)
    print(f"wrote {len(tables)} tables ({n_cells - n_missing}/{n_cells} cells reproduced) to {args.tables_out}, "
          f"summary {args.summary}")
    if n_missing:
        print(f"missing runs: {', '.join(dict.fromkeys(m for t in tables for m in t.missing_runs))}")
    return tables


def _do_figures(store, ctx, args):
    from ddeqs.paper.figures import FlowOptions, make_figures

    rep = make_figures(store, ctx, args.figures_out, _split(args.only),
                       FlowOptions(args.flow_particles, args.flow_iters), strict=args.strict)
    print(f"wrote {len(rep.written)} figures to {args.figures_out}")
    for name, why in rep.skipped.items():
        print(f"skipped {name}: {why}")
    return rep


def _tables(args: argparse.Namespace) -> int:
    store, ctx = _setup(args)
    _do_tables(store, ctx, args)
    return 0


def _figures(args: argparse.Namespace) -> int:
    only = _split(args.only)
    store, ctx = _setup(args, need_runs=not only or not set(only) <= RUNLESS_FIGURES)
    _do_figures(store, ctx, args)
    return 0


def _report(args: argparse.Namespace, tables=None, figures=None, store=None, ctx=None) -> int:
    from ddeqs.paper.report import build_report
    from ddeqs.paper.tables import build_tables

    if store is None:
        store, ctx = _setup(args)
    if tables is None:
        tables = build_tables(store, ctx)
    build_report(store, ctx, tables, figures, args.report, args.figures_out, args.tables_out, args.mlflow_ui,
                 args.claims)
    print(f"wrote {args.report}")
    return 0


def _claims(args: argparse.Namespace) -> int:
    from ddeqs.paper.claims import evaluate_claims, flow_ratio_fn, read_claims, summary_text, write_claims

    if args.summary:
        print(summary_text(read_claims(args.json)))
        return 0
    if args.flow_seeds < 1:
        from ddeqs.errors import DDEQError

        raise DDEQError(f"--flow-seeds must be >= 1, got {args.flow_seeds}")
    store, ctx = _setup(args)
    results = evaluate_claims(store, ctx, flow_ratio_fn(args.flow_particles, args.flow_iters),
                              tuple(range(args.flow_seeds)), _split(args.only_claims))
    from ddeqs.paper.learning import check_learning

    data = write_claims(results, ctx, args.runs, args.md, args.json, check_learning(store))
    print(summary_text(data))
    print(f"wrote {args.md}, {args.json}")
    return 0


def _all(args: argparse.Namespace) -> int:
    store, ctx = _setup(args)
    tables = _do_tables(store, ctx, args)
    figures = _do_figures(store, ctx, args)
    return _report(args, tables, figures, store, ctx)
