"""Scaled dot-product attention with PyTorch's semantics
(``torch.nn.functional.scaled_dot_product_attention`` with ``dropout_p=0``).

q (..., L, E), k (..., S, E), v (..., S, Ev) with the same leading (batch) dims -> (..., L, Ev):

    keep[i, j] = mask[..., i, j] (broadcast to (..., L, S); True = attend) and (j <= i if causal)
    s = scale · q kᵀ                      (scale: 1/√E unless given)
    out[i] = Σ_{j kept} p[i, j] · v[j],   p[i, ·] = softmax over the kept keys of s[i, ·]
    lse[i] = log Σ_{j kept} exp(s[i, j])  (the per-row logsumexp the backward reuses)

A masked key contributes nothing to its row, even when its score or value is NaN or inf.  A row
with no kept key (a fully masked row) gives out = 0 and lse = -inf, and its gradients are 0 —
a defined result where PyTorch gives NaN.  A kept row whose scores are all -inf has no softmax:
NaN (as PyTorch).  ``causal`` is PyTorch's ``is_causal``: the top-left aligned lower triangle
(keep j <= i, also for L != S); a mask and causal together are refused, as PyTorch does.

- ``scaled_dot_product_attention(q, k, v, mask) -> (out, lse)``: one fused kernel
  (runtime/cpu/attention.cc), FlashAttention-style: blocks of query rows against blocks of keys
  with a running max, a running sum and a rescaled accumulator, so no (L, S) matrix is ever
  stored.  The user-facing builder returns ``out`` only; ``lse`` is the op's output 1.
- ``scaled_dot_product_attention_grad(q, k, v, mask, out, lse, dout, dlse) -> (dq, dk, dv)``:
  one kernel (FlashAttention-2's backward): P is recomputed block by block from lse,
  D = rowsum(dout ∘ out) - dlse, dS = P ∘ (dP - D) with dP = dout vᵀ;
  dq = scale · dS k, dk = scale · dSᵀ q, dv = Pᵀ dout.  Its own gradient (second order)
  differentiates its composite definition (the same formula from matmul, exp and where).

The mask input is always present: the builder passes a scalar True when there is none.  The
leading dims of q, k and v must be equal (no broadcasting among them); the mask broadcasts."""

import math

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import Example, F, build, check_broadcastable, numel, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

SCALE_ATTR = AttrSpec("float", doc="the factor of q kᵀ (the builder's default: 1/√E)")
CAUSAL_ATTR = AttrSpec("bool", default=False, doc="keep key j for query i only when j <= i (top-left aligned)")
_T = {"T": dtypes.FLOATS}


# -- shapes --------------------------------------------------------------------------------------

def _same(a, b):
    return a is None or b is None or not isinstance(a, int) or not isinstance(b, int) or a == b


def _check_qkv(ctx):
    """(lead, L, S, E, Ev) of the node's q, k, v (inputs 0-2); mask (input 3) broadcastable."""
    q, k, v, m = (tuple(ctx.shape(i)) for i in range(4))
    if len(q) < 2 or len(k) != len(q) or len(v) != len(q):
        ctx.fail(f"expects q (..., L, E), k (..., S, E), v (..., S, Ev) of one rank >= 2, got q {q}, k {k}, v {v}")
    lead = q[:-2]
    for name, s in (("k", k), ("v", v)):
        if not all(_same(a, b) for a, b in zip(lead, s[:-2])):
            ctx.fail(f"expects {name} with q's leading (batch) dims {lead}, got {name} of shape {s} "
                     f"(batch dims do not broadcast)")
    if not _same(q[-1], k[-1]):
        ctx.fail(f"expects q and k with one feature size E, got q {q} and k {k}")
    if not _same(k[-2], v[-2]):
        ctx.fail(f"expects k and v with one sequence length S, got k {k} and v {v}")
    if ctx.attrs.get("causal") and len(m) != 0:
        ctx.fail(f"takes a mask or causal=True, not both (as torch); got a mask of shape {m}")
    check_broadcastable(ctx, m, lead + (q[-2], k[-2]), verb="broadcast the mask")
    if not math.isfinite(ctx.attrs["scale"]):
        ctx.fail(f"expects a finite scale, got {ctx.attrs['scale']}")
    return lead, q[-2], k[-2], q[-1], v[-1]


