"""Ambiguous passages of the paper and how this reproduction reads them.

Each :class:`Reading` names the passage, the reading implemented by default, the other reading
and how to get it. :func:`reading_lines` renders them for the "What differs from the paper"
section of ``results/README.md``, with the setting each run actually recorded (its
``metrics.json`` ``config_flat``), so the report states what the numbers were computed with.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from ddeqs.paper.runs import Run

__all__ = ["READINGS", "Reading", "reading_lines"]


@dataclass(frozen=True)
class Reading:
    """One ambiguous passage. ``key``: the configuration key that selects the reading (recorded per
    run); ``legacy``: the value of runs written before that key existed; ``task``: runs it concerns."""

    topic: str
    passage: str
    ours: str
    other: str
    key: str | None = None
    legacy: Any = None
    task: str | None = "completion"


READINGS: tuple[Reading, ...] = (
    Reading(
        "Noise mode (Table 2)",
        '§4.2: "adding Gaussian noise from N(0,1) to a small portion of the input points".',
        "additive: x + eps, eps ~ N(0, I), on the chosen points of the partial input",
        "the points replaced by N(0, I) draws: `data.noise_mode=replace`",
        key="data.noise_mode",
        legacy="replace",
    ),
    Reading(
        "Noise on which split (Table 2)",
        'Table 2: "W2 distances ... under noisy training data"; §4.2: "trained DDEQs on 5% noisy samples".',
        "a training augmentation, drawn afresh each time a training sample is seen; test inputs are clean at "
        "every noise level, so Table 2 compares models on one test set",
        "noise on the test inputs too (fixed per sample), each level then its own test set: `data.noise_test=true`",
        key="data.noise_test",
        legacy=True,
    ),
    Reading(
        "Noise share (Table 2)",
        '"5% noisy samples" and "a small portion of the input points".',
        "`data.noise` is the share of particles of every input that get noise (each training sample is noisy)",
        "a share of the samples made noisy (not implemented)",
    ),
    Reading(
        "Free-particle reference (Tables 2, 6, App. D.5)",
        'App. D.8: the distance "only for the \'free particles\' and the corresponding particles in the target".',
        "free particles vs the points the partial input lacks (`w2_free`, `ot_free`)",
        "free particles vs the whole target: the extra row/column `w2_free_target`, `ot_free_target`",
    ),
    Reading(
        "W2 of App. D.5",
        'App. D.5: "an average Wasserstein-2 loss of 4x that of DDEQs".',
        "the free-particle W2 of Table 2 (`w2_free`) of both models",
        "the whole-cloud W2: `w2_full` in each run's metrics.json",
    ),
    Reading(
        "Partial clouds",
        '§4.1: "we select two particles per (normalized) sample at random, and remove all particles in a radius r".',
        "training partials (and the data.input_share subsample) re-drawn each time a training sample is seen; "
        "test partials fixed per sample and seeded",
        "one fixed partial per training sample: `data.redraw_partial=false`",
        key="data.redraw_partial",
        legacy=False,
    ),
    Reading(
        "Input share (Table 5)",
        "App. D.4: runtime vs the share of input particles.",
        "a random subsample of the (partial, noisy) input, on the training and the test split",
        "(no other reading implemented)",
    ),
    Reading(
        "Table 3, MNIST-pc accuracy",
        "Table 3's header has an MNIST-pc accuracy column whose cells are empty.",
        "the column is reproduced; its paper value is shown as not reported",
        "-",
        task=None,
    ),
)


def _recorded(reading: Reading, runs: Iterable[Run]) -> str:
    """``'add (12 runs)'`` / ``'replace (3 runs, written before data.noise_mode existed)'`` over ``runs``."""
    counts: Counter = Counter()
    legacy: Counter = Counter()
    for run in runs:
        if reading.task is not None and run.record.task != reading.task:
            continue
        flat = run.record.config_flat
        if reading.key in flat:
            counts[_show(flat[reading.key])] += 1
        else:
            legacy[_show(reading.legacy)] += 1
    parts = [f"{v} ({n} run{'s' if n != 1 else ''})" for v, n in sorted(counts.items())]
    parts += [f"{v} ({n} run{'s' if n != 1 else ''}, written before `{reading.key}` existed)"
              for v, n in sorted(legacy.items())]
    return ", ".join(parts)


def _show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def reading_lines(runs: Iterable[Run]) -> list[str]:
    """Markdown bullets, one per :data:`READINGS` entry, with the settings recorded by ``runs``."""
    runs = list(runs)
    out = []
    for r in READINGS:
        line = f"- **{r.topic}.** Paper: {r.passage} Here: {r.ours}. Other reading: {r.other}."
        if r.key is not None:
            rec = _recorded(r, runs)
            line += f" Runs used `{r.key}` = {rec}." if rec else f" (No {r.task} runs yet.)"
        out.append(line)
    return out
