"""``ddeqs bench attention``: the DDEQ's attention kernels at its shapes, per SDPA backend.

Heads as the model has them (``model.heads`` 32 of width ``model.z_dim / model.heads`` = 4), batch
``--batch`` (default 64, the paper's), at four shapes (:data:`SHAPES`): the classification solve's
Z self-attention (10 particles, none padding) and cross-attention (10 particles to 200 input
points, some padding), and completion's (255 slots, 200 input points, both padded). Keys of a
padded shape: sample ``b`` of ``B`` has ``M - floor(b M / 2B)`` real keys (all of them down to
about half).

Variants (:func:`variants`), each in float32 and bfloat16:

* ``current``: what ``solver.attention=auto`` runs on this device
  (:func:`ddeqs.models.ddeq.attention.attend_heads`; on CPU the hand-written kernels, the
  cross-attention to keys/values laid out once as in the solve);
* ``sdpa``: PyTorch's SDPA with a boolean key mask, backend left to PyTorch;
* ``sdpa_pad8``: the same at the head width zero-padded to 8 (:mod:`ddeqs.models.ddeq.sdpa`);
* ``sdpa[B]`` / ``sdpa_pad8[B]``: under ``torch.nn.attention.sdpa_kernel([B])`` for each backend
  ``B`` of flash, efficient, cudnn, math; a backend that refuses the call is reported
  ``not eligible`` with PyTorch's reason (its warnings, else its error).

Modes: ``forward`` (no autograd) and ``forward+backward``: the gradient w.r.t. the queries for
cross-attention (its keys/values are constants of the inner solve) and w.r.t. queries, keys and
values for self-attention. Per case: the median µs per call over ``repeats`` blocks of calls
(about 5 ms each, CUDA synchronised around each block; the blocks of all variants of a shape,
dtype and mode interleaved, so a machine whose speed drifts slows them alike), the largest
absolute difference of the output (and of the gradients) to float64 attention by the math
backend from the same inputs, and for the plain ``sdpa`` / ``sdpa_pad8`` the backend PyTorch
picks (``torch._fused_sdp_choice``, where present). Float32 runs first; once ``budget_s`` is
spent, the remaining cases are reported ``skipped``.

On CUDA, :func:`auto_cuda_decision` turns the forward+backward timings into the value that
``ddeqs.models.ddeq.fastpath.AUTO_CUDA`` (``solver.attention=auto`` on CUDA) should take.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from ddeqs.bench.machine import sync
from ddeqs.models.ddeq.attention import attend_heads
from ddeqs.models.ddeq.fastpath import AUTO_CUDA, attention_kernel, solve_kv
from ddeqs.models.ddeq.sdpa import attn_mask, pad_heads, sdpa_attention, sdpa_pad8_attention


@dataclass(frozen=True)
class AttentionShape:
    """``queries`` attending to ``keys`` (``masked``: some keys padding); ``self_attention``: keys from the
    queries' rows."""

    name: str
    queries: int
    keys: int
    masked: bool
    self_attention: bool
    what: str


SHAPES = (
    AttentionShape("cls-z-self", 10, 10, False, True, "classification, Z self-attention: 10 particles"),
    AttentionShape("cls-cross", 10, 200, True, False, "classification, cross-attention: 10 particles to 200 points"),
    AttentionShape("cpl-z-self", 255, 255, True, True, "completion, Z self-attention: 255 slots"),
    AttentionShape("cpl-cross", 255, 200, True, False, "completion, cross-attention: 255 slots to 200 points"),
)
BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MODES = ("forward", "forward+backward")
DECISION_SPEEDUP = 1.10
"""``sdpa_pad8`` becomes ``auto`` on CUDA when its forward+backward is this much faster than plain
SDPA (geometric mean over shapes and dtypes), slower by at most 5 % on any, and as accurate."""


@dataclass
class AttentionResult:
    """One case. ``kernel``: the dispatcher's kernel (``current``) or the variant's; ``backend``: forced
    backend or None; ``picked``: the backend PyTorch picks unforced (None: not SDPA or not discoverable);
    ``status``: ``ok``, ``not eligible`` or ``skipped``; ``median_us`` per call; ``max_abs_diff``: output and
    gradients against float64 math."""

    shape: str
    dtype: str
    mode: str
    variant: str
    kernel: str
    backend: str | None
    picked: str | None
    status: str
    reason: str = ""
    median_us: float | None = None
    max_abs_diff: float | None = None


