"""Layer normalisation over the trailing axes of x, with PyTorch's semantics
(``torch.nn.functional.layer_norm`` with ``normalized_shape = x.shape[axis:]``).

x is viewed as (rows, n): rows = the product of x.shape[:axis], n = the product of
x.shape[axis:].  Each row is normalised by its own mean and biased variance:

    mean = Σ x / n,  var = Σ (x - mean)² / n,  rstd = 1 / √(var + eps)
    y = (x - mean) · rstd · weight + bias        (weight, bias of shape x.shape[axis:])

- ``layer_norm(x, weight, bias) -> (y, mean, rstd)``: one kernel, one task per row (the row is
  read three times while it is in cache: the sum, the centred sum of squares, then y).  mean and rstd
  (shape x.shape[:axis]) are kept for the backward.
- ``layer_norm_grad(dy, x, weight, mean, rstd, dmean, drstd) -> (dx, dweight, dbias)``: one kernel;
  dx per row, dweight and dbias summed over the rows in row order for every column (columns are
  the parallel tasks), so the bits do not depend on the thread count.  Its own gradient
  differentiates its composite definition (the same formula from elementwise and reduction
  ops), so second order works too.

The references and the kernels alike accumulate in float64 and round each output once."""

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import Example, F, build, numel, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

AXIS_ATTR = AttrSpec("int", default=-1, doc="the first normalised axis: x.shape[axis:] is normalised as one row")
EPS_ATTR = AttrSpec("float", default=1e-5, doc="added to the variance before the square root")
_FLOAT_T = {"T": dtypes.FLOATS}


def _norm_axis(rank, axis):
    return axis + rank if axis < 0 else axis


def _check_axis(ctx, rank, what="x"):
    axis = ctx.attrs["axis"]
    if rank < 1 or not -rank <= axis < rank:
        ctx.fail(f"expects axis in [-rank, rank) of {what} (rank {rank}), got axis={axis}")
    if not ctx.attrs["eps"] >= 0:
        ctx.fail(f"expects eps >= 0, got {ctx.attrs['eps']}")
    return _norm_axis(rank, axis)


def _same(a, b):
    return len(a) == len(b) and all(p is None or q is None or p == q for p, q in zip(a, b))


def _expect(ctx, i, want, name):
    got = tuple(ctx.shape(i))
    if not _same(got, want):
        ctx.fail(f"expects {name} (input {i}) of shape {tuple(want)}, got {got}")


# -- references (float64, rounded once) ------------------------------------------------------------

def _rows(shape, axis):
    """(rows, n) of x viewed as rows of the normalised axes."""
    a = _norm_axis(len(shape), axis)
    return numel(shape[:a]), numel(shape[a:])


@np.errstate(all="ignore")  # a row of length 0: 0/0 = NaN; special values: inf - inf
def _layer_norm_ref(inputs, attrs):
    x, w, b = inputs
    rows, n = _rows(x.shape, attrs["axis"])
    xd = x.astype(np.float64).reshape(rows, n)
    mean = xd.sum(axis=1) / n
    xc = xd - mean[:, None]
    var = (xc * xc).sum(axis=1) / n
    rstd = 1.0 / np.sqrt(var + attrs["eps"])
    y = xc * rstd[:, None] * w.astype(np.float64).reshape(1, n) + b.astype(np.float64).reshape(1, n)
    lead = x.shape[:_norm_axis(x.ndim, attrs["axis"])]
    return y.reshape(x.shape).astype(x.dtype), mean.reshape(lead).astype(x.dtype), rstd.reshape(lead).astype(x.dtype)


@np.errstate(all="ignore")
def _layer_norm_grad_ref(inputs, attrs):
    dy, x, w, mean, rstd, dmean, drstd = (a.astype(np.float64) for a in inputs)
    t = inputs[1].dtype
    rows, n = _rows(x.shape, attrs["axis"])
    dy, x = dy.reshape(rows, n), x.reshape(rows, n)
    w = w.reshape(1, n)
    mean, rstd, dmean, drstd = (v.reshape(rows, 1) for v in (mean, rstd, dmean, drstd))
    xc = x - mean
    xhat = xc * rstd
    db = dy.sum(axis=0)
    dw = (dy * xhat).sum(axis=0)
    g = dy * w
    k1, k2 = g.sum(axis=1, keepdims=True) / n, (g * xhat).sum(axis=1, keepdims=True) / n
    k3, k4 = dmean / n, -drstd * rstd * rstd * rstd / n  # d rstd / dx = -rstd³ (x - mean) / n
    dx = rstd * ((g - k1) - xhat * k2) + k3 + xc * k4
    tail = inputs[2].shape
    return dx.reshape(inputs[1].shape).astype(t), dw.reshape(tail).astype(t), db.reshape(tail).astype(t)


# -- inference ---------------------------------------------------------------------------------------

def _layer_norm_infer(ctx):
    shape = tuple(ctx.shape(0))
    a = _check_axis(ctx, len(shape))
    _expect(ctx, 1, shape[a:], "weight")
    _expect(ctx, 2, shape[a:], "bias")
    t = ctx.dtype(0)
    return [(t, shape), (t, shape[:a]), (t, shape[:a])]


