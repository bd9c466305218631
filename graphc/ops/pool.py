"""2-D pooling over NCHW float input, with PyTorch's semantics: max_pool2d, avg_pool2d and
the ops their gradients are built from (max_pool2d_grad, avg_pool2d_grad, max_pool2d_gather).

Window (oh, ow) covers input rows oh·s - p .. oh·s - p + k - 1 (and likewise for columns),
clipped to the input; the output has floor((H + 2p - k) / s) + 1 rows.  padding <= k // 2
(as PyTorch requires) keeps at least one input element in every window.

Max pool picks, in each window scanned row by row, the first maximum, or the last NaN when
the window holds one (PyTorch's CPU kernel: ``val > maxval || isnan(val)``); its gradient
goes to that position only.  Avg pool divides the window's sum by k_h·k_w
(``count_include_pad=True``) or by the number of input elements in the clipped window.
Sums run in the window's row-major order in the input dtype, as PyTorch's CPU kernel."""

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import Example, build, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

POOL_ATTRS = {
    "kernel_size": AttrSpec("ints", doc="window (k_h, k_w), each > 0"),
    "stride": AttrSpec("ints", doc="step between windows (s_h, s_w), each > 0"),
    "padding": AttrSpec("ints", doc="implicit padding (p_h, p_w) on both sides, 0 <= p <= k // 2"),
}
AVG_ATTRS = dict(POOL_ATTRS, count_include_pad=AttrSpec(
    "bool", default=True, doc="divide by k_h·k_w (True) or by the number of input elements in the window"))


