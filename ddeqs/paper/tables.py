"""Tables 1-6 and the App. D.5 comparison, computed from run folders, side by side with the paper.

Each table is a list of tidy :class:`Cell` rows (one per reproduced number) written as CSV
(columns ``table, row, column, value, se, paper, unit, runs, device``), Markdown and LaTeX.
A cell whose run folder is missing has value NaN and is noted under the Markdown table.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ddeqs.config import flatten
from ddeqs.paper import values as V
from ddeqs.paper.runs import MODEL_LABELS, ROLE_LABELS, PaperContext, Run, RunStore, ablation_name, run_name
from ddeqs.plan import NOT_TRAINING
from ddeqs.record import format_value, parse_name

NAN = float("nan")
NOT_REPORTED = "not reported"  # paper column of a cell the paper leaves empty (paper value NaN in the CSV)
CSV_COLUMNS = ["table", "row", "column", "value", "se", "paper", "unit", "runs", "device"]


@dataclass
class Cell:
    """One reproduced number next to its published value. ``se``: standard error (NaN if undefined)."""

    table: str
    row: str
    column: str
    value: float
    se: float
    paper: float
    unit: str
    key: str
    runs: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    device: str = ""
    fmt: str = "{:.3g}"

    @property
    def is_missing(self) -> bool:
        return not math.isfinite(self.value)

    def csv_row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "row": self.row,
            "column": self.column,
            "value": _num(self.value),
            "se": _num(self.se),
            "paper": _num(self.paper),
            "unit": self.unit,
            "runs": ";".join(self.runs + self.missing),
            "device": self.device,
        }


@dataclass
class Table:
    """A paper table: ordered row and column labels, its cells, caption and notes."""

    name: str
    title: str
    rows: list[str]
    columns: list[str]
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)

    def cell(self, row: str, column: str) -> Cell | None:
        for c in self.cells:
            if c.row == row and c.column == column:
                return c
        return None

    @property
    def missing_runs(self) -> list[str]:
        return list(dict.fromkeys(m for c in self.cells for m in c.missing))


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    return repr(float(x))


def fmt_seconds(s: float) -> str:
    """Seconds -> the paper's runtime style: ``'3h01m'``, ``'13m05s'``, ``'4.2 s'``."""
    if not math.isfinite(s):
        return "—"
    if s < 60:
        return f"{s:.3g} s"
    m_total = int(round(s / 60)) if s >= 3600 else None
    if m_total is not None:
        return f"{m_total // 60}h{m_total % 60:02d}m"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m{sec:02d}s"


def _format(cell: Cell, x: float) -> str:
    if not math.isfinite(x):
        return "—"
    if cell.fmt == "duration":
        return fmt_seconds(x)
    return cell.fmt.format(x)


def _cell_text(cell: Cell | None, pm: str = " ± ") -> tuple[str, str]:
    """(reproduced text, paper text) of a cell."""
    if cell is None:
        return "", ""
    if cell.is_missing:
        ours = "— (missing)"
    else:
        ours = _format(cell, cell.value)
        if math.isfinite(cell.se) and cell.fmt != "duration":
            ours += pm + _format(cell, cell.se)
    paper = _format(cell, cell.paper) if math.isfinite(cell.paper) else NOT_REPORTED
    return ours, paper


# ---------------------------------------------------------------------------
# cell constructors

GRID_KEYS = {
    "noise": "data.noise",
    "iters": "solver.iters",
    "input_share": "data.input_share",
    "z_particles": "model.z_particles",
    "pushforward": "model.pushforward",
    "solver": "solver.kind",
}