def _layer_norm_grad_infer(ctx):
    shape = tuple(ctx.shape(1))
    a = _check_axis(ctx, len(shape))
    _expect(ctx, 0, shape, "dy")
    _expect(ctx, 2, shape[a:], "weight")
    for i, name in ((3, "mean"), (4, "rstd"), (5, "dmean"), (6, "drstd")):
        _expect(ctx, i, shape[:a], name)
    t = ctx.dtype(1)
    return [(t, shape), (t, shape[a:]), (t, shape[a:])]


# -- examples ----------------------------------------------------------------------------------------

# (x shape, axis): rows of length 1, empty rows, no rows, odd sizes, axis -1, -2 and 0
CASES = [((1,), -1), ((3, 1), -1), ((0, 5), -1), ((4, 0), -1), ((2, 0, 3), -2), ((5, 7), -1), ((3, 5, 7), -2),
         ((2, 3, 9), -1), ((7,), 0), ((3, 4, 5), 0), ((4, 1, 1), -2), ((2, 5, 73), -1), ((33, 129), -1)]


def _forward_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for i, (shape, axis) in enumerate(CASES):
            tail = shape[_norm_axis(len(shape), axis):]
            out.append(Example([rand(rng, shape, dt), rand(rng, tail, dt), rand(rng, tail, dt)],
                               {"axis": axis, "eps": [1e-5, 1e-3][i % 2]}, note=dt))
        # NaN/±inf make their row NaN; -0.0, tiny values (no extremes: a row sum would overflow
        # in an order-dependent way)
        out.append(Example([special(rng, (4, 5), dt, extremes=False), rand(rng, (5,), dt), rand(rng, (5,), dt)],
                           {"axis": -1, "eps": 1e-5}, grad=False, note=f"{dt} special values"))
        # a constant row: variance 0, y = bias; eps = 0 there: 0 · inf = NaN
        for eps in (1e-5, 0.0):
            out.append(Example([np.full((3, 4), -1.5, dt), rand(rng, (4,), dt), rand(rng, (4,), dt)],
                               {"axis": -1, "eps": eps}, grad=False, note=f"{dt} constant rows eps={eps}"))
    return out


def _grad_examples(rng):
    out = []
    for ex in _forward_examples(rng):
        x, w, _ = ex.inputs
        dt = x.dtype.name
        _, mean, rstd = _layer_norm_ref(ex.inputs, ex.attrs)
        if ex.grad:
            rstd = np.nan_to_num(rstd, nan=1.0)  # an empty row's statistics are NaN
            mean = np.nan_to_num(mean)
        dy = rand(rng, x.shape, dt) if ex.grad else special(rng, x.shape, dt, extremes=False)
        out.append(Example([dy, x, w, mean, rstd, rand(rng, mean.shape, dt), rand(rng, mean.shape, dt)],
                           ex.attrs, grad=ex.grad, note=ex.note))
    return out


# -- declarations ------------------------------------------------------------------------------------

register_op(
    "layer_norm",
    doc="Layer norm over x.shape[axis:] (one row): mean = Σx/n, var = Σ(x - mean)²/n, rstd = 1/√(var + eps), "
        "y = (x - mean)·rstd·weight + bias.  Outputs (y, mean, rstd), mean and rstd of shape x.shape[:axis].",
    inputs=[("x", "T"), ("weight", "T"), ("bias", "T")],
    type_vars=_FLOAT_T,
    attrs={"axis": AXIS_ATTR, "eps": EPS_ATTR},
    infer=_layer_norm_infer,
    reference=_layer_norm_ref,
    examples=_forward_examples,
)


def _grad_composite(ctx):
    dy, x, w, mean, rstd, dmean, drstd = ctx.inputs
    shape = tuple(x.shape)
    a = _norm_axis(len(shape), ctx.attrs["axis"])
    n = numel(shape[a:])  # static: weight has shape x.shape[axis:]
    lead_axes, row_axes = tuple(range(a)), tuple(range(a, len(shape)))
    t = x.dtype

    def const(v):
        return F.constant(np.asarray(v, t), graph=x.graph)

    def per_row(v):  # (rows...) -> (rows..., 1, ..., 1), broadcasting against x (symbolic rows too)
        return F.expand_dims(v, axis=tuple(range(a, len(shape))))

    def col_sum(v):
        return F.sum(v, axis=lead_axes) if lead_axes else v

    r = per_row(rstd)
    xc = F.sub(x, per_row(mean))
    xhat = F.mul(xc, r)
    db = col_sum(dy)
    dw = col_sum(F.mul(dy, xhat))
    g = F.mul(dy, w)
    inv_n = const(1.0 / n if n else 0.0)  # n = 0: dx is empty; 0 keeps second-order sums at 0, not NaN
    k1 = F.mul(F.sum(g, axis=row_axes, keepdims=True), inv_n)
    k2 = F.mul(F.sum(F.mul(g, xhat), axis=row_axes, keepdims=True), inv_n)
    k3 = per_row(F.mul(dmean, inv_n))
    k4 = per_row(F.mul(F.neg(F.mul(drstd, F.mul(rstd, F.mul(rstd, rstd)))), inv_n))
    dx = F.add(F.add(F.mul(r, F.sub(F.sub(g, k1), F.mul(xhat, k2))), k3), F.mul(xc, k4))
    return dx, dw, db


