"""``ddeqs info model``: parameter counts of a model (F, head, coupling, total) next to the paper's."""

from __future__ import annotations

import argparse

from ddeqs.data.registry import DATASETS, paper_counterpart

# The paper's figures as it prints them (value, text): §4.2 "1.17M parameters for the DDEQ" (F, three
# cross layers), footnote 5 "776k" (F, one cross layer), heads "1.3k" / "5k", coupling "16.6k", Table 1
# "1.2M" (ModelNet40-s classifier) and the baselines' sizes. The paper prints no completion total.
PAPER_COUNTS: dict[tuple[str, str, int], dict[str, tuple[int, str]]] = {
    ("ddeq", "classification", 2): {"F": (776_000, "776k"), "head": (1_300, "1.3k")},
    ("ddeq", "classification", 3): {"F": (1_170_000, "1.17M"), "head": (5_000, "5k"), "total": (1_200_000, "1.2M")},
    ("ddeq", "completion", 2): {"F": (1_170_000, "1.17M"), "coupling": (16_600, "16.6k")},
    ("ddeq", "completion", 3): {"F": (1_170_000, "1.17M"), "coupling": (16_600, "16.6k")},
    ("pointnet", "classification", 3): {"total": (1_600_000, "1.6M")},
    ("point-transformer", "classification", 3): {"total": (3_500_000, "3.5M")},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="show information about models", description=__doc__)
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    m = sub.add_parser("model", help="parameter counts of a model", description=__doc__)
    m.add_argument("--params", metavar="FILE", help="run configuration YAML (default: built-in defaults)")
    m.add_argument("--task", choices=["classification", "completion"], help="overrides the config's task")
    m.add_argument("--dataset", choices=list(DATASETS), help="sets data.dataset")
    m.add_argument("--model", choices=["ddeq", "pointnet", "point-transformer", "pcn"], help="sets model.name")
    m.add_argument("--classes", type=int, help="number of classes (default: those of the paper dataset the dataset "
                   "stands for: 10 for 2-D datasets, 40 for 3-D)")
    m.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set model.pushforward=true)")
    m.set_defaults(func=model_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _resolve(args: argparse.Namespace):  # -> (cfg, note)
    from ddeqs.config import load_config, load_yaml

    overrides = list(args.overrides)
    if args.task:
        overrides.append(f"task={args.task}")
    if args.dataset:
        overrides.append(f"data.dataset={args.dataset}")
    if args.model:
        overrides.append(f"model.name={args.model}")
    cfg = load_config(args.params, overrides)
    note = ""
    explicit = any(o.split("=", 1)[0].strip() == "model.cross_layers" for o in args.overrides)
    if args.params:
        explicit = explicit or "cross_layers" in (load_yaml(args.params).get("model") or {})
    paper = paper_counterpart(cfg.data.dataset)
    if (not explicit and cfg.model.name == "ddeq" and cfg.task == "classification"
            and paper.cls_cross_layers != cfg.model.cross_layers):
        cfg = load_config(args.params, overrides + [f"model.cross_layers={paper.cls_cross_layers}"])
        note = (f"model.cross_layers={paper.cls_cross_layers} (paper setting for {paper.label} classification; "
                "override with --set)")
    return cfg, note


def _paper_architecture(cfg) -> bool:  # type: ignore[no-untyped-def]
    """True when the DDEQ fields are the paper's, so the paper column is comparable."""
    m = cfg.model
    if m.name != "ddeq":
        return True
    cross = paper_counterpart(cfg.data.dataset).cls_cross_layers if cfg.task == "classification" else 3
    return (m.z_dim, m.bilinear_dim, m.heads, m.ffn_dim, m.self_layers, m.cross_layers, m.pushforward,
            m.coupling_width) == (128, 16, 32, 512, 1, cross, False, 64)


def model_info(args: argparse.Namespace) -> int:
    from ddeqs.config import dataset_dim
    from ddeqs.models import build_model, count_parameters

    cfg, note = _resolve(args)
    d = dataset_dim(cfg.data.dataset)
    classes = args.classes or paper_counterpart(cfg.data.dataset).num_classes
    name = cfg.model.name
    model = build_model(cfg, d, classes)
    if name == "ddeq":
        from ddeqs.models.ddeq import parameter_breakdown

        counts = parameter_breakdown(model)
    else:
        counts = {"total": count_parameters(model)}
    paper = PAPER_COUNTS.get((name, cfg.task, d), {}) if _paper_architecture(cfg) else {}
    print(f"model {name}, task {cfg.task}, dataset {cfg.data.dataset} (d={d}, classes={classes})")
    if note:
        print(f"note: {note}")
    print(f"{'part':<10} {'parameters':>12} {'paper':>12} {'diff':>8}")
    for part, n in counts.items():
        ref, text = paper.get(part, (0, ""))
        ref_s = f"{text:>12}"
        diff = f"{100.0 * (n - ref) / ref:+7.2f}%" if ref else ""
        print(f"{part:<10} {n:>12,} {ref_s} {diff:>8}")
    return 0
