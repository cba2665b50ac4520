"""``results/README.md``: every table and figure with the reproduced value next to the paper's,
the configuration and datasets used, MLflow run links, and what differs from the paper."""

from __future__ import annotations

import os
from pathlib import Path

from ddeqs.paper.figures import FIGURES, FigureReport
from ddeqs.paper.readings import reading_lines
from ddeqs.paper.runs import PaperContext, RunStore
from ddeqs.paper.tables import Table, to_markdown

MLFLOW_CMD = "mlflow ui --backend-store-uri sqlite:///results/mlflow/mlflow.db"

#: What each figure shows in the paper (for the side-by-side description).
PAPER_FIGURES = {
    "fig01": "Figure 1: completion of an airplane: partial input (red), DDEQ prediction (blue), target (green).",
    "fig04": "Figure 4: MNIST-pc-partial samples, DDEQ vs PCN.",
    "fig05": "Figure 5: ModelNet40-s-partial samples, DDEQ vs PCN.",
    "fig07": "Figure 7: Assumption B.10 quantity stays bounded over training on all four datasets (EMA).",
    "fig08": "Figure 8: Assumption B.11 quantity stays bounded over training on all four datasets (EMA).",
    "fig09": "Figure 9: Theorem B.12 quantity stays bounded over training.",
    "fig10": "Figure 10: accuracy similar for 1-16 particles in Z (slight peak at 4-10), dropping beyond.",
    "fig11": "Figure 11: Z* and F(Z*) (UMAP, n_neighbors 2 and 30) close but not identical, MNIST-pc.",
    "fig12": "Figure 12: the same for ModelNet40-s.",
    "fig13": "Figure 13: max-pooled fixed points form distinct class clusters on MNIST-pc (UMAP, n_neighbors=80).",
    "fig14": "Figure 14: mostly distinct clusters for 20 ModelNet40-s classes (t-SNE, perplexity 30).",
    "fig15": "Figure 15: more ModelNet40-s-partial samples; DDEQ good on airplanes, fails on bowls/cones.",
    "fig16": "Figure 16: MMD flow towards the rotation by 2π/5 converges to a perfectly symmetric pattern.",
    "fig17": "Figure 17: the same for 2π/8.",
}


def mlflow_link(run_id: str | None, experiment_id: str | None, ui: str | None) -> str:
    """A Markdown link to the MLflow run page, or the bare id when no UI address is known."""
    if not run_id:
        return "(not tracked)"
    if ui and experiment_id is not None:
        return f"[{run_id[:8]}]({ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id})"
    return f"`{run_id}`"


def _runs_section(store: RunStore, names: list[str], ui: str | None) -> list[str]:
    lines = []
    for name in names:
        run = store.peek(name)
        if run is None:
            continue
        link = mlflow_link(run.mlflow_run_id, run.record.mlflow_experiment_id, ui)
        ds = run.dataset or "?"
        lines.append(f"- `{name}`: dataset {ds}, {run.device}, {run.record.epochs if run.record.epochs is not None else '?'} epochs, MLflow {link}")
    return lines


def _differences(ctx: PaperContext, store: RunStore, runs: list[str]) -> list[str]:
    out = []
    if ctx.profile != "paper":
        out.append(f"- Configuration '{ctx.profile}': the embedded datasets ({', '.join(sorted(set(ctx.roles.values())))}) "
                   "and reduced sizes/epochs replace MNIST-pc and ModelNet40-s; the numbers show the pipeline works, "
                   "they are not comparable to the published values.")
    devices = sorted({store.peek(n).device for n in runs if store.peek(n) is not None})
    if devices:
        out.append(f"- Devices of these runs: {', '.join(devices)}. The paper's runtimes (Tables 4, 5) are from one NVIDIA H100.")
    out.append("- Published values are single runs; reproduced values carry standard errors over test samples "
               "(not over seeds).")
    out.append("- Figure 16/17 particle count is not stated in the paper; see the figure title for the value used.")
    out.append("- F's final block: App. C.1 calls it \"a typical transformer feedforward layer\"; we read it as the "
               "transformer sublayer with Add & Norm, LN(h + FFN(h)) (hidden 512), as in every encoder layer.")
    out.append("- PCN is trained as its paper trains it (Adam 1e-4, lr x0.7 every 50k of 300k iterations, floor 1e-6; "
               "loss CD(coarse) + alpha CD(fine), alpha 0.01 -> 1 at 10k/20k/50k iterations), with both schedules "
               "kept as fractions of our (much shorter) training; Chamfer (Euclidean) for both terms.")
    out.append("- PointNet: dropout 0.3 before its last layer (its paper); the 64 x 64 feature transform is left out.")
    out += ["", "Readings of ambiguous passages (each with the setting the runs recorded):", "",
            *reading_lines(r for n in runs if (r := store.peek(n)) is not None)]
    return out