def _infer(ctx):
    ctx.require_same_dtype(0, 1, 2)
    lead, L, _, _, ev = _check_qkv(ctx)
    t = ctx.dtype(0)
    return [(t, lead + (L, ev)), (t, lead + (L,))]


def _grad_infer(ctx):
    lead, L, S, e, ev = _check_qkv(ctx)
    want = {4: ("out", lead + (L, ev)), 5: ("lse", lead + (L,)), 6: ("dout", lead + (L, ev)),
            7: ("dlse", lead + (L,))}
    for i, (name, shape) in want.items():
        got = tuple(ctx.shape(i))
        if len(got) != len(shape) or not all(_same(a, b) for a, b in zip(got, shape)):
            ctx.fail(f"expects {name} (input {i}) of shape {shape}, got {got}")
    t = ctx.dtype(0)
    return [(t, tuple(ctx.shape(0))), (t, tuple(ctx.shape(1))), (t, tuple(ctx.shape(2)))]


# Query rows and keys per block, and workspace slots: runtime/cpu/attention.cc's kBlock and kSlots
# (its kernels refuse a plan whose workspace differs).
ATTN_BLOCK = 128
ATTN_SLOTS = 8


def _geom(ctx):
    q, k, v = (tuple(int(d) for d in ctx.shape(i)) for i in range(3))
    lead_n = numel(q[:-2])
    batch = 0 if q[-2] == 0 else lead_n  # no query row: nothing to do per item
    return batch, q[-2], k[-2], q[-1], v[-1]


def _slots(tasks, per):
    slots = min(tasks, ATTN_SLOTS)
    return [] if slots == 0 else [(None, (slots, per))]


# The CUDA kernels (runtime/cuda/attention.cu) compute the raw scores q·kᵀ (and the backward's
# dout·vᵀ) with cuBLASLt into a workspace of (items, L, S) matrices, a chunk of batch items at a
# time: at most ATTN_CUDA_SCORES elements (64 MiB of float32), so memory stays bounded; an item
# whose L·S alone is larger gets no workspace and the kernels compute the dot products themselves.
ATTN_CUDA_SCORES = 1 << 24