def variants() -> list[tuple[str, str, str | None]]:
    """``(name, kernel, forced backend)`` of every variant, in report order."""
    out: list[tuple[str, str, str | None]] = [("current", "current", None), ("sdpa", "sdpa", None),
                                              ("sdpa_pad8", "sdpa_pad8", None)]
    out += [(f"{k}[{b}]", k, b) for k in ("sdpa", "sdpa_pad8") for b in BACKENDS]
    return out


def _backend_names() -> dict[int, str]:
    from torch.nn.attention import SDPBackend

    return {int(b): name for name, b in SDPBackend.__members__.items()}


def picked_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                   pad8: bool) -> str | None:
    """The SDPA backend PyTorch picks for this call (``torch._fused_sdp_choice``); None where not discoverable."""
    choice = getattr(torch, "_fused_sdp_choice", None)
    if choice is None:
        return None
    scale = q.shape[-1] ** -0.5
    if pad8:
        q, k, v, scale = pad_heads(q, k, v)
    try:
        return _backend_names().get(int(choice(q, k, v, attn_mask(key_mask), 0.0, False, scale=scale)))
    except (RuntimeError, TypeError):
        return None


def make_inputs(shape: AttentionShape, batch: int, heads: int, width: int, dtype: torch.dtype,
                device: torch.device, seed: int = 0) -> dict:
    """Queries, keys, values ``(B, H, ., c)``, key mask ``(B, M)`` or None, and an output gradient."""
    g = torch.Generator().manual_seed(seed)
    B, M = batch, shape.keys
    t = {n: torch.randn(B, heads, rows, width, generator=g)
         for n, rows in (("q", shape.queries), ("k", M), ("v", M), ("dout", shape.queries))}
    mask = None
    if shape.masked:
        real = M - torch.arange(B) * M // (2 * B)
        mask = (torch.arange(M)[None, :] < real[:, None]).to(device)
    return {**{n: x.to(device=device, dtype=dtype) for n, x in t.items()}, "mask": mask}


def _call(kernel: str, backend: str | None, q: torch.Tensor, kv: object, k: torch.Tensor, v: torch.Tensor,
          mask: torch.Tensor | None) -> torch.Tensor:
    if kernel == "current":
        return attend_heads(q, kv, mask)  # type: ignore[arg-type]
    fn = sdpa_attention if kernel == "sdpa" else sdpa_pad8_attention
    if backend is None:
        return fn(q, k, v, mask)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([getattr(SDPBackend, BACKENDS[backend])]):
        return fn(q, k, v, mask)


def _runner(kernel: str, backend: str | None, shape: AttentionShape, x: dict, mode: str
            ) -> Callable[[], tuple[torch.Tensor, ...]]:
    """One call of the case: ``(out,)`` or ``(out, *grads)``."""
    grad_kv = mode != "forward" and shape.self_attention
    q = x["q"].detach().requires_grad_(mode != "forward")
    k, v = (x[n].detach().requires_grad_(grad_kv) for n in ("k", "v"))
    # the current kernel sees the cross-attention's keys/values as the inner solve lays them out
    kv = solve_kv(k, v) if kernel == "current" and not shape.self_attention else (k, v)
    inputs = (q, k, v) if grad_kv else (q,)

    def run() -> tuple[torch.Tensor, ...]:
        if mode == "forward":
            with torch.no_grad():
                return (_call(kernel, backend, q, kv, k, v, x["mask"]),)
        out = _call(kernel, backend, q, kv, k, v, x["mask"])
        return (out, *torch.autograd.grad(out, inputs, x["dout"]))

    return run


def _reference(shape: AttentionShape, x: dict, mode: str) -> tuple[torch.Tensor, ...]:
    """Float64 math-backend attention (and gradients) of the same inputs."""
    x64 = {n: (t.double() if t is not None and t.is_floating_point() else t) for n, t in x.items()}
    return _runner("sdpa", "math", shape, x64, mode)()


def calls_per_block(fn: Callable[[], object], device: torch.device, block_s: float) -> int:
    """Calls of ``fn`` that take about ``block_s`` seconds (1 to 1000), after one warm-up call."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return max(1, min(1000, int(block_s / max(time.perf_counter() - t0, 1e-7))))


def time_block(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """µs per call of ``fn`` over ``calls`` calls (synchronised before and after on CUDA)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / calls * 1e6


