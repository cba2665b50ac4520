"""``ddeqs bench step|momentum|train|composition|attention|bf16``: speed and memory of the DDEQ forward solver,
its attention kernels and its bf16 precision (figures, not tests).

``step``: median time of full training steps (inner WGF solve + phantom-gradient backward + Adam
step) per implementation and iteration count, time per inner iteration, peak memory of the
steps, device; the naive/fast ratio when both are timed, the memory growth between iteration
counts, and (``--check``) the agreement of Z* between the two implementations. ``--impl graph``: the
fast path with ``solver.cuda_graph`` (for CUDA), with the fast/graph ratio. Each
configuration runs in its own process and their timed steps are interleaved (round r times step
r of every configuration), so a shared machine's drift in speed does not enter the ratio; the
range of the per-round ratios is printed with it.

``momentum``: inner iterations that heavy-ball / Nesterov momentum need to reach the objective
plain descent reaches after ``--iters`` iterations (paper: 200), and where the relative-objective
stop ``solver.objective_ratio`` (set to the ratio plain descent reached) stops each setting.
Default task: completion (on an untrained classifier, plain descent at step 5 does not converge).

``train``: one run configuration trained once per solver setting (plain descent at its iterations,
at a quarter of them, momentum with the ratio stop, momentum at evaluation only), each into a
normal run folder: training wall time, inner iterations per step, test metric ± s.e., time ratio.

``composition``: on a trained DDEQ run, how far each test cloud's output moves when it is solved in a
padded batch instead of alone (same Z0), in float32 and float64.

``attention``: the DDEQ's attention (32 heads of width 4) at its shapes (classification and
completion, Z self-attention and cross-attention to 200 padded points), float32 and bf16: median
µs per call, forward and forward+backward, of the device's current kernel, plain SDPA, SDPA at
the head width padded to 8 (``solver.attention=sdpa_pad8``), each under every SDPA backend forced
(or why it is not eligible), with the difference to float64; on CUDA, which kernel
``solver.attention=auto`` should take.

``bf16``: how far ``solver.bf16`` moves Z* and the output from float32, next to how far float32
moves them from float64 (same weights, batch and Z0), per inner iteration count; ``--run DIR`` for a
trained run's weights and test clouds.

Problems are synthetic and paper-sized: ``--dataset mnist-pc`` (2-D, MNIST-pc architecture) or
``modelnet40-s`` (3-D, three cross layers); completion with 200 input points has 255 slots. Run
settings go by ``--set KEY=VALUE`` (``train.device``, ``solver.momentum``, ``solver.compile``, ...)
and results to ``--out FILE`` (JSON), as in every ``ddeqs`` command.
"""

from __future__ import annotations

import argparse
import sys

from ddeqs.cli.common import Deprecated, add_no_tracking, add_set, deprecated_set, tracking_overrides
from ddeqs.data.registry import paper_datasets


def _out_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", dest="json_out", metavar="FILE", help="also write the results to FILE as JSON")
    p.add_argument("--json", dest="json_out", action=Deprecated, new="--out", help=argparse.SUPPRESS)