def _cuda_scores(ctx, products):
    """The CUDA score workspace: ``products`` (L, S) matrices per item, as many items as fit."""
    batch, L, S, _, _ = _geom(ctx)
    per = products * L * S
    chunk = min(batch, ATTN_CUDA_SCORES // per) if per else 0
    return [(ctx.dtype(0), (chunk * per,))] if chunk else []


def _workspace(ctx):
    """One row per slot: a key block transposed (E), a block of scores (kBlock), the accumulator
    and a P·V block (2·Ev) and four per-row values, for a block of kBlock query rows: independent of L and S.
    CUDA: the score matrices of a chunk of items (_cuda_scores)."""
    if ctx.target == "cuda":
        return _cuda_scores(ctx, 1)
    batch, L, _, e, ev = _geom(ctx)
    b = ATTN_BLOCK
    return [(ctx.dtype(0), d) for _, d in _slots(batch * -(-L // b), b * (e + b + 2 * ev + 4))]


def _grad_workspace(ctx):
    """One row per slot: the per-row loops' key and value blocks transposed plus row sums
    (2·E + 2·Ev + 4 per block row), or the float32 GEMM backward's S and dP blocks (2·kBlock) with its
    block product and dK, dV accumulators: their larger bound, independent of L and S.
    CUDA (runtime/cuda/attention.cu): D = rowsum(dout ∘ out) - dlse per query row, (batch·L,), computed
    once and read by both passes, then the scores and dP matrices of a chunk of items (_cuda_scores)."""
    batch, L, S, e, ev = _geom(ctx)
    if ctx.target == "cuda":
        return ([(ctx.dtype(0), (batch * L,))] + _cuda_scores(ctx, 2)) if batch * L else []
    b = ATTN_BLOCK
    tasks = batch * max(-(-L // b), -(-S // b))
    return [(ctx.dtype(0), d) for _, d in _slots(tasks, b * (2 * b + 2 * e + 2 * ev + 4))]


def _cost(in_shapes, out_shapes, attrs):
    """2·L·S·(E + Ev) per batch item: the QKᵀ and PV products."""
    q, k, v = in_shapes[:3]
    return 2 * int(numel(q[:-1]) or 0) * int(k[-2]) * (int(q[-1]) + int(v[-1]))


# -- references (float64, rounded once) ----------------------------------------------------------

def _keep(mask, causal, lead, L, S):
    keep = np.broadcast_to(np.asarray(mask, bool), lead + (L, S))
    if causal:
        keep = keep & np.tril(np.ones((L, S), bool))
    return keep


@np.errstate(all="ignore")  # special values: inf - inf, 0 · inf; a kept row of -inf scores is NaN
def _probs(q, k, keep, scale, lse=None):
    """(p, lse): the softmax over the kept keys (0 for a masked key), or exp(s - lse) given lse."""
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
    if lse is None:
        m = np.where(keep, s, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
        p = np.where(keep, np.exp(s - m), 0.0)
        ssum = p.sum(axis=-1, keepdims=True)
        lse = (m + np.log(ssum))[..., 0]
        return p / ssum, lse
    return np.where(keep, np.exp(s - lse[..., None]), 0.0), lse


@np.errstate(all="ignore")
def _masked_matmul(keep, a, b):
    """Σ_j a[..., i, j] · b[..., j, :] over the kept j only (a masked NaN or inf adds nothing)."""
    return np.where(keep[..., None], a[..., None] * b[..., None, :, :], 0.0).sum(axis=-2)


def _attention_ref(inputs, attrs):
    q, k, v, mask = inputs
    t = q.dtype
    lead, L, S = q.shape[:-2], q.shape[-2], k.shape[-2]
    keep = _keep(mask, attrs["causal"], lead, L, S)
    any_kept = keep.any(axis=-1)
    p, lse = _probs(q.astype(np.float64), k.astype(np.float64), keep, attrs["scale"])
    out = _masked_matmul(keep, p, v.astype(np.float64))
    out = np.where(any_kept[..., None], out, 0.0)
    lse = np.where(any_kept, lse, -np.inf)
    return out.astype(t), lse.astype(t)


@np.errstate(all="ignore")
def _attention_grad_ref(inputs, attrs):
    q, k, v, mask, out, lse, dout, dlse = (a if a.dtype == bool else a.astype(np.float64) for a in inputs)
    t = inputs[0].dtype
    lead, L, S = q.shape[:-2], q.shape[-2], k.shape[-2]
    keep = _keep(mask, attrs["causal"], lead, L, S)
    scale = attrs["scale"]
    p, _ = _probs(q, k, keep, scale, lse=lse)
    dp = np.matmul(dout, np.swapaxes(v, -1, -2))
    d = (dout * out).sum(axis=-1) - dlse
    ds = np.where(keep, p * (dp - d[..., None]), 0.0)
    keep_t = np.swapaxes(keep, -1, -2)
    dq = _masked_matmul(keep, ds, k) * scale
    dk = _masked_matmul(keep_t, np.swapaxes(ds, -1, -2), q) * scale
    dv = _masked_matmul(keep_t, np.swapaxes(p, -1, -2), dout)
    return dq.astype(t), dk.astype(t), dv.astype(t)


# -- examples ------------------------------------------------------------------------------------

# (lead, L, S, E, Ev, mask shape or None, causal): an empty batch, L = 1, S = 1, causal with L = 1,
# odd sizes, L != S both ways with causal, broadcast masks, S = 0, E = 0, a long row (S = 301)
CASES = [((2,), 3, 4, 5, 3, None, False), ((0, 2), 3, 4, 5, 3, None, False), ((2,), 1, 4, 3, 2, None, False),
         ((2,), 3, 1, 3, 2, None, False), ((1, 2), 1, 1, 2, 2, None, True), ((2,), 1, 5, 3, 3, None, True),
         ((2, 3), 7, 13, 5, 4, None, False), ((2, 3), 7, 13, 5, 4, "full", False), ((3,), 7, 13, 5, 6, None, True),
         ((2,), 9, 4, 3, 3, None, True), ((2, 3), 5, 6, 4, 3, "heads", False), ((2,), 5, 6, 4, 3, "rows", False),
         ((2,), 3, 0, 4, 3, None, False), ((2,), 4, 5, 0, 3, None, False), ((1,), 6, 301, 8, 5, None, False),
         ((2,), 70, 150, 9, 7, None, True), ((2,), 70, 150, 9, 7, "full", False), ((), 6, 7, 5, 4, "full", False)]


def _mask(rng, kind, lead, L, S):
    if kind is None:
        return np.array(True)
    shape = {"full": lead + (L, S), "heads": lead[:1] + (1, L, S), "rows": (1, S)}[kind]
    m = rng.random(shape) < 0.6
    if m.ndim >= 2 and m.shape[-2] > 1:
        m[..., 1, :] = False  # a fully masked row
    return m


def _case_inputs(rng, dt, lead, L, S, e, ev, lo=-2.0, hi=2.0):
    return [rand(rng, lead + (L, e), dt, lo, hi), rand(rng, lead + (S, e), dt, lo, hi),
            rand(rng, lead + (S, ev), dt, lo, hi)]


def _forward_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for i, (lead, L, S, e, ev, mk, causal) in enumerate(CASES):
            ins = _case_inputs(rng, dt, lead, L, S, e, ev)
            scale = 1.0 / math.sqrt(e) if e and i % 3 else 0.37
            out.append(Example(ins + [_mask(rng, mk, lead, L, S)], {"scale": scale, "causal": causal}, note=dt))
        # NaN/±inf/-0.0 in each of q, k, v in turn, with a mask (a masked NaN adds nothing)
        for j in range(3):
            ins = _case_inputs(rng, dt, (2,), 5, 6, 4, 4)
            ins[j] = special(rng, ins[j].shape, dt, extremes=False)
            mask = np.array(True) if j == 1 else _mask(rng, "full", (2,), 5, 6)
            out.append(Example(ins + [mask], {"scale": 0.5, "causal": j == 1},
                               grad=False, note=f"{dt} special values in input {j}"))
        # large scores (past exp's overflow at 89 for float32, 710 for float64): the running max must
        # keep exp finite.  float32: integer q, k, so the scores are exact and only the softmax's own
        # rounding is compared (a float32 score of 3000 is off by 1e-4 before any softmax)
        hi = 30.0 if dt == "float64" else 5.0
        ins = _case_inputs(rng, dt, (2,), 5, 40, 4, 3, lo=-hi, hi=hi)
        if dt == "float32":
            ins[0], ins[1] = np.round(ins[0]), np.round(ins[1])
        out.append(Example(ins + [np.array(True)], {"scale": 1.0, "causal": False}, grad=False,
                           note=f"{dt} large scores"))
    return out


def _grad_examples(rng):
    out = []
    for ex in _forward_examples(rng):
        q, k, v, mask = ex.inputs
        o, lse = _attention_ref(ex.inputs, ex.attrs)
        dt = q.dtype
        dout = rand(rng, o.shape, dt) if ex.grad else special(rng, o.shape, dt, extremes=False)
        out.append(Example([q, k, v, mask, o, lse, dout, rand(rng, lse.shape, dt)], ex.attrs, grad=ex.grad,
                           note=ex.note))
    return out


# -- declarations --------------------------------------------------------------------------------

register_op(
    "scaled_dot_product_attention",
    doc="Attention (torch's scaled_dot_product_attention, dropout 0): keep = mask (broadcast to (..., L, S)) "
        "and j <= i if causal; s = scale·q kᵀ; out[i] = Σ_{j kept} softmax_j(s[i])·v[j]; lse[i] = log Σ_{j kept} "
        "exp(s[i, j]).  A row with no kept key: out = 0, lse = -inf.  Outputs (out, lse).",
    inputs=[("q", "T"), ("k", "T"), ("v", "T"), ("mask", ("bool",))],
    type_vars=_T,
    attrs={"scale": SCALE_ATTR, "causal": CAUSAL_ATTR},
    infer=_infer,
    reference=_attention_ref,
    examples=_forward_examples,
    cost=_cost,
    workspace=_workspace,
)


def _grad_composite(ctx):
    q, k, v, mask, out, lse, dout, dlse = ctx.inputs
    scale, causal = ctx.attrs["scale"], ctx.attrs["causal"]
    L, S = q.shape[-2], k.shape[-2]
    t = q.dtype

    def const(val, dtype=t):
        return F.constant(np.asarray(val, dtype), graph=q.graph)

    keep = mask
    if causal:
        keep = const(np.tril(np.ones((L, S), bool)), "bool")
    # masked before exp: exp of a masked score minus lse may overflow, and 0 · inf would be NaN
    p = F.exp(F.where(keep, F.sub(F.mul(F.matmul(q, k, transpose_b=True), const(scale)),
                                  F.expand_dims(lse, axis=-1)), const(-np.inf)))
    dp = F.matmul(dout, v, transpose_b=True)
    d = F.sub(F.sum(F.mul(dout, out), axis=-1, keepdims=True), F.expand_dims(dlse, axis=-1))
    ds = F.mul(p, F.sub(dp, d))
    dq = F.mul(F.matmul(ds, k), const(scale))
    dk = F.mul(F.matmul(ds, q, transpose_a=True), const(scale))
    dv = F.matmul(p, dout, transpose_a=True)
    return dq, dk, dv


register_op(
    "scaled_dot_product_attention_grad",
    doc="The gradient of scaled_dot_product_attention (dout, dlse the gradients of out and lse): with "
        "P = exp(s - lse) on the kept keys (0 elsewhere), dP = dout vᵀ, D = rowsum(dout∘out) - dlse, "
        "dS = P∘(dP - D): dq = scale·dS k, dk = scale·dSᵀ q, dv = Pᵀ dout.",
    inputs=[("q", "T"), ("k", "T"), ("v", "T"), ("mask", ("bool",)), ("out", "T"), ("lse", "T"), ("dout", "T"),
            ("dlse", "T")],
    type_vars=_T,
    attrs={"scale": SCALE_ATTR, "causal": CAUSAL_ATTR},
    infer=_grad_infer,
    reference=_attention_grad_ref,
    examples=_grad_examples,
    cost=lambda i, o, a: 2 * _cost(i, o, a),
    workspace=_grad_workspace,
    composite=_grad_composite,  # no gradient of its own: autodiff differentiates this definition
)


@defgrad("scaled_dot_product_attention")
def _grad_attention(ctx):
    q, k, v, mask = ctx.inputs
    out, lse = ctx.outputs
    dout, dlse = ctx.grads
    dq, dk, dv = build("scaled_dot_product_attention_grad", [q, k, v, mask, out, lse, dout, dlse], dict(ctx.attrs))
    return [dq, dk, dv, None]


# -- builder -------------------------------------------------------------------------------------

def scaled_dot_product_attention(q, k, v, mask=None, causal=False, scale=None, name=None):
    """Attention as ``torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
    is_causal=causal, scale=scale)`` (no dropout).

    q (..., L, E), k (..., S, E), v (..., S, Ev) with equal leading dims (rank >= 2: (batch, heads,
    L, E), (batch, L, E), ...) -> (..., L, Ev).  ``mask``: a bool tensor broadcastable to (..., L, S),
    True = attend (a float additive mask is not supported: use a bool one).  ``causal``: attend to
    keys j <= i only.  ``scale``: default 1/√E.  A query row with no key to attend to gets 0 (and
    zero gradients) where torch gives NaN.  One fused kernel: memory O(L·Ev) per (batch, head),
    never (L, S).

    Example::

        y = gc.scaled_dot_product_attention(q, k, v, causal=True)   # q, k, v: (batch, heads, T, 32)
    """
    if mask is not None and causal:
        raise GraphError("scaled_dot_product_attention: takes a mask or causal=True, not both (as torch)")
    if mask is not None and mask.dtype != "bool":
        raise GraphError(f"scaled_dot_product_attention: expects a bool mask (True = attend), got {mask.dtype} "
                         f"(an additive float mask is not supported)")
    e = q.shape[-1] if len(q.shape) else None
    if scale is None:
        if not isinstance(e, int):
            raise GraphError(f"scaled_dot_product_attention: the default scale 1/√E needs a static E, got q of "
                             f"shape {tuple(q.shape)}; pass scale=")
        scale = 1.0 / math.sqrt(e) if e else 1.0
    if mask is None:
        mask = F.constant(np.array(True), graph=q.graph)
    return build("scaled_dot_product_attention", [q, k, v, mask], {"scale": float(scale), "causal": bool(causal)},
                 name=name)[0]
