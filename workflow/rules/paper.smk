# Paper artifacts from the finished run folders: Tables 1-6 and App. D.5 (CSV, Markdown,
# LaTeX), the flat metrics results/<profile>/summary.json (for `dvc metrics show`), Figures 1, 4, 5,
# 7-17 (PNG and PDF), the paper's claims checked (results/<profile>/claims.md, .json), and
# results/<profile>/README.md. The profile name and the role -> dataset mapping
# are passed explicitly, so the same rules serve the paper and the smoke configuration.

TABLES = ["table1", "table2", "table3", "table4", "table5", "table6", "table_d5", "table_grids"]
# figures whose runs this profile trains (all of them, unless `select` leaves runs out)
FIGURES = buildable(
    ["fig01", "fig04", "fig05", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12", "fig13", "fig14", "fig15"], RUNS
)
# a figure of one or two runs is drawn as soon as those runs are done (its own job: the embedding figures take
# ~30 s each and would otherwise wait for the last training); the others need the grids or every run
RUN_FIGURES = [f for f in FIGURES if f in NEEDS_RUNS]
FIGURES = [f for f in FIGURES if f not in NEEDS_RUNS]
FLOW_FIGURES = ["fig16", "fig17"]  # the MMD flow of App. D.9: no training needed
ALL_METRICS = metrics_of(list(RUNS))


CONTEXT = f"--profile {PLAN.profile} --roles {ROLES_ARG} {PLAN_ARGS}"
CLAIMS_MD, CLAIMS_JSON = f"{ROOT}/claims.md", f"{ROOT}/claims.json"
FLOW_PARTICLES = config.get("flow", {}).get("particles", 100)
FLOW_ITERS = config.get("flow", {}).get("iters", 2000)


rule paper_tables:
    input:
        ALL_METRICS,
    output:
        tables=report(
            expand(f"{ROOT}/tables/{{table}}.{{ext}}", table=TABLES, ext=["csv", "md", "tex"]),
            caption="../report/tables.rst",
            category="Tables",
        ),
        summary=f"{ROOT}/summary.json",
    log:
        f"{ROOT}/logs/paper/tables.log",
    benchmark:
        f"{ROOT}/benchmarks/paper/tables.tsv"
    params:
        context=CONTEXT,
    shell:
        f"{{DDEQS}} paper tables --runs {ROOT}/runs --out {ROOT}/tables --summary {{output.summary}}"
        f" {{params.context}} > {{log}} 2>&1"


rule paper_figures:
    input:
        ALL_METRICS,
    output:
        figure_outputs(FIGURES),
    log:
        f"{ROOT}/logs/paper/figures.log",
    benchmark:
        f"{ROOT}/benchmarks/paper/figures.tsv"
    params:
        context=CONTEXT,
        only=",".join(FIGURES),
    shell:
        f"{{DDEQS}} paper figures --runs {ROOT}/runs --out {ROOT}/figures --only {{params.only}}"
        f" {{params.context}} > {{log}} 2>&1"


for _fig in RUN_FIGURES:

    rule:
        name:
            f"paper_figure_{_fig}"
        input:
            metrics_of(list(NEEDS_RUNS[_fig])),
        output:
            figure_outputs([_fig]),
        log:
            f"{ROOT}/logs/paper/{_fig}.log",
        benchmark:
            f"{ROOT}/benchmarks/paper/{_fig}.tsv"
        params:
            context=CONTEXT,
            only=_fig,
        shell:
            f"{{DDEQS}} paper figures --runs {ROOT}/runs --out {ROOT}/figures --only {{params.only}}"
            f" {{params.context}} > {{log}} 2>&1"


RUN_FIGURE_OUTPUTS = [f for _fig in RUN_FIGURES for f in getattr(rules, f"paper_figure_{_fig}").output]


rule flow_figures:
    output:
        figure_outputs(FLOW_FIGURES),
    log:
        f"{ROOT}/logs/paper/flow.log",
    benchmark:
        f"{ROOT}/benchmarks/paper/flow.tsv"
    params:
        context=CONTEXT,
        only=",".join(FLOW_FIGURES),
        particles=FLOW_PARTICLES,
        iters=FLOW_ITERS,
    shell:
        f"{{DDEQS}} paper figures --runs {ROOT}/runs --out {ROOT}/figures --only {{params.only}}"
        f" --flow-particles {{params.particles}} --flow-iters {{params.iters}} {{params.context}} > {{log}} 2>&1"


rule paper_claims:
    input:
        ALL_METRICS,
    output:
        md=report(CLAIMS_MD, caption="../report/claims.rst", category="Overview"),
        json=CLAIMS_JSON,
    log:
        f"{ROOT}/logs/paper/claims.log",
    benchmark:
        f"{ROOT}/benchmarks/paper/claims.tsv"
    params:
        context=CONTEXT,
        particles=FLOW_PARTICLES,
        iters=FLOW_ITERS,
    shell:
        f"{{DDEQS}} paper claims --runs {ROOT}/runs --md {{output.md}} --json {{output.json}}"
        " --flow-particles {params.particles} --flow-iters {params.iters} {params.context} > {log} 2>&1"


rule paper_report:
    input:
        rules.paper_tables.output,
        rules.paper_figures.output,
        RUN_FIGURE_OUTPUTS,
        rules.flow_figures.output,
        rules.paper_claims.output.md,
        claims=rules.paper_claims.output.json,
    output:
        report(f"{ROOT}/README.md", caption="../report/readme.rst", category="Overview"),
    log:
        f"{ROOT}/logs/paper/report.log",
    benchmark:
        f"{ROOT}/benchmarks/paper/report.tsv"
    params:
        context=CONTEXT,
    shell:
        f"{{DDEQS}} paper report --runs {ROOT}/runs --tables-out {ROOT}/tables --figures-out {ROOT}/figures"
        f" --summary {ROOT}/summary.json --claims {{input.claims}} --report {{output}} {{params.context}} > {{log}} 2>&1"


PAPER_OUTPUTS = [
    *rules.paper_tables.output,
    *rules.paper_figures.output,
    *RUN_FIGURE_OUTPUTS,
    *rules.flow_figures.output,
    *rules.paper_report.output,
    *rules.paper_claims.output,
    *expand(f"{ROOT}/plots/{{run}}.csv", run=list(RUNS)),
    *rules.training_curves.output,
]