def _first_call(run: Callable[[], tuple[torch.Tensor, ...]]) -> tuple[tuple[torch.Tensor, ...] | None, str]:
    """``(outputs, '')``, or ``(None, reason)`` when the (forced) backend refuses the call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return run(), ""
        except RuntimeError as err:
            said = dict.fromkeys(" ".join(str(w.message).split()) for w in caught)  # PyTorch's reasons, once each
            return None, " | ".join(said) or " ".join(str(err).split())


def _group(device: torch.device, shape: AttentionShape, dname: str, mode: str, x: dict, repeats: int,
           block_s: float) -> list[AttentionResult]:
    """Every variant of one shape, dtype and mode; the timed blocks interleaved (round ``r`` times one block of
    each variant, in alternating order), so a drift in the machine's speed affects all variants alike."""
    ref = _reference(shape, x, mode)
    results: list[AttentionResult] = []
    runs: dict[int, tuple[Callable, int]] = {}
    for name, kernel, backend in variants():
        used, picked = kernel, None
        if kernel == "current":
            used = attention_kernel(x["q"], (x["k"], x["v"]) if shape.self_attention else solve_kv(x["k"], x["v"]))
        if backend is None and used in ("sdpa", "sdpa_pad8"):
            picked = picked_backend(x["q"], x["k"], x["v"], x["mask"], used == "sdpa_pad8")
        run = _runner(kernel, backend, shape, x, mode)
        outs, reason = _first_call(run)
        if outs is None:
            results.append(AttentionResult(shape.name, dname, mode, name, used, backend, picked, "not eligible",
                                           reason))
            continue
        diff = max(float((o.detach().double() - r.detach()).abs().max()) for o, r in zip(outs, ref))
        runs[len(results)] = (run, calls_per_block(run, device, block_s))
        results.append(AttentionResult(shape.name, dname, mode, name, used, backend, picked, "ok", max_abs_diff=diff))
    samples: dict[int, list[float]] = {i: [] for i in runs}
    for r in range(repeats):
        for i in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            fn, calls = runs[i]
            samples[i].append(time_block(fn, device, calls))
    for i, times in samples.items():
        results[i].median_us = statistics.median(times)
    return results


def run_attention_bench(device: torch.device, batch: int = 64, heads: int = 32, width: int = 4,
                        dtypes: tuple[str, ...] = ("float32", "bfloat16"), shapes: tuple[AttentionShape, ...] = SHAPES,
                        repeats: int = 5, block_s: float = 0.005, budget_s: float | None = None,
                        seed: int = 0) -> list[AttentionResult]:
    """Every case (see module doc), one shape, dtype and mode at a time, until ``budget_s`` seconds (None: no
    limit); the groups of a spent budget are reported ``skipped``."""
    t_end = None if budget_s is None else time.perf_counter() + budget_s
    results: list[AttentionResult] = []
    for dname in dtypes:
        for shape in shapes:
            x = None
            for mode in MODES:
                if t_end is not None and time.perf_counter() > t_end:
                    results += [AttentionResult(shape.name, dname, mode, name, kernel, backend, None, "skipped",
                                                "time budget spent") for name, kernel, backend in variants()]
                    continue
                if x is None:
                    x = make_inputs(shape, batch, heads, width, DTYPES[dname], device, seed)
                results += _group(device, shape, dname, mode, x, repeats, block_s)
    return results


def _ok(results: list[AttentionResult]) -> dict[tuple[str, str, str, str], AttentionResult]:
    return {(r.shape, r.dtype, r.mode, r.variant): r for r in results if r.status == "ok"}


def summarize(results: list[AttentionResult]) -> list[dict]:
    """Per shape, dtype and mode: the fastest variant, its µs, plain SDPA's µs and the speed-ups over it."""
    ok = _ok(results)
    rows = []
    for key in dict.fromkeys((r.shape, r.dtype, r.mode) for r in results):
        cands = [r for (s, d, m, _), r in ok.items() if (s, d, m) == key]
        if not cands:
            continue
        best = min(cands, key=lambda r: r.median_us or math.inf)
        sdpa, pad8 = ok.get((*key, "sdpa")), ok.get((*key, "sdpa_pad8"))
        rows.append({"shape": key[0], "dtype": key[1], "mode": key[2], "fastest": best.variant,
                     "fastest_us": best.median_us, "sdpa_us": sdpa.median_us if sdpa else None,
                     "sdpa_picked": sdpa.picked if sdpa else None,
                     "speedup_fastest_vs_sdpa": sdpa.median_us / best.median_us if sdpa else None,
                     "speedup_pad8_vs_sdpa": sdpa.median_us / pad8.median_us if sdpa and pad8 else None})
    return rows


