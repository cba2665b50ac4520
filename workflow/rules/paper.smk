# Paper artifacts from the finished run folders: Tables 1-6 and App. D.5 (CSV, Markdown,
# LaTeX), the flat metrics results/summary.json (for `dvc metrics show`), Figures 1, 4, 5,
# 7-17 (PNG and PDF), and results/README.md. The profile name and the role -> dataset mapping
# are passed explicitly, so the same rules serve the paper and the smoke configuration.

TABLES = ["table1", "table2", "table3", "table4", "table5", "table6", "table_d5"]
FIGURES = ["fig01", "fig04", "fig05", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12", "fig13", "fig14", "fig15"]
FLOW_FIGURES = ["fig16", "fig17"]  # the MMD flow of App. D.9: no training needed
ALL_METRICS = metrics_of(list(RUNS))


CONTEXT = f"--profile {config['profile']} --roles {ROLES_ARG}"


rule paper_tables:
    input:
        ALL_METRICS,
    output:
        tables=report(
            expand("results/tables/{table}.{ext}", table=TABLES, ext=["csv", "md", "tex"]),
            caption="../report/tables.rst",
            category="Tables",
        ),
        summary="results/summary.json",
    log:
        "results/logs/paper/tables.log",
    benchmark:
        "results/benchmarks/paper/tables.tsv"
    params:
        context=CONTEXT,
    shell:
        "{DDEQS} paper tables --runs results/runs --out results/tables --summary {output.summary}"
        " {params.context} > {log} 2>&1"


rule paper_figures:
    input:
        ALL_METRICS,
    output:
        figure_outputs(FIGURES),
    log:
        "results/logs/paper/figures.log",
    benchmark:
        "results/benchmarks/paper/figures.tsv"
    params:
        context=CONTEXT,
        only=",".join(FIGURES),
    shell:
        "{DDEQS} paper figures --runs results/runs --out results/figures --only {params.only}"
        " {params.context} > {log} 2>&1"


rule flow_figures:
    output:
        figure_outputs(FLOW_FIGURES),
    log:
        "results/logs/paper/flow.log",
    benchmark:
        "results/benchmarks/paper/flow.tsv"
    params:
        context=CONTEXT,
        only=",".join(FLOW_FIGURES),
        particles=config.get("flow", {}).get("particles", 100),
        iters=config.get("flow", {}).get("iters", 2000),
    shell:
        "{DDEQS} paper figures --runs results/runs --out results/figures --only {params.only}"
        " --flow-particles {params.particles} --flow-iters {params.iters} {params.context} > {log} 2>&1"


rule paper_report:
    input:
        rules.paper_tables.output,
        rules.paper_figures.output,
        rules.flow_figures.output,
    output:
        report("results/README.md", caption="../report/readme.rst", category="Overview"),
    log:
        "results/logs/paper/report.log",
    benchmark:
        "results/benchmarks/paper/report.tsv"
    params:
        context=CONTEXT,
    shell:
        "{DDEQS} paper report --runs results/runs --tables-out results/tables --figures-out results/figures"
        " --summary results/summary.json --report {output} {params.context} > {log} 2>&1"


PAPER_OUTPUTS = [
    *rules.paper_tables.output,
    *rules.paper_figures.output,
    *rules.flow_figures.output,
    *rules.paper_report.output,
    *expand("results/plots/{run}.csv", run=list(RUNS)),
]