def find_ablation(store: RunStore, main: str, grid: str, value: Any, fallback: bool = True) -> Run | None:
    """Ablation run ``<main>--<grid>-<value>`` (named by :func:`ddeqs.record.child_name`); else (``fallback``) the main run when its
    ``config_flat`` has that grid value (e.g. noise 5 %, 200 iterations) and every field the plan's grid sets
    for its children (``grids.<grid>.set``: a grid trained shorter than its main run never shows the main
    run as one of its points); else None (recorded missing)."""
    if store.peek(ablation_name(main, grid, value)) is not None:
        return store.get(ablation_name(main, grid, value))
    main_run = store.peek(main)
    if (fallback and main_run is not None and _config_matches(main_run, GRID_KEYS.get(grid, ""), value)
            and all(_config_matches(main_run, k, v) for k, v in _grid_set_fields(store, grid, main).items())):
        return store.get(main)
    return store.get(ablation_name(main, grid, value))


def _grid_set_fields(store: RunStore, grid: str, main: str) -> dict[str, Any]:
    """``{dotted key: value}`` of what the plan's grid sets on the children of ``main`` (``grids.<grid>.set`` and
    ``set_runs.<main>``; empty without a plan), less the fields that change what a run reports, not what it trains
    (:data:`ddeqs.plan.NOT_TRAINING`): the plan does not train a child that differs from its main run only in
    those, so the main run stands for it."""
    spec = store.ctx.plan_grids().get(grid) if store.ctx is not None else None
    fields = flatten(spec.child_fields(main) if spec is not None else {})
    return {k: v for k, v in fields.items() if k.split(".", 1)[1] not in NOT_TRAINING.get(k.split(".", 1)[0], ())}