def auto_cuda_decision(results: list[AttentionResult], device: torch.device) -> dict:
    """The value ``solver.attention=auto`` should take on CUDA (``fastpath.AUTO_CUDA``), with the evidence.

    ``sdpa_pad8`` when its forward+backward beats plain SDPA by :data:`DECISION_SPEEDUP` (geometric
    mean over the measured shapes and dtypes), is at most 5 % slower on any, and its difference to
    float64 is at most twice SDPA's (plus 1e-6); else ``sdpa``. None off CUDA (CPU keeps its kernels).
    """
    if device.type != "cuda":
        return {"value": None, "current": AUTO_CUDA, "reason": "measured off CUDA: auto keeps the CPU kernels here"}
    ok = _ok(results)
    ratios, worse = [], []
    for (s, d, m, name), r in ok.items():
        pad8 = ok.get((s, d, m, "sdpa_pad8"))
        if name != "sdpa" or m != "forward+backward" or pad8 is None:
            continue
        ratios.append(r.median_us / pad8.median_us)  # type: ignore[operator]
        if pad8.max_abs_diff > 2 * r.max_abs_diff + 1e-6:  # type: ignore[operator]
            worse.append(f"{s} {d}")
    if not ratios:
        return {"value": "sdpa", "current": AUTO_CUDA,
                "reason": "no forward+backward timing of both sdpa and sdpa_pad8"}
    gmean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    pad8 = gmean >= DECISION_SPEEDUP and min(ratios) >= 0.95 and not worse
    why = (f"sdpa_pad8 vs sdpa forward+backward: {gmean:.2f}x (geometric mean of {len(ratios)} cases, "
           f"{min(ratios):.2f}x to {max(ratios):.2f}x)" + (f"; less accurate at {', '.join(worse)}" if worse else ""))
    return {"value": "sdpa_pad8" if pad8 else "sdpa", "current": AUTO_CUDA, "speedup_gmean": gmean,
            "speedup_min": min(ratios), "speedup_max": max(ratios), "reason": why}


def as_json(results: list[AttentionResult], device: torch.device, info: dict) -> dict:
    """The ``--out`` document: ``info`` (machine, sizes), ``results``, ``summary``, ``decision``."""
    return {**info, "complete": all(r.status != "skipped" for r in results),
            "results": [asdict(r) for r in results], "summary": summarize(results),
            "decision": auto_cuda_decision(results, device)}


def one_line(data: dict | None) -> str:
    """One-line summary of an ``--out`` document: fastest forward+backward variant per shape (float32) and
    its speed-up over plain SDPA, and the decision for ``auto`` on CUDA."""
    if not data or not data.get("summary"):
        return "no results"
    parts = [f"{r['shape']} {r['fastest']} {r['fastest_us']:.0f} us"
             + (f" ({r['speedup_fastest_vs_sdpa']:.2f}x sdpa)" if r.get("speedup_fastest_vs_sdpa") else "")
             for r in data["summary"] if r["mode"] == "forward+backward" and r["dtype"] == "float32"]
    dec = data.get("decision") or {}
    if dec.get("value"):
        parts.append(f"auto on CUDA -> {dec['value']} ({dec.get('reason', '')})")
    if not data.get("complete", True):
        parts.append("incomplete (time budget)")
    return "; ".join(parts)


def decision_lines(data: dict | None) -> list[str]:
    """Markdown section of ``make gpu-check``'s report: the value ``solver.attention=auto`` should take on
    CUDA, what to change for it, and the forward+backward figures it rests on."""
    lines = ["## Attention kernel: `solver.attention=auto` on CUDA", ""]
    dec = (data or {}).get("decision") or {}
    if not dec.get("value"):
        return lines + ["Not decided: the bench-attention part gave no CUDA measurement (see its log)."]
    value, now = dec["value"], dec["current"]
    todo = "keep it" if value == now else f'set `AUTO_CUDA = "{value}"` in `ddeqs/models/ddeq/fastpath.py`'
    lines += [f"**{value}** (now `{now}`: {todo}). {dec['reason']}. Rule: sdpa_pad8 when its forward+backward "
              f"is >= {DECISION_SPEEDUP:.2f}x plain SDPA (geometric mean), >= 0.95x everywhere, and as accurate.", "",
              "| shape | dtype | sdpa µs (backend) | sdpa_pad8 / sdpa | fastest variant | µs |",
              "|---|---|---|---|---|---|"]
    for r in (data or {}).get("summary", []):
        if r["mode"] != "forward+backward" or r.get("sdpa_us") is None:
            continue
        pad8 = "n/a" if r.get("speedup_pad8_vs_sdpa") is None else f"{r['speedup_pad8_vs_sdpa']:.2f}x faster"
        lines.append(f"| {r['shape']} | {r['dtype']} | {r['sdpa_us']:.0f} ({r.get('sdpa_picked') or 'n/a'}) | {pad8} "
                     f"| {r['fastest']} | {r['fastest_us']:.0f} |")
    if not data.get("complete", True):  # type: ignore[union-attr]
        lines += ["", "Some cases were skipped (time budget): see `bench-attention.json`."]
    return lines
