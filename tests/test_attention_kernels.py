"""The hand-written CPU attention kernels against PyTorch's SDPA and autograd (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddeqs.models.ddeq.attention import MaskedAttention
from ddeqs.models.ddeq.attention_kernels import SHORT_KEYS, ConstKV, const_kv_attention, short_attention


def _heads(B: int, H: int, N: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, N, c, generator=g, dtype=torch.float64)


def _key_mask(B: int, M: int) -> torch.Tensor:
    mask = torch.ones(B, M, dtype=torch.bool)
    mask[0, M // 2:] = False  # sample 0: half its keys are padding
    mask[-1, -1] = False
    return mask


def _reference(q, k, v, key_mask):  # type: ignore[no-untyped-def]
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("M", [7, 90])  # the in-place softmax and torch.softmax branches
def test_const_kv_attention_matches_sdpa_and_its_query_gradient(masked: bool, M: int) -> None:
    B, H, N, c = 3, 4, 5, 4
    q = _heads(B, H, N, c, 0).requires_grad_(True)
    k, v = _heads(B, H, M, c, 1), _heads(B, H, M, c, 2)
    if masked:
        k[0, :, M // 2:] = 1e3  # padded keys hold values that would dominate were they not masked
    key_mask = _key_mask(B, M) if masked else None
    out = const_kv_attention(q, ConstKV.from_kv(k, v), key_mask)
    ref = _reference(q, k, v, key_mask)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    dout = _heads(B, H, N, c, 3)
    (dq,) = torch.autograd.grad(out, q, dout)
    (dq_ref,) = torch.autograd.grad(ref, q, dout)
    torch.testing.assert_close(dq, dq_ref, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda qq: const_kv_attention(qq, ConstKV.from_kv(k, v), key_mask), (q,))


@pytest.mark.parametrize("masked", [False, True])
def test_short_attention_matches_sdpa_in_value_and_all_gradients(masked: bool) -> None:
    B, H, N, M, c = 3, 4, 6, 9, 4
    q = _heads(B, H, N, c, 0).requires_grad_(True)
    k = _heads(B, H, M, c, 1).requires_grad_(True)
    v = _heads(B, H, M, c, 2).requires_grad_(True)
    key_mask = _key_mask(B, M) if masked else None
    out = short_attention(q, k, v, key_mask)
    ref = _reference(q, k, v, key_mask)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    dout = _heads(B, H, N, c, 3)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    grads_ref = torch.autograd.grad(ref, (q, k, v), dout)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    if masked:  # a padded key gets no gradient at all
        assert grads[1][0, :, M // 2:].abs().max() == 0 and grads[2][0, :, M // 2:].abs().max() == 0
    assert torch.autograd.gradcheck(lambda a, b, d: short_attention(a, b, d, key_mask), (q, k, v))


def test_short_attention_computes_only_the_gradients_asked_for() -> None:
    B, H, N, M, c = 2, 2, 3, 4, 4
    q = _heads(B, H, N, c, 0).requires_grad_(True)
    k, v = _heads(B, H, M, c, 1), _heads(B, H, M, c, 2)  # constants
    out = short_attention(q, k, v, None)
    (dq,) = torch.autograd.grad(out.sum(), q)
    (dq_ref,) = torch.autograd.grad(_reference(q, k, v, None).sum(), q)
    torch.testing.assert_close(dq, dq_ref)


def test_masked_attention_dispatch_gives_the_same_layer_output() -> None:
    """Short keys (hand-written kernel), long keys (SDPA) and ConstKV agree on the same layer."""
    torch.manual_seed(0)
    attn = MaskedAttention(16, 4).double()
    tgt = torch.randn(2, 5, 16, dtype=torch.float64)
    for M in (SHORT_KEYS, SHORT_KEYS + 1):
        src = torch.randn(2, M, 16, dtype=torch.float64)
        mask = _key_mask(2, M)
        k, v = attn.kv(src)
        plain = attn.attend(tgt, (k, v), mask)
        const = attn.attend(tgt, ConstKV.from_kv(k, v), mask)
        q = attn._split(attn.q(tgt))
        ref = attn.o(_reference(q, k, v, mask).transpose(1, 2).reshape(2, 5, 16))
        torch.testing.assert_close(plain, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(const, ref, rtol=1e-12, atol=1e-12)


def test_long_rows_softmax_fallback_allocates_and_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the in-place softmax (a PyTorch refusing the aliasing) the kernel gives the same values."""
    import ddeqs.models.ddeq.attention_kernels as kernels

    B, H, N, M, c = 2, 3, 4, SHORT_KEYS + 10, 4
    q, k, v = _heads(B, H, N, c, 0), _heads(B, H, M, c, 1), _heads(B, H, M, c, 2)
    inplace = const_kv_attention(q, ConstKV.from_kv(k, v), None)
    monkeypatch.setattr(kernels, "_INPLACE_SOFTMAX", [False])
    allocated = const_kv_attention(q, ConstKV.from_kv(k, v), None)
    torch.testing.assert_close(inplace, allocated, rtol=0, atol=0)
    torch.testing.assert_close(allocated, _reference(q, k, v, None), rtol=1e-12, atol=1e-12)
