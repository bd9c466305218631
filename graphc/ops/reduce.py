"""Reductions (sum, mean, max, min over axes with keepdims; argmin) and matmul."""

import math
import warnings

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import (
    ODD,
    Example,
    F,
    as_tensors,
    broadcast_as,
    broadcast_shapes,
    build,
    ones_like,
    rand,
    special,
    unbroadcast,
)
from graphc.ops.scan import arg_extremum_examples, arg_extremum_infer, arg_extremum_ref
from graphc.registry import AttrSpec, defgrad, register_op


def normalize_axes(ctx, axes, rank):
    """Sorted, non-negative, de-duplicated axes; None means every axis."""
    if axes is None:
        return tuple(range(rank))
    out = sorted({ctx.normalize_axis(a, rank, "axes") for a in axes})
    if len(out) != len(axes):
        ctx.fail(f"axes={list(axes)} repeats an axis")
    return tuple(out)


def _reduce_infer(empty_ok):
    def infer(ctx):
        shape = ctx.shape(0)
        axes = normalize_axes(ctx, ctx.attrs["axes"], len(shape))
        if not empty_ok:
            for a in axes:
                if shape[a] == 0:
                    ctx.fail(f"cannot reduce over axis {a} of size 0 (no identity for {ctx.node.op})")
        if ctx.attrs["keepdims"]:
            out = tuple(1 if i in axes else d for i, d in enumerate(shape))
        else:
            out = tuple(d for i, d in enumerate(shape) if i not in axes)
        return ctx.dtype(0), out
    return infer


def _axes(attrs, x):
    axes = attrs["axes"]
    if axes is None:
        return None
    return tuple(sorted(a % x.ndim for a in axes)) if x.ndim else None


def _sum_ref(inputs, attrs):
    x = inputs[0]
    return np.sum(x, axis=_axes(attrs, x), keepdims=attrs["keepdims"], dtype=x.dtype)


