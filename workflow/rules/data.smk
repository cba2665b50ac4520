# Datasets: download (no-op for the embedded digits/shapes), then prepare (voxelize, normalize)
# into data/processed/<dataset>/{train,test}.npz. Both ddeqs commands are idempotent.


rule fetch:
    output:
        touch("data/raw/.fetched-{dataset}"),
    log:
        f"{ROOT}/logs/fetch/{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/fetch/{{dataset}}.tsv"
    resources:
        downloads=1,
    shell:
        "{DDEQS} data fetch {wildcards.dataset} --raw-root data/raw > {log} 2>&1"


rule prepare:
    input:
        # ancient: a re-fetch that finds everything in place must not trigger a re-voxelization
        ancient("data/raw/.fetched-{dataset}"),
    output:
        multiext("data/processed/{dataset}/train", ".npz", ".json"),
        multiext("data/processed/{dataset}/test", ".npz", ".json"),
    log:
        f"{ROOT}/logs/prepare/{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/prepare/{{dataset}}.tsv"
    params:
        extra=lambda w: config.get("prepare", {}).get(w.dataset, ""),
    threads: 1
    shell:
        "{DDEQS} data prepare {wildcards.dataset} --raw-root data/raw --root data/processed"
        " {params.extra} > {log} 2>&1"
