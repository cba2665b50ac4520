"""CUDA: device placement, every model's forward/backward on the GPU, fast = naive inner solve on the GPU.

Marked ``cuda`` and skipped (with the reason) where ``torch.cuda.is_available()`` is false, as on
CPU machines and CI; ``make gpu-check`` (``python -m ddeqs.bench.gpu_check``) runs them on a GPU
machine with ``pytest -m cuda``. Sizes are small: these check correctness, not speed.
"""

from __future__ import annotations

import pytest
import torch

from ddeqs.batch import CloudBatch, pad_clouds
from ddeqs.config import load_config
from ddeqs.models import build_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="CUDA is not available (torch.cuda.is_available() is false): GPU-only test"),
]

TINY = ["model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32", "model.cross_layers=1",
        "model.coupling_width=8", "model.z_particles=5", "model.pcn_points=32", "model.pt_channels=[16,32]",
        "model.pt_strides=[1,4]", "solver.iters=6", "solver.step=1.0", "train.device=cuda"]
MODELS = [("classification", "ddeq"), ("completion", "ddeq"), ("classification", "pointnet"),
          ("classification", "point-transformer"), ("completion", "pcn")]


def _cfg(task: str, name: str, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [f"task={task}", f"model.name={name}", *TINY, *extra])


def _batch(task: str, sizes: tuple[int, ...] = (40, 31, 22), seed: int = 0) -> CloudBatch:
    """Padded 2-D clouds of ``sizes`` points; completion: input = first 3/4, target = all, missing = the rest."""
    g = torch.Generator().manual_seed(seed)
    full = [torch.randn(n, 2, generator=g) for n in sizes]
    if task == "classification":
        pts, mask = pad_clouds(full)
        return CloudBatch(pts, mask, labels=torch.arange(len(sizes)) % 5)
    keep = [3 * n // 4 for n in sizes]
    pts, mask = pad_clouds([c[:k] for c, k in zip(full, keep)])
    b = CloudBatch(pts, mask, labels=torch.zeros(len(sizes), dtype=torch.long))
    b.target, b.target_mask = pad_clouds(full)
    b.missing, b.missing_mask = pad_clouds([c[k:] for c, k in zip(full, keep)])
    return b


def test_device_resolution_and_batch_placement() -> None:
    from ddeqs.training.seeding import device_label, resolve_device

    dev = resolve_device("cuda")
    assert dev.type == "cuda" and resolve_device("auto").type == "cuda"
    assert device_label(dev) == torch.cuda.get_device_name(dev)
    b = _batch("completion").to(dev)
    for t in (b.points, b.mask, b.labels, b.target, b.target_mask, b.missing, b.missing_mask):
        assert t.device.type == "cuda"


@pytest.mark.parametrize(("task", "name"), MODELS)
def test_model_forward_backward_on_cuda(task: str, name: str) -> None:
    from ddeqs.training.losses import per_sample_loss

    cfg = _cfg(task, name)
    torch.manual_seed(0)
    model = build_model(cfg, 2, 5).cuda().train()
    batch = _batch(task).to("cuda")
    out = model(batch.points, batch.mask)
    loss = per_sample_loss(cfg, out, batch)
    assert loss.device.type == "cuda" and loss.shape == (3,) and torch.isfinite(loss).all()
    loss.mean().backward()
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device.type == "cuda" for _, g in grads)
    assert all(torch.isfinite(g).all() for _, g in grads)
    assert any(float(g.abs().sum()) > 0 for _, g in grads)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.step()  # the optimizer state lives on the GPU too
    assert all(s["exp_avg"].device.type == "cuda" for s in opt.state.values())


