# Training: one job per run of the run table (common.smk), main runs and ablation children
# alike. Each run's ExperimentConfig is written to results/<profile>/params/<run>.yaml by a small local
# rule whose `params:` is the resolved configuration, so Snakemake reruns exactly the runs
# whose configuration changed (and what depends on them), and nothing else.
#
# Checkpoints live in the run folder's undeclared work folder (see docs/training.md): Snakemake
# deletes only the declared outputs below before a rerun, so a killed or incomplete training
# resumes from its last epoch (`rerun-incomplete: true` in the profiles).


rule run_params:
    output:
        f"{ROOT}/params/{{run}}.yaml",
    log:
        f"{ROOT}/logs/params/{{run}}.log",
    params:
        text=lambda w: yaml.safe_dump(RUNS[w.run], sort_keys=False),
    localrule: True
    run:
        Path(output[0]).write_text(params.text)
        Path(log[0]).write_text(f"wrote {output[0]}\n")


rule train:
    input:
        params=f"{ROOT}/params/{{run}}.yaml",
        data=dataset_files,
    output:
        metrics=f"{ROOT}/runs/{{run}}/metrics.json",
        history=f"{ROOT}/runs/{{run}}/history.json",
        model=f"{ROOT}/runs/{{run}}/model.pt",
        config=f"{ROOT}/runs/{{run}}/config.yaml",
    log:
        f"{ROOT}/logs/train/{{run}}.log",
    benchmark:
        f"{ROOT}/benchmarks/train/{{run}}.tsv"
    params:
        out=subpath(output.metrics, parent=True),
    # DDEQ jobs are the long ones (the inner solve runs in every step): start them first, so that the
    # short baseline jobs fill the other cores instead of a DDEQ job starting last (make demo on 2 cores:
    # the two DDEQ runs in parallel, PointNet and PCN after them, instead of one DDEQ after the other)
    priority: lambda wc: 1 if RUNS[wc.run]["model"]["name"] == "ddeq" else 0
    threads: config.get("resources", {}).get("threads", 1)
    resources:
        gpu=config.get("resources", {}).get("gpu", 1),
        mem_mb=config.get("resources", {}).get("mem_mb", 8000),
        runtime=config.get("resources", {}).get("runtime", 600),
    shell:
        "{DDEQS} train --params {input.params} --out {params.out} --quiet > {log} 2>&1"


rule training_curve:
    """Per-epoch history as CSV (results/<profile>/plots/<run>.csv) for `dvc plots`."""
    input:
        f"{ROOT}/runs/{{run}}/history.json",
    output:
        f"{ROOT}/plots/{{run}}.csv",
    log:
        f"{ROOT}/logs/plots/{{run}}.log",
    localrule: True
    run:
        write_curve(input[0], output[0], log[0])


rule training_curves:
    """Training loss of every run in one figure, epochs from 1 (ddeqs.paper.curves): the DVC plot
    (a static PNG, readable offline) and a report figure."""
    input:
        expand(f"{ROOT}/plots/{{run}}.csv", run=list(RUNS)),
    output:
        report(f"{ROOT}/plots/training_curves.png", caption="../report/figures/training_curves.rst",
               category="Figures", subcategory="training curves"),
    log:
        f"{ROOT}/logs/plots/training_curves.log",
    localrule: True
    run:
        write_training_curves(list(input), output[0], log[0])
