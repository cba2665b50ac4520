"""Riesz-kernel MMD² (energy distance) between batched, padded, masked clouds.

Kernel ``k(x, y) = -||x - y||``. For uniform discrete measures
``mu = sum_i a_i delta_{x_i}`` and ``nu = sum_j b_j delta_{y_j}`` (``a_i = 1/n`` on
real points, 0 on padding)::

    MMD²(mu, nu) = 2 aᵀ D_xy b - aᵀ D_xx a - bᵀ D_yy b = -wᵀ D w,   w = a ⊕ -b,

with ``D`` the pairwise distances of the concatenated cloud. geomloss' ``SamplesLoss("energy")``
returns half of this value. The gradients are written by hand (not autograd through ``sqrt``):
the inner solver needs them at every step, with no autograd graph, and the training loss
(:func:`riesz_mmd2`) is one autograd node whose backward is the same analytic gradient.
Shapes: ``x`` ``(B, N, p)`` with ``x_mask`` ``(B, N)``, ``y`` ``(B, M, p)`` with ``y_mask`` ``(B, M)``.

Precision in float32 (why the code is not one ``cdist``). The Gram formula
``d² = |x|² + |y|² - 2x·y`` rounds at about ``1e-7 · |x|²``; a distance much smaller than ``|x|``
(a point and itself, a predicted point on its target, a particle and its image under F near the
fixed point) comes out as rounding noise, where ``sqrt`` has an unbounded slope. Near a good fit
MMD² is also a small difference of large sums (1e-6 against sums of order 1-10). Measured before
this was addressed (norm-wise gradient error against float64): 3 % on random 255-point clouds,
100-150x on near-identical ones; the solver's MMD 60-2,400 % at MMD² 1e-5..1e-6. So:

* distances of close pairs come from explicit differences, which are exact in floating point for
  nearby points, and the gradient term ``w_j (p_i - p_j)/d_ij`` of those pairs is computed from
  the same differences (0 at ``d_ij = 0``, no clamp);
* small problems (``B·T²·p <= 2^20``: the classifier's inner step) and the training loss
  (``p`` = 2 or 3) use explicit differences for every pair, in row blocks of bounded memory;
* the solver's large problems (completion, ``p = 128``) keep the fast path, two batched matmuls:
  Gram distances of the centred cloud (translation invariance; smaller norms, smaller rounding)
  for pairs with ``d > 0.05 · sqrt(|c_i|² + |c_j|²)`` (relative error below ~400 ulp there) and
  exact ones for the rest, found with one ``nonzero`` (one host sync per step);
* the sums ``wᵀ D w`` accumulate in float64.

Result at 255 and 800 points (tests/test_mmd_float32.py): gradient errors below 4e-4 down to
MMD² = 1e-6, and padding changes no gradient.
"""

from __future__ import annotations

import torch



def uniform_weights(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, N)`` weights ``1/n_b`` on real points, 0 on padding (an empty cloud gets all zeros)."""
    m = mask.to(dtype)
    return m / m.sum(-1, keepdim=True).clamp_min(1.0)


def riesz_mmd2(
    x: torch.Tensor, x_mask: torch.Tensor | None, y: torch.Tensor, y_mask: torch.Tensor | None
) -> torch.Tensor:
    """Differentiable ``MMD²`` with the Riesz kernel, ``(B,)``. Masks may be None (all real).

    One autograd node whose backward is the exact analytic gradient (explicit differences, see the
    module docstring); first-order only (no double backward).
    """
    if x_mask is None:
        x_mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if y_mask is None:
        y_mask = torch.ones(y.shape[:2], dtype=torch.bool, device=y.device)
    w = torch.cat([uniform_weights(x_mask, x.dtype), -uniform_weights(y_mask, y.dtype)], dim=1)
    # Padded rows are zeroed so arbitrary (even NaN/inf) padding values cannot leak through 0 * inf.
    real = torch.cat([x_mask, y_mask], 1).unsqueeze(-1)
    pts = torch.where(real, torch.cat([x, y], 1), torch.zeros((), dtype=x.dtype, device=x.device))
    mmd2 = _SignedEnergy.apply(pts, w)
    return mmd2


class _SignedEnergy(torch.autograd.Function):
    """``-wᵀ D w`` ``(B,)`` of ``pts`` ``(B, T, p)`` with the gradient of :func:`signed_energy_with_grads`
    (exact path): autograd through ``sqrt`` of Gram distances would have an unbounded slope at the
    rounding noise of coincident points."""

    @staticmethod
    def forward(ctx, pts: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        mmd2, half_grad = signed_energy_with_grads(pts, w.detach(), exact=True)
        ctx.save_for_backward(half_grad)
        return mmd2

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (half_grad,) = ctx.saved_tensors
        return 2.0 * grad_out[:, None, None] * half_grad, None


def riesz_mmd2_with_grads(
    x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``MMD²`` ``(B,)`` and the Euclidean gradients of ``½ MMD²`` w.r.t. ``x`` and ``y``.

    Returns ``(mmd2, gx (B, N, p), gy (B, M, p))``; rows of padding get zero gradient.
    Dividing ``gx`` by ``a_i = 1/n`` gives the Wasserstein gradient at ``x_i``.
    No autograd graph is built (call under ``torch.no_grad()`` or not, same result).
    """
    with torch.no_grad():
        N = x.shape[1]
        real = torch.cat([x_mask, y_mask], 1)
        pts = torch.cat([x, y], dim=1).masked_fill(~real.unsqueeze(-1), 0.0)
        w = torch.cat([uniform_weights(x_mask, x.dtype), -uniform_weights(y_mask, y.dtype)], dim=1)
        mmd2, g = signed_energy_with_grads(pts, w)
        return mmd2, g[:, :N], g[:, N:]