# The CUDA kernel's row chunks for dweight/dbias (runtime/cuda/layer_norm.cu: kChunkRows, kMaxChunks).
CUDA_CHUNK_ROWS, CUDA_MAX_CHUNKS = 512, 64


def _grad_workspace(ctx):
    """CUDA only: dweight's and dbias's partial column sums per chunk of rows (2 x chunks x n
    float64), summed in chunk order; one chunk needs none.  The CPU kernel keeps its own."""
    if ctx.target != "cuda":
        return []
    shape = tuple(ctx.shape(1))
    if len(shape) < 1 or not -len(shape) <= ctx.attrs["axis"] < len(shape):
        return []
    rows, n = _rows(shape, ctx.attrs["axis"])
    chunks = max(1, min(CUDA_MAX_CHUNKS, -(-rows // CUDA_CHUNK_ROWS)))
    if chunks <= 1 or n == 0:
        return []
    return [("float64", (2 * chunks * n,))]


register_op(
    "layer_norm_grad",
    doc="The gradient of layer_norm (dy, dmean, drstd the gradients of its outputs): with x̂ = (x - mean)·rstd, "
        "g = dy·weight, n the row length: dbias = Σ_rows dy, dweight = Σ_rows dy·x̂, "
        "dx = rstd·(g - Σg/n - x̂·Σ(g·x̂)/n) + dmean/n - drstd·rstd³·(x - mean)/n (Σ over a row).",
    inputs=[("dy", "T"), ("x", "T"), ("weight", "T"), ("mean", "T"), ("rstd", "T"), ("dmean", "T"),
            ("drstd", "T")],
    type_vars=_FLOAT_T,
    attrs={"axis": AXIS_ATTR, "eps": EPS_ATTR},
    infer=_layer_norm_grad_infer,
    reference=_layer_norm_grad_ref,
    examples=_grad_examples,
    workspace=_grad_workspace,
    composite=_grad_composite,  # no gradient of its own: autodiff differentiates this definition
)


@defgrad("layer_norm")
def _grad_layer_norm(ctx):
    x, w, _ = ctx.inputs
    _, mean, rstd = ctx.outputs
    dy, dmean, drstd = ctx.grads
    return list(layer_norm_grad(dy, x, w, mean, rstd, dmean, drstd, axis=ctx.attrs["axis"], eps=ctx.attrs["eps"]))


# -- builders ----------------------------------------------------------------------------------------

def layer_norm(x, axis=-1, weight=None, bias=None, eps=1e-5, name=None):
    """Layer normalisation of ``x`` over its trailing axes ``x.shape[axis:]``, as
    ``torch.nn.functional.layer_norm(x, x.shape[axis:], weight, bias, eps)``.

    ``weight`` and ``bias`` have shape ``x.shape[axis:]`` or are None (ones and zeros).  Returns y;
    the per-row mean and 1/√(var + eps) the op also computes (for the backward) are its outputs 1
    and 2 (:func:`layer_norm_stats`).

    Example::

        h = gc.layer_norm(h, axis=-1, weight=gamma, bias=beta)   # h: (batch, seq, features)
    """
    return layer_norm_stats(x, axis=axis, weight=weight, bias=bias, eps=eps, name=name)[0]


def layer_norm_stats(x, axis=-1, weight=None, bias=None, eps=1e-5, name=None):
    """layer_norm's three outputs: (y, mean, rstd), mean and rstd of shape x.shape[:axis]."""
    shape = tuple(x.shape)
    if not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
        raise GraphError(f"layer_norm: expects an int axis in [-{len(shape)}, {len(shape)}) for x of shape "
                         f"{shape}, got {axis!r}")
    tail = shape[_norm_axis(len(shape), axis):]
    if (weight is None or bias is None) and not all(isinstance(d, int) for d in tail):
        raise GraphError(f"layer_norm: weight and bias are needed when x.shape[axis:] is not static, got {tail}")
    if weight is None:
        weight = F.constant(np.ones(tail, x.dtype), graph=x.graph)
    if bias is None:
        bias = F.constant(np.zeros(tail, x.dtype), graph=x.graph)
    return build("layer_norm", [x, weight, bias], {"axis": axis, "eps": eps}, name=name)


def layer_norm_grad(dy, x, weight, mean, rstd, dmean, drstd, axis=-1, eps=1e-5, name=None):
    """The gradient (dx, dweight, dbias) of layer_norm (see the op's doc)."""
    return build("layer_norm_grad", [dy, x, weight, mean, rstd, dmean, drstd], {"axis": axis, "eps": eps},
                 name=name)