@pytest.mark.parametrize(("task", "name"), [m for m in MODELS if m[1] != "ddeq"])
def test_baseline_eval_output_on_cuda_matches_cpu(task: str, name: str) -> None:
    """Deterministic baselines: same weights and input give the same output on both devices (float32)."""
    cfg = _cfg(task, name)
    torch.manual_seed(0)
    model = build_model(cfg, 2, 5).eval()
    batch = _batch(task)
    with torch.no_grad():
        ref = model(batch.points, batch.mask)
        gpu = model.cuda()(batch.points.cuda(), batch.mask.cuda())
    a, b = (ref.logits, gpu.logits) if task == "classification" else (ref.points, gpu.points)
    assert torch.allclose(a, b.cpu(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("task", ["classification", "completion"])
def test_fast_and_naive_reach_the_same_fixed_point_on_cuda(task: str) -> None:
    """As tests/test_bench.py on CPU: paper-width problem, float64, shared weights, input and Z0."""
    from ddeqs.bench.problem import ProblemSpec
    from ddeqs.bench.step import compare_fixed_points

    spec = ProblemSpec(task=task, batch=3, points=30, device="cuda",
                       overrides=("model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32",
                                  "model.coupling_width=8"))
    assert compare_fixed_points(spec, iters=4) < 1e-9


def test_model_fast_and_naive_impl_agree_on_cuda() -> None:
    """As tests/test_solver.py on CPU, float32 on the GPU (TF32 off so matmuls are full float32)."""
    x = torch.randn(2, 10, 2, device="cuda")
    m = torch.ones(2, 10, dtype=torch.bool, device="cuda")
    out = {}
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for impl in ("fast", "naive"):
            cfg = _cfg("classification", "ddeq", f"solver.impl={impl}", "solver.iters=8")
            torch.manual_seed(0)
            model = build_model(cfg, 2, 4).cuda().eval()
            torch.manual_seed(1)
            with torch.no_grad():
                out[impl] = model(x, m)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    assert out["fast"].z_star.device.type == "cuda"
    assert torch.allclose(out["fast"].z_star, out["naive"].z_star, atol=1e-4)
    assert torch.allclose(out["fast"].logits, out["naive"].logits, atol=1e-4)


def test_bench_step_cli_on_cuda(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from ddeqs.cli import main

    js = tmp_path / "step.json"
    sets = [a for o in ("model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32")
            for a in ("--set", o)]
    assert main(["bench", "step", "--set", "train.device=cuda", "--batch", "2", "--points", "16", "--iters", "3", "--impl",
                 "fast", "naive", "--repeats", "1", "--warmup", "0", "--no-isolate", *sets, "--out", str(js)]) == 0
    res = json.loads(js.read_text())["results"]
    assert [r["device"] for r in res] == [torch.cuda.get_device_name()] * 2
    assert all(r["peak_mem_mib"] is not None for r in res)


def _graph_solve_on_cuda(task: str, graph: bool, momentum: float, train: bool = False,
                         *extra: str, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    """Paper-width problem on cuda (float64 by default); ``(output, loss, parameter grads, warnings)`` of one forward."""
    import warnings

    from ddeqs.bench.problem import ProblemSpec, build_problem
    from ddeqs.training.losses import per_sample_loss

    spec = ProblemSpec(task=task, batch=16, points=100, iters=20, momentum=momentum, device="cuda",
                       overrides=(f"solver.cuda_graph={str(graph).lower()}", *extra))
    problem = build_problem(spec)
    problem.model.to(dtype).train(train)
    problem.batch.points = problem.batch.points.to(dtype)
    if problem.batch.target is not None:
        problem.batch.target = problem.batch.target.to(dtype)
    torch.manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = problem.model(problem.batch.points, problem.batch.mask)
    loss = per_sample_loss(problem.cfg, out, problem.batch).mean()
    grads = None
    if train:
        loss.backward()
        grads = [p.grad for p in problem.model.parameters() if p.grad is not None]
    return out, loss, grads, [str(w.message) for w in caught if "cuda_graph" in str(w.message)]


@pytest.mark.parametrize("task", ["classification", "completion"])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_cuda_graph_loop_is_captured_and_gives_the_eager_values(task: str, momentum: float) -> None:
    """solver.cuda_graph: captured without a warning (no host sync inside, no close-pair overflow), same Z*."""
    eager, _, _, _ = _graph_solve_on_cuda(task, False, momentum)
    graph, _, _, msgs = _graph_solve_on_cuda(task, True, momentum)
    assert msgs == []
    assert torch.allclose(graph.z_star, eager.z_star, rtol=0, atol=1e-8)
    assert torch.allclose(graph.solver["objective"], eager.solver["objective"], rtol=1e-8, atol=1e-12)


def test_cuda_graph_captures_the_bf16_step() -> None:
    """solver.bf16 inside the captured iteration (autocast without its weight cache): captured, finite, near eager."""
    eager, _, _, _ = _graph_solve_on_cuda("completion", False, 0.5, False, "solver.bf16=true", dtype=torch.float32)
    graph, _, _, msgs = _graph_solve_on_cuda("completion", True, 0.5, False, "solver.bf16=true", dtype=torch.float32)
    assert msgs == [] and torch.isfinite(graph.z_star).all()
    assert (graph.z_star - eager.z_star).norm() < 0.1 * eager.z_star.norm()


def test_cuda_graph_training_step_gives_the_eager_gradients() -> None:
    _, l0, g0, _ = _graph_solve_on_cuda("completion", False, 0.5, train=True)
    _, l1, g1, msgs = _graph_solve_on_cuda("completion", True, 0.5, train=True)
    assert msgs == [] and torch.allclose(l0, l1, rtol=1e-8)
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-10) for a, b in zip(g0, g1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pad8_attention_equals_plain_sdpa_on_cuda(dtype: torch.dtype) -> None:
    """SDPA at the head width padded to 8 (solver.attention=sdpa_pad8) against plain SDPA: DDEQ cross-attention
    shape (64 clouds, 32 heads of width 4, 10 queries, 200 keys, some padding), value and q/k/v gradients."""
    from ddeqs.models.ddeq.fastpath import AUTO_CUDA, attention_kernel
    from ddeqs.models.ddeq.sdpa import sdpa_attention, sdpa_pad8_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(64, 32, n, 4, generator=g).to("cuda", dtype).requires_grad_(True) for n in (10, 200, 200))
    mask = torch.ones(64, 200, dtype=torch.bool)
    mask[0, 50:] = False
    mask[1, 1:] = False  # one real key
    mask = mask.cuda()
    assert attention_kernel(q, (k, v)) == AUTO_CUDA and attention_kernel(q, (k, v), "sdpa_pad8") == "sdpa_pad8"
    out, ref = sdpa_pad8_attention(q, k, v, mask), sdpa_attention(q, k, v, mask)
    # bf16 (8-bit mantissa): two backends differ by up to ~2 units in the last place (CPU: 1.6e-2 at gradients of ~7)
    tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == torch.float32 else {"rtol": 3e-2, "atol": 3e-2}
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, **tol)
    dout = torch.randn(out.shape, generator=g).to("cuda", dtype)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), dout), torch.autograd.grad(ref, (q, k, v), dout)):
        torch.testing.assert_close(a, b, **tol)


def test_ddeq_with_pad8_attention_equals_auto_on_cuda() -> None:
    """solver.attention=sdpa_pad8 against auto on the GPU, float32 (TF32 off), same weights, input and Z0."""
    batch = _batch("classification").to("cuda")
    out = {}
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for attention in ("auto", "sdpa_pad8"):
            torch.manual_seed(0)
            model = build_model(_cfg("classification", "ddeq", f"solver.attention={attention}"), 2, 5).cuda().eval()
            torch.manual_seed(1)
            with torch.no_grad():
                out[attention] = model(batch.points, batch.mask).logits
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    torch.testing.assert_close(out["sdpa_pad8"], out["auto"], rtol=1e-4, atol=1e-4)