def _config_matches(run: Run, key: str, value: Any) -> bool:
    flat = run.record.config_flat
    if key not in flat:
        return False
    have = flat[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(have, (int, float)):
        return math.isclose(float(have), float(value), rel_tol=1e-9, abs_tol=1e-12)
    return have == value


def metric_cell(
    table: str,
    row: str,
    column: str,
    run: Run | None,
    name: str,
    metric: str,
    paper: float,
    unit: str,
    key: str,
    scale: float = 1.0,
    fmt: str = "{:.3g}",
) -> Cell:
    """A cell holding ``scale * test[metric]`` (and its standard error) of ``run`` (missing if None)."""
    if run is None:
        return Cell(table, row, column, NAN, NAN, paper, unit, key, [], [name], "", fmt)
    if stale_free_metric(run, metric):  # never show a number under a meaning it does not have
        return Cell(table, row, column, NAN, NAN, paper, unit, key, [run.name], [], run.device, fmt)
    v, se, _ = run.test_metric(metric)
    return Cell(table, row, column, v * scale, se * scale, paper, unit, key, [run.name], [], run.device, fmt)


FREE_METRICS = ("w2_free", "ot_free")


def stale_free_metric(run: Run, metric: str) -> bool:
    """True when ``metric`` is a free-particle metric (``w2_free``/``ot_free``) of a run evaluated before
    these compared with the missing part of the target: its ``metrics.json`` has ``<metric>`` but not
    ``<metric>_target`` (then ``<metric>`` was against the whole target). Re-run ``ddeqs evaluate``."""
    test = run.record.test
    return metric in FREE_METRICS and metric in test and f"{metric}_target" not in test


def stale_note(cells: list[Cell], store: RunStore) -> list[str]:
    """A note naming the runs whose free-particle metrics predate the missing-part reference."""
    stale = sorted({r for c in cells if c.is_missing for r in c.runs
                    if (run := store.peek(r)) is not None and any(stale_free_metric(run, m) for m in FREE_METRICS)})
    if not stale:
        return []
    return ["Not shown (free-particle metrics evaluated against the whole target by an older version): " +
            ", ".join(f"`{r}`" for r in stale) + "; re-run `ddeqs evaluate results/runs/<run>`."]


def runtime_cell(table: str, row: str, column: str, run: Run | None, name: str, paper: float, key: str) -> Cell:
    """Measured median seconds per epoch (``metrics.json`` ``seconds_per_epoch``) and the device."""
    if run is None:
        return Cell(table, row, column, NAN, NAN, paper, "s/epoch", key, [], [name], "", "duration")
    return Cell(table, row, column, run.seconds_per_epoch, NAN, paper, "s/epoch", key, [run.name], [], run.device, "duration")


def _share_label(v: float) -> str:
    return f"{100 * v:g}%"


# ---------------------------------------------------------------------------
# the tables


def table1(store: RunStore, ctx: PaperContext) -> Table:
    """Table 1: top-1 test accuracy (%) of PointNet, PT and DDEQ on both classification roles."""
    models = ["pointnet", "pt", "ddeq"]
    rows = [f"{MODEL_LABELS[m]} ({V.TABLE1_SIZES[m]})" for m in models]
    cols = [ROLE_LABELS[r] for r in ("mnist", "modelnet")]
    cells, sizes = [], []
    for m, row in zip(models, rows):
        for role, col in zip(("mnist", "modelnet"), cols):
            name = run_name(role, "cls", m)
            run = store.get(name)
            cells.append(
                metric_cell("table1", row, col, run, name, "accuracy", V.TABLE1[role][m], "%",
                            f"table1/{role}/{m}/accuracy", scale=100.0, fmt="{:.1f}")
            )
            if run is not None and run.record.n_params is not None:
                sizes.append(f"{name}: {run.record.n_params:,} parameters")
    notes = ["Accuracy in percent ± standard error over test samples."]
    if sizes:
        notes.append("Measured sizes: " + "; ".join(sizes) + ".")
    return Table("table1", "Table 1: accuracies on point cloud classification", rows, cols, cells, notes)


def table2(store: RunStore, ctx: PaperContext) -> Table:
    """Table 2: W2 on MNIST-pc-partial vs the share of noisy training inputs (DDEQ: free particles vs
    the missing part of the target; PCN: all particles vs the target), one clean test set; an extra
    row gives the DDEQ free particles vs the whole target (the other reading, not in the paper)."""
    rows = ["W2 (DDEQ)", "W2 (PCN)", "W2 (DDEQ, free vs whole target)"]
    levels = ctx.grid_values("noise")
    cols = [_share_label(v) for v in levels]
    cells = []
    spec = (("ddeq", rows[0], "w2_free", V.TABLE2["ddeq"], "w2"), ("pcn", rows[1], "w2_full", V.TABLE2["pcn"], "w2"),
            ("ddeq", rows[2], "w2_free_target", {}, "w2_free_target"))
    for model, row, metric, paper, kname in spec:
        main = run_name("mnist", "cpl", model)
        for v, col in zip(levels, cols):
            run = find_ablation(store, main, "noise", v)
            name = run.name if run is not None else f"{main}--noise-{v:g}"
            cells.append(metric_cell("table2", row, col, run, name, metric, paper.get(v, V.NOT_REPORTED), "",
                                     f"table2/{model}/noise-{v:g}/{kname}", fmt="{:.2f}"))
    notes = ["Columns: share of training inputs' particles given Gaussian noise (data.noise, mode data.noise_mode "
             "of the runs; default: x + N(0, I)). Test inputs are clean at every level, so all columns are one test set.",
             "DDEQ: W2 between the free particles and the points the partial input lacks (the \"corresponding "
             "particles in the target\", App. D.8); PCN: all output particles vs the whole target.",
             "Last row (not in the paper): DDEQ free particles vs the whole target.",
             *stale_note(cells, store)]
    return Table("table2", "Table 2: W2 distances under noisy training data (MNIST-pc-partial)", rows, cols, cells, notes)


def table3(store: RunStore, ctx: PaperContext) -> Table:
    """Table 3: pushforward architecture vs full architecture (accuracy, cross entropy, MMD²)."""
    rows = ["pushforward", "full architecture"]
    spec = [  # (paper key, column label, role, task, metric, scale, unit, fmt)
        ("mnist_acc", "MNIST-pc acc.", "mnist", "cls", "accuracy", 100.0, "%", "{:.1f}"),
        ("mnist_ce", "MNIST-pc cross-entr.", "mnist", "cls", "cross_entropy", 1.0, "nats", "{:.3f}"),
        ("modelnet_acc", "ModelNet40-s acc.", "modelnet", "cls", "accuracy", 100.0, "%", "{:.1f}"),
        ("modelnet_ce", "ModelNet40-s cross-entr.", "modelnet", "cls", "cross_entropy", 1.0, "nats", "{:.3f}"),
        ("mnist_cpl_mmd2", "MNIST-pc-partial MMD²", "mnist", "cpl", "mmd2", 1.0, "", "{:.2g}"),
    ]
    cols = [s[1] for s in spec]
    cells = []
    for pkey, col, role, task, metric, scale, unit, fmt in spec:
        main = run_name(role, task, "ddeq")
        for i, row in enumerate(rows):
            if i == 0:
                run = store.ablation(main, "pushforward", True)
                name = f"{main}--pushforward-true"
            else:
                run, name = store.get(main), main
            short = "pushforward" if i == 0 else "full"
            cells.append(metric_cell("table3", row, col, run, name, metric, V.TABLE3[pkey][i], unit,
                                     f"table3/{short}/{role}-{task}/{metric}", scale=scale, fmt=fmt))
    notes = ["pushforward: bilinear layer without the 11ᵀZβ term and no self-encoder on Z (App. D.3).",
             "Cross entropy in nats; MMD² with the Riesz kernel, test set.",
             f"MNIST-pc acc.: the paper's table has this column but prints no value ({NOT_REPORTED})."]
    return Table("table3", "Table 3: pushforward vs full DDEQ architecture", rows, cols, cells, notes)


def table4(store: RunStore, ctx: PaperContext) -> Table:
    """Table 4: seconds per epoch vs inner iterations (step x iterations constant), plus PCN."""
    row = "Runtime (1 epoch)"
    levels = ctx.grid_values("iters")
    cols = [str(i) for i in levels] + ["PCN"]
    cells = []
    main = run_name("mnist", "cpl", "ddeq")
    for it, col in zip(levels, cols):
        run = find_ablation(store, main, "iters", it)
        name = run.name if run is not None else f"{main}--iters-{it}"
        cells.append(runtime_cell("table4", row, col, run, name, V.TABLE4.get(it, V.NOT_REPORTED),
                                  f"table4/iters-{it}/seconds_per_epoch"))
    pcn = run_name("mnist", "cpl", "pcn")
    cells.append(runtime_cell("table4", row, "PCN", store.get(pcn), pcn, V.TABLE4_PCN, "table4/pcn/seconds_per_epoch"))
    notes = [f"Columns: inner iterations of the DDEQ forward pass (MNIST-pc-partial). Paper: one {V.PAPER_DEVICE}.",
             _devices_note(cells)]
    return Table("table4", "Table 4: runtime per epoch vs number of inner iterations", [row], cols, cells, notes)


def table5(store: RunStore, ctx: PaperContext) -> Table:
    """Table 5: seconds per epoch vs share of input particles kept."""
    row = "Runtime (1 epoch)"
    levels = ctx.grid_values("input_share")
    cols = [_share_label(v) for v in levels]
    cells = []
    main = run_name("mnist", "cpl", "ddeq")
    for v, col in zip(levels, cols):
        run = find_ablation(store, main, "input_share", v)
        name = run.name if run is not None else f"{main}--input_share-{v:g}"
        cells.append(runtime_cell("table5", row, col, run, name, V.TABLE5.get(v, V.NOT_REPORTED),
                                  f"table5/input_share-{v:g}/seconds_per_epoch"))
    notes = [f"Columns: share of input particles kept (MNIST-pc-partial). Paper: one {V.PAPER_DEVICE}.",
             _devices_note(cells)]
    return Table("table5", "Table 5: runtime per epoch vs share of input particles", [row], cols, cells, notes)


def table6(store: RunStore, ctx: PaperContext) -> Table:
    """Table 6: OT distance (Euclidean cost) on ModelNet40-s-partial, ± standard error."""
    row = "OT distance"
    ddeq, pcn = run_name("modelnet", "cpl", "ddeq"), run_name("modelnet", "cpl", "pcn")
    spec = [("DDEQ free particles", ddeq, "ot_free", "ddeq_free", "table6/ddeq/ot_free"),
            ("DDEQ full point cloud", ddeq, "ot_full", "ddeq_full", "table6/ddeq/ot_full"),
            ("PCN", pcn, "ot_full", "pcn_full", "table6/pcn/ot_full"),
            ("DDEQ free vs whole target", ddeq, "ot_free_target", None, "table6/ddeq/ot_free_target")]
    cells = []
    for col, name, metric, pkey, key in spec:
        paper = V.TABLE6[pkey][0] if pkey else V.NOT_REPORTED
        c = metric_cell("table6", row, col, store.get(name), name, metric, paper, "", key, fmt="{:.3g}")
        cells.append(c)
    notes = ["OT = exact optimal transport cost with Euclidean ground cost, uniform weights (POT).",
             "DDEQ free particles: the generated particles vs the points the partial input lacks (\"the "
             "corresponding particles in the target\", App. D.8); full point cloud and PCN: the whole output vs "
             "the whole target; last column (not in the paper): the free particles vs the whole target.",
             "Published standard errors: " + ", ".join(f"{c.column} ± {V.TABLE6[k][1]}" for c, k in
                                                       zip(cells, ("ddeq_free", "ddeq_full", "pcn_full"))) + ".",
             *stale_note(cells, store)]
    return Table("table6", "Table 6: OT distances between predictions and targets (ModelNet40-s-partial)",
                 [row], [s[0] for s in spec], cells, notes)


def table_d5(store: RunStore, ctx: PaperContext) -> Table:
    """App. D.5: classical DEQ solvers vs WGF, ratios of test MMD² and W2 (free particles)."""
    labels = {"fixed_point": "fixed point", "anderson": "Anderson", "broyden": "Broyden"}
    # the WGF reference: the grid's own "wgf" child when the plan trains one (a grid with `set`, e.g. the
    # cpu profile's shorter solver ablation), else the main run
    solvers = [s for s in ctx.grid_values("solver") if s != "wgf"]
    rows = [labels.get(s, str(s)) for s in solvers]
    cols = ["MMD² ratio", "W2 ratio"]
    main = run_name("mnist", "cpl", "ddeq")
    base = find_ablation(store, main, "solver", "wgf")
    cells = []
    for solver, row in zip(solvers, rows):
        paper = V.D5_RATIOS if solver in V.D5_SOLVERS else dict.fromkeys(V.D5_RATIOS, V.NOT_REPORTED)
        run = store.ablation(main, "solver", solver)
        name = f"{main}--solver-{solver}"
        for metric, col in (("mmd2", cols[0]), ("w2_free", cols[1])):
            key = f"d5/{solver}/{metric}_ratio"
            missing = ([] if run is not None else [name]) + ([] if base is not None else [ablation_name(main, "solver", "wgf")])
            if missing:
                cells.append(Cell("d5", row, col, NAN, NAN, paper[metric], "×", key,
                                  [r.name for r in (run, base) if r is not None], missing, "", "{:.2f}"))
                continue
            if stale_free_metric(run, metric) or stale_free_metric(base, metric):
                cells.append(Cell("d5", row, col, NAN, NAN, paper[metric], "×", key, [run.name, base.name], [],
                                  run.device, "{:.2f}"))
                continue
            a, sa, _ = run.test_metric(metric)
            b, sb, _ = base.test_metric(metric)
            ratio = a / b if b != 0 else NAN
            # delta method for the ratio of two independent means
            se = abs(ratio) * math.sqrt((sa / a) ** 2 + (sb / b) ** 2) if a and b else NAN
            cells.append(Cell("d5", row, col, ratio, se, paper[metric], "×", key, [run.name, base.name], [],
                              run.device, "{:.2f}"))
    notes = ["Ratio = classical DEQ (same F, given forward solver) / DDEQ (WGF solver), test set, MNIST-pc-partial.",
             "MMD²: whole output vs whole target; W2: free particles vs the points the partial input lacks "
             "(as in Table 2; the paper says only \"average Wasserstein-2 loss\").",
             "The paper reports about 13× (MMD²) and 4× (W2) for all three solvers.",
             *stale_note(cells, store)]
    return Table("table_d5", "App. D.5: classical DEQ solvers vs DDEQ (WGF)", rows, cols, cells, notes)


#: Columns of the grid table: (label, metric of classification runs, metric of completion runs, scale, unit, fmt).
GRID_COLUMNS = [
    ("accuracy", "accuracy", None, 100.0, "%", "{:.1f}"),
    ("cross entropy", "cross_entropy", None, 1.0, "nats", "{:.3f}"),
    ("MMD²", None, "mmd2", 1.0, "", "{:.2g}"),
    ("W2", None, "w2", 1.0, "", "{:.2f}"),
]


def table_grids(store: RunStore, ctx: PaperContext) -> Table:
    """Every grid of the profile's plan, one row per child run ``<run>--<grid>-<value>`` (any grid,
    also one no paper table shows): test metrics of its task and seconds per epoch."""
    rows, cells = [], []
    cols = [c[0] for c in GRID_COLUMNS] + ["runtime"]
    for grid, spec in ctx.plan_grids().items():
        for parent in spec.runs:
            task, model = parse_name(parent).task, parse_name(parent).model
            for value in spec.values:
                row = f"{parent}, {grid} = {format_value(value)}"
                rows.append(row)
                run = find_ablation(store, parent, grid, value)
                name = run.name if run is not None else ablation_name(parent, grid, value)
                key = f"grids/{grid}/{parent}/{format_value(value)}"
                for label, cls_metric, cpl_metric, scale, unit, fmt in GRID_COLUMNS:
                    metric = cls_metric if task == "cls" else cpl_metric
                    if metric is None:
                        continue
                    if metric == "w2":  # as in Table 2: DDEQ free particles vs the missing part; else the whole output
                        metric = "w2_free" if model == "ddeq" else "w2_full"
                    cells.append(metric_cell("grids", row, label, run, name, metric, V.NOT_REPORTED, unit,
                                             f"{key}/{metric}", scale=scale, fmt=fmt))
                cells.append(runtime_cell("grids", row, "runtime", run, name, V.NOT_REPORTED, f"{key}/seconds_per_epoch"))
    notes = ["One row per ablation run of the profile's grids (pipeline configuration `grids`); the paper's own "
             "values for these runs are in Tables 2-5, App. D.5 and Figure 10.",
             "W2: DDEQ free particles vs the points the partial input lacks, other models the whole output vs the "
             "whole target (as in Table 2)."]
    if not rows:
        notes.insert(0, "No grids: pass the pipeline configuration the runs were made with (--config).")
    notes += stale_note(cells, store)
    return Table("table_grids", "Ablation grids of this configuration", rows, cols, cells, notes)


def _devices_note(cells: list[Cell]) -> str:
    devs = sorted({c.device for c in cells if c.device})
    return "Measured on: " + (", ".join(devs) if devs else "(no runs)") + "."


BUILDERS: dict[str, Callable[[RunStore, PaperContext], Table]] = {
    "table1": table1,
    "table2": table2,
    "table3": table3,
    "table4": table4,
    "table5": table5,
    "table6": table6,
    "table_d5": table_d5,
    "table_grids": table_grids,
}


def build_tables(store: RunStore, ctx: PaperContext, only: list[str] | None = None) -> list[Table]:
    """Build the requested tables (all by default) from the runs in ``store``."""
    names = only or list(BUILDERS)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        from ddeqs.errors import DDEQError

        raise DDEQError(f"unknown table(s) {unknown}; choose from {list(BUILDERS)}")
    return [BUILDERS[n](store, ctx) for n in names]


# ---------------------------------------------------------------------------
# writers


def to_csv(table: Table, path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for c in table.cells:
            w.writerow(c.csv_row())


def to_markdown(table: Table, ctx: PaperContext | None = None) -> str:
    """GitHub Markdown: each column as 'reproduced' and 'paper' side by side; missing runs noted."""
    head = ["", *[f"{c} ({lab})" for c in table.columns for lab in ("reproduced", "paper")]]
    lines = [f"### {table.title}", ""]
    if ctx is not None:
        lines += [f"Runs from {ctx.describe()}.", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for r in table.rows:
        parts = [r]
        for c in table.columns:
            ours, paper = _cell_text(table.cell(r, c))
            parts += [ours, paper]
        lines.append("| " + " | ".join(parts) + " |")
    lines.append("")
    units = sorted({c.unit for c in table.cells if c.unit})
    if units:
        lines.append(f"Units: {', '.join(units)}. Reproduced values are ± one standard error where defined.")
    lines += table.notes
    if table.missing_runs:
        lines.append("")
        lines.append("Missing (NaN in the CSV): no finished run folder for " +
                     ", ".join(f"`{m}`" for m in table.missing_runs) + ".")
    return "\n".join(l for l in lines if l is not None) + "\n"


_LATEX_ESC = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
              "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
              "²": r"$^2$", "±": r"$\pm$", "—": "--", "ᵀ": r"$^\top$", "β": r"$\beta$", "×": r"$\times$"}


def _tex(s: str) -> str:
    return "".join(_LATEX_ESC.get(ch, ch) for ch in s)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment with reproduced and paper sub-columns."""
    n = len(table.columns)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(table.title)}}}", rf"\label{{tab:{table.name}}}",
           r"\begin{tabular}{l" + "rr" * n + "}", r"\toprule"]
    out.append(" & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{_tex(c)}}}" for c in table.columns) + r" \\")
    out.append("".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(n)))
    out.append(" & " + " & ".join(["ours & paper"] * n) + r" \\")
    out.append(r"\midrule")
    for r in table.rows:
        parts = [_tex(r)]
        for c in table.columns:
            ours, paper = _cell_text(table.cell(r, c))
            parts += [_tex(ours.replace(" (missing)", "")), _tex(paper)]
        out.append(" & ".join(parts) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def summary(tables: list[Table]) -> dict[str, float]:
    """Flat ``{"table1/mnist/ddeq/accuracy": value, ...}`` of every reproduced (non-missing) cell."""
    return {c.key: float(c.value) for t in tables for c in t.cells if not c.is_missing}


def write_tables(tables: list[Table], out: str | Path, ctx: PaperContext | None = None,
                 summary_path: str | Path | None = None) -> list[Path]:
    """Write ``<name>.csv/.md/.tex`` per table under ``out`` and the flat summary JSON; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in tables:
        for ext, text in ((".md", to_markdown(t, ctx)), (".tex", to_latex(t))):
            p = out / f"{t.name}{ext}"
            p.write_text(text)
            written.append(p)
        p = out / f"{t.name}.csv"
        to_csv(t, p)
        written.append(p)
    if summary_path is not None:
        sp = Path(summary_path)
        sp.parent.mkdir(parents=True, exist_ok=True)
        sp.write_text(json.dumps(summary(tables), indent=2, sort_keys=True) + "\n")
        written.append(sp)
    return written
