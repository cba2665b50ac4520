"""Did every model learn? One check per main run, before any claim is read.

A table of chance-level accuracies is a failed run, not a result: this check says so next to the
claims (``claims.md`` / ``claims.json`` / the summary). Per main run (no ablation children):

* classification: test accuracy against chance ``1 / classes``; *learned* when it is at least twice
  chance and above chance by more than ``Z`` standard errors;
* completion: the reproduced W2 (DDEQ: free particles vs the missing part, PCN: the whole output vs
  the target, the quantities of Table 2) against the same model untrained (``metrics.json`` ``init``,
  written with ``train.eval_init``); *learned* when it fell by at least ``MIN_DROP`` of its initial
  value and by more than ``Z`` standard errors of the difference. Without ``init``: *no baseline*.
"""

from __future__ import annotations

import math
from typing import Any

from ddeqs.data.registry import DATASETS
from ddeqs.paper.runs import RunStore

LEARNED, NOT_LEARNED, NO_BASELINE = "learned", "did not learn", "no baseline"
#: standard errors of the margins (as the claims)
Z = 2.0
#: "well below its value at initialisation": at least this share of the initial W2 is gone. An
#: untrained DDEQ already keeps the input particles, so its whole-cloud metrics start low; its free
#: particles start as N(0, I) draws far from the missing part, so a model that learned nothing keeps
#: W2 near its initial value, and one that learned moves them by a large share (digits: -33 %).
MIN_DROP = 0.2


def _completion_metric(model: str) -> str:
    return "w2_full" if model == "pcn" else "w2_free"


def _classes(run: Any) -> int | None:
    chosen = run.record.config_flat.get("data.classes")
    if chosen:
        return len(chosen)
    spec = DATASETS.get(run.record.dataset or "")
    return spec.num_classes if spec else None


def check_run(run: Any) -> dict[str, Any]:
    """One main run's learning check: ``run``, ``task``, ``metric``, ``value``, ``se``, ``baseline``
    (chance or the untrained model), ``baseline_se``, ``verdict`` and ``text``."""
    rec = run.record
    if rec.task == "classification":
        acc, se, _ = rec.test_metric("accuracy")
        classes = _classes(run)
        chance = 1.0 / classes if classes else float("nan")
        ok = acc >= 2 * chance and acc - chance > Z * se
        verdict = LEARNED if ok else NOT_LEARNED
        text = f"accuracy {100 * acc:.1f} % ± {100 * se:.1f} vs chance {100 * chance:.1f} % ({classes} classes)"
        return {"run": run.name, "task": rec.task, "metric": "accuracy", "value": acc, "se": se,
                "baseline": chance, "baseline_se": 0.0, "verdict": verdict, "text": text}
    key = _completion_metric(rec.model or "")
    value, se, _ = rec.test_metric(key)
    init = rec.init or {}
    base, base_se = init.get(key), init.get(f"{key}_se")
    if base is None:
        return {"run": run.name, "task": rec.task, "metric": key, "value": value, "se": se, "baseline": None,
                "baseline_se": None, "verdict": NO_BASELINE,
                "text": f"{key} {value:.3g} ± {se:.2g}; no untrained baseline (train with train.eval_init=true)"}
    base_se = float(base_se or 0.0)
    margin = Z * math.sqrt((se if math.isfinite(se) else 0.0) ** 2 + base_se ** 2)
    ok = value <= (1 - MIN_DROP) * base and base - value > margin
    change = 100 * (value / base - 1) if base else float("nan")
    return {"run": run.name, "task": rec.task, "metric": key, "value": value, "se": se, "baseline": float(base),
            "baseline_se": base_se, "verdict": LEARNED if ok else NOT_LEARNED,
            "text": f"{key} {float(base):.3g} untrained -> {value:.3g} ± {se:.2g} ({change:+.0f} %)"}


def check_learning(store: RunStore) -> list[dict[str, Any]]:
    """The learning check of every finished main run in ``store``, in name order."""
    out = []
    for name in store.names():
        if "--" in name:
            continue
        run = store.peek(name)
        if run is not None and run.record.task in ("classification", "completion"):
            out.append(check_run(run))
    return out