def _problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=["classification", "completion"], default="classification")
    p.add_argument("--dataset", choices=paper_datasets(), default=None,
                   help="synthetic problem shaped like this dataset: 2-D MNIST-pc (one cross layer for "
                        "classification) or 3-D ModelNet40-s (default: mnist-pc)")
    p.add_argument("--dataset-shape", dest="shape", choices=["mnist", "modelnet"], default="mnist",
                   action=Deprecated, new="--dataset mnist-pc|modelnet40-s", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=8, help="clouds per batch (default: 8)")
    p.add_argument("--points", type=int, default=200, help="input points per cloud (default: 200)")
    p.add_argument("--z-particles", dest="z_particles", type=int, default=10,
                   help="classification: particles of Z (default: 10)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the synthetic batch (default: 0)")
    add_set(p, "run setting (config override), repeatable, e.g. --set train.device=cuda --set solver.momentum=0.5 "
               "(train.device default: auto, cuda when present)")
    deprecated_set(p, "--device", "train.device")
    _out_json(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmark the forward solver (speed, memory, momentum)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    p = sub.add_parser("step", help="time full training steps, fast vs naive inner solve",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _problem_args(p)
    p.add_argument("--iters", type=int, nargs="+", default=[200], help="inner iterations, one or more (default: 200)")
    p.add_argument("--impl", nargs="+", choices=["fast", "naive", "graph"], default=["fast"],
                   help="implementation(s) to time (default: fast); graph: the fast path with solver.cuda_graph "
                        "(the inner iteration replayed from a CUDA graph; on CPU the same loop uncaptured)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    deprecated_set(p, "--momentum", "solver.momentum")  # run settings: --set solver.momentum=..., solver.nesterov,
    deprecated_set(p, "--nesterov", "solver.nesterov", flag=True)  # solver.compile, solver.bf16 (GPU)
    deprecated_set(p, "--compile", "solver.compile", flag=True)
    deprecated_set(p, "--bf16", "solver.bf16", flag=True)
    p.add_argument("--check", action="store_true",
                   help="also compare Z* of fast and naive (shared weights, input and Z0, float64)")
    p.add_argument("--check-iters", type=int, default=20, help="inner iterations of the --check solves (default: 20)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run every configuration in this process, one after the other (memory figures then "
                        "overlap); default: one process per configuration, timed steps interleaved")
    p.set_defaults(func=step_cmd)

    p = sub.add_parser("momentum", help="iterations momentum needs to reach plain descent's objective",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _problem_args(p)
    p.set_defaults(task="completion")
    p.add_argument("--iters", type=int, default=200, help="plain-descent iterations that set the target (default: 200)")
    p.add_argument("--momentum", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9],
                   help="momentum values to try (default: 0.5 0.7 0.8 0.9)")
    p.add_argument("--nesterov", choices=["both", "yes", "no"], default="both",
                   help="heavy ball (no), Nesterov (yes) or both (default)")
    p.add_argument("--tol", type=float, default=0.0,
                   help="also run with the rate stopping rule solver.tol at this value (default 0: skip)")
    p.set_defaults(func=momentum_cmd)

    p = sub.add_parser("train", help="train one configuration under several solver settings: time to accuracy",
                       description=_train_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", metavar="FILE", help="run configuration YAML, as for ddeqs train (default: built-in defaults)")
    add_set(p, "run setting (config override) for every setting, repeatable (e.g. --set train.epochs=2)")
    p.add_argument("--setting", dest="settings", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="a preset name (paper, fast-train, plain, plain-quarter, momentum, momentum-eval) or "
                        "'NAME:key=value,key=value'; repeatable, in order, the first is the reference "
                        "(default: paper fast-train plain momentum)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the run folders, one per setting (DIR/NAME)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--progress", action="store_true", help="progress bars (default: one line per epoch)")
    add_no_tracking(p)
    p.set_defaults(func=train_cmd)

    p = sub.add_parser("composition", help="does a trained DDEQ's output depend on its batch-mates? (float32 vs float64)",
                       description=_composition_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a finished DDEQ run folder (config.yaml, model.pt)")
    p.add_argument("--clouds", type=int, default=32, help="test clouds to measure (default: 32)")
    p.add_argument("--batch", type=int, default=8, help="clouds per padded batch (default: 8)")
    p.add_argument("--extra-pad", dest="extra_pad", type=int, default=16,
                   help="extra all-padding rows per batch, filled with garbage (default: 16)")
    p.add_argument("--iters", type=int, default=None,
                   help="inner iterations of the solves (default: the run's solver.eval_iters or solver.iters)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    _out_json(p)
    p.set_defaults(func=composition_cmd)

    # ---- bench attention
    p = sub.add_parser("attention", help="attention kernels at the DDEQ's shapes, per SDPA backend (pad-8 decision)",
                       description=_attention_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="clouds per batch (default: 64, the paper's)")
    p.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"], default=["float32", "bfloat16"],
                   help="input dtypes (default: float32 bfloat16)")
    p.add_argument("--shapes", nargs="+", default=None, metavar="SHAPE",
                   help="cls-z-self, cls-cross, cpl-z-self, cpl-cross (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks of calls per case, median reported (default: 5)")
    p.add_argument("--budget-s", dest="budget_s", type=float, default=None,
                   help="stop timing after this many seconds; the remaining cases are reported skipped")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add_set(p, "run setting (config override), repeatable: train.device (default auto, cuda when present), "
               "model.z_dim and model.heads (head width z_dim / heads)")
    _out_json(p)
    p.set_defaults(func=attention_cmd)

    _register_bf16(sub)


def _spec(args: argparse.Namespace, **kw):  # type: ignore[no-untyped-def]
    from ddeqs.bench.problem import ProblemSpec

    return ProblemSpec(task=args.task, shape=_shape(args), batch=args.batch, points=args.points,
                       z_particles=args.z_particles, seed=args.seed,
                       overrides=tuple(args.overrides), **kw)


def _shape(args: argparse.Namespace) -> str:
    """``mnist`` / ``modelnet`` (the problem's shape: the dataset's role) from ``--dataset`` (or the old
    ``--dataset-shape``)."""
    from ddeqs.data.registry import spec

    if args.dataset is None:
        return args.shape
    return spec(args.dataset).role


def _validate(args: argparse.Namespace) -> None:
    from ddeqs.config import ConfigError

    args.shape = _shape(args)

    for name in ("batch", "points", "z_particles"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1 (got {args.threads})")


def _mib(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.1f}"


def step_cmd(args: argparse.Namespace) -> int:
    from ddeqs.bench.step import compare_fixed_points, run_step_benches
    from ddeqs.config import ConfigError

    _validate(args)
    if min(args.iters) < 1 or args.repeats < 1 or args.warmup < 0:
        raise ConfigError("--iters and --repeats must be at least 1, --warmup at least 0")
    base = _spec(args, iters=args.iters[0])
    from ddeqs.bench.problem import problem_config

    problem_config(base)  # validate --set keys before spawning anything
    from dataclasses import replace

    print(f"ddeqs bench step: task {args.task}, shape {args.shape}, batch {args.batch}, {args.points} points, "
          f"{'Z of ' + str(args.z_particles) if args.task == 'classification' else 'slots ' + str(args.points + -(-args.points * 11 // 40))}, "
          f"median of {args.repeats} steps after {args.warmup} warm-up"
          f"{', one process per configuration, steps interleaved' if args.isolate else ''}", flush=True)
    header = f"{'impl':<6} {'iters':>6} {'step s (median)':>16} {'ms / inner iter':>16} {'peak MiB':>10}  device"
    print(header)
    specs = [replace(base, iters=iters, impl=impl) for iters in args.iters for impl in args.impl]
    results = run_step_benches(specs, args.repeats, args.warmup, args.threads, isolate=args.isolate)
    for r in results:
        print(f"{r.spec['impl']:<6} {r.spec['iters']:>6} {r.median_step_s:>16.4f} {r.per_iter_ms:>16.2f} "
              f"{_mib(r.peak_mem_mib):>10}  {r.device} ({r.threads} threads)", flush=True)
    summary: dict = {"results": [r.as_dict() for r in results], "ratios": {}, "memory": {}}
    by = {(r.spec["impl"], r.spec["iters"]): r for r in results}
    for iters in args.iters:
        if ("fast", iters) in by and ("naive", iters) in by:
            naive, fast = by[("naive", iters)], by[("fast", iters)]
            ratio = naive.median_step_s / fast.median_step_s
            rounds = [n / f for n, f in zip(naive.step_seconds, fast.step_seconds)]
            summary["ratios"][str(iters)] = ratio
            summary.setdefault("round_ratios", {})[str(iters)] = rounds
            spread = f"; per round {min(rounds):.1f}x to {max(rounds):.1f}x" if args.isolate else ""
            print(f"speed-up at {iters} iterations: naive / fast = {ratio:.1f}x (ratio of the medians{spread})")
        if ("fast", iters) in by and ("graph", iters) in by:
            fast, graph = by[("fast", iters)], by[("graph", iters)]
            summary.setdefault("graph_ratios", {})[str(iters)] = fast.median_step_s / graph.median_step_s
            print(f"CUDA graph at {iters} iterations: fast / graph = {fast.median_step_s / graph.median_step_s:.2f}x")
    if len(args.iters) > 1:
        lo, hi = min(args.iters), max(args.iters)
        for impl in args.impl:
            a, b = by.get((impl, lo)), by.get((impl, hi))
            if a and b and a.peak_mem_mib is not None and b.peak_mem_mib is not None:
                summary["memory"][impl] = {"iters": [lo, hi], "peak_mib": [a.peak_mem_mib, b.peak_mem_mib]}
                print(f"peak memory {impl}: {_mib(a.peak_mem_mib)} MiB at {lo} iterations, "
                      f"{_mib(b.peak_mem_mib)} MiB at {hi} ({results[0].mem_kind})")
    if args.check:
        diff = compare_fixed_points(base, iters=args.check_iters)
        summary["z_star_max_abs_diff"] = diff
        print(f"Z* fast vs naive ({args.check_iters} iterations in float64, same weights, input and Z0): "
              f"max |difference| = {diff:.2e}")
    if args.json_out:
        _write_json(args.json_out, summary)
    return 0


def momentum_cmd(args: argparse.Namespace) -> int:
    from ddeqs.bench.momentum import momentum_study
    from ddeqs.config import ConfigError

    _validate(args)
    if args.iters < 1 or any(not 0.0 <= m < 1.0 for m in args.momentum):
        raise ConfigError("--iters must be at least 1 and every --momentum in [0, 1)")
    nest = {"both": [False, True], "yes": [True], "no": [False]}[args.nesterov]
    settings = [(m, n) for m in args.momentum for n in nest]
    spec = _spec(args, iters=args.iters)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(f"ddeqs bench momentum: task {args.task}, shape {args.shape}, batch {args.batch}, {args.points} points; "
          f"target = objective of plain descent after {args.iters} iterations", flush=True)
    target, ratio, rows = momentum_study(spec, settings, reference_iters=args.iters, tol=args.tol)
    print(f"plain descent, {args.iters} iterations: mean ½MMD² {float(target.mean()):.4e}; ratio rule: "
          f"solver.objective_ratio = {ratio:.4g} (the smallest ratio to the Z0 objective plain descent reached)")
    tol_col = f" {'tol ' + format(args.tol, 'g') + ': stops at, <= target':>28}" if args.tol > 0 else ""
    print(f"{'momentum':>8} {'nesterov':>8} {'trace reaches':>13} {'returned <= target from':>23} "
          f"{'returned at ' + str(args.iters):>16} {'ratio rule: stops at':>20} {'<= target':>9}{tol_col}")
    for r in rows:
        reach = "never" if r.reach_iters is None else str(r.reach_iters)
        stay = "never" if r.stay_iters is None else str(r.stay_iters)
        extra = (f" {str(r.tol_stop_iters) + ', ' + str(r.tol_stop_reached).lower():>28}"
                 if r.tol_stop_iters is not None else "")
        print(f"{r.momentum:>8g} {str(r.nesterov).lower():>8} {reach:>13} {stay:>23} {r.final_objective:>16.4e} "
              f"{r.stop_iters:>20} {str(r.stop_reached).lower():>9}{extra}", flush=True)
    stayed = [r for r in rows if r.stay_iters is not None]
    if stayed:
        best = min(stayed, key=lambda r: r.stay_iters)
        print(f"best: momentum {best.momentum:g} ({'Nesterov' if best.nesterov else 'heavy ball'}) returns an iterate at "
              f"or below the {args.iters}-iteration objective of plain descent from iteration {best.stay_iters} on "
              f"({args.iters / max(best.stay_iters, 1):.1f}x fewer iterations)")
    else:
        print(f"no setting returns an iterate at or below the {args.iters}-iteration objective of plain descent")
    if args.json_out:
        _write_json(args.json_out, {"target_mean": float(target.mean()), "iters": args.iters, "objective_ratio": ratio,
                                    "rows": [r.as_dict() for r in rows]})
    return 0


def _train_doc() -> str:
    from ddeqs.bench import train

    return (train.__doc__ or "").strip()


def _pm(mean: float | None, se: float | None, fmt: str) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:{fmt}} ± {se:{fmt}}" if se is not None else f"{mean:{fmt}}"


def _print_targets(rows: list, task: str) -> None:
    """Time to target per setting: the first evaluated epoch at the reference's metric within one s.e."""
    from ddeqs.bench.train import primary_metric

    metric, higher = primary_metric(task)
    if rows[0].target is None:
        return
    evaluated = max(len(r.curve) for r in rows)
    print(f"time to target: {metric} {'>=' if higher else '<='} {rows[0].target:.4g} (the reference's final value, "
          f"one s.e. towards worse); test metrics at {evaluated} epoch(s)"
          + ("" if evaluated > 1 else " (only the last: add --set train.eval_every=1 for the epoch it is first reached)"))
    print(f"{'setting':<16} {'epoch':>6} {'train s':>9} {'ratio':>7} {'share':>7}   {metric} per evaluated epoch")
    for r in rows:
        curve = " ".join(f"{c[metric]:.4g}" for c in r.curve if metric in c)
        if r.target_epoch is None:
            print(f"{r.name:<16} {'never':>6} {'':>9} {'':>7} {'':>7}   {curve}")
        else:
            ratio = "n/a" if r.target_ratio is None else f"{r.target_ratio:.2f}"
            share = "n/a" if r.target_share is None else f"{r.target_share:.2f}"
            print(f"{r.name:<16} {r.target_epoch:>6} {r.target_seconds:>9.1f} {ratio:>7} {share:>7}   {curve}")
    print(f"ratio: training seconds to target / the reference's ({rows[0].name!r}); share: / the reference's whole "
          "training time")


def train_cmd(args: argparse.Namespace) -> int:
    from ddeqs.bench.machine import cpu_model
    from ddeqs.bench.train import metric_columns, resolve_settings, run_train_bench
    from ddeqs.config import load_config

    overrides = tracking_overrides(args)
    base = load_config(args.params, overrides)
    settings = resolve_settings(args.settings, base)
    cpu = cpu_model()
    import torch

    print(f"ddeqs bench train: {args.params or 'built-in defaults'}"
          f"{' ' + ' '.join(overrides) if overrides else ''}; task {base.task}, {base.model.name} on "
          f"{base.data.dataset}, {base.train.epochs} epoch(s), solver.iters {base.solver.iters}; "
          f"{len(settings)} settings, reference {settings[0].name!r}; CPU: {cpu}", flush=True)
    rows = run_train_bench(args.params, overrides, settings, args.out, quiet=not args.progress)
    cols = metric_columns(base.task)
    fmt = {"accuracy": ".4f", "w2_free": ".4g", "mmd2": ".3e"}
    head = (f"{'setting':<16} {'train s':>9} {'eval+setup s':>12} {'inner it/step':>13} "
            + " ".join(f"{c + ' ± s.e.':>22}" for c in cols) + f" {'time ratio':>10} {'load before/after':>17}")
    print(head)
    for r in rows:
        it = "n/a" if r.inner_iters is None else f"{r.inner_iters:.1f}"
        vals = " ".join(f"{_pm(r.test.get(c), r.test.get(c + '_se'), fmt[c]):>22}" for c in cols)
        load = "reused" if r.reused else "n/a" if r.load_avg is None else f"{r.load_avg[0]:.1f} / {r.load_avg[1]:.1f}"
        ev = "n/a" if r.eval_seconds is None else f"{r.eval_seconds:.1f}"
        print(f"{r.name:<16} {r.train_seconds:>9.1f} {ev:>12} {it:>13} {vals} {r.time_ratio:>10.2f} {load:>17}")
    _print_targets(rows, base.task)
    for r in rows:
        print(f"  {r.name}: {' '.join(r.overrides) or '(no overrides)'} -> {r.run_dir}")
    device = rows[0].device
    import os

    print(f"device {device}, torch threads {base.train.threads or torch.get_num_threads()}, CPU: {cpu} "
          f"({os.cpu_count()} cores); time ratio = training wall time / that of {rows[0].name!r}; "
          "settings ran one after the other: a load above the core count means other work shared the cores")
    if args.json_out:
        _write_json(args.json_out, {
            "params": args.params, "overrides": overrides, "task": base.task, "model": base.model.name,
            "dataset": base.data.dataset, "epochs": base.train.epochs, "cpu": cpu, "cores": os.cpu_count(),
            "device": device,
            "torch_version": torch.__version__, "reference": rows[0].name, "metrics": cols,
            "settings": [r.as_dict() for r in rows],
        })
    return 0


def _composition_doc() -> str:
    from ddeqs.bench import composition

    return (composition.__doc__ or "").strip()


def composition_cmd(args: argparse.Namespace) -> int:
    from ddeqs.bench.composition import composition_from_run
    from ddeqs.config import ConfigError

    if args.clouds < 1 or args.batch < 1 or args.extra_pad < 0 or (args.iters is not None and args.iters < 1):
        raise ConfigError("--clouds, --batch and --iters must be at least 1, --extra-pad at least 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = composition_from_run(args.run_dir, clouds=args.clouds, batch=args.batch, extra_pad=args.extra_pad,
                                iters=args.iters)
    r0 = rows[0]
    what = "logits" if r0.task == "classification" else "free particles"
    print(f"ddeqs bench composition: {args.run_dir} ({r0.task}), {r0.clouds} test clouds alone vs in padded "
          f"batches of {r0.batch} (+{args.extra_pad} padding rows), {r0.iters} inner iterations, same Z0")
    extra = "flips" if r0.task == "classification" else "mean MMD² alone vs batch"
    print(f"{'dtype':<8} {'max |Δ ' + what + '|':>24} {'median per cloud':>17} {extra:>24}")
    for r in rows:
        col = str(r.flips) if r.task == "classification" else f"{r.mmd2_between:.3e}"
        print(f"{r.dtype:<8} {r.max_abs_diff:>24.3e} {r.median_abs_diff:>17.3e} {col:>24}")
    if r0.accuracy_alone is not None:
        print(f"accuracy of the alone solves on these clouds: {100 * r0.accuracy_alone:.1f} %")
    if args.json_out:
        _write_json(args.json_out, {"run_dir": str(args.run_dir), "results": [r.as_dict() for r in rows]})
    return 0


def _attention_doc() -> str:
    para = next(p for p in (__doc__ or "").split("\n\n") if p.startswith("``attention``"))
    return (f"ddeqs bench {para}\n\nDetails: ddeqs/bench/attention.py; CPU figures and what make gpu-check decides: "
            "docs/benchmarks.md (Attention kernels).")


def attention_cmd(args: argparse.Namespace) -> int:
    import os

    import torch

    from ddeqs.bench.attention import SHAPES, as_json, run_attention_bench
    from ddeqs.bench.machine import cpu_model
    from ddeqs.config import ConfigError, load_config
    from ddeqs.training.seeding import device_label, resolve_device

    cfg = load_config(None, list(args.overrides))
    names = {s.name: s for s in SHAPES}
    unknown = sorted(set(args.shapes or []) - set(names))
    if unknown or args.batch < 1 or args.repeats < 1:
        raise ConfigError(f"--shapes must be among {', '.join(names)} (got {', '.join(unknown)}); --batch and "
                          "--repeats at least 1" if unknown else "--batch and --repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(cfg.train.device)
    heads, width = cfg.model.heads, cfg.model.z_dim // cfg.model.heads
    shapes = tuple(names[n] for n in args.shapes) if args.shapes else SHAPES
    info = {"device": device_label(device), "device_type": device.type, "cpu": cpu_model(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "batch": args.batch, "heads": heads,
            "head_width": width, "attention_shapes": [s.__dict__ for s in shapes]}
    print(f"ddeqs bench attention: {info['device']} (CPU: {info['cpu']}, {info['threads']} threads), torch "
          f"{info['torch']}; batch {args.batch}, {heads} heads of width {width}; median of {args.repeats} blocks; "
          "us per call; diff = max |output, gradients - float64 math|", flush=True)
    print(f"{'shape':<11} {'dtype':<9} {'mode':<17} {'variant':<20} {'kernel / picked':<26} {'us':>10} {'diff':>9}")
    results = run_attention_bench(device, args.batch, heads, width, tuple(args.dtypes), shapes, args.repeats,
                                  budget_s=args.budget_s)
    for r in results:
        used = r.kernel if r.picked is None else f"{r.kernel} ({r.picked})"
        if r.status == "ok":
            print(f"{r.shape:<11} {r.dtype:<9} {r.mode:<17} {r.variant:<20} {used:<26} {r.median_us:>10.1f} "
                  f"{r.max_abs_diff:>9.1e}")
        elif r.status == "not eligible":
            print(f"{r.shape:<11} {r.dtype:<9} {r.mode:<17} {r.variant:<20} not eligible: {r.reason[:160]}")
    data = as_json(results, device, info)
    skipped = sum(r.status == "skipped" for r in results)
    if skipped:
        print(f"{skipped} cases skipped: --budget-s {args.budget_s:g} s spent")
    for row in data["summary"]:
        if row["speedup_fastest_vs_sdpa"]:
            print(f"fastest {row['shape']} {row['dtype']} {row['mode']}: {row['fastest']} {row['fastest_us']:.1f} us, "
                  f"{row['speedup_fastest_vs_sdpa']:.2f}x plain sdpa (picked {row['sdpa_picked'] or 'n/a'})"
                  + (f"; sdpa_pad8 {row['speedup_pad8_vs_sdpa']:.2f}x" if row["speedup_pad8_vs_sdpa"] else ""))
    dec = data["decision"]
    print(f"solver.attention=auto on CUDA: {dec['value'] or 'not decided here'} (now {dec['current']}); "
          f"{dec['reason']}")
    if args.json_out:
        _write_json(args.json_out, data)
    return 0


def _bf16_doc() -> str:
    from ddeqs.bench import bf16

    return (bf16.__doc__ or "").strip()


PARTS_BF16 = ("attention", "ffn", "embed", "bilinear")  # ddeqs.bench.bf16.PARTS (not imported: it imports torch)


def _register_bf16(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bf16", help="how far solver.bf16 moves Z* from float32 (float64 as the yardstick)",
                       description=_bf16_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _problem_args(p)
    p.add_argument("--iters", type=int, nargs="+", default=[25, 50, 200],
                   help="inner iteration counts, one or more (default: 25 50 200)")
    p.add_argument("--run", metavar="DIR", default=None,
                   help="a finished DDEQ run folder: its weights and its first --batch test clouds (then --task, "
                        "--dataset, --points, --z-particles come from the run; --set: solver.*, train.device, "
                        "train.threads only); default: random weights on a synthetic batch")
    p.add_argument("--fp32-part", dest="fp32_parts", action="append", default=[], choices=PARTS_BF16,
                   help="diagnostic: keep this part of F in float32 inside the bf16 solve (repeatable; default: the "
                        "whole Z branch in bf16, as solver.bf16 runs it)")
    p.set_defaults(func=bf16_cmd)


def bf16_cmd(args: argparse.Namespace) -> int:
    import os

    import torch

    from ddeqs.bench.bf16 import ERROR_FACTOR, bf16_study, problem_from_run, synthetic_problem
    from ddeqs.bench.machine import cpu_model
    from ddeqs.config import ConfigError

    _validate(args)
    if min(args.iters) < 1:
        raise ConfigError("--iters must be at least 1")
    if args.run:
        problem = problem_from_run(args.run, args.batch, args.overrides, seed=args.seed)
    else:
        from ddeqs.bench.problem import problem_config

        spec = _spec(args, iters=max(args.iters))
        problem_config(spec)  # validate --set keys first
        problem = synthetic_problem(spec)
        print("note: random weights (no --run): the figures show how bf16 rounding propagates through an untrained "
              "F; trained weights can differ", flush=True)
    if args.threads:  # after loading a run, which applies its own train.threads
        torch.set_num_threads(args.threads)
    cpu = cpu_model()
    threads = torch.get_num_threads()
    device = str(problem.device) + (f" ({torch.cuda.get_device_name(problem.device)})"
                                    if problem.device.type == "cuda" else "")
    B = problem.batch.points.shape[0]
    print(f"ddeqs bench bf16: {problem.task}, {problem.source}; {B} clouds, same weights, batch and initial state in "
          f"every precision; device {device}, CPU: {cpu}, torch threads {threads}", flush=True)
    if args.fp32_parts:
        print(f"diagnostic: {', '.join(args.fp32_parts)} of F kept in float32 inside the bf16 solve", flush=True)
    rows = bf16_study(problem, args.iters, args.fp32_parts)
    cls = problem.task == "classification"
    out_head = "max |Δ logit|  flips" if cls else "MMD² between  / to target"
    print(f"{'iters':>5} {'pair':<13} {'Z* rel err':>10} {'worst':>9} {'max |Δ Z*|':>10} {out_head:>26}")
    for r in rows:
        for name in ("bf16_vs_fp32", "fp32_vs_fp64", "fp32_redraw"):
            d = getattr(r, name)
            zs = (f"{d['z_rel_err']:>10.2e} {d['z_rel_err_worst']:>9.2e} {d['z_max_abs']:>10.2e}" if "z_rel_err" in d
                  else f"{'-':>10} {'-':>9} {'-':>10}")  # another Z0: particles are not comparable row by row
            if cls:
                out = f"{d['logit_max_abs']:>13.2e} {d['flips']:>3}/{B:<3}"
            else:
                out = f"{d['mmd2_between']:>13.2e} {d.get('mmd2_between_rel', float('nan')):>12.2e}"
            print(f"{r.iters:>5} {name:<13} {zs} {out:>26}")
        metric = "accuracy" if cls else "MMD² to target"
        print(f"{'':>5} ½MMD² objective fp32 {r.objective['float32']:.4e}, bf16 {r.objective['bf16']:.4e}, fp64 "
              f"{r.objective['float64']:.4e}; {metric} fp32 {r.metric['float32']:.4g}, bf16 {r.metric['bf16']:.4g}, "
              f"fp64 {r.metric['float64']:.4g}; solve s fp32 {r.seconds['float32']:.2f}, bf16 {r.seconds['bf16']:.2f}, "
              f"fp64 {r.seconds['float64']:.2f}")
        print(f"{'':>5} bf16 error / float32's own: {r.error_ratio:.3g}x; within the tolerance (bf16 within "
              f"{ERROR_FACTOR:g}x float32's own error, Z* and output): {'yes' if r.within_tolerance else 'no'}",
              flush=True)
    print("fp32_redraw: float32 from another initial draw (Z0 / free particles) vs float32: the model's own "
          "dependence on its random start")
    if args.json_out:
        _write_json(args.json_out, {
            "task": problem.task, "source": problem.source, "clouds": B, "device": device, "cpu": cpu,
            "cores": os.cpu_count(), "threads": threads, "torch_version": torch.__version__,
            "fp32_parts": args.fp32_parts, "rows": [r.as_dict() for r in rows],
        })
    return 0


def _write_json(path: str, data: dict) -> None:
    from pathlib import Path

    from ddeqs.training.runfolder import write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(path), data)
    print(f"wrote {path}", file=sys.stderr)