_EXACT_CHUNK = 1 << 22  # elements of one (B, rows, T, p) block of explicit differences (16 MiB in fp32)
CAPTURE_CHUNK = 1 << 26
"""Elements of one block of explicit differences in a capturable :class:`PairedMMD` (256 MiB in fp32):
few blocks, so few graph nodes (the paper's completion batch, 64 x 110² x 128, takes 2)."""
_NEAR = 0.05  # Gram distances below _NEAR · sqrt(|c_i|² + |c_j|²) are recomputed from explicit differences


def signed_energy_with_grads(
    pts: torch.Tensor, w: torch.Tensor, exact: bool | None = None, chunk: int = _EXACT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-wᵀ D w`` ``(B,)`` and its half-gradient w.r.t. ``pts`` ``(B, T, p)`` for signed weights ``w`` ``(B, T)``.

    With ``w = a ⊕ -b`` this is ``MMD²`` between the two weighted clouds; rows with ``w = 0``
    (padding) contribute nothing and get zero gradient. Padded rows of ``pts`` must be finite.
    ``exact``: distances and gradient from explicit differences, in row blocks (``O(B T² p)`` work,
    bounded memory); False: Gram-matrix distances with the close pairs recomputed exactly (the
    solver's path for large ``T·p``); None: exact when ``B·T²·p`` is small. See the module docstring.
    ``chunk``: elements of one block of explicit differences (exact path).
    """
    B, T, p = pts.shape
    if exact is None:
        exact = B * T * T * p <= _DIFF_ELEMENTS
    with torch.no_grad():
        mmd2, g_sum = _exact_energy_terms(pts, w, chunk) if exact else _gram_energy_terms(pts, w)
        return mmd2.to(pts.dtype), -w.unsqueeze(-1) * g_sum


def _weighted_sum64(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``-wᵀ D w`` ``(B,)`` accumulated in float64: near a fit it is a small difference of large sums."""
    # products rounded once in d's dtype, sums in float64 (bmm with one column is 4x slower on CPU)
    return -((d * w.unsqueeze(1)).sum(-1, dtype=torch.float64) * w.double()).sum(-1)


def _exact_energy_terms(pts: torch.Tensor, w: torch.Tensor, chunk: int = _EXACT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """``-wᵀ D w`` (float64, ``(B,)``) and ``Σ_j w_j (p_i - p_j)/d_ij`` ``(B, T, p)`` (0 for ``d_ij = 0``)
    from explicit differences, ``rows`` rows at a time (a ``(B, rows, T, p)`` block at most ``chunk`` elements)."""
    B, T, p = pts.shape
    rows = max(1, min(T, chunk // max(1, B * T * p)))
    zero = torch.zeros((), dtype=pts.dtype, device=pts.device)
    ds, gs = [], []
    for s in range(0, T, rows):
        diff = pts[:, s : s + rows].unsqueeze(2) - pts.unsqueeze(1)  # (B, r, T, p), exact for close points
        dc = torch.linalg.vector_norm(diff, dim=-1)
        coef = torch.where(dc > 0, w.unsqueeze(1) / dc, zero)
        gs.append(torch.matmul(coef.unsqueeze(-2), diff).squeeze(-2))  # (B, r, p); einsum is 8x slower here
        ds.append(dc)
    d = ds[0] if len(ds) == 1 else torch.cat(ds, 1)
    return _weighted_sum64(d, w), gs[0] if len(gs) == 1 else torch.cat(gs, 1)


def _gram_energy_terms(pts: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`_exact_energy_terms` at the cost of two batched matmuls: Gram-matrix distances
    of the centred cloud for the far pairs; distances and gradient terms from explicit differences
    for the pairs closer than ``_NEAR`` times their norms, where the Gram formula loses its digits.
    One host sync (``nonzero``)."""
    B, T, p = pts.shape
    aw = w.abs().unsqueeze(1)  # (B, 1, T)
    centre = torch.bmm(aw, pts) / aw.sum(-1, keepdim=True).clamp_min(1e-30)
    c = pts - centre  # translation invariance: smaller norms, smaller Gram rounding
    sq = c.pow(2).sum(-1)
    thr = sq.unsqueeze(-1) + sq.unsqueeze(-2)  # (B, T, T)
    d = torch.baddbmm(thr, c, c.transpose(1, 2), alpha=-2.0)  # Gram d², rounding ~ eps · thr
    near = d < thr.mul_(_NEAR * _NEAR)
    near = near | near.transpose(1, 2)  # the Gram matrix need not be exactly symmetric
    near.diagonal(dim1=1, dim2=2).fill_(True)  # d_ii = 0: no far term
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    d = torch.where(near, zero, d.clamp_min_(0.0).sqrt_())  # far pairs only; close pairs are added below
    inv = torch.where(near, zero, d.reciprocal())
    # far pairs: Σ_j w_j (c_i - c_j)/d_ij = c_i Σ_j w_j/d_ij - Σ_j w_j c_j/d_ij (cancellation bounded by _NEAR).
    # Matrix-vector products as multiply-and-sum: bmm with one column is 4x slower on CPU.
    g_sum = torch.baddbmm(c * (inv * w.unsqueeze(1)).sum(-1, keepdim=True), inv, w.unsqueeze(-1) * c, alpha=-1.0)
    mmd2 = _weighted_sum64(d, w)
    # close pairs i < j (each once): exact differences, both rows' terms and both D entries
    near.diagonal(dim1=1, dim2=2).fill_(False)
    flat = near.triu_(1).view(-1).nonzero().squeeze(-1)  # b·T² + i·T + j
    if flat.numel():
        bt = flat // (T * T) * T
        fi, fj = bt + flat % (T * T) // T, bt + flat % T
        pf, wf = pts.reshape(B * T, p), w.reshape(-1)
        diff = pf.index_select(0, fi) - pf.index_select(0, fj)  # (K, p): exact for close points
        dn = torch.linalg.vector_norm(diff, dim=-1)
        inv_n = torch.where(dn > 0, dn.reciprocal(), torch.zeros((), dtype=dn.dtype, device=dn.device))
        wi, wj = wf.index_select(0, fi), wf.index_select(0, fj)
        gf = g_sum.view(B * T, p)
        gf.index_add_(0, fi, (wj * inv_n).unsqueeze(-1) * diff)
        gf.index_add_(0, fj, (wi * inv_n).unsqueeze(-1) * diff, alpha=-1.0)
        near_sum = torch.zeros(B, dtype=torch.float64, device=pts.device)
        near_sum.index_add_(0, flat // (T * T), wi.double() * wj.double() * dn.double())
        mmd2 = mmd2 - 2.0 * near_sum
    return mmd2, g_sum


_DIFF_ELEMENTS = 1 << 20  # B·T²·p up to which distances come from explicit differences (4 MiB in fp32)


def pairwise_distances(pts: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distances ``(B, T, T)`` between the rows of ``pts`` ``(B, T, p)``.

    Small problems (the inner step of a classifier: T = 20 rows of p = 128) take the norm of the
    explicit differences, about twice as fast as ``torch.cdist`` there; larger ones use
    ``torch.cdist``. Both are exact at coincident points (no Gram-matrix cancellation up to T = 25).
    """
    B, T, p = pts.shape
    if B * T * T * p <= _DIFF_ELEMENTS:
        return torch.linalg.vector_norm(pts.unsqueeze(2) - pts.unsqueeze(1), dim=-1)
    return torch.cdist(pts, pts)


def particle_counts(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Real rows per sample ``n_b`` as ``(B, 1)`` (at least 1)."""
    return mask.sum(1, keepdim=True).clamp_min(1).to(dtype)


def rows_index(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Gather index of the True entries of ``rows`` ``(B, K)``, in order, padded to ``R = max_b n_b``.

    Returns ``(index (B, R) long, valid (B, R) bool)`` (padded entries point at row 0), or None when
    no row can be dropped (``R == K``). One host sync; compute once per solve, not per step.
    """
    B, K = rows.shape
    counts = rows.sum(1)
    R = int(counts.max()) if B else 0
    if R >= K:
        return None
    order = torch.argsort((~rows).to(torch.int8), dim=1, stable=True)[:, :R]  # True rows first, in order
    valid = torch.arange(R, device=rows.device)[None, :] < counts[:, None]
    return order.masked_fill(~valid, 0), valid


class PairedMMD:
    """``MMD²(z, fz)`` and its gradients for clouds that coincide outside ``movable``, planned once per solve.

    Both clouds weigh ``1/n_b`` per real row (``n_b = mask[b].sum()``). The coinciding rows cancel
    exactly in ``μ - ν`` (completion: the fixed input particles), so only the movable rows enter the
    distance matrix: ``(2R)²`` instead of ``(2K)²`` entries, ``R`` = most movable rows of a sample.
    The row index, the signed weights and which selects are needed at all (none when every row
    is real and movable) are decided here, with the solve's only host syncs.

    ``mask``, ``movable`` ``(B, K)`` bool; ``counts`` ``(B, 1)``: ``n_b`` in the solve's dtype.
    ``capturable``: no host sync per call, for CUDA graphs (:mod:`ddeqs.solver.graph`): every pair's
    distance from explicit differences, in blocks of :data:`CAPTURE_CHUNK` elements. The Gram path
    finds its close pairs with ``nonzero`` (a data-dependent size, so a host sync), and how many
    there are is not bounded: in training the paper-width completion problem of ``ddeqs bench step`` (batch 8)
    they grew from 1.4 % to 18 % of all pairs within 5 steps, so a fixed-size list of them would overflow.
    """

    def __init__(self, mask: torch.Tensor, movable: torch.Tensor, dtype: torch.dtype, capturable: bool = False) -> None:
        movable = movable & mask
        self.counts = particle_counts(mask, dtype)
        self.index = rows_index(movable)
        if self.index is None:  # every row of some sample moves: use all K rows
            a = mask.to(dtype) / self.counts
            real = mask
        else:
            real = self.index[1]
            a = real.to(dtype) / self.counts
        self.weights = torch.cat([a, -a], 1)  # (B, 2R) signed weights of [z rows, fz rows]
        self.pad = None if bool(real.all()) else ~real.repeat(1, 2).unsqueeze(-1)
        self.keep = None if bool(movable.all()) else movable.unsqueeze(-1)
        self.exact, self.chunk = (True, CAPTURE_CHUNK) if capturable else (None, _EXACT_CHUNK)

    def __call__(self, z: torch.Tensor, fz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(MMD² (B,), ∂(½MMD²)/∂z (B, K, p), ∂(½MMD²)/∂fz (B, K, p))``; gradients are 0 outside ``movable``."""
        with torch.no_grad():
            if self.index is None:
                pts = torch.cat([z, fz], 1)
            else:
                take = self.index[0].unsqueeze(-1).expand(-1, -1, z.shape[-1])
                pts = torch.cat([z.gather(1, take), fz.gather(1, take)], 1)
            if self.pad is not None:
                pts = pts.masked_fill(self.pad, 0.0)
            mmd2, g = signed_energy_with_grads(pts, self.weights, exact=self.exact, chunk=self.chunk)
            R = pts.shape[1] // 2
            if self.index is None:
                gz, gfz = g[:, :R], g[:, R:]
                if self.keep is not None:
                    gz, gfz = gz.where(self.keep, 0.0), gfz.where(self.keep, 0.0)
                return mmd2, gz, gfz
            gz = z.new_zeros(z.shape).scatter_add_(1, take, g[:, :R])  # padded entries add 0 to row 0
            gfz = z.new_zeros(z.shape).scatter_add_(1, take, g[:, R:])
            return mmd2, gz, gfz


def paired_mmd2_with_grads(
    z: torch.Tensor,
    fz: torch.Tensor,
    mask: torch.Tensor,
    movable: torch.Tensor,
    plan: PairedMMD | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``MMD²(z, fz)`` ``(B,)`` and ``∂(½MMD²)/∂z``, ``∂(½MMD²)/∂fz`` ``(B, K, p)`` for clouds that
    coincide outside ``movable`` (``fz[b, i] == z[b, i]`` where ``mask & ~movable``); see :class:`PairedMMD`.

    ``plan``: a :class:`PairedMMD` of ``mask``/``movable`` (build it once per solve; without it every
    call plans anew, with host syncs). Same values as :func:`riesz_mmd2_with_grads` up to rounding.
    """
    if plan is None:
        plan = PairedMMD(mask, movable, z.dtype)
    return plan(z, fz)