def _mean_ref(inputs, attrs):
    x = inputs[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.mean(x, axis=_axes(attrs, x), keepdims=attrs["keepdims"], dtype=x.dtype)


def _max_ref(inputs, attrs):
    x = inputs[0]
    return np.max(x, axis=_axes(attrs, x), keepdims=attrs["keepdims"])


REDUCE_CASES = [
    ((), None), ((7,), None), ((7,), (0,)), ((5, 3), (1,)), ((5, 3), (0,)), ((5, 3), (-1,)),
    ((4, 3, 5), (0, 2)), ((4, 3, 5), (1,)), ((2, 3, 4, 5), (1, 3)), ((0, 3), (1,)), ((1, 1), None),
    (ODD, (1,)), (ODD, (0, 2)), (ODD, None),
]


# The CUDA reductions' two-pass split (runtime/cuda/reduce.cu, choose_splits, the same constants):
# a long reduction with few outputs is cut into fixed chunks whose 8-byte partials (the kernel's
# accumulator: float64 or int64) go to a planned workspace, then combined in order.  Only the
# "cuda" target plans it; without it the kernel runs in one pass.
_CUDA_FEW_UNITS, _CUDA_SPLIT_TARGET, _CUDA_ROW_CHUNK, _CUDA_COL_CHUNK, _CUDA_COL_TILE = 256, 1024, 4096, 1024, 32


def _ceil_div(a, b):
    return -(-a // b)


def cuda_reduce_splits(shape, reduced):
    """(outputs, splits) of runtime/cuda/reduce.cu's plan reducing ``shape`` over the dims flagged
    in ``reduced`` (splits 1: one pass, no workspace)."""
    shape = [int(d) for d in shape]
    if 0 in shape:
        return 0, 1
    dims, kinds = [], []
    for d, r in zip(shape, reduced):
        if d == 1:
            continue
        if kinds and kinds[-1] == bool(r):
            dims[-1] *= d
        else:
            dims.append(d)
            kinds.append(bool(r))
    nout = 1
    for d, r in zip(dims, kinds):
        nout *= 1 if r else d
    if kinds.count(True) > 1:
        return nout, 1
    outer = red = inner = 1
    j = 0
    while j < len(dims) and not kinds[j]:
        outer *= dims[j]
        j += 1
    if j < len(dims):
        red = dims[j]
        j += 1
    while j < len(dims):
        inner *= dims[j]
        j += 1
    rows = inner == 1
    units = outer if rows else outer * _ceil_div(inner, _CUDA_COL_TILE)
    if units >= _CUDA_FEW_UNITS:
        return nout, 1
    # (this module's sum/max/min are graph ops: plain comparisons here)
    s = _ceil_div(red, _CUDA_ROW_CHUNK if rows else _CUDA_COL_CHUNK)
    s = s if s < _ceil_div(_CUDA_SPLIT_TARGET, units) else _ceil_div(_CUDA_SPLIT_TARGET, units)
    if s <= 1:
        return nout, 1
    chunk = _ceil_div(_ceil_div(red, s), 4) * 4
    return nout, _ceil_div(red, chunk)


def cuda_reduce_workspace(shape, reduced):
    """The planned partials of a CUDA reduction: ``[("float64", (outputs * splits,))]`` or ``[]``."""
    nout, splits = cuda_reduce_splits(shape, reduced)
    return [("float64", (nout * splits,))] if splits > 1 and nout > 0 else []


def _reduce_workspace(ctx):
    """CUDA only: the two-pass split's partials (none for the CPU kernels)."""
    if ctx.target != "cuda":
        return []
    shape = ctx.shape(0)
    axes = ctx.attrs.get("axes")
    rank = len(shape)
    if axes is None:
        reduced = [True] * rank
    else:
        flagged = {int(a) % rank for a in axes} if rank else set()
        reduced = [i in flagged for i in range(rank)]
    return cuda_reduce_workspace(shape, reduced)


def _reduce_examples(op, allowed):
    def examples(rng):
        out = []
        for dt in allowed:
            for shape, axes in REDUCE_CASES:
                if op == "max" and axes is not None and any(shape[a] == 0 for a in axes):
                    continue
                if op == "max" and axes is None and 0 in shape:
                    continue
                for keepdims in (False, True):
                    x = rand(rng, shape, dt)
                    if op == "max" and dt in dtypes.FLOATS:
                        x = x + rng.permutation(x.size).reshape(shape).astype(dt) * 0.01  # unique max
                    out.append(Example([x], {"axes": axes, "keepdims": keepdims}, note=dt))
            if op in ("sum", "mean"):
                out.append(Example([rand(rng, (0, 3), dt)], {"axes": None, "keepdims": False}, note="empty"))
            # NaN, ±inf, -0.0 (not the largest magnitudes: where a sum overflows depends on
            # the summation order, which the reference does not fix)
            for axes in (None, (1,), (0,)):
                x = special(rng, (4, 9), dt, extremes=dt in dtypes.INTS and op == "max")
                out.append(Example([x], {"axes": axes, "keepdims": False}, grad=False, note=f"{dt} special values"))
        return out
    return examples


_REDUCE_DOC = {
    "sum": ("y = Σ x over 'axes' (all axes when None); the sum of nothing is 0.", _sum_ref, dtypes.NUMERIC, True),
    "mean": ("y = (Σ x) / n over 'axes'; the mean of nothing is NaN, as in numpy.", _mean_ref, dtypes.FLOATS, True),
    "max": ("y = max x over 'axes'; reducing an axis of size 0 is an error.  The gradient goes to "
            "every position equal to the max, split evenly among ties.", _max_ref, dtypes.NUMERIC, False),
}

for _op, (_doc, _ref, _allowed, _empty_ok) in _REDUCE_DOC.items():
    register_op(
        _op,
        doc=_doc + "  keepdims keeps reduced axes as size 1.",
        inputs=[("x", _allowed)],
        attrs={"axes": AttrSpec("ints", default=None, optional=True, doc="axes reduced; None: every axis"),
               "keepdims": AttrSpec("bool", default=False, doc="keep reduced axes as size 1")},
        infer=_reduce_infer(_empty_ok),
        reference=_ref,
        examples=_reduce_examples(_op, _allowed),
        workspace=_reduce_workspace,
        prologue_into="fused_reduce",
    )


# -- min / argmin (ONNX ReduceMin, ArgMin) -------------------------------------------------------------

def _min_ref(inputs, attrs):
    x = inputs[0]
    return np.min(x, axis=_axes(attrs, x), keepdims=attrs["keepdims"])


def _min_examples(rng):
    out = []
    for dt in dtypes.NUMERIC:
        for shape, axes in REDUCE_CASES:
            if (axes is None and 0 in shape) or (axes is not None and any(shape[a] == 0 for a in axes)):
                continue
            for keepdims in (False, True):
                x = rand(rng, shape, dt)
                if dt in dtypes.FLOATS:
                    x = x + rng.permutation(x.size).reshape(shape).astype(dt) * 0.01  # a unique min
                out.append(Example([x], {"axes": axes, "keepdims": keepdims}, note=dt))
        out.append(Example([rand(rng, (0, 3), dt)], {"axes": (1,), "keepdims": False}, note=f"{dt} empty kept axis"))
        for axes in (None, (1,), (0,)):
            x = special(rng, (4, 9), dt, extremes=dt in dtypes.INTS)
            out.append(Example([x], {"axes": axes, "keepdims": False}, grad=False, note=f"{dt} special values"))
    return out


register_op(
    "min",
    doc="y = min x over 'axes' (all axes when None); NaN propagates (numpy.min); reducing an axis of size 0 "
        "is an error.  The gradient goes to every position equal to the min, split evenly among ties.  "
        "keepdims keeps reduced axes as size 1.",
    inputs=[("x", dtypes.NUMERIC)],
    attrs={"axes": AttrSpec("ints", default=None, optional=True, doc="axes reduced; None: every axis"),
           "keepdims": AttrSpec("bool", default=False, doc="keep reduced axes as size 1")},
    infer=_reduce_infer(False),
    reference=_min_ref,
    examples=_min_examples,
    workspace=_reduce_workspace,
)


register_op(
    "argmin",
    doc="y = the index (int64) of the smallest item along 'axis'; the first of equal minima (ONNX ArgMin with "
        "select_last_index=0); NaN counts as the smallest (the first NaN wins, as numpy.argmin and argmax's "
        "rule).  The axis must not be empty.",
    inputs=[("x", dtypes.NUMERIC)],
    attrs={"axis": AttrSpec("int", default=-1, doc="the axis searched"),
           "keepdims": AttrSpec("bool", default=False, doc="keep the axis with size 1")},
    infer=arg_extremum_infer("min"),
    reference=arg_extremum_ref(np.argmin),
    examples=arg_extremum_examples([3, 1, 1, 2, 1]),   # ties: the first minimum wins
    differentiable=False,
)


def _axis_attr(axis):
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return tuple(axis)
    return (axis,)


def sum(x, axis=None, keepdims=False, name=None):  # noqa: A001
    """Σ x over ``axis`` (int, tuple, or None for all)."""
    return build("sum", as_tensors(x), {"axes": _axis_attr(axis), "keepdims": keepdims}, name=name)


def mean(x, axis=None, keepdims=False, name=None):
    """Mean of x over ``axis``."""
    return build("mean", as_tensors(x), {"axes": _axis_attr(axis), "keepdims": keepdims}, name=name)


def max(x, axis=None, keepdims=False, name=None):  # noqa: A001
    """Max of x over ``axis``."""
    return build("max", as_tensors(x), {"axes": _axis_attr(axis), "keepdims": keepdims}, name=name)


def min(x, axis=None, keepdims=False, name=None):  # noqa: A001
    """Min of x over ``axis`` (int, tuple, or None for all); NaN propagates."""
    return build("min", as_tensors(x), {"axes": _axis_attr(axis), "keepdims": keepdims}, name=name)


def argmin(x, axis=-1, keepdims=False, name=None):
    """The int64 index of the smallest item along ``axis``: the first of equal minima, and NaN
    counts as the smallest (the first NaN wins), as numpy.argmin."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise GraphError(f"argmin: axis={axis!r} must be an int")
    return build("argmin", as_tensors(x), {"axis": int(axis), "keepdims": bool(keepdims)}, name=name)


# -- matmul -------------------------------------------------------------------------------

def _matmul_infer(ctx):
    a, b = ctx.shape(0), ctx.shape(1)
    if len(a) < 2 or len(b) < 2:
        ctx.fail("expects inputs of rank >= 2 (use reshape or expand_dims for vectors)")
    ta, tb = ctx.attrs["transpose_a"], ctx.attrs["transpose_b"]
    m, k1 = (a[-1], a[-2]) if ta else (a[-2], a[-1])
    k2, n = (b[-1], b[-2]) if tb else (b[-2], b[-1])
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2:
        ctx.fail(f"expects input 1 of shape (..., {k1}, N) to match input 0 (..., M, {k1}), got K={k2}"
                 + (f" (transpose_a={ta}, transpose_b={tb})" if ta or tb else ""))
    batch = broadcast_shapes(ctx, a[:-2], b[:-2])
    return ctx.dtype(0), batch + (m, n)


def _matmul_cost(in_shapes, out_shapes, attrs):
    """2·M·N·K per batch: each output element is a K-long dot product."""
    a = in_shapes[0]
    k = a[-2] if attrs.get("transpose_a") else a[-1]  # the contracted dim
    n = 1
    for d in out_shapes[0]:
        n *= int(d)
    return 2 * n * int(k)


# The CUDA products' cuBLASLt workspace (runtime/cuda/matmul.cu, blas.cu): split-K and stream-K
# algorithms need scratch, and the heuristic only offers those that fit.  NVIDIA's cuBLAS docs
# recommend 32 MiB on Hopper (4 MiB before): large products get 32 MiB, products under 2^24
# multiply-adds (where a split rarely pays and small graphs should stay small) 4 MiB.  A
# workspace lives at its step only, so the arena reuses the same bytes for every product.
CUBLASLT_WORKSPACE_SMALL = 4 << 20
CUBLASLT_WORKSPACE_LARGE = 32 << 20


def cublaslt_workspace_bytes(m_n, k):
    """The cuBLASLt workspace for a product of m_n outputs, each a k-long dot (0: none needed)."""
    if m_n == 0 or k == 0:
        return 0
    return CUBLASLT_WORKSPACE_SMALL if m_n * k < (1 << 24) else CUBLASLT_WORKSPACE_LARGE


def _matmul_workspace(ctx):
    """CUDA only: cuBLASLt's workspace as float32 items (none for the CPU kernels)."""
    if ctx.target != "cuda":
        return []
    a = ctx.shape(0)
    if len(a) < 2:
        return []
    k = int(a[-2] if ctx.attrs.get("transpose_a") else a[-1])
    nbytes = cublaslt_workspace_bytes(math.prod(int(d) for d in ctx.out_shape(0)), k)
    return [("float32", (nbytes // 4,))] if nbytes else []


def _t(x):
    return np.swapaxes(x, -1, -2)


def _matmul_ref(inputs, attrs):
    a, b = inputs
    if attrs["transpose_a"]:
        a = _t(a)
    if attrs["transpose_b"]:
        b = _t(b)
    return np.matmul(a, b)


def _matmul_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for sa, sb in [((1, 1), (1, 1)), ((3, 5), (5, 4)), ((72, 73), (73, 74)), ((0, 5), (5, 3)),
                       ((4, 0), (0, 3)), ((3, 5), (5, 0)), ((2, 3, 5), (2, 5, 4)), ((2, 3, 5), (5, 4)),
                       ((3, 5), (2, 5, 4)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 7), (7, 1))]:
            out.append(Example([rand(rng, sa, dt), rand(rng, sb, dt)],
                               {"transpose_a": False, "transpose_b": False}, note=dt))
        for sa, sb, ta, tb in [((5, 3), (5, 4), True, False), ((3, 5), (4, 5), False, True),
                               ((5, 3), (4, 5), True, True), ((2, 7, 3), (7, 4), True, False),
                               ((0, 3), (4, 3), False, True), ((73, 72), (74, 73), True, True),
                               ((1, 1), (1, 1), True, True)]:
            out.append(Example([rand(rng, sa, dt), rand(rng, sb, dt)], {"transpose_a": ta, "transpose_b": tb},
                               note=f"{dt} ta={ta} tb={tb}"))
        a = rand(rng, (4, 5), dt)
        a[1, 2], a[3, 0], a[2, 4], a[0, 1] = np.nan, np.inf, -np.inf, -0.0
        out.append(Example([a, rand(rng, (5, 3), dt)], {"transpose_a": False, "transpose_b": False}, grad=False,
                           note=f"{dt} NaN and inf rows"))
    return out


register_op(
    "matmul",
    doc="Matrix product: y[..., i, j] = Σ_k a'[..., i, k] b'[..., k, j] with a' = a or its last two axes "
        "swapped (transpose_a), likewise b' (transpose_b), as BLAS's trans flags: no copy is made.  Both "
        "inputs have rank >= 2; leading (batch) dims broadcast as in numpy.matmul.  Float dtypes.",
    inputs=[("a", "T"), ("b", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"transpose_a": AttrSpec("bool", default=False, doc="use a's last two axes swapped"),
           "transpose_b": AttrSpec("bool", default=False, doc="use b's last two axes swapped")},
    cost=_matmul_cost,
    workspace=_matmul_workspace,
    epilogue_into="fused_matmul",
    infer=_matmul_infer,
    reference=_matmul_ref,
    examples=_matmul_examples,
)


def matmul(a, b, transpose_a=False, transpose_b=False, name=None):
    """a @ b (numpy.matmul semantics for rank >= 2), optionally with either operand's last
    two axes swapped."""
    return build("matmul", as_tensors(a, b), {"transpose_a": transpose_a, "transpose_b": transpose_b}, name=name)


# -- gradients ---------------------------------------------------------------------------------

def _keepdims_grad(ctx):
    """The upstream gradient reshaped to keepdims form (size-1 dims at the reduced axes)."""
    x = ctx.x
    axes = ctx.attrs["axes"]
    axes = tuple(range(x.ndim)) if axes is None else tuple(sorted(a % x.ndim for a in axes))
    if ctx.attrs["keepdims"] or not axes:
        return ctx.g, axes
    return F.expand_dims(ctx.g, axes), axes


@defgrad("sum")
def _grad_sum(ctx):
    g, _ = _keepdims_grad(ctx)
    return [broadcast_as(g, ctx.x)]


@defgrad("mean")
def _grad_mean(ctx):
    g, axes = _keepdims_grad(ctx)
    x = ctx.x
    dims = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in dims):
        n = int(np.prod(dims)) if dims else 1
        return [broadcast_as(F.div(g, float(n or 1)), x)]
    count = F.sum(ones_like(x), axis=axes, keepdims=True)
    return [F.div(broadcast_as(g, x), count)]


@defgrad("min")
@defgrad("max")
def _grad_max(ctx):
    g, axes = _keepdims_grad(ctx)
    x = ctx.x
    y = ctx.y if ctx.attrs["keepdims"] or not axes else F.expand_dims(ctx.y, axes)
    mask = F.cast(F.equal(x, broadcast_as(y, x)), x.dtype)
    count = F.sum(mask, axis=axes, keepdims=True)
    return [F.mul(mask, broadcast_as(F.div(g, count), x))]


@defgrad("matmul")
def _grad_matmul(ctx):
    # For C = op(A) op(B) the adjoints are again matmuls with trans flags: no transposes
    # are materialised (BLAS reads the operands transposed).
    a, b = ctx.inputs
    g = ctx.g
    ta, tb = ctx.attrs["transpose_a"], ctx.attrs["transpose_b"]
    if not ta and not tb:
        ga, gb = matmul(g, b, transpose_b=True), matmul(a, g, transpose_a=True)
    elif not ta and tb:
        ga, gb = matmul(g, b), matmul(g, a, transpose_a=True)
    elif ta and not tb:
        ga, gb = matmul(b, g, transpose_b=True), matmul(a, g)
    else:
        ga, gb = matmul(b, g, transpose_a=True, transpose_b=True), matmul(g, a, transpose_a=True, transpose_b=True)
    flat = _flat_weight_grad(a, b, g, ta, tb)
    return [unbroadcast(ga, a), flat if flat is not None else unbroadcast(gb, b)]


def _flat_weight_grad(a, b, g, ta, tb):
    """The gradient of a 2-D ``b`` shared by every matrix of a batched ``a`` (a Linear layer on a
    sequence: x (N, T, K) · Wᵀ) as ONE matmul over the batch folded into the rows — the same sum
    as the batched product followed by a reduction over the batch, without the (N, ·, ·) partial
    products.  None when the shapes do not allow the fold (b batched, a transposed, a dim unknown)."""
    if len(b.shape) != 2 or len(a.shape) < 3 or ta:
        return None
    k, n = a.shape[-1], g.shape[-1]
    if not isinstance(k, int) or not isinstance(n, int):
        return None
    a2, g2 = F.reshape(a, (-1, k)), F.reshape(g, (-1, n))
    # C = A·B: dB = A2ᵀ·G2 (K, N);  C = A·Bᵀ: dB = G2ᵀ·A2 (N, K)
    return matmul(g2, a2, transpose_a=True) if tb else matmul(a2, g2, transpose_a=True)