def _claims_section(claims_json: str | Path | None, rel) -> list[str]:
    if claims_json is None:
        return []
    from ddeqs.paper.claims import NOT_MEASURABLE, NOT_REPRODUCED, REPRODUCED, read_claims

    path = Path(claims_json)
    lines = ["## The paper's claims, checked", ""]
    if not path.is_file():
        return lines + ["Not checked yet (run `ddeqs paper claims`).", ""]
    data = read_claims(path)
    c = data.get("counts", {})
    md = path.with_suffix(".md")
    lines.append(f"{c.get(REPRODUCED, 0)} reproduced, {c.get(NOT_REPRODUCED, 0)} not reproduced, "
                 f"{c.get(NOT_MEASURABLE, 0)} not measurable in this configuration: "
                 f"[{md.name}]({rel(md)}) (also as [{path.name}]({rel(path)})).")
    lines.append("")
    lines += [f"- `{r['id']}` ({r['source']}): **{r['verdict']}**" for r in data["claims"]]
    return lines + [""]


def build_report(
    store: RunStore,
    ctx: PaperContext,
    tables: list[Table],
    figures: FigureReport | None,
    out_path: str | Path,
    figures_dir: str | Path,
    tables_dir: str | Path,
    mlflow_ui: str | None = None,
    claims_json: str | Path | None = None,
) -> str:
    """Render the report Markdown (paths in it are relative to ``out_path``'s folder) and write it.

    ``claims_json``: the ``claims.json`` of ``ddeqs paper claims``; its counts and a link to the
    ``claims.md`` next to it go into the report (a note when it does not exist yet).
    """
    out_path = Path(out_path)
    base = out_path.parent

    def rel(p: Path) -> str:
        return Path(os.path.relpath(p, base)).as_posix()

    used = list(dict.fromkeys(r for t in tables for c in t.cells for r in c.runs))
    lines = [
        "# Reproduced results: DDEQs (AISTATS 2025)",
        "",
        "Generated by `ddeqs paper report` from the run folders under "
        f"`{rel(store.root)}` (tables are computed from each run's `metrics.json`, never from MLflow).",
        "",
        f"- Configuration: **{ctx.profile}**",
        "- Datasets: " + ", ".join(f"role `{r}` = {ctx.dataset_label(r)}" for r in sorted(ctx.roles)),
        f"- Browse every run: `{MLFLOW_CMD}`" + (f" (or {mlflow_ui})" if mlflow_ui else ""),
        f"- Tables as CSV / Markdown / LaTeX: `{rel(Path(tables_dir))}/`; figures as PNG / PDF: `{rel(Path(figures_dir))}/`",
        "",
        "## What differs from the paper",
        "",
        *_differences(ctx, store, used),
        "",
        *_claims_section(claims_json, rel),
        "## Tables",
        "",
    ]
    for t in tables:
        md = to_markdown(t, ctx).replace("### ", "### ", 1)
        lines += [md, f"Files: `{rel(Path(tables_dir) / t.name)}.csv`, `.md`, `.tex`", ""]
        runs = list(dict.fromkeys(r for c in t.cells for r in c.runs))
        if runs:
            lines += ["Runs:", *_runs_section(store, runs, mlflow_ui), ""]
    lines += ["## Figures", ""]
    for name, desc in FIGURES.items():
        lines.append(f"### {name}: {desc}")
        lines.append("")
        lines.append(f"Paper: {PAPER_FIGURES.get(name, '')}")
        lines.append("")
        png = Path(figures_dir) / f"{name}.png"
        if figures is not None and name in figures.skipped:
            lines.append(f"Not drawn: {figures.skipped[name]}.")
        elif png.is_file():
            lines.append(f"![{name}]({rel(png)}) ([PDF]({rel(png.with_suffix('.pdf'))}))")
        else:
            lines.append("Not drawn yet (run `ddeqs paper figures`).")
        lines.append("")
    if store.missing or store.problems:
        lines += ["## Missing runs", ""]
        lines += [f"- `{m}`" for m in store.missing]
        lines += [f"- `{k}`: {v}" for k, v in store.problems.items()]
        lines.append("")
    text = "\n".join(lines)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    return text
