"""SDPA at the head width padded to 8 (ddeqs.models.ddeq.sdpa) and its selection by ``solver.attention``.

The padded call must give plain SDPA's values and gradients at the DDEQ's shapes (32 heads of width
4; 10 particles attending to 10 particles or to 200 partly padded points), and a DDEQ with
``solver.attention=sdpa_pad8`` (or ``sdpa``) the outputs and parameter gradients of ``auto``.
"""

from __future__ import annotations

import pytest
import torch

import ddeqs.models.ddeq.attention as attention_module
from ddeqs.config import ConfigError, SolverConfig, load_config, omit_late_defaults
from ddeqs.models import build_model
from ddeqs.models.ddeq.attention_kernels import ConstKV
from ddeqs.models.ddeq.fastpath import attention_kernel, solve_kv
from ddeqs.models.ddeq.sdpa import padded_width, sdpa_attention, sdpa_pad8_attention
from ddeqs.training.checkpoint import config_fingerprint

H, C = 32, 4  # model.heads, model.z_dim / model.heads


def _heads(B: int, N: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, N, C, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)


def _key_mask(B: int, M: int) -> torch.Tensor:
    """Sample 0: 3/4 of its keys padding; sample 1: one real key; the last sample: its last key padding."""
    mask = torch.ones(B, M, dtype=torch.bool)
    mask[0, M // 4:] = False
    mask[1, 1:] = False
    mask[-1, -1] = False
    return mask


def test_padded_width_rounds_up_to_multiples_of_8() -> None:
    assert [padded_width(c) for c in (1, 4, 7, 8, 9, 12, 16)] == [8, 8, 8, 8, 16, 16, 16]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize(("B", "N", "M"), [(4, 10, 200), (64, 10, 200), (64, 10, 10)])
def test_pad8_equals_plain_sdpa_in_value_and_every_gradient(B: int, N: int, M: int, masked: bool,
                                                            dtype: torch.dtype) -> None:
    q, k, v = _heads(B, N, dtype, 0), _heads(B, M, dtype, 1), _heads(B, M, dtype, 2)
    key_mask = _key_mask(B, M) if masked else None
    if masked:  # padded keys hold values that would dominate were they not masked
        with torch.no_grad():
            k[~key_mask[:, None, :, None].expand_as(k)] = 30.0
            v[~key_mask[:, None, :, None].expand_as(v)] = 1e3
    out = sdpa_pad8_attention(q, k, v, key_mask)
    ref = sdpa_attention(q, k, v, key_mask)
    assert out.shape == (B, H, N, C) and out.dtype == dtype and torch.isfinite(out).all()
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    torch.testing.assert_close(out, ref, **tol)
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    grads_ref = torch.autograd.grad(ref, (q, k, v), dout)
    for g, g_ref in zip(grads, grads_ref):
        assert g.shape == (B, H, g.shape[2], C)
        torch.testing.assert_close(g, g_ref, **tol)
    if masked:
        pad = ~key_mask[:, None, :, None].expand_as(k)
        assert grads[1][pad].abs().max() == 0 and grads[2][pad].abs().max() == 0  # padded keys get nothing
        torch.testing.assert_close(out[1], v[1, :, :1].expand(H, N, C), **tol)  # one real key: its value


def test_pad8_keeps_the_width_of_heads_already_a_multiple_of_8() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64) for n in (5, 7, 7))
    torch.testing.assert_close(sdpa_pad8_attention(q, k, v, None), sdpa_attention(q, k, v, None), rtol=0, atol=0)


def test_dispatcher_applies_an_explicit_choice_on_cpu_and_auto_per_device() -> None:
    q = torch.zeros(2, H, 10, C)
    short, long = (torch.zeros(2, H, 10, C),) * 2, (torch.zeros(2, H, 200, C),) * 2
    assert [attention_kernel(q, kv) for kv in (short, long)] == ["short", "sdpa"]  # auto on CPU
    for choice in ("sdpa", "sdpa_pad8"):
        assert [attention_kernel(q, kv, choice) for kv in (short, long)] == [choice, choice]
        assert isinstance(solve_kv(*long, choice), tuple)  # no ConstKV layout for an explicit choice
    const = solve_kv(*long)
    assert isinstance(const, ConstKV) and attention_kernel(q, const) == "const_kv"


def test_solver_attention_is_validated_and_fingerprint_neutral() -> None:
    assert SolverConfig().attention == "auto"
    with pytest.raises(ConfigError, match="solver.attention"):
        load_config(None, ["solver.attention=pad8"])
    base = load_config(None, [])
    assert config_fingerprint(base) == config_fingerprint(load_config(None, ["solver.attention=sdpa_pad8"]))
    assert config_fingerprint(base) != config_fingerprint(load_config(None, ["solver.iters=7"]))
    # added after runs were trained: left out of resolved pipeline params at "auto" (no reruns), kept otherwise
    assert "attention" not in omit_late_defaults(base.model_dump(mode="json"))["solver"]
    pad8 = load_config(None, ["solver.attention=sdpa_pad8"]).model_dump(mode="json")
    assert omit_late_defaults(pad8)["solver"]["attention"] == "sdpa_pad8"


TINY = ["model.z_dim=16", "model.bilinear_dim=4", "model.heads=4", "model.ffn_dim=32", "model.cross_layers=2",
        "model.coupling_width=8", "model.z_particles=6", "solver.iters=4", "solver.step=1.0"]


def _clouds(task: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    points = torch.randn(3, 40, 2, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[0, 25:] = False  # padded input points: masked keys in the X self- and cross-attention
    mask[2, 33:] = False
    return points, mask


@pytest.mark.parametrize("task", ["classification", "completion"])
@pytest.mark.parametrize("choice", ["sdpa_pad8", "sdpa"])
def test_ddeq_with_an_explicit_kernel_equals_auto_on_cpu(task: str, choice: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Same weights, input and Z0: outputs (train and eval) and parameter gradients equal ``auto``'s."""
    points, mask = _clouds(task)
    results = {}
    for attention in ("auto", choice):
        calls: dict[str, int] = {}
        for name in ("const_kv_attention", "short_attention", "sdpa_attention", "sdpa_pad8_attention"):
            fn = getattr(attention_module, name)
            monkeypatch.setattr(attention_module, name,
                                lambda *a, _fn=fn, _n=name: (calls.__setitem__(_n, calls.get(_n, 0) + 1), _fn(*a))[1])
        cfg = load_config(None, [f"task={task}", *TINY, f"solver.attention={attention}"])
        torch.manual_seed(0)
        model = build_model(cfg, 2, 5).double()
        outs = []
        for train in (True, False):
            model.train(train)
            torch.manual_seed(1)
            out = model(points, mask)
            outs.append(out.logits if task == "classification" else out.points)
        outs[0].square().sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results[attention] = (outs, grads, calls)
    (outs, grads, calls), (outs_ref, grads_ref, calls_ref) = results[choice], results["auto"]
    assert set(calls) == {f"{choice}_attention"}  # every attention call took the chosen kernel
    assert "short_attention" in calls_ref and f"{choice}_attention" not in calls_ref  # auto: the CPU kernels
    for a, b in zip(outs, outs_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert len(grads) == len(grads_ref) > 0
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)
