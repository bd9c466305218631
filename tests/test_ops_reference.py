"""Every op's numpy reference against an independent implementation (Python loops and the
math module, no numpy ufuncs), and every op's shape/dtype inference against the actual
result of its reference.  Both enumerate the registry: an op without a case here fails."""

import itertools
import math

import numpy as np
import pytest

import graphc as gc
from graphc import registry
from graphc.graph import Graph

OPS = registry.all_ops()


def _examples(op, max_elems=None):
    out = list(op.examples(np.random.default_rng(0)))
    if max_elems is not None:
        out = [e for e in out if all(np.size(x) <= max_elems for x in e.inputs)]
    return out


def _infer(op, ex):
    g = Graph()
    with g:
        ins = [gc.placeholder(f"in{i}", x.shape, x.dtype.name) for i, x in enumerate(ex.inputs)]
        return g.add_node(op.name, ins, ex.attrs)


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_inferred_shape_and_dtype_match_reference(op):
    examples = _examples(op)
    assert examples, f"op {op.name} has no examples"
    for ex in examples:
        outs = _infer(op, ex)
        ref = op.evaluate(ex.inputs, ex.attrs)
        assert len(outs) == len(ref), ex
        for t, r in zip(outs, ref):
            assert t.shape == r.shape, (ex, t.shape, r.shape)
            assert t.dtype == r.dtype.name, (ex, t.dtype, r.dtype)


@pytest.mark.parametrize("op", [o for o in OPS if o.num_inputs > 0], ids=lambda o: o.name)
def test_examples_cover_size_zero_size_one_and_odd_sizes(op):
    arrays = [x for ex in _examples(op) for x in ex.inputs]
    if all(np.ndim(x) == 0 for x in arrays):  # a generator (random_normal: a step scalar in): its outputs' sizes
        arrays = [y for ex in _examples(op) for y in op.evaluate(ex.inputs, ex.attrs)]
    sizes = {np.size(x) for x in arrays}
    shapes = [np.shape(x) for x in arrays]
    assert 0 in sizes, f"{op.name}: no example with a size-0 input"
    assert 1 in sizes, f"{op.name}: no example with a size-1 input"
    assert any(any(d > 1 and d % 2 for d in s) for s in shapes), f"{op.name}: no odd-sized example"


# -- independent implementations --------------------------------------------------------


def _bcast_index(idx, shape):
    """Index into an array of `shape` broadcast to an output index `idx`."""
    off = len(idx) - len(shape)
    return tuple(0 if shape[i] == 1 else idx[off + i] for i in range(len(shape)))


def _wrap(v, dt):
    """An integer result as the dtype holds it: two's complement, modulo 2**bits."""
    bits = np.dtype(dt).itemsize * 8
    return (int(v) + 2 ** (bits - 1)) % 2 ** bits - 2 ** (bits - 1)


def _ieee(fn, *vals):
    """fn on Python floats, with IEEE 754's answers where the math module raises."""
    try:
        r = fn(*vals)
    except ZeroDivisionError:  # a / ±0 (a 0 ** -p is handled by pow's own rule)
        a, b = vals
        return math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1.0, b)
    except OverflowError:  # exp of a large x
        return math.inf
    except ValueError:  # log or sqrt of a negative number
        return math.nan
    return math.nan if isinstance(r, complex) else r


def _elementwise(fn, out_dtype=None):
    def impl(inputs, attrs):
        shape = np.broadcast_shapes(*[x.shape for x in inputs])
        dt = np.dtype(out_dtype or inputs[-1].dtype)
        out = np.empty(shape, dtype=dt)
        for idx in itertools.product(*[range(d) for d in shape]):
            vals = [x[_bcast_index(idx, x.shape)].item() for x in inputs]
            r = _ieee(lambda *v: fn(*v, **attrs), *vals)
            out[idx] = _wrap(r, dt) if dt.kind in "iu" else r
        return out
    return impl


