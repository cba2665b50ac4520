# Ablation grids (params: grids). Every grid value is one child run "<run>--<grid>-<value>"
# trained by the `train` rule like a main run; the names come from common.smk (build_runs).
# Targets to run one part of the DAG:
#   snakemake main_runs            every main run
#   snakemake ablations            every ablation child
#   snakemake results/paper/runs/mnist-cpl-ddeq--noise-0.2/metrics.json     one run

MAIN_RUNS = [name for name in RUNS if "--" not in name]
ABLATION_RUNS = [name for name in RUNS if "--" in name]


rule main_runs:
    input:
        metrics_of(MAIN_RUNS),
    localrule: True


rule ablations:
    input:
        metrics_of(ABLATION_RUNS),
    localrule: True