def _check_attrs(ctx):
    a = ctx.attrs
    for name in ("kernel_size", "stride", "padding"):
        if len(a[name]) != 2:
            ctx.fail(f"{name}={list(a[name])} must hold 2 ints (h, w)")
    k, s, p = a["kernel_size"], a["stride"], a["padding"]
    if any(v <= 0 for v in k) or any(v <= 0 for v in s):
        ctx.fail(f"kernel_size={list(k)} and stride={list(s)} must be positive")
    if any(pp < 0 or pp > kk // 2 for pp, kk in zip(p, k)):
        ctx.fail(f"padding={list(p)} must be >= 0 and at most half of kernel_size={list(k)}")
    return k, s, p


def _pooled_shape(ctx, shape, what="x"):
    """(N, C, H_out, W_out) of an NCHW shape; None dims stay None."""
    k, s, p = _check_attrs(ctx)
    if len(shape) != 4:
        ctx.fail(f"expects {what} of rank 4 (N, C, H, W), got shape {tuple(shape)}")
    out = list(shape[:2])
    for d, kk, ss, pp, axis in zip(shape[2:], k, s, p, "HW"):
        if d is None:
            out.append(None)
            continue
        if d < 1 or d + 2 * pp < kk:
            ctx.fail(f"{what} of shape {tuple(shape)}: {axis}={d} with padding {pp} is smaller than the "
                     f"kernel size {kk} (the output would be empty)")
        out.append((d + 2 * pp - kk) // ss + 1)
    return tuple(out)


def _same(a, b):
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _pool_infer(ctx):
    return ctx.dtype(0), _pooled_shape(ctx, ctx.shape(0))


def _grad_infer(ctx):
    # (dy, x) -> dx of x's shape; dy must have the pooled shape of x
    want = _pooled_shape(ctx, ctx.shape(1))
    if not _same(ctx.shape(0), want):
        ctx.fail(f"expects a gradient of the pooled shape {want}, got {tuple(ctx.shape(0))}")
    return ctx.dtype(1), ctx.shape(1)


def _gather_infer(ctx):
    # (g, x) -> g read at x's window maxima, pooled shape
    if not _same(ctx.shape(0), ctx.shape(1)):
        ctx.fail(f"expects g of x's shape {tuple(ctx.shape(1))}, got {tuple(ctx.shape(0))}")
    return ctx.dtype(1), _pooled_shape(ctx, ctx.shape(1))


# -- numpy references: one step per output position, vectorized over N and C --------------------

def _windows(h, w, attrs):
    """(oh, ow, h0, h1, w0, w1, divisor) of every window, the clipped bounds and the divisor."""
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    for oh in range(ho):
        for ow in range(wo):
            h0, w0 = oh * sh - ph, ow * sw - pw
            h1, w1 = min(h0 + kh, h), min(w0 + kw, w)
            h0, w0 = max(h0, 0), max(w0, 0)
            div = kh * kw if attrs.get("count_include_pad", True) else (h1 - h0) * (w1 - w0)
            yield oh, ow, h0, h1, w0, w1, div


def _out_shape(x, attrs):
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    return x.shape[:2] + ((x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1)


def _argmax(win):
    """Index along the last axis: the last NaN if any, else the first maximum (PyTorch CPU)."""
    nan = np.isnan(win)
    last_nan = win.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    return np.where(nan.any(axis=-1), last_nan, np.argmax(win, axis=-1))


def _max_positions(x, attrs):
    """Yield (oh, ow, h0, h1, w0, w1, flat window index array (N, C, 1))."""
    n, c = x.shape[:2]
    for oh, ow, h0, h1, w0, w1, _ in _windows(x.shape[2], x.shape[3], attrs):
        win = x[:, :, h0:h1, w0:w1].reshape(n, c, (h1 - h0) * (w1 - w0))
        yield oh, ow, h0, h1, w0, w1, _argmax(win)[..., None] if win.size else np.zeros((n, c, 1), np.int64)


def _max_pool_ref(inputs, attrs):
    return _max_gather_ref([inputs[0], inputs[0]], attrs)


def _max_gather_ref(inputs, attrs):
    g, x = inputs
    out = np.zeros(_out_shape(x, attrs), x.dtype)
    n, c = x.shape[:2]
    for oh, ow, h0, h1, w0, w1, idx in _max_positions(x, attrs):
        win = g[:, :, h0:h1, w0:w1].reshape(n, c, (h1 - h0) * (w1 - w0))
        if win.size:
            out[:, :, oh, ow] = np.take_along_axis(win, idx, axis=-1)[..., 0]
    return out


def _max_grad_ref(inputs, attrs):
    dy, x = inputs
    dx = np.zeros_like(x)
    n, c = x.shape[:2]
    for oh, ow, h0, h1, w0, w1, idx in _max_positions(x, attrs):
        part = np.zeros((n, c, (h1 - h0) * (w1 - w0)), x.dtype)
        np.put_along_axis(part, idx, dy[:, :, oh, ow][..., None], axis=-1)
        # adding the zeros elsewhere leaves every value's bits as the kernel's scatter does
        dx[:, :, h0:h1, w0:w1] += part.reshape(n, c, h1 - h0, w1 - w0)
    return dx


def _avg_pool_ref(inputs, attrs):
    (x,) = inputs
    out = np.zeros(_out_shape(x, attrs), x.dtype)
    n, c = x.shape[:2]
    for oh, ow, h0, h1, w0, w1, div in _windows(x.shape[2], x.shape[3], attrs):
        win = x[:, :, h0:h1, w0:w1].reshape(n, c, (h1 - h0) * (w1 - w0))
        s = np.zeros((n, c), x.dtype)  # from +0.0 (a window of -0.0 averages to +0.0), as PyTorch
        for j in range(win.shape[-1]):  # row-major order, in the input dtype (as the kernel)
            s = s + win[..., j]
        out[:, :, oh, ow] = s / x.dtype.type(div)
    return out


def _avg_grad_ref(inputs, attrs):
    dy, x = inputs
    dx = np.zeros_like(x)
    for oh, ow, h0, h1, w0, w1, div in _windows(x.shape[2], x.shape[3], attrs):
        dx[:, :, h0:h1, w0:w1] += (dy[:, :, oh, ow] / x.dtype.type(div))[:, :, None, None]
    return dx


# -- examples ------------------------------------------------------------------------------------

def _a(k, s=None, p=0):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return {"kernel_size": pair(k), "stride": pair(s if s is not None else k), "padding": pair(p)}


CASES = [((1, 1, 1, 1), _a(1)), ((0, 2, 4, 4), _a(2)), ((2, 0, 3, 3), _a(3, 1, 1)), ((1, 1, 3, 3), _a(3, 1, 1)),
         ((2, 3, 7, 9), _a(3, 2, 1)), ((1, 2, 5, 6), _a((2, 3), (1, 2), (1, 0))), ((2, 1, 8, 8), _a(2)),
         ((1, 2, 6, 5), _a(3, 1)), ((1, 1, 5, 7), _a((1, 3), (3, 1), (0, 1))), ((1, 2, 73, 74), _a(3, 2, 1))]
SPECIAL_CASE = ((2, 3, 6, 7), _a(3, 2, 1))


def _forward_examples(avg):
    def examples(rng):
        out = []
        for dt in dtypes.FLOATS:
            for shape, attrs in CASES:
                variants = [dict(attrs, count_include_pad=v) for v in (True, False)] if avg else [attrs]
                for a in variants:
                    out.append(Example([rand(rng, shape, dt)], a, note=dt))
            shape, attrs = SPECIAL_CASE
            # no extremes for avg: the sum of two float maxima overflows in the input dtype on purpose
            out.append(Example([special(rng, shape, dt, extremes=not avg)], attrs, grad=False,
                               note=f"{dt} special values"))
            # -inf everywhere: the max is -inf, its gradient goes to the window's first element
            out.append(Example([np.full(shape, -np.inf, dt)], attrs, grad=False, note=f"{dt} all -inf"))
        return out
    return examples


def _backward_examples(avg, gather=False):
    def examples(rng):
        out = []
        for ex in _forward_examples(avg)(rng):
            x = ex.inputs[0]
            g_shape = x.shape if gather else _out_shape(x, ex.attrs)
            g = rand(rng, g_shape, x.dtype.name) if ex.grad else special(rng, g_shape, x.dtype.name, extremes=False)
            out.append(Example([g, x], ex.attrs, grad=ex.grad, note=ex.note))
        return out
    return examples


# -- declarations --------------------------------------------------------------------------------

_FLOAT_T = {"T": dtypes.FLOATS}

register_op(
    "max_pool2d",
    doc="y[n,c,i,j] = max of x[n,c] over window (i, j) (NCHW; padding counts as -inf); a NaN in the "
        "window is the max (PyTorch).",
    inputs=[("x", dtypes.FLOATS)],
    attrs=POOL_ATTRS,
    infer=_pool_infer,
    reference=_max_pool_ref,
    examples=_forward_examples(avg=False),
)

register_op(
    "avg_pool2d",
    doc="y[n,c,i,j] = sum of x[n,c] over window (i, j) / divisor (NCHW; divisor k_h·k_w with "
        "count_include_pad, else the number of input elements in the window).",
    inputs=[("x", dtypes.FLOATS)],
    attrs=AVG_ATTRS,
    infer=_pool_infer,
    reference=_avg_pool_ref,
    examples=_forward_examples(avg=True),
)

register_op(
    "max_pool2d_grad",
    doc="The gradient of max_pool2d: zeros of x's shape, dy[n,c,i,j] added at window (i, j)'s max "
        "position in x (the last NaN, else the first maximum).",
    inputs=[("dy", "T"), ("x", "T")],
    type_vars=_FLOAT_T,
    attrs=POOL_ATTRS,
    infer=_grad_infer,
    reference=_max_grad_ref,
    examples=_backward_examples(avg=False),
)

register_op(
    "max_pool2d_gather",
    doc="y[n,c,i,j] = g[n,c] at window (i, j)'s max position in x (the adjoint of max_pool2d_grad "
        "in dy); g has x's shape.",
    inputs=[("g", "T"), ("x", "T")],
    type_vars=_FLOAT_T,
    attrs=POOL_ATTRS,
    infer=_gather_infer,
    reference=_max_gather_ref,
    examples=_backward_examples(avg=False, gather=True),
)

register_op(
    "avg_pool2d_grad",
    doc="The gradient of avg_pool2d: zeros of x's shape, dy[n,c,i,j] / divisor added over window (i, j).  "
        "Only the shape of x is read.",
    inputs=[("dy", "T"), ("x", "T")],
    type_vars=_FLOAT_T,
    attrs=AVG_ATTRS,
    infer=_grad_infer,
    reference=_avg_grad_ref,
    examples=_backward_examples(avg=True),
)


# -- gradients: the max position is piecewise constant in x, so x gets none -----------------------

@defgrad("max_pool2d")
def _grad_max_pool2d(ctx):
    return [max_pool2d_grad(ctx.g, ctx.inputs[0], ctx.attrs)]


@defgrad("max_pool2d_grad")
def _grad_max_pool2d_grad(ctx):
    return [max_pool2d_gather(ctx.g, ctx.inputs[1], ctx.attrs), None]


@defgrad("max_pool2d_gather")
def _grad_max_pool2d_gather(ctx):
    return [max_pool2d_grad(ctx.g, ctx.inputs[1], ctx.attrs), None]


@defgrad("avg_pool2d")
def _grad_avg_pool2d(ctx):
    return [avg_pool2d_grad(ctx.g, ctx.inputs[0], ctx.attrs)]


@defgrad("avg_pool2d_grad")
def _grad_avg_pool2d_grad(ctx):
    # linear in dy with avg_pool2d as its adjoint; only x's shape is read
    return [build("avg_pool2d", [ctx.g], dict(ctx.attrs)), None]


# -- builders ------------------------------------------------------------------------------------

def _pair(op, name, v):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    try:
        t = tuple(int(e) for e in v)
    except TypeError:
        raise GraphError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    if len(t) != 2:
        raise GraphError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    return t


def _pool_attrs(op, kernel_size, stride, padding, ceil_mode):
    if ceil_mode:
        raise GraphError(f"{op}: ceil_mode=True is not supported (the output size is floor((H + 2p - k) / s) + 1)")
    k = _pair(op, "kernel_size", kernel_size)
    s = k if stride is None else _pair(op, "stride", stride)
    return {"kernel_size": k, "stride": s, "padding": _pair(op, "padding", padding)}


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, name=None):
    """Max over k_h×k_w windows of NCHW ``x`` (as ``torch.nn.functional.max_pool2d``).

    kernel_size, stride (default: kernel_size) and padding are ints or (h, w) pairs;
    padding <= kernel_size // 2 and pads with -inf.  ceil_mode=True is refused."""
    return build("max_pool2d", [x], _pool_attrs("max_pool2d", kernel_size, stride, padding, ceil_mode), name=name)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, name=None):
    """Mean over k_h×k_w windows of NCHW ``x`` (as ``torch.nn.functional.avg_pool2d``).

    Padding counts as zeros; ``count_include_pad=False`` divides by the number of input
    elements in the window instead of k_h·k_w.  ceil_mode=True is refused."""
    attrs = _pool_attrs("avg_pool2d", kernel_size, stride, padding, ceil_mode)
    attrs["count_include_pad"] = bool(count_include_pad)
    return build("avg_pool2d", [x], attrs, name=name)


def max_pool2d_grad(dy, x, attrs, name=None):
    """The gradient of max_pool2d(x, **attrs) for the upstream gradient dy."""
    return build("max_pool2d_grad", [dy, x], dict(attrs), name=name)


def max_pool2d_gather(g, x, attrs, name=None):
    """g (of x's shape) read at each max_pool2d(x, **attrs) window's max position."""
    return build("max_pool2d_gather", [g, x], dict(attrs), name=name)


def avg_pool2d_grad(dy, x, attrs, name=None):
    """The gradient of avg_pool2d(x, **attrs) for the upstream gradient dy."""
    return build("avg_pool2d_grad", [dy, x], dict(attrs), name=name)