def _sig(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _reduce(fn):
    def impl(inputs, attrs):
        x = inputs[0]
        axes = range(x.ndim) if attrs["axes"] is None else [a % x.ndim for a in attrs["axes"]]
        keep = [i for i in range(x.ndim) if i not in axes]
        out_shape = tuple(x.shape[i] for i in keep)
        out = np.empty(out_shape, dtype=x.dtype)
        for oidx in itertools.product(*[range(d) for d in out_shape]):
            vals = []
            for idx in itertools.product(*[range(d) for d in x.shape]):
                if all(idx[k] == o for k, o in zip(keep, oidx)):
                    vals.append(x[idx].item())
            out[oidx] = fn(vals)
        if attrs["keepdims"]:
            out = out.reshape(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
        return out
    return impl


def _nan(v):
    return v != v


def _exp(v):
    return _ieee(math.exp, v)


def _log(v):
    return -math.inf if v == 0 else _ieee(math.log, v)


def _max(vals):
    """max with NaN propagating, as numpy.max."""
    return math.nan if any(_nan(v) for v in vals) else max(vals)


def _pow(a, p):
    if a == 0 and p < 0:
        return math.inf
    if a == -math.inf and p < 0:
        return 0.0
    if a < 0 and not float(p).is_integer():
        return math.nan  # a negative base (-inf included: numpy's rule) with a non-integer exponent
    try:
        r = a ** p
    except OverflowError:
        return math.copysign(math.inf, a) if float(p).is_integer() and int(p) % 2 else math.inf
    return math.nan if isinstance(r, complex) else r


def _mean(vals):
    return sum(vals) / len(vals) if vals else float("nan")


def _matmul(inputs, attrs):
    a, b = inputs
    if attrs.get("transpose_a"):
        a = _transpose([a], {"perm": tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2)})
    if attrs.get("transpose_b"):
        b = _transpose([b], {"perm": tuple(range(b.ndim - 2)) + (b.ndim - 1, b.ndim - 2)})
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    out = np.zeros(batch + (m, n), dtype=a.dtype)
    for bidx in itertools.product(*[range(d) for d in batch]):
        ai = _bcast_index(bidx, a.shape[:-2])
        bi = _bcast_index(bidx, b.shape[:-2])
        for i in range(m):
            for j in range(n):
                out[bidx + (i, j)] = sum(a[ai + (i, t)].item() * b[bi + (t, j)].item() for t in range(k))
    return out


def _log_softmax_rows(x, axis):
    x = np.moveaxis(x, axis, -1)
    out = np.empty(x.shape, dtype=np.float64)
    for idx in itertools.product(*[range(d) for d in x.shape[:-1]]):
        row = [v.item() for v in x[idx]]
        m = _max(row) if row else 0.0
        if _nan(m) or m == math.inf:  # NaN or +inf in a row: the row is NaN
            out[idx] = [math.nan] * len(row)
            continue
        m = m if math.isfinite(m) else 0.0  # all -inf: no shift
        lse = m + _log(sum(_exp(v - m) for v in row)) if row else 0.0
        out[idx] = [v - lse for v in row]
    return np.moveaxis(out, -1, axis)


def _sce(inputs, attrs):
    logits, labels = inputs
    lp = _log_softmax_rows(logits, -1)
    losses = np.empty(labels.shape)
    for idx in itertools.product(*[range(d) for d in labels.shape]):
        losses[idx] = -lp[idx + (int(labels[idx]),)]
    if attrs["reduction"] == "none":
        return losses.astype(logits.dtype)
    total = sum(v.item() for v in losses.reshape(-1))
    if attrs["reduction"] == "sum":
        return np.asarray(total, logits.dtype)
    return np.asarray(total / losses.size if losses.size else float("nan"), logits.dtype)


def _transpose(inputs, attrs):
    x = inputs[0]
    perm = attrs["perm"] if attrs["perm"] is not None else tuple(reversed(range(x.ndim)))
    out = np.empty(tuple(x.shape[p] for p in perm), x.dtype)
    for idx in itertools.product(*[range(d) for d in x.shape]):
        out[tuple(idx[p] for p in perm)] = x[idx]
    return out


def _flat_reshape(inputs, shape):
    x = inputs[0]
    flat = [x[idx] for idx in itertools.product(*[range(d) for d in x.shape])]
    return np.array(flat, dtype=x.dtype).reshape(shape)


def _slice(inputs, attrs):
    x = inputs[0]
    axes = attrs["axes"] if attrs["axes"] is not None else range(len(attrs["starts"]))
    steps = attrs["steps"] if attrs["steps"] is not None else [1] * len(attrs["starts"])
    keep = [list(range(d)) for d in x.shape]
    for s, e, ax, st in zip(attrs["starts"], attrs["ends"], axes, steps):
        keep[ax % x.ndim] = list(range(x.shape[ax % x.ndim]))[s:e:st]
    out = np.empty(tuple(len(k) for k in keep), x.dtype)
    for oidx in itertools.product(*[range(len(k)) for k in keep]):
        out[oidx] = x[tuple(k[i] for k, i in zip(keep, oidx))]
    return out


def _cast(inputs, attrs):
    to = attrs["to"]

    def conv(v):
        if to == "bool":
            return v != 0
        if to in ("int32", "int64"):
            info = np.iinfo(to)
            if isinstance(v, float):  # saturating, NaN -> 0
                if math.isnan(v):
                    return 0
                if v >= 2.0 ** (info.bits - 1):
                    return info.max
                if v <= -(2.0 ** (info.bits - 1)):
                    return info.min
                return int(v)  # int() truncates toward zero
            return (int(v) - info.min) % 2 ** info.bits + info.min  # wraps
        if to == "float32" and math.isfinite(v) and abs(v) >= 2.0 ** 128 - 2.0 ** 103:
            return math.copysign(math.inf, v)  # rounds past FLT_MAX
        return float(v)
    return _elementwise(conv, to)(inputs, {})


def _split(inputs, attrs):
    x = inputs[0]
    axis = attrs["axis"] % x.ndim
    outs, start = [], 0
    for s in attrs["sizes"]:
        outs.append(_slice([x], {"starts": [start], "ends": [start + s], "axes": [axis], "steps": [1]}))
        start += s
    return outs


def _concat(inputs, attrs):
    axis = attrs["axis"] % inputs[0].ndim
    shape = list(inputs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in inputs)
    out = np.empty(shape, inputs[0].dtype)
    start = 0
    for x in inputs:
        for idx in itertools.product(*[range(d) for d in x.shape]):
            o = list(idx)
            o[axis] += start
            out[tuple(o)] = x[idx]
        start += x.shape[axis]
    return out


def _one_hot(inputs, attrs):
    idx_arr = inputs[0]
    out = np.zeros(idx_arr.shape + (attrs["depth"],), attrs["dtype"])
    for idx in itertools.product(*[range(d) for d in idx_arr.shape]):
        k = int(idx_arr[idx])
        if 0 <= k < attrs["depth"]:
            out[idx + (k,)] = 1
    return out


def _squeeze_shape(x, axes):
    if axes is None:
        return tuple(d for d in x.shape if d != 1)
    norm = {a % x.ndim for a in axes}
    return tuple(d for i, d in enumerate(x.shape) if i not in norm)


def _expand_shape(x, axes):
    shape = list(x.shape)
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    return tuple(shape)


def _reshape_shape(x, shape):
    shape = list(shape)
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape[shape.index(-1)] = x.size // known
    return tuple(shape)


INDEPENDENT = {
    "neg": _elementwise(lambda a: -a),
    "abs": _elementwise(lambda a: -a if a < 0 else a),
    "relu": _elementwise(lambda a: a if a > 0 or _nan(a) else 0),
    "exp": _elementwise(math.exp),
    "log": _elementwise(_log),
    "sqrt": _elementwise(math.sqrt),
    "sigmoid": _elementwise(_sig),
    "silu": _elementwise(lambda v: v * _sig(v)),
    "tanh": _elementwise(math.tanh),
    "logical_not": _elementwise(lambda a: not a),
    "pow": lambda inputs, attrs: _elementwise(lambda a: _pow(a, attrs["exponent"]))(inputs, {}),
    "add": _elementwise(lambda a, b: a + b),
    "sub": _elementwise(lambda a, b: a - b),
    "mul": _elementwise(lambda a, b: a * b),
    "div": _elementwise(lambda a, b: a / b),
    "maximum": _elementwise(lambda a, b: math.nan if _nan(a) or _nan(b) else (a if a >= b else b)),
    "minimum": _elementwise(lambda a, b: math.nan if _nan(a) or _nan(b) else (a if a <= b else b)),
    "equal": _elementwise(lambda a, b: a == b, "bool"),
    "less": _elementwise(lambda a, b: a < b, "bool"),
    "greater": _elementwise(lambda a, b: a > b, "bool"),
    "where": _elementwise(lambda c, a, b: a if c else b),
    "cast": _cast,
    "sum": _reduce(sum),
    "mean": _reduce(_mean),
    "max": _reduce(_max),
    "matmul": _matmul,
    "broadcast_to": lambda inputs, attrs: _elementwise(lambda zero, a: a)(
        [np.zeros(attrs["shape"], inputs[0].dtype), inputs[0]], {}),
    "reshape": lambda inputs, attrs: _flat_reshape(inputs, _reshape_shape(inputs[0], attrs["shape"])),
    "expand_dims": lambda inputs, attrs: _flat_reshape(inputs, _expand_shape(inputs[0], attrs["axes"])),
    "squeeze": lambda inputs, attrs: _flat_reshape(inputs, _squeeze_shape(inputs[0], attrs["axes"])),
    "stop_gradient": lambda inputs, attrs: _flat_reshape(inputs, inputs[0].shape),
    "transpose": _transpose,
    "concat": _concat,
    "split": _split,
    "slice": _slice,
    "softmax": lambda inputs, attrs: np.vectorize(_exp)(_log_softmax_rows(inputs[0], attrs["axis"]))
    .astype(inputs[0].dtype) if inputs[0].size else inputs[0].copy(),
    "log_softmax": lambda inputs, attrs: _log_softmax_rows(inputs[0], attrs["axis"]).astype(inputs[0].dtype),
    "softmax_cross_entropy": _sce,
    "one_hot": _one_hot,
    "constant": lambda inputs, attrs: attrs["value"],
}


def _sum_to(inputs, attrs):
    x, like = inputs
    out = np.zeros(like.shape, x.dtype)
    for idx in itertools.product(*[range(d) for d in x.shape]):
        out[_bcast_index(idx, like.shape)] += x[idx]
    return out


def _sce_grad(inputs, attrs):
    logits, labels, g = inputs
    p = np.vectorize(_exp)(_log_softmax_rows(logits, -1)) if logits.size else np.zeros(logits.shape)
    out = np.empty(logits.shape)
    n = max(labels.size, 1)
    for idx in itertools.product(*[range(d) for d in labels.shape]):
        for c in range(logits.shape[-1]):
            d = p[idx + (c,)] - (1.0 if c == labels[idx] else 0.0)
            if attrs["reduction"] == "none":
                out[idx + (c,)] = d * g[idx]
            else:
                out[idx + (c,)] = d * g.item() / (n if attrs["reduction"] == "mean" else 1)
    return out.astype(logits.dtype)


def _slice_grad(inputs, attrs):
    g, x = inputs
    axes = attrs["axes"] if attrs["axes"] is not None else range(len(attrs["starts"]))
    steps = attrs["steps"] if attrs["steps"] is not None else [1] * len(attrs["starts"])
    keep = [list(range(d)) for d in x.shape]
    for s, e, ax, st in zip(attrs["starts"], attrs["ends"], axes, steps):
        keep[ax % x.ndim] = list(range(x.shape[ax % x.ndim]))[s:e:st]
    out = np.zeros(x.shape, x.dtype)
    for gidx in itertools.product(*[range(len(k)) for k in keep]):
        out[tuple(k[i] for k, i in zip(keep, gidx))] = g[gidx]
    return out


def _per_element(fn):
    """Apply fn(w, g, *state, **attrs) -> tuple per element of same-shaped inputs."""
    def impl(inputs, attrs):
        arrays = [x for x in inputs if x.shape == inputs[0].shape and x.ndim == inputs[0].ndim]
        extra = inputs[len(arrays):]
        outs = None
        for idx in itertools.product(*[range(d) for d in inputs[0].shape]):
            res = fn(*[a[idx].item() for a in arrays], *[e.item() for e in extra], **attrs)
            res = res if isinstance(res, tuple) else (res,)
            if outs is None:
                outs = [np.empty(inputs[0].shape, inputs[0].dtype) for _ in res]
            for o, r in zip(outs, res):
                o[idx] = r
        if outs is None:  # size 0: run once on dummies to learn the output count
            n = len(fn(*([1.0] * len(arrays)), *[1 for _ in extra], **attrs) or ())
            outs = [np.empty(inputs[0].shape, inputs[0].dtype) for _ in range(max(n, 1))]
        return outs if len(outs) > 1 else outs[0]
    return impl


def _sgd(w, g, lr, weight_decay, grad_scale=1.0):
    g = g * grad_scale
    return (w - lr * (g + weight_decay * w),)


def _sgd_momentum(w, g, v, lr, momentum, nesterov, weight_decay, grad_scale=1.0):
    g = g * grad_scale
    g = g + weight_decay * w
    v = momentum * v + g
    return w - lr * (g + momentum * v if nesterov else v), v


def _adam(w, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled, grad_scale=1.0):
    g = g * grad_scale
    if decoupled:
        w = w * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * w
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return w - lr * (m / (1 - beta1 ** t)) / (math.sqrt(v / (1 - beta2 ** t)) + eps), m, v


INDEPENDENT.update({
    "assign": lambda inputs, attrs: _flat_reshape([inputs[1]], inputs[1].shape),
    "sgd_update": _per_element(_sgd),
    "sgd_momentum_update": _per_element(_sgd_momentum),
    "adam_update": _per_element(_adam),
    "sum_to": _sum_to,
    "broadcast_like": lambda inputs, attrs: _elementwise(lambda z, a: a)(
        [np.zeros(inputs[1].shape, inputs[0].dtype), inputs[0]], {}),
    "reshape_like": lambda inputs, attrs: _flat_reshape(inputs, inputs[1].shape),
    "relu_grad": _elementwise(lambda g, x: g if x > 0 else 0.0),
    "softmax_cross_entropy_grad": _sce_grad,
    "slice_grad": _slice_grad,
    # collectives: the sum over a world of one process, element by element
    "allreduce_start": lambda inputs, attrs: [_flat_reshape([x], x.shape) for x in inputs],
    "allreduce_wait": lambda inputs, attrs: [_flat_reshape([x], x.shape) for x in inputs],
})



def _pool_windows(x, attrs):
    """Per output position (n, c, i, j): the in-range input positions of its k_h×k_w window in
    row-major order, and the window's divisor for avg pooling."""
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    for idx in itertools.product(range(n), range(c), range(ho), range(wo)):
        cells = [(r, q) for r in range(idx[2] * sh - ph, idx[2] * sh - ph + kh)
                 for q in range(idx[3] * sw - pw, idx[3] * sw - pw + kw) if 0 <= r < h and 0 <= q < w]
        div = kh * kw if attrs.get("count_include_pad", True) else len(cells)
        yield idx, (n, c, ho, wo), cells, div


def _pool_max_cell(x, n, c, cells):
    """PyTorch's CPU scan: a value replaces the running max (from -inf) when it is larger or NaN."""
    best, cell = -math.inf, cells[0]
    for r, q in cells:
        v = float(x[n, c, r, q])
        if v > best or math.isnan(v):
            best, cell = v, (r, q)
    return cell


def _max_pool_gather(inputs, attrs):
    src, x = inputs
    out = None
    for (n, c, i, j), shape, cells, _ in _pool_windows(x, attrs):
        out = np.zeros(shape, x.dtype) if out is None else out
        out[n, c, i, j] = src[(n, c) + _pool_max_cell(x, n, c, cells)]
    return out if out is not None else np.zeros(_pool_shape(x, attrs), x.dtype)


def _max_pool_grad(inputs, attrs):
    dy, x = inputs
    out = [[[[0.0] * x.shape[3] for _ in range(x.shape[2])] for _ in range(x.shape[1])] for _ in range(x.shape[0])]
    for (n, c, i, j), _, cells, _ in _pool_windows(x, attrs):
        r, q = _pool_max_cell(x, n, c, cells)
        out[n][c][r][q] += float(dy[n, c, i, j])
    return np.array(out, x.dtype).reshape(x.shape)


def _avg_pool(inputs, attrs):
    (x,) = inputs
    out = np.zeros(_pool_shape(x, attrs), x.dtype)
    for (n, c, i, j), _, cells, div in _pool_windows(x, attrs):
        total = 0.0
        for r, q in cells:
            total += float(x[n, c, r, q])
        out[n, c, i, j] = total / div
    return out


def _avg_pool_grad(inputs, attrs):
    dy, x = inputs
    out = [[[[0.0] * x.shape[3] for _ in range(x.shape[2])] for _ in range(x.shape[1])] for _ in range(x.shape[0])]
    for (n, c, i, j), _, cells, div in _pool_windows(x, attrs):
        for r, q in cells:
            out[n][c][r][q] += float(dy[n, c, i, j]) / div
    return np.array(out, x.dtype).reshape(x.shape)


def _pool_shape(x, attrs):
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    return x.shape[:2] + ((x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1)


INDEPENDENT.update({
    "max_pool2d": lambda inputs, attrs: _max_pool_gather([inputs[0], inputs[0]], attrs),
    "max_pool2d_gather": _max_pool_gather,
    "max_pool2d_grad": _max_pool_grad,
    "avg_pool2d": _avg_pool,
    "avg_pool2d_grad": _avg_pool_grad,
})

def _program(text, inputs, product=None):
    """An independent reading of a fused op's program (graphc/ops/fused.py's grammar): each
    statement through the members' independent implementations above, registers broadcast to the
    output's shape and kept in its dtype."""
    dtype = inputs[0].dtype
    operands = inputs if product is None else [product] + list(inputs[2:])  # the matmul's operands do not broadcast
    shape = np.broadcast_shapes(*[x.shape for x in operands])
    regs = []
    for stmt in text.split(";"):
        head, _, rest = stmt.partition("=")
        op, _, args = rest.partition("(")
        attrs = {}
        if "[" in op:
            op, _, attr_text = op.partition("[")
            for item in attr_text.rstrip("]").split(","):
                key, _, value = item.partition("=")
                attrs[key] = float(value)
        values = []
        for a in args.rstrip(")").split(","):
            values.append(product if a == "p" else (regs[int(a[1:])] if a[0] == "r" else inputs[int(a[1:])]))
        out = np.asarray(INDEPENDENT[op]([np.asarray(v) for v in values], attrs), dtype)
        regs.append(np.broadcast_to(out, shape))
    return np.array(regs[-1])


INDEPENDENT.update({
    "fused_elementwise": lambda inputs, attrs: _program(attrs["program"], inputs),
    "fused_matmul": lambda inputs, attrs: _program(attrs["program"], inputs, np.asarray(_matmul(inputs[:2], attrs))),
    "fused_reduce": lambda inputs, attrs: INDEPENDENT[attrs["reduce"]](
        [_program(attrs["program"], inputs)], {"axes": attrs["axes"], "keepdims": attrs["keepdims"]}),
})


def _pad_source(o, d, before, mode):
    """The index of x that padded index o reads along an axis of size d (None: the constant border)."""
    k = o - before
    if 0 <= k < d:
        return k
    if mode == "constant":
        return None
    if mode == "replicate":
        return 0 if k < 0 else d - 1
    return -k if k < 0 else 2 * (d - 1) - k  # reflect: mirror, the edge item not repeated


def _pad_map(x_shape, attrs):
    """(padded index, x index or None) for every item of the padded shape, in C order."""
    pads, mode = attrs["pads"], attrs["mode"]
    out_shape = tuple(d + pads[2 * i] + pads[2 * i + 1] for i, d in enumerate(x_shape))
    pairs = []
    for oidx in itertools.product(*[range(d) for d in out_shape]):
        src = [_pad_source(o, d, pads[2 * i], mode) for i, (o, d) in enumerate(zip(oidx, x_shape))]
        pairs.append((oidx, None if any(s is None for s in src) else tuple(src)))
    return out_shape, pairs


def _pad(inputs, attrs):
    x = inputs[0]
    out_shape, pairs = _pad_map(x.shape, attrs)
    out = np.empty(out_shape, x.dtype)
    for oidx, src in pairs:
        out[oidx] = attrs["value"] if src is None else x[src]
    return out


def _pad_grad(inputs, attrs):
    g, x = inputs
    _, pairs = _pad_map(x.shape, attrs)
    out = np.zeros(x.shape, x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # the special-value examples add inf + -inf
        for oidx, src in pairs:
            if src is not None:
                out[src] += g[oidx]
    return out


INDEPENDENT.update({"pad": _pad, "pad_grad": _pad_grad})


# -- batch norm and dropout (graphc/ops/norm.py, graphc/ops/random.py) -------------------------------

def _channel_lists(x):
    """{channel: [(flat index, value), ...]} of an (N, C, ...) array, in C order."""
    out = {c: [] for c in range(x.shape[1])}
    for idx in itertools.product(*[range(d) for d in x.shape]):
        out[idx[1]].append((idx, float(x[idx])))
    return out


def _div(a, b):
    return _ieee(lambda p, q: p / q, a, b)


def _channel_stats(vals):
    n = len(vals)
    mean = _div(sum(v for _, v in vals), n)
    var = _div(sum((v - mean) * (v - mean) for _, v in vals), n)
    return mean, var, n


def _batch_norm(inputs, attrs):
    x, rm, rv, w, b = inputs
    out = np.empty(x.shape, x.dtype)
    for c, vals in _channel_lists(x).items():
        # PyTorch's inference form: y = x·α + β, α = w/√(rv + eps), β = b - rm·α
        alpha = _div(float(w[c]), _ieee(math.sqrt, float(rv[c]) + attrs["eps"]))
        beta = float(b[c]) - float(rm[c]) * alpha
        with np.errstate(over="ignore"):  # a float32 result past the largest finite value is inf
            for idx, v in vals:
                out[idx] = v * alpha + beta
    return out


def _batch_norm_train(inputs, attrs):
    x, w, b = inputs
    y = np.empty(x.shape, x.dtype)
    means, variances = np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype)
    for c, vals in _channel_lists(x).items():
        mean, var, _ = _channel_stats(vals)
        invstd = _div(1.0, _ieee(math.sqrt, var + attrs["eps"]))
        for idx, v in vals:
            y[idx] = (v - mean) * invstd * float(w[c]) + float(b[c])
        means[c], variances[c] = mean, var
    return [y, means, variances]


def _batch_norm_train_grad(inputs, attrs):
    dy, x, w, mean, var, dmean, dvar = inputs
    dx = np.empty(x.shape, x.dtype)
    dws, dbs = np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype)
    for c, vals in _channel_lists(x).items():
        n, m = len(vals), float(mean[c])
        s = _div(1.0, _ieee(math.sqrt, float(var[c]) + attrs["eps"]))
        db = sum(float(dy[idx]) for idx, _ in vals)
        dw = sum(float(dy[idx]) * (v - m) * s for idx, v in vals)
        for idx, v in vals:
            xhat = (v - m) * s
            dx[idx] = (float(w[c]) * s * (float(dy[idx]) - _div(db, n) - xhat * _div(dw, n))
                       + _div(float(dmean[c]), n) + 2.0 * float(dvar[c]) * _div(v - m, n))
        dws[c], dbs[c] = dw, db
    return [dx, dws, dbs]


def _update_stats(rm, rv, mean, var, momentum, count):
    return ((1 - momentum) * rm + momentum * mean,
            (1 - momentum) * rv + momentum * (var * count / (count - 1)))


def _rotl_free_philox(ctr, key):
    """Philox4x32-10 on Python ints (Salmon et al. 2011), independent of graphc.ops.random."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) % 2**32, (k1 + 0xBB67AE85) % 2**32
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 % 2**32, (p0 >> 32) ^ c3 ^ k1, p0 % 2**32
    return c0, c1, c2, c3


def _dropout_train(inputs, attrs):
    x, step = inputs
    step, seed, p = int(step), attrs["seed"], attrs["p"]
    flat = [float(v) for v in x.reshape(-1)]
    out = []
    for i, v in enumerate(flat):
        words = _rotl_free_philox((i // 4 % 2**32, i // 4 >> 32, step % 2**32, step >> 32), (seed % 2**32, seed >> 32))
        u = (words[i % 4] >> 8) / 2**24
        out.append(v * (1.0 / (1.0 - p)) if u >= p else v * 0.0)
    return np.array(out, x.dtype).reshape(x.shape)


def _random_draw(normal):
    """random_uniform / random_normal (and the _like forms) element by element with math and Python ints."""
    def impl(inputs, attrs):
        step, seed = int(inputs[-1]) % 2**64, attrs["seed"]
        shape = tuple(attrs["shape"]) if "shape" in attrs else inputs[0].shape
        dt = attrs["dtype"] or (inputs[0].dtype.name if inputs[0].dtype.kind == "f" else "float32")
        per = 4 if dt == "float32" else 2  # elements per Philox block

        def unit(w, k, extra=0):  # uniform k of the block (a word, or a word pair for float64)
            if dt == "float32":
                return ((w[k] >> 8) + extra) / 2**24
            return (((w[2 * k] << 21) | (w[2 * k + 1] >> 11)) + extra) / 2**53
        out = []
        for i in range(math.prod(shape)):
            b, j = divmod(i, per)
            w = _rotl_free_philox((b % 2**32, b >> 32, step % 2**32, step >> 32), (seed % 2**32, seed >> 32))
            if normal:
                p = j // 2 if dt == "float32" else 0  # the Box–Muller pair: uniforms 2p, 2p + 1
                r = math.sqrt(-2.0 * math.log(unit(w, 2 * p, extra=1)))
                z = r * (math.cos if j % 2 == 0 else math.sin)(2 * math.pi * unit(w, 2 * p + 1))
                out.append(attrs["mean"] + attrs["stddev"] * z)
            else:
                out.append(attrs["minval"] + (attrs["maxval"] - attrs["minval"]) * unit(w, j))
        return np.array(out, np.float64).astype(dt).reshape(shape)
    return impl


INDEPENDENT.update({
    "random_uniform": _random_draw(False), "random_normal": _random_draw(True),
    "random_uniform_like": _random_draw(False), "random_normal_like": _random_draw(True),
})
INDEPENDENT.update({
    "batch_norm": _batch_norm,
    "batch_norm_train": _batch_norm_train,
    "batch_norm_train_grad": _batch_norm_train_grad,
    "batch_norm_update_stats": _per_element(_update_stats),
    "dropout": lambda inputs, attrs: _flat_reshape(inputs, inputs[0].shape),
    "dropout_train": _dropout_train,
})
def _conv_geometry(attrs, h, w, kh, kw):
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = attrs["stride"], attrs["pads"], attrs["dilation"]
    return (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1


def _conv_terms(attrs, x_shape, w_shape):
    """Every (n, o, i, j, c_in, c_w, a, b, r, q) where output (n, o, i, j) reads weight (o, c_w, a, b) at
    padded-input row r and column q of input channel c_in (r, q may lie in the padding)."""
    n_, c, h, w = x_shape
    o_, cg, kh, kw = w_shape
    g = attrs["groups"]
    (sh, sw), (pt, pl, _, _), (dh, dw) = attrs["stride"], attrs["pads"], attrs["dilation"]
    ho, wo = _conv_geometry(attrs, h, w, kh, kw)
    for n, o, i, j in itertools.product(range(n_), range(o_), range(ho), range(wo)):
        group = o // (o_ // g)
        for cw, a, b in itertools.product(range(cg), range(kh), range(kw)):
            yield n, o, i, j, group * cg + cw, cw, a, b, i * sh + a * dh - pt, j * sw + b * dw - pl


def _conv_in(x_shape, r, q):
    return 0 <= r < x_shape[2] and 0 <= q < x_shape[3]


@np.errstate(invalid="ignore", over="ignore")  # the special-value examples add inf + -inf
def _conv2d(inputs, attrs):
    x, w = inputs
    ho, wo = _conv_geometry(attrs, x.shape[2], x.shape[3], w.shape[2], w.shape[3])
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for n, o, i, j, c, cw, a, b, r, q in _conv_terms(attrs, x.shape, w.shape):
        xv = float(x[n, c, r, q]) if _conv_in(x.shape, r, q) else 0.0  # padding takes part as 0
        out[n, o, i, j] += xv * float(w[o, cw, a, b])
    return out.astype(x.dtype)


@np.errstate(invalid="ignore", over="ignore")
def _conv2d_grad_input(inputs, attrs):
    dy, w = inputs
    x_shape = (dy.shape[0], w.shape[1] * attrs["groups"]) + tuple(attrs["input_size"])
    out = np.zeros(x_shape)
    for n, o, i, j, c, cw, a, b, r, q in _conv_terms(attrs, x_shape, w.shape):
        if _conv_in(x_shape, r, q):
            out[n, c, r, q] += float(dy[n, o, i, j]) * float(w[o, cw, a, b])
    return out.astype(w.dtype)


@np.errstate(invalid="ignore", over="ignore")
def _conv2d_grad_weight(inputs, attrs):
    dy, x = inputs
    w_shape = (dy.shape[1], x.shape[1] // attrs["groups"]) + tuple(attrs["kernel_size"])
    out = np.zeros(w_shape)
    for n, o, i, j, c, cw, a, b, r, q in _conv_terms(attrs, x.shape, w_shape):
        xv = float(x[n, c, r, q]) if _conv_in(x.shape, r, q) else 0.0  # padding as 0 (inf * 0: NaN)
        out[o, cw, a, b] += float(dy[n, o, i, j]) * xv
    return out.astype(x.dtype)


INDEPENDENT.update({"conv2d": _conv2d, "conv2d_grad_input": _conv2d_grad_input,
                    "conv2d_grad_weight": _conv2d_grad_weight})


# gelu / softplus: torch's formulas on Python floats (erf, not the reference's erfc), with the
# limits the ops define where the formula meets inf·0 (gelu at ±inf) or e^z overflows.
_GELU_K, _GELU_KAPPA = math.sqrt(2 / math.pi), 0.044715


def _gelu(v, approximate):
    if approximate == "none":
        return -0.0 if v == -math.inf else v * 0.5 * (1 + math.erf(v / math.sqrt(2)))
    right = 1 + math.tanh(_GELU_K * (v + _GELU_KAPPA * v * v * v))
    return -0.0 if right == 0 else 0.5 * v * right


def _gelu_grad(dy, v, approximate):
    if approximate == "none":
        if math.isinf(v):
            d = 1.0 if v > 0 else 0.0
        else:
            d = 0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)
        return dy * d
    t = math.tanh(_GELU_K * (v + _GELU_KAPPA * v * v * v))
    sech2 = 1 - t * t
    d = 0.5 * (1 + t) + (0.0 if sech2 == 0 else 0.5 * v * sech2 * _GELU_K * (1 + 3 * _GELU_KAPPA * v * v))
    return dy * d


def _softplus(v, beta, threshold):
    z = v * beta
    if z > threshold:
        return v
    return (z if z > 700 else math.log1p(math.exp(z))) / beta  # log(1 + e^z) = z to double precision


def _softplus_grad(dy, v, beta, threshold):
    z = v * beta
    return dy if z > threshold else dy * _sig(z)


INDEPENDENT.update({"gelu": _elementwise(_gelu), "gelu_grad": _elementwise(_gelu_grad),
                    "softplus": _elementwise(_softplus), "softplus_grad": _elementwise(_softplus_grad)})


# -- graphc/ops/math.py: the math module and Python's own operators -----------------------------------

def _finite_or_same(fn):
    """fn for finite v; NaN and ±inf unchanged (floor, ceil, round)."""
    return lambda v: float(fn(v)) if math.isfinite(v) else v


def _odd_integer(b):
    return float(b).is_integer() and math.fmod(b, 2.0) != 0


def _power(a, b):
    """C99's pow (Annex F): what math.pow refuses (0 to a negative power, overflow) by its rules."""
    if b == 0 or a == 1:
        return 1.0
    if a != a or b != b:
        return math.nan
    if a == 0:
        if b < 0:
            return math.copysign(math.inf, a) if _odd_integer(b) else math.inf
        return a if _odd_integer(b) else 0.0
    try:
        return math.pow(a, b)
    except ValueError:  # a negative base with a non-integer exponent
        return math.nan
    except OverflowError:
        return -math.inf if a < 0 and _odd_integer(b) else math.inf


def _mod(a, b, fmod):
    if isinstance(a, int):
        if b in (0, -1):
            return 0
        r = abs(a) % abs(b) * (1 if a >= 0 else -1)  # the dividend's sign
        return r + b if not fmod and r != 0 and (r < 0) != (b < 0) else r
    if b == 0 or not math.isfinite(a) or b != b:
        return math.nan
    return math.fmod(a, b) if fmod else a % b  # Python's float % has the divisor's sign


def _int_div(a, b):
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q  # _elementwise wraps INT_MIN / -1 = 2^63 to INT_MIN


INDEPENDENT.update({
    "erf": _elementwise(math.erf),
    "floor": _elementwise(_finite_or_same(math.floor)),
    "ceil": _elementwise(_finite_or_same(math.ceil)),
    "round": _elementwise(_finite_or_same(round)),  # Python's round: halves to even
    "reciprocal": _elementwise(lambda v: math.copysign(math.inf, v) if v == 0 else 1 / v),
    "sin": _elementwise(math.sin),
    "cos": _elementwise(math.cos),
    "tan": _elementwise(math.tan),
    "asin": _elementwise(math.asin),
    "acos": _elementwise(math.acos),
    "atan": _elementwise(math.atan),
    "sinh": _elementwise(lambda v: math.copysign(math.inf, v) if abs(v) > 720 else math.sinh(v)),
    "cosh": _elementwise(math.cosh),
    "asinh": _elementwise(math.asinh),
    "acosh": _elementwise(math.acosh),
    "atanh": _elementwise(lambda v: math.copysign(math.inf, v) if abs(v) == 1 else math.atanh(v)),
    "sign": _elementwise(lambda v: v if v != v else (1 if v > 0 else -1 if v < 0 else 0)),
    "isnan": _elementwise(lambda v: v != v, "bool"),
    "isinf": _elementwise(lambda v, detect_positive, detect_negative:
                          (detect_positive and v == math.inf) or (detect_negative and v == -math.inf), "bool"),
    "power": np.errstate(over="ignore")(_elementwise(_power)),
    "mod": _elementwise(_mod),
    "int_div": _elementwise(_int_div),
    "greater_equal": _elementwise(lambda a, b: a >= b, "bool"),
    "less_equal": _elementwise(lambda a, b: a <= b, "bool"),
    "logical_and": _elementwise(lambda a, b: a and b, "bool"),
    "logical_or": _elementwise(lambda a, b: a or b, "bool"),
    "logical_xor": _elementwise(lambda a, b: a != b, "bool"),
})


@np.errstate(invalid="ignore", over="ignore")
def _conv_transpose2d(inputs, attrs):
    # every x[n, c, i, j]·w[c, o, a, b] added at output row i·s + a·d - top, column j·s + b·d - left, if inside
    x, w = inputs
    n_, c_, h, wd = x.shape
    _, cog, kh, kw = w.shape
    g = attrs["groups"]
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = attrs["stride"], attrs["pads"], attrs["dilation"]
    oph, opw = attrs["output_padding"]
    ho, wo = (h - 1) * sh - pt - pb + dh * (kh - 1) + oph + 1, (wd - 1) * sw - pl - pr + dw * (kw - 1) + opw + 1
    out = np.zeros((n_, cog * g, ho, wo))
    for n, c, i, j, o, a, b in itertools.product(range(n_), range(c_), range(h), range(wd), range(cog), range(kh),
                                                 range(kw)):
        r, q = i * sh + a * dh - pt, j * sw + b * dw - pl
        if 0 <= r < ho and 0 <= q < wo:
            out[n, c // (c_ // g) * cog + o, r, q] += float(x[n, c, i, j]) * float(w[c, o, a, b])
    return out.astype(x.dtype)


def _upsample_nearest2d(inputs, attrs):
    x = inputs[0]
    sh, sw = attrs["scales"]
    n_, c_, h, w = x.shape
    out = np.empty((n_, c_, h * sh, w * sw), x.dtype)
    for n, c, i, j in itertools.product(range(n_), range(c_), range(h * sh), range(w * sw)):
        out[n, c, i, j] = x[n, c, i // sh, j // sw]
    return out


INDEPENDENT.update({"conv_transpose2d": _conv_transpose2d,
                    # a slope of 1.5 takes float32's max to inf: np.errstate quiets the cast's warning
                    "leaky_relu": np.errstate(over="ignore")(_elementwise(
                        lambda v, negative_slope: v if v > 0 else v * negative_slope)),
                    "leaky_relu_grad": np.errstate(over="ignore")(_elementwise(
                        lambda dy, v, negative_slope: dy if v > 0 else dy * negative_slope)),
                    "upsample_nearest2d": _upsample_nearest2d})


def test_every_op_has_an_independent_implementation():
    assert set(INDEPENDENT) == {o.name for o in OPS}


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_reference_matches_independent_implementation(op):
    impl = INDEPENDENT[op.name]
    checked = 0
    for ex in _examples(op, max_elems=400):
        got = op.evaluate(ex.inputs, ex.attrs)
        want = impl(ex.inputs, ex.attrs)
        want = want if isinstance(want, list) else [want]
        for g, w in zip(got, want):
            w = np.asarray(w)
            assert g.shape == w.shape, (ex, g.shape, w.shape)
            tol = 1e-5 if g.dtype == np.float32 else 1e-12
            if g.dtype.kind == "f":
                np.testing.assert_allclose(g, w.astype(g.dtype), rtol=tol, atol=tol, err_msg=repr(ex))
            else:
                np.testing.assert_array_equal(g, w.astype(g.dtype), err_msg=repr(ex))
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("a,b,expected", [
    ((5, 1, 3), (4, 1), (5, 4, 3)),
    ((1,), (0,), (0,)),
    ((0, 1), (1, 3), (0, 3)),
    ((), (2, 3), (2, 3)),
    ((8, 1, 6, 1), (7, 1, 5), (8, 7, 6, 5)),
])
def test_broadcasting_corner_cases(a, b, expected):
    with gc.Graph():
        x = gc.placeholder("a", a)
        y = gc.placeholder("b", b)
        z = x + y
    assert z.shape == expected
    out = gc.reference.evaluate(z.graph, {"a": np.ones(a, np.float32), "b": np.ones(b, np.float32)}, [z])
    assert out[z].shape == expected
    assert np.all(out[z] == 2)


# -- layer norm (graphc/ops/layer_norm.py) -----------------------------------------------------------

def _ln_rows(x, axis):
    """(lead shape, [[flat values of row r] for r]) of x cut after its first `axis` axes."""
    a = axis + x.ndim if axis < 0 else axis
    lead = x.shape[:a]
    flat = [float(v) for v in x.reshape(-1)]
    n = len(flat) // max(1, math.prod(lead)) if flat else math.prod(x.shape[a:])
    return lead, [flat[r * n:(r + 1) * n] for r in range(math.prod(lead))], n


def _layer_norm(inputs, attrs):
    x, w, b = inputs
    lead, rows, n = _ln_rows(x, attrs["axis"])
    wf, bf = [float(v) for v in w.reshape(-1)], [float(v) for v in b.reshape(-1)]
    y, means, rstds = [], [], []
    for row in rows:
        mean = _div(sum(row), n)
        var = _div(sum((v - mean) * (v - mean) for v in row), n)
        rstd = _div(1.0, _ieee(math.sqrt, var + attrs["eps"]))
        y += [(v - mean) * rstd * wf[j] + bf[j] for j, v in enumerate(row)]
        means.append(mean)
        rstds.append(rstd)
    with np.errstate(over="ignore"):
        return [np.array(y, x.dtype).reshape(x.shape), np.array(means, x.dtype).reshape(lead),
                np.array(rstds, x.dtype).reshape(lead)]


def _layer_norm_grad(inputs, attrs):
    dy, x, w, mean, rstd, dmean, drstd = inputs
    lead, xrows, n = _ln_rows(x, attrs["axis"])
    _, dyrows, _ = _ln_rows(dy, attrs["axis"])
    wf = [float(v) for v in w.reshape(-1)]
    m, s, dm, ds = ([float(v) for v in a.reshape(-1)] for a in (mean, rstd, dmean, drstd))
    dx, dw, db = [], [0.0] * len(wf), [0.0] * len(wf)
    for r, (xr, dyr) in enumerate(zip(xrows, dyrows)):
        xhat = [(v - m[r]) * s[r] for v in xr]
        g = [d * wf[j] for j, d in enumerate(dyr)]
        mg = _div(sum(g), n)
        mgx = _div(sum(gj * h for gj, h in zip(g, xhat)), n)
        for j in range(n):
            # rstd·(g - mean(g) - x̂·mean(g·x̂)) + dmean/n + drstd · ∂rstd/∂x, ∂rstd/∂x = -rstd³·(x - mean)/n
            dx.append(s[r] * (g[j] - mg - xhat[j] * mgx) + _div(dm[r], n)
                      - ds[r] * s[r] ** 3 * _div(xr[j] - m[r], n))
            dw[j] += dyr[j] * xhat[j]
            db[j] += dyr[j]
    t = x.dtype
    return [np.array(dx, t).reshape(x.shape), np.array(dw, t).reshape(w.shape), np.array(db, t).reshape(w.shape)]


INDEPENDENT.update({"layer_norm": _layer_norm, "layer_norm_grad": _layer_norm_grad})


# -- embedding (graphc/ops/gather.py) ----------------------------------------------------------------

def _embedding(inputs, attrs):
    ids, w = inputs
    out = np.empty(ids.shape + w.shape[1:], w.dtype)
    for idx in itertools.product(*[range(d) for d in ids.shape]):
        k = int(ids[idx])
        assert 0 <= k < w.shape[0], (idx, k)
        for rest in itertools.product(*[range(d) for d in w.shape[1:]]):
            out[idx + rest] = w[(k,) + rest]
    return out


def _embedding_grad(inputs, attrs):
    g, ids, w = inputs
    out = np.zeros(w.shape, g.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # the special-value examples add inf + -inf
        for idx in itertools.product(*[range(d) for d in ids.shape]):  # index order: the kernel's order
            k = int(ids[idx])
            for rest in itertools.product(*[range(d) for d in w.shape[1:]]):
                out[(k,) + rest] += g[idx + rest]
    return out


INDEPENDENT.update({"embedding": _embedding, "embedding_grad": _embedding_grad})


# -- tril / triu, cumsum, argmax (graphc/ops/scan.py) ------------------------------------------------

def _tri(upper):
    def impl(inputs, attrs):
        x, k = inputs[0], attrs["diagonal"]
        out = np.empty(x.shape, x.dtype)
        for idx in itertools.product(*[range(d) for d in x.shape]):
            i, j = idx[-2], idx[-1]
            keep = j - i >= k if upper else j - i <= k
            out[idx] = x[idx] if keep else 0
        return out
    return impl


def _axis_lines(shape, axis):
    """Every line along axis: the list of index tuples of its items, in axis order."""
    other = [range(d) for i, d in enumerate(shape) if i != axis]
    for rest in itertools.product(*other):
        yield [rest[:axis] + (k,) + rest[axis:] for k in range(shape[axis])]


def _cumsum(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        return np.zeros_like(x) if attrs["exclusive"] else x.copy()
    out = np.empty(x.shape, x.dtype)
    bits = 8 * x.dtype.itemsize
    for line in _axis_lines(x.shape, attrs["axis"] % x.ndim):
        if attrs["reverse"]:
            line = line[::-1]
        acc = None  # the sum so far, in x's dtype (float) or wrapped to it (int); None: no item yet
        for idx in line:
            v = x[idx]
            if attrs["exclusive"]:
                out[idx] = 0 if acc is None else acc
            if x.dtype.kind == "f":
                with np.errstate(over="ignore", invalid="ignore"):
                    acc = v if acc is None else x.dtype.type(acc + v)  # numpy scalars: x's rounding
            else:
                s = int(v) + (0 if acc is None else int(acc))
                acc = (s + 2 ** (bits - 1)) % 2 ** bits - 2 ** (bits - 1)
            if not attrs["exclusive"]:
                out[idx] = acc
    return out


def _argmax(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        return np.zeros((), np.int64)
    axis = attrs["axis"] % x.ndim
    shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
    out = np.zeros(shape, np.int64)
    for line in _axis_lines(x.shape, axis):
        best = 0
        for k, idx in enumerate(line):
            v, b = x[idx].item(), x[line[best]].item()  # exact Python int / float
            if not math.isnan(b) and (math.isnan(v) or v > b):
                best = k
        if line:
            out[line[0][:axis] + (0,) + line[0][axis + 1:]] = best
    return out if attrs["keepdims"] else out.reshape(tuple(d for i, d in enumerate(x.shape) if i != axis))


INDEPENDENT.update({"tril": _tri(False), "triu": _tri(True), "cumsum": _cumsum, "argmax": _argmax})


# -- the fused LSTM cell (graphc/ops/rnn_cell.py) ----------------------------------------------------

def _lstm_acts(gates, r, j, h):
    """σ(i), σ(f), tanh(g), σ(o) of row r, column j, with Python floats."""
    row = [float(v) for v in gates[r]]
    return _sig(row[j]), _sig(row[h + j]), math.tanh(row[2 * h + j]), _sig(row[3 * h + j])


def _lstm_cell(inputs, attrs):
    gates, cp = inputs
    n, h = cp.shape
    hs, cs = np.zeros((n, h)), np.zeros((n, h))
    for r in range(n):
        for j in range(h):
            i, f, g, o = _lstm_acts(gates, r, j, h)
            c = f * float(cp[r, j]) + i * g   # Python floats: inf·0 is NaN, as IEEE
            cs[r, j], hs[r, j] = c, o * math.tanh(c)
    return [hs.astype(gates.dtype), cs.astype(gates.dtype)]


def _lstm_cell_grad(inputs, attrs):
    dh, dc, gates, cp, c = inputs
    n, h = cp.shape
    dg, dcp = np.zeros((n, 4 * h)), np.zeros((n, h))
    for r in range(n):
        for j in range(h):
            i, f, g, o = _lstm_acts(gates, r, j, h)
            tc = math.tanh(float(c[r, j]))
            dhj = float(dh[r, j])
            dct = float(dc[r, j]) + dhj * o * (1 - tc * tc)
            dg[r, j] = dct * g * i * (1 - i)
            dg[r, h + j] = dct * float(cp[r, j]) * f * (1 - f)
            dg[r, 2 * h + j] = dct * i * (1 - g * g)
            dg[r, 3 * h + j] = dhj * tc * o * (1 - o)
            dcp[r, j] = dct * f
    return [dg.astype(gates.dtype), dcp.astype(gates.dtype)]


INDEPENDENT.update({"lstm_cell": _lstm_cell, "lstm_cell_grad": _lstm_cell_grad})


def _gru_acts(xw, hw, r, j, h):
    """σ(r), σ(z), tanh(n), hw_n of row r, column j, with Python floats."""
    x, hh = [float(v) for v in xw[r]], [float(v) for v in hw[r]]
    rr, z = _sig(x[j] + hh[j]), _sig(x[h + j] + hh[h + j])
    return rr, z, math.tanh(x[2 * h + j] + rr * hh[2 * h + j]), hh[2 * h + j]


def _gru_cell(inputs, attrs):
    xw, hw, hs = inputs
    n, h = hs.shape
    out = np.zeros((n, h))
    for r in range(n):
        for j in range(h):
            _, z, nn, _ = _gru_acts(xw, hw, r, j, h)
            out[r, j] = (1 - z) * nn + z * float(hs[r, j]) if math.isfinite(nn) and math.isfinite(float(hs[r, j])) \
                else nn + z * (float(hs[r, j]) - nn)   # (1-z)n + zh; with inf/NaN the op's form n + z(h - n)
    return [out.astype(xw.dtype)]


def _gru_cell_grad(inputs, attrs):
    dy, xw, hw, hs = inputs
    n, h = hs.shape
    dx, dhw, dh = np.zeros((n, 3 * h)), np.zeros((n, 3 * h)), np.zeros((n, h))
    for r in range(n):
        for j in range(h):
            rr, z, nn, hn = _gru_acts(xw, hw, r, j, h)
            d = float(dy[r, j])
            dan = d * (1 - z) * (1 - nn * nn)       # through n = tanh(xn + r hn)
            dar = dan * hn * rr * (1 - rr)
            daz = d * (float(hs[r, j]) - nn) * z * (1 - z)
            dx[r, j], dx[r, h + j], dx[r, 2 * h + j] = dar, daz, dan
            dhw[r, j], dhw[r, h + j], dhw[r, 2 * h + j] = dar, daz, dan * rr
            dh[r, j] = d * z
    t = xw.dtype
    return [dx.astype(t), dhw.astype(t), dh.astype(t)]


INDEPENDENT.update({"gru_cell": _gru_cell, "gru_cell_grad": _gru_cell_grad})


# -- topk, take_along_axis, take_along_axis_grad (graphc/ops/topk.py) ---------------------------------

def _topk_better(a, b, largest):
    """(value, index) a comes before b: NaN above every number, ties to the lower index."""
    (va, ia), (vb, ib) = a, b
    na, nb = math.isnan(va), math.isnan(vb)
    if na != nb:
        return na if largest else nb
    if not na and va != vb:
        return va > vb if largest else va < vb
    return ia < ib


def _topk(inputs, attrs):
    x, k = inputs[0], attrs["k"]
    axis = attrs["axis"] % x.ndim
    shape = tuple(k if i == axis else d for i, d in enumerate(x.shape))
    values, indices = np.zeros(shape, x.dtype), np.zeros(shape, np.int64)
    for line in _axis_lines(x.shape, axis):
        items = [(x[idx].item(), j) for j, idx in enumerate(line)]
        chosen = []
        for _ in range(k):  # selection: the best remaining item, k times
            best = None
            for it in items:
                if it not in chosen and (best is None or _topk_better(it, best, attrs["largest"])):
                    best = it
            chosen.append(best)
        if not attrs["sorted"]:
            chosen.sort(key=lambda it: it[1])
        for j, (v, i) in enumerate(chosen):
            pos = line[0][:axis] + (j,) + line[0][axis + 1:]
            values[pos], indices[pos] = v, i
    return [values, indices]


def _take_along_axis(inputs, attrs):
    x, idx = inputs
    axis = attrs["axis"] % x.ndim
    out = np.zeros(idx.shape, x.dtype)
    for pos in itertools.product(*[range(d) for d in idx.shape]):
        k = int(idx[pos])
        assert 0 <= k < x.shape[axis], (pos, k)
        out[pos] = x[pos[:axis] + (k,) + pos[axis + 1:]]
    return out


def _take_along_axis_grad(inputs, attrs):
    g, idx, x = inputs
    axis = attrs["axis"] % x.ndim
    out = np.zeros(x.shape, g.dtype)
    for pos in itertools.product(*[range(d) for d in idx.shape]):  # C order: the order of the sums
        k = int(idx[pos])
        assert 0 <= k < x.shape[axis], (pos, k)
        target = pos[:axis] + (k,) + pos[axis + 1:]
        with np.errstate(over="ignore", invalid="ignore"):
            out[target] = out[target] + g[pos]
    return out


INDEPENDENT.update({"topk": _topk, "take_along_axis": _take_along_axis,
                    "take_along_axis_grad": _take_along_axis_grad})


# -- scaled_dot_product_attention (graphc/ops/attention.py) ------------------------------------------

def _attn_exp(x):
    return x if math.isnan(x) else (math.inf if x > 709.0 else math.exp(x))


def _attn_kept(inputs, attrs, b, i):
    k, mask = inputs[1], np.broadcast_to(inputs[3], inputs[0].shape[:-1] + inputs[1].shape[-2:-1])
    return [j for j in range(k.shape[-2]) if mask[b + (i, j)] and not (attrs["causal"] and j > i)]


def _attn_score(q, k, b, i, j, scale):
    return sum(float(q[b + (i, e)]) * float(k[b + (j, e)]) for e in range(q.shape[-1])) * scale


def _attention(inputs, attrs):
    q, k, v = inputs[:3]
    L, ev = q.shape[-2], v.shape[-1]
    out = np.zeros(q.shape[:-1] + (ev,))
    lse = np.zeros(q.shape[:-1])
    for b in itertools.product(*[range(d) for d in q.shape[:-2]]):
        for i in range(L):
            kept = _attn_kept(inputs, attrs, b, i)
            if not kept:  # a fully masked row: 0 and lse = -inf
                lse[b + (i,)] = -math.inf
                continue
            s = {j: _attn_score(q, k, b, i, j, attrs["scale"]) for j in kept}
            mx = math.nan if any(math.isnan(x) for x in s.values()) else max(s.values())
            p = {j: _attn_exp(s[j] - mx) for j in kept}
            total = sum(p.values())
            for c in range(ev):
                out[b + (i, c)] = sum(p[j] * float(v[b + (j, c)]) for j in kept) / total
            lse[b + (i,)] = mx + math.log(total) if not math.isnan(total) else math.nan
    return [out, lse]


@np.errstate(invalid="ignore")  # the special-value examples add inf + -inf into the array
def _attention_grad(inputs, attrs):
    q, k, v, _, out, lse, dout, dlse = inputs
    L, e, ev, scale = q.shape[-2], q.shape[-1], v.shape[-1], attrs["scale"]
    dq, dk, dv = np.zeros(q.shape), np.zeros(k.shape), np.zeros(v.shape)
    for b in itertools.product(*[range(d) for d in q.shape[:-2]]):
        for i in range(L):
            d = sum(float(dout[b + (i, c)]) * float(out[b + (i, c)]) for c in range(ev)) - float(dlse[b + (i,)])
            for j in _attn_kept(inputs, attrs, b, i):
                p = _attn_exp(_attn_score(q, k, b, i, j, scale) - float(lse[b + (i,)]))
                dp = sum(float(dout[b + (i, c)]) * float(v[b + (j, c)]) for c in range(ev))
                ds = p * (dp - d)
                for x in range(e):
                    dq[b + (i, x)] += ds * float(k[b + (j, x)])
                    dk[b + (j, x)] += ds * float(q[b + (i, x)])
                for c in range(ev):
                    dv[b + (j, c)] += p * float(dout[b + (i, c)])
    return [dq * scale, dk * scale, dv]


INDEPENDENT.update({"scaled_dot_product_attention": _attention, "scaled_dot_product_attention_grad": _attention_grad})


from tensor_extra_independent import INDEPENDENT_TENSOR_EXTRA  # noqa: E402  (identity, tile, resize, ...)

INDEPENDENT.update(INDEPENDENT_TENSOR_EXTRA)
