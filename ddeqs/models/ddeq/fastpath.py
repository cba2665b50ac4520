"""The one dispatcher choosing how F is evaluated on the fast path.

Every fast implementation of F in this package is chosen here, and nowhere else; each case gives
the values (and the gradient w.r.t. ``Z``) of the plain evaluation up to float rounding, checked
case by case in ``tests/test_fastpath.py``. The plain evaluation is ``where(movable, F(z, X), z)``
with :meth:`ddeqs.models.ddeq.fmap.FMap.apply` under autograd and PyTorch's SDPA.

Attention kernel, per call (:func:`attention_kernel`, used by ``MaskedAttention.attend``), for
``solver.attention`` ``"auto"``:

* ``"const_kv"``: keys/values laid out as :class:`ConstKV` (the inner solve on CPU):
  :func:`const_kv_attention` (constant keys/values, gradient to the queries only);
* ``"short"``: CPU and at most :data:`SHORT_KEYS` keys (the Z self-attention): :func:`short_attention`;
* :data:`AUTO_CUDA` on CUDA (``"sdpa"`` until a GPU measurement decides otherwise);
* ``"sdpa"``: otherwise ``torch.nn.functional.scaled_dot_product_attention`` (the plain one,
  :func:`ddeqs.models.ddeq.sdpa.sdpa_attention`).

``solver.attention`` ``"sdpa"`` or ``"sdpa_pad8"`` (SDPA at the head width zero-padded to a
multiple of 8, :func:`ddeqs.models.ddeq.sdpa.sdpa_pad8_attention`) applies that kernel to every
call on any device.

Keys/values of the X branch for the inner solve (:func:`solve_kv`): :class:`ConstKV` on CPU under
``"auto"``, detached contiguous ``(k, v)`` otherwise.

Inner step, once per solve (:func:`plan_step`, used by
:func:`ddeqs.models.ddeq.step.make_solve_func`), :attr:`StepPlan.kind`:

* ``"zbranch"``: every particle real and moving, dropout off, keys/values as :class:`ConstKV`, at
  most :data:`SHORT_KEYS` particles, neither compile nor bf16: F's Z branch as one autograd node
  with a hand-written VJP (:class:`ddeqs.models.ddeq.zbranch_vjp.ZBranch`);
* ``"rows"``: some sample has fewer movable rows than ``K`` everywhere (completion's fixed
  particles, padding): the row-wise tail of F on the movable rows only (``FMap.apply_rows``);
* ``"masked"``: some rows are fixed or padding but no row can be skipped in every sample: all rows
  through F with the masks, then ``where(movable, ., z)``;
* ``"dense"``: every row real and moving (masks dropped once): all rows through F without masks.

Modifiers: ``bf16`` (``solver.bf16``: Z branch under bf16 autocast of ``z``'s device type, CUDA or
CPU, output cast back; never with the hand-written ``"zbranch"`` step) and ``compile`` (``solver.compile``, not while dropout is active: the step is ``torch.compile``-d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from ddeqs.errors import _WARNED, warn_once  # noqa: F401 - re-exported: step.py and the tests use them from here
from ddeqs.models.ddeq.attention_kernels import SHORT_KEYS, ConstKV

if TYPE_CHECKING:  # fmap imports attention, which imports this module
    from ddeqs.config import AttentionChoice, SolverConfig
    from ddeqs.models.ddeq.fmap import FContext, RowSubset

AttentionKernel = Literal["const_kv", "short", "sdpa", "sdpa_pad8"]

AUTO_CUDA: AttentionKernel = "sdpa"
"""The kernel ``solver.attention=auto`` takes on CUDA. Plain SDPA until a GPU measurement decides:
``make gpu-check`` times it against ``"sdpa_pad8"`` (``ddeqs bench attention``) and its report says
which value this should take."""
StepKind = Literal["zbranch", "rows", "masked", "dense"]

def attention_kernel(
    q: torch.Tensor, kv: "ConstKV | tuple[torch.Tensor, torch.Tensor]", choice: "AttentionChoice" = "auto"
) -> AttentionKernel:
    """Kernel for queries ``q`` ``(B, H, N, c)`` attending to ``kv``, ``choice``: ``solver.attention`` (module doc)."""
    if isinstance(kv, ConstKV):
        return "const_kv"
    if choice != "auto":
        return choice
    if q.device.type == "cpu" and kv[0].shape[-2] <= SHORT_KEYS:
        return "short"
    if q.device.type == "cuda":
        return AUTO_CUDA
    return "sdpa"


def solve_kv(
    k: torch.Tensor, v: torch.Tensor, choice: "AttentionChoice" = "auto"
) -> "ConstKV | tuple[torch.Tensor, torch.Tensor]":
    """Keys/values ``(B, H, M, c)`` of X laid out once per solve, without autograd history (see module doc)."""
    if k.device.type == "cpu" and choice == "auto":
        return ConstKV.from_kv(k, v)
    return k.detach().contiguous(), v.detach().contiguous()


def zbranch_applies(ctx: "FContext", particles: int, every_row_moves: bool) -> bool:
    """Whether the hand-written Z branch can evaluate this solve's step; ``ctx`` as the solve uses it."""
    return (
        every_row_moves
        and not ctx.drop.active
        and particles <= SHORT_KEYS
        and all(isinstance(kv, ConstKV) for kv in ctx.kv)
    )


@dataclass(frozen=True)
class StepPlan:
    """How one solve evaluates its inner step (see module doc).

    ``rows``: the movable rows (``"rows"`` only); ``z_mask`` None: no padding; ``movable`` None:
    every row moves; ``bf16``/``compile``: the modifiers actually applied.
    """

    kind: StepKind
    rows: "RowSubset | None"
    z_mask: torch.Tensor | None
    movable: torch.Tensor | None
    bf16: bool
    compile: bool


def plan_step(ctx: "FContext", z_mask: torch.Tensor, movable: torch.Tensor, cfg: "SolverConfig") -> StepPlan:
    """Choose the inner step of one solve; ``ctx`` already laid out for the solve (``detached().dense()``).

    ``z_mask``, ``movable`` ``(B, K)`` bool, ``movable`` already ``& z_mask``. Host syncs: once per solve.
    """
    from ddeqs.models.ddeq.fmap import RowSubset

    rows = RowSubset.from_mask(movable)
    all_move = rows is None and bool(movable.all())
    step_mask = None if bool(z_mask.all()) else z_mask
    step_movable = None if all_move else movable
    bf16 = bool(cfg.bf16)
    compile_ = bool(cfg.compile)
    if compile_ and ctx.drop.active:
        warn_once("compile-dropout", "solver.compile is not used while dropout is active (masks are sampled lazily)")
        compile_ = False
    kind: StepKind
    if rows is not None:
        kind = "rows"
    elif step_movable is not None:
        kind = "masked"
    elif not cfg.compile and not bf16 and step_mask is None and zbranch_applies(ctx, z_mask.shape[1], True):
        kind = "zbranch"
    else:
        kind = "dense"
    return StepPlan(kind, rows, step_mask, step_movable, bf16, compile_)
