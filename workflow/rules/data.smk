# Datasets: download (no-op for the embedded digits/shapes), then prepare (voxelize, normalize)
# into data/processed/<dataset>/{train,test}.npz. Both ddeqs commands are idempotent.


rule fetch:
    output:
        touch(f"{RAW_ROOT}/.fetched-{{dataset}}"),
    log:
        f"{ROOT}/logs/fetch/{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/fetch/{{dataset}}.tsv"
    resources:
        downloads=1,
    shell:
        f"{{DDEQS}} data fetch {{wildcards.dataset}} --raw-root {RAW_ROOT} > {{log}} 2>&1"


rule prepare:
    input:
        # ancient: a re-fetch that finds everything in place must not trigger a re-voxelization
        ancient(f"{RAW_ROOT}/.fetched-{{dataset}}"),
    output:
        processed("{dataset}", ".npz"),
        processed("{dataset}", ".json"),
    log:
        f"{ROOT}/logs/prepare/{{dataset}}.log",
    benchmark:
        f"{ROOT}/benchmarks/prepare/{{dataset}}.tsv"
    params:
        extra=lambda w: config.get("prepare", {}).get(w.dataset, ""),
    threads: 1
    shell:
        f"{{DDEQS}} data prepare {{wildcards.dataset}} --raw-root {RAW_ROOT} --root {PROCESSED_ROOT}"
        " {params.extra} > {log} 2>&1"
