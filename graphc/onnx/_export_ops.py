"""The ONNX form of each graphc op: ``EXPORTERS`` (op → function) and ``REFUSED`` (op → why
there is none).  Every registry op is in exactly one of them (tests/test_onnx_export.py);
docs/onnx_export.md's refusal table is generated from REFUSED.

An exporter receives a :class:`graphc.onnx._export.NodeExport` ``e`` and returns the ONNX
value name of each graphc output.  Where ONNX's op differs from graphc's on some values
(NaN, ±inf, negative indices, out-of-range float→int casts...), the exporter adds the few
nodes that make ONNX Runtime compute graphc's result, so that an exported model gives the
same numbers as graphc on every input, special values included.
"""

import re
import sys

import numpy as np

import graphc.ops  # noqa: F401  (registers the ops this module maps)
from graphc import dtypes, registry
from graphc.ops.shape import slice_index

# an EXPORTERS value: export the node through its registry composite (graphc/onnx/_export.py)
COMPOSITE = "composite"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

EXPORTERS = {}
REFUSED = {}


def exporter(*ops):
    def wrap(fn):
        for op in ops:
            EXPORTERS[op] = fn
        return fn
    return wrap


def refuse(reason, *ops):
    for op in ops:
        REFUSED[op] = reason


# -- refusals --------------------------------------------------------------------------
refuse("an optimizer update (it overwrites a variable in place); ONNX inference graphs have no "
       "state updates: export the model's forward graph", "adam_update", "sgd_update", "sgd_momentum_update")
refuse("overwrites a variable in place; ONNX graphs have no state updates", "assign")
refuse("a data-parallel gradient sum across the ranks of an MPI/NCCL communicator (a training step's); "
       "export the model's forward graph", "allreduce_start", "allreduce_wait")
refuse("the running-statistics update of a training step (in place); export the inference graph, "
       "where batch_norm uses the running statistics", "batch_norm_update_stats")
refuse("graphc's Philox-based generator has no ONNX counterpart (ONNX RandomNormal/RandomUniform "
       "draw different numbers)", "random_normal", "random_normal_like", "random_uniform",
       "random_uniform_like")
refuse("the training form of dropout draws its mask with graphc's Philox generator; export the "
       "inference graph (dropout is the identity there)", "dropout_train")
refuse("a gradient op without a clean ONNX form (the exported graph is the user's forward graph, "
       "not a compiled training step)", "avg_pool2d_grad", "max_pool2d_grad", "max_pool2d_gather",
       "conv2d_grad_weight")


# -- helpers -----------------------------------------------------------------------------
def _binary(op_type):
    def fn(e):
        return e.add(op_type, [e.x(0), e.x(1)])
    return fn


def _unary(op_type):
    def fn(e):
        return e.add(op_type, [e.x(0)])
    return fn


for _op, _onnx in {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "equal": "Equal",
                   "greater": "Greater", "less": "Less", "maximum": "Max", "minimum": "Min"}.items():
    EXPORTERS[_op] = _binary(_onnx)
for _op, _onnx in {"abs": "Abs", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh",
                   "sigmoid": "Sigmoid", "neg": "Neg", "logical_not": "Not",
                   "stop_gradient": "Identity", "identity": "Identity"}.items():
    EXPORTERS[_op] = _unary(_onnx)


def _zero(e, dtype):
    return e.scalar(0, dtype)


@exporter("relu")
def _relu(e):
    if e.dtype(0) in dtypes.INTS:  # (ONNX Runtime has no integer Relu kernel)
        return e.add("Max", [e.x(0), _zero(e, e.dtype(0))])
    return e.add("Relu", [e.x(0)])


@exporter("relu_grad")
def _relu_grad(e):
    g, x = e.x(0), e.x(1)
    return e.add("Where", [e.add("Greater", [x, _zero(e, e.dtype(1))]), g, _zero(e, e.dtype(0))])


@exporter("leaky_relu")
def _leaky_relu(e):
    if e.dtype(0) == "float32":
        return e.add("LeakyRelu", [e.x(0)], alpha=float(e.attrs["negative_slope"]))
    # the same function for float64, which ONNX Runtime's LeakyRelu lacks
    x = e.x(0)
    return e.add("Where", [e.add("Greater", [x, _zero(e, e.dtype(0))]), x,
                           e.add("Mul", [x, e.scalar(e.attrs["negative_slope"], e.dtype(0))])])


@exporter("leaky_relu_grad")
def _leaky_relu_grad(e):
    dy, x = e.x(0), e.x(1)
    slope = e.scalar(e.attrs["negative_slope"], e.dtype(0))
    return e.add("Where", [e.add("Greater", [x, _zero(e, e.dtype(1))]), dy, e.add("Mul", [dy, slope])])


@exporter("pow")
def _pow(e):
    if e.attrs["exponent"] == 0.5:  # numpy (graphc's definition) computes x^0.5 as √x: √-0 = -0, √-inf = NaN
        return e.add("Sqrt", [e.x(0)])
    return e.add("Pow", [e.x(0), e.scalar(e.attrs["exponent"], e.dtype(0))])


@exporter("where")
def _where(e):
    c, x, y = e.x(0), e.x(1), e.x(2)
    if e.dtype(1) == "bool":  # (ONNX Runtime has no bool Where kernel)
        return e.add("Or", [e.add("And", [c, x]), e.add("And", [e.add("Not", [c]), y])])
    return e.add("Where", [c, x, y])


@exporter("cast")
def _cast(e):
    src, to = e.dtype(0), e.attrs["to"]
    x = e.x(0)
    if src == to:
        return e.add("Identity", [x])
    if src in dtypes.FLOATS and to in dtypes.INTS:
        # graphc saturates (NaN → 0, beyond the range → the int's min/max); ONNX Cast leaves
        # those cases undefined, so only in-range values reach it.
        info = np.iinfo(to)
        lim = 2.0 ** (info.bits - 1)
        hi, lo = e.scalar(lim, src), e.scalar(-lim, src)
        high = e.add("GreaterOrEqual", [x, hi])
        low = e.add("LessOrEqual", [x, lo])
        inside = e.add("And", [e.add("Less", [x, hi]), e.add("Greater", [x, lo])])  # False for NaN
        safe = e.add("Where", [inside, x, _zero(e, src)])
        y = e.add("Cast", [safe], to=_onnx_type(to))
        y = e.add("Where", [low, e.scalar(info.min, to), y])
        return e.add("Where", [high, e.scalar(info.max, to), y])
    return e.add("Cast", [x], to=_onnx_type(to))


ONNX_DTYPE = {"float32": 1, "int32": 6, "int64": 7, "bool": 9, "float64": 11}  # onnx.TensorProto enum


def _onnx_type(dtype):
    return ONNX_DTYPE[dtypes.as_dtype(dtype)]


@exporter("softmax")
def _softmax(e):
    return e.add("Softmax", [e.x(0)], axis=int(e.attrs["axis"]))


def _nan_rows(e, x, axis, y):
    """y with NaN in every row (along axis) of x holding NaN or +inf (graphc's and ONNX's
    definition; ONNX Runtime's LogSoftmax skips NaNs)."""
    dt = e.dtype(0)
    m = _max(e, x, [axis], True, dt)
    bad = e.add("Not", [e.add("Less", [m, e.scalar(np.inf, dt)])])
    return e.add("Where", [bad, e.scalar(np.nan, dt), y])


@exporter("log_softmax")
def _log_softmax(e):
    rank = len(e.shape(0))
    y = e.add("LogSoftmax", [e.x(0)], axis=int(e.attrs["axis"]))
    if rank == 0:
        return y
    return _nan_rows(e, e.x(0), e.attrs["axis"] % rank, y)


def _log1p(e, u, dtype):
    """log(1 + u) accurate for small u (ONNX has no Log1p): log(w)·u/(w - 1), w = 1 + u."""
    one = e.scalar(1, dtype)
    w = e.add("Add", [one, u])
    wm1 = e.add("Sub", [w, one])
    exact = e.add("Div", [e.add("Mul", [e.add("Log", [w]), u]), wm1])
    return e.add("Where", [e.add("Equal", [wm1, _zero(e, dtype)]), u, exact])


@exporter("softplus")
def _softplus(e):
    x, dt = e.x(0), e.dtype(0)
    beta, thr = e.attrs["beta"], e.attrs["threshold"]
    z = e.add("Mul", [x, e.scalar(beta, dt)])
    soft = e.add("Add", [e.add("Relu", [z]), _log1p(e, e.add("Exp", [e.add("Neg", [e.add("Abs", [z])])]), dt)])
    soft = e.add("Div", [soft, e.scalar(beta, dt)])
    return e.add("Where", [e.add("Greater", [z, e.scalar(thr, dt)]), x, soft])


@exporter("softplus_grad")
def _softplus_grad(e):
    dy, x, dt = e.x(0), e.x(1), e.dtype(1)
    z = e.add("Mul", [x, e.scalar(e.attrs["beta"], dt)])
    g = e.add("Mul", [dy, e.add("Sigmoid", [z])])
    return e.add("Where", [e.add("Greater", [z, e.scalar(e.attrs["threshold"], dt)]), dy, g])


def _phi_cdf(e, x, dt):
    """Φ(x) = ½·(1 + erf(x/√2))."""
    half = e.scalar(0.5, dt)
    erf = e.add("Erf", [e.add("Mul", [x, e.scalar(1 / np.sqrt(2.0), dt)])])
    return e.add("Mul", [half, e.add("Add", [e.scalar(1, dt), erf])])


def _gelu_tanh_inner(e, x, dt):
    c = e.scalar(np.sqrt(2 / np.pi), dt)
    x3 = e.add("Mul", [e.add("Mul", [x, x]), x])
    return e.add("Mul", [c, e.add("Add", [x, e.add("Mul", [e.scalar(0.044715, dt), x3])])])


@exporter("gelu")
def _gelu(e):
    x, dt, approx = e.x(0), e.dtype(0), e.attrs["approximate"]
    if approx not in ("none", "tanh"):
        e.fail(f"approximate={approx!r} is not an ONNX Gelu form")
    if e.opset >= 20 and dt == "float32":  # (Gelu's function body holds float32 constants)
        y = e.add("Gelu", [x], approximate=approx)
    elif approx == "none":
        y = e.add("Mul", [x, _phi_cdf(e, x, dt)])
    else:
        t = e.add("Tanh", [_gelu_tanh_inner(e, x, dt)])
        y = e.add("Mul", [e.add("Mul", [e.scalar(0.5, dt), x]), e.add("Add", [e.scalar(1, dt), t])])
    # graphc: gelu(-inf) = -0 (the limit); x·Φ(x) is -inf·0 = NaN there
    neg_inf = e.add("Equal", [x, e.scalar(-np.inf, dt)])
    return e.add("Where", [neg_inf, e.scalar(-0.0, dt), y])


@exporter("gelu_grad")
def _gelu_grad(e):
    dy, x, dt, approx = e.x(0), e.x(1), e.dtype(1), e.attrs["approximate"]
    if approx == "none":
        pdf = e.add("Mul", [e.scalar(1 / np.sqrt(2 * np.pi), dt),
                            e.add("Exp", [e.add("Mul", [e.scalar(-0.5, dt), e.add("Mul", [x, x])])])])
        xpdf = e.add("Where", [e.add("Equal", [pdf, _zero(e, dt)]), _zero(e, dt), e.add("Mul", [x, pdf])])
        d = e.add("Add", [_phi_cdf(e, x, dt), xpdf])
    elif approx == "tanh":
        t = e.add("Tanh", [_gelu_tanh_inner(e, x, dt)])
        one = e.scalar(1, dt)
        sech2 = e.add("Sub", [one, e.add("Mul", [t, t])])
        c = np.sqrt(2 / np.pi)
        inner_d = e.add("Add", [e.scalar(c, dt), e.add("Mul", [e.scalar(3 * 0.044715 * c, dt), e.add("Mul", [x, x])])])
        tail = e.add("Mul", [e.add("Mul", [e.scalar(0.5, dt), x]), e.add("Mul", [sech2, inner_d])])
        tail = e.add("Where", [e.add("Equal", [sech2, _zero(e, dt)]), _zero(e, dt), tail])
        d = e.add("Add", [e.add("Mul", [e.scalar(0.5, dt), e.add("Add", [one, t])]), tail])
    else:
        e.fail(f"approximate={approx!r} is not an ONNX Gelu form")
    return e.add("Mul", [dy, d])


# -- matmul, reductions, scans ---------------------------------------------------------
def _swap_last(e, x, rank):
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return e.add("Transpose", [x], perm=perm)


@exporter("matmul")
def _matmul(e):
    a, b = e.x(0), e.x(1)
    ta, tb = e.attrs["transpose_a"], e.attrs["transpose_b"]
    if len(e.shape(0)) == 2 and len(e.shape(1)) == 2:
        if ta or tb:
            return e.add("Gemm", [a, b], transA=int(ta), transB=int(tb))
        return e.add("MatMul", [a, b])
    if ta:
        a = _swap_last(e, a, len(e.shape(0)))
    if tb:
        b = _swap_last(e, b, len(e.shape(1)))
    return e.add("MatMul", [a, b])


def _reduce_axes(e):
    axes = e.attrs["axes"]
    rank = len(e.shape(0))
    if rank == 0:
        return ()
    if axes is None:
        return tuple(range(rank))
    return tuple(sorted(a % rank for a in axes))


def _sum(e, x, axes, keepdims, dt):
    """graphc's sum: float32 summed in float64 (its kernels do), then rounded once."""
    if dt != "float32" or (axes is not None and not axes):
        return e.reduce("ReduceSum", x, axes, keepdims)
    wide = e.reduce("ReduceSum", e.add("Cast", [x], to=_onnx_type("float64")), axes, keepdims)
    return e.add("Cast", [wide], to=_onnx_type("float32"))


def _count(e, shape_of_x, x, axes, dt):
    """The number of elements over ``axes`` (None: all) as a scalar of dtype dt."""
    rank = len(shape_of_x)
    axes = range(rank) if axes is None else axes
    dims = [shape_of_x[a] for a in axes]
    if all(isinstance(d, (int, np.integer)) for d in dims):
        return e.scalar(int(np.prod(dims, dtype=np.int64)), dt)
    picked = e.add("Gather", [e.shape_of(x), e.ints(list(axes))], axis=0)
    return e.add("Cast", [e.reduce("ReduceProd", picked, None, keepdims=False)], to=_onnx_type(dt))


def _mean(e, x, shape, axes, keepdims, dt):
    """graphc's mean: Σx / n (the mean of nothing is NaN; ONNX Runtime's ReduceMean gives 0),
    float32 summed in float64."""
    if axes is not None and not axes:
        return e.add("Identity", [x])
    wide = e.add("Cast", [x], to=_onnx_type("float64")) if dt == "float32" else x
    total = e.reduce("ReduceSum", wide, axes, keepdims)
    y = e.add("Div", [total, _count(e, shape, x, axes, "float64")])
    return e.add("Cast", [y], to=_onnx_type("float32")) if dt == "float32" else y


def _max(e, x, axes, keepdims, dt, op_type="ReduceMax"):
    """graphc's max (min): NaN propagates (ONNX Runtime's ReduceMax/ReduceMin skip NaNs)."""
    y = e.reduce(op_type, x, axes, keepdims)
    if dt not in dtypes.FLOATS or (axes is not None and not axes):
        return y
    nan = e.reduce("ReduceMax", e.add("Cast", [e.add("IsNaN", [x])], to=_onnx_type(dt)), axes, keepdims)
    return e.add("Where", [e.add("Greater", [nan, _zero(e, dt)]), e.scalar(np.nan, dt), y])


@exporter("sum", "mean", "max", "min")
def _reduce(e):
    axes, keep, dt = _reduce_axes(e), e.attrs["keepdims"], e.dtype(0)
    if e.node.op == "sum":
        return _sum(e, e.x(0), axes, keep, dt)
    if e.node.op == "mean":
        return _mean(e, e.x(0), e.shape(0), axes, keep, dt)
    return _max(e, e.x(0), axes, keep, dt, "ReduceMin" if e.node.op == "min" else "ReduceMax")


@exporter("argmax", "argmin")
def _argmax(e):
    if not e.shape(0):
        return e.const(np.zeros((), np.int64))
    x, dt = e.x(0), e.dtype(0)
    axis, keep = int(e.attrs["axis"]), int(e.attrs["keepdims"])
    y = e.add("ArgMin" if e.node.op == "argmin" else "ArgMax", [x], axis=axis, keepdims=keep, select_last_index=0)
    if dt not in dtypes.FLOATS:
        return y
    # graphc: NaN counts as the largest (argmin: the smallest), the first NaN wins (ONNX
    # Runtime skips NaNs)
    nan = e.add("Cast", [e.add("IsNaN", [x])], to=_onnx_type("float32"))
    first_nan = e.add("ArgMax", [nan], axis=axis, keepdims=keep, select_last_index=0)
    any_nan = e.add("Greater", [e.reduce("ReduceMax", nan, [axis % len(e.shape(0))], keep),
                                _zero(e, "float32")])
    return e.add("Where", [any_nan, first_nan, y])


@exporter("cumsum")
def _cumsum(e):
    if not e.shape(0):  # a scalar: itself, or 0 (exclusive)
        return e.add("Identity", [e.x(0)]) if not e.attrs["exclusive"] else _zero(e, e.dtype(0))
    return e.add("CumSum", [e.x(0), e.const(np.asarray(e.attrs["axis"], np.int64))],
                 exclusive=int(e.attrs["exclusive"]), reverse=int(e.attrs["reverse"]))


@exporter("topk")
def _topk(e):
    axis = e.attrs["axis"] % len(e.shape(0))
    k = e.ints([e.attrs["k"]])
    values, indices = e.add("TopK", [e.x(0), k], n_out=2, axis=axis, largest=int(e.attrs["largest"]), sorted=1)
    if e.attrs["sorted"]:
        return values, indices
    # graphc's unsorted order is index order; ONNX leaves it unspecified: sort by index (as
    # float64, exact below 2^53, so that the model stays within TopK's float types)
    as_float = e.add("Cast", [indices], to=_onnx_type("float64"))
    _, order = e.add("TopK", [as_float, k], n_out=2, axis=axis, largest=0, sorted=1)
    return (e.add("GatherElements", [values, order], axis=axis),
            e.add("GatherElements", [indices, order], axis=axis))


# -- shapes ----------------------------------------------------------------------------
@exporter("reshape")
def _reshape(e):
    target = e.out_shape()
    if all(isinstance(d, (int, np.integer)) for d in target):
        return e.reshape(e.x(0), target)
    return e.reshape(e.x(0), e.attrs["shape"])


@exporter("reshape_like")
def _reshape_like(e):
    target = e.out_shape()
    if all(isinstance(d, (int, np.integer)) for d in target):
        return e.reshape(e.x(0), target)
    if e.opset < 14:
        e.fail("reshape_like to a shape known only at run time needs opset 14 (Reshape allowzero)")
    return e.add("Reshape", [e.x(0), e.shape_of(e.x(1))], allowzero=1)


@exporter("expand_dims")
def _expand_dims(e):
    rank = len(e.out_shape())
    return e.unsqueeze(e.x(0), sorted(a % rank for a in e.attrs["axes"]))


@exporter("squeeze")
def _squeeze(e):
    shape = e.shape(0)
    axes = e.attrs["axes"]
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    return e.squeeze(e.x(0), sorted(a % len(shape) for a in axes))


@exporter("transpose")
def _transpose(e):
    perm = e.attrs["perm"]
    if not e.shape(0):
        return e.add("Identity", [e.x(0)])
    if perm is None:
        perm = tuple(reversed(range(len(e.shape(0)))))
    return e.add("Transpose", [e.x(0)], perm=[int(p) % max(len(perm), 1) for p in perm])


@exporter("concat")
def _concat(e):
    return e.add("Concat", [e.x(i) for i in range(e.num_inputs)], axis=int(e.attrs["axis"]))


@exporter("split")
def _split(e):
    sizes = e.attrs["sizes"]
    axis = int(e.attrs["axis"])
    if len(sizes) == 1:
        return [e.add("Identity", [e.x(0)])]
    return e.add("Split", [e.x(0), e.ints(sizes)], n_out=len(sizes), axis=axis)


@exporter("broadcast_to")
def _broadcast_to(e):
    return e.add("Expand", [e.x(0), e.ints(e.attrs["shape"])])


@exporter("broadcast_like")
def _broadcast_like(e):
    return e.add("Expand", [e.x(0), e.shape_of(e.x(1))])


@exporter("sum_to")
def _sum_to(e):
    xs, ls = e.shape(0), e.shape(1)
    lead = len(xs) - len(ls)
    axes = list(range(lead)) + [lead + i for i, d in enumerate(ls) if d == 1 and xs[lead + i] != 1]
    y = e.x(0)
    if axes:
        y = _sum(e, y, axes, True, e.dtype(0))
    if lead:
        y = e.squeeze(y, list(range(lead)))
    return y if y != e.x(0) else e.add("Identity", [y])


def _slice_params(e, shape, attrs):
    starts, ends = attrs["starts"], attrs["ends"]
    axes = attrs["axes"] if attrs["axes"] is not None else range(len(starts))
    steps = attrs["steps"] if attrs["steps"] is not None else (1,) * len(starts)
    rank = len(shape)
    out = ([], [], [], [])
    for s, en, ax, st in zip(starts, ends, axes, steps):
        ax %= rank
        dim = shape[ax]
        if isinstance(dim, (int, np.integer)):
            b, en2, st2 = slice(s, en, st).indices(int(dim))
            if len(range(b, en2, st2)) == 0:
                b, en2, st2 = 0, 0, 1
            elif st2 < 0 and en2 < 0:
                en2 = INT64_MIN  # "before index 0" (ONNX reads -1 as the last item)
        else:
            if st < 0 and s < 0:
                e.fail(f"a negative start ({s}) with a negative step on axis {ax}, whose size is known "
                       "only at run time, has no exact ONNX Slice form (numpy and ONNX clamp it differently)")
            b, en2, st2 = s, max(min(en, INT64_MAX), INT64_MIN), st
        for lst, v in zip(out, (b, en2, ax, st2)):
            lst.append(v)
    return out


@exporter("slice")
def _slice(e):
    starts, ends, axes, steps = _slice_params(e, e.shape(0), e.attrs)
    if not axes:
        return e.add("Identity", [e.x(0)])
    return e.add("Slice", [e.x(0), e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])


@exporter("slice_grad")
def _slice_grad(e):
    # zeros of x's shape with g scattered at the sliced positions (static shapes)
    xshape = e.static(e.shape(1), "slice_grad")
    index = np.arange(int(np.prod(xshape)), dtype=np.int64).reshape(xshape)
    picked = index[slice_index(len(xshape), e.attrs)]
    if picked.size == 0:
        return e.zeros(xshape, e.dtype(0))
    flat_zero = e.zeros([int(np.prod(xshape))], e.dtype(0))
    flat_g = e.reshape(e.x(0), [picked.size])
    out = e.add("ScatterElements", [flat_zero, e.ints(picked.reshape(-1)), flat_g], axis=0)
    return e.reshape(out, xshape)


@exporter("pad")
def _pad(e):
    pads = e.attrs["pads"]
    rank = len(e.shape(0))
    if rank == 0:
        return e.add("Identity", [e.x(0)])
    onnx_pads = [pads[2 * i] for i in range(rank)] + [pads[2 * i + 1] for i in range(rank)]
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}.get(e.attrs["mode"])
    if mode is None:
        e.fail(f"pad mode {e.attrs['mode']!r} has no ONNX form")
    ins = [e.x(0), e.ints(onnx_pads)]
    if mode == "constant":
        ins.append(e.scalar(e.attrs["value"], e.dtype(0)))
    return e.add("Pad", ins, mode=mode)


@exporter("pad_grad")
def _pad_grad(e):
    pads, mode = e.attrs["pads"], e.attrs["mode"]
    rank = len(e.shape(0))
    if rank == 0:
        return e.add("Identity", [e.x(0)])
    if mode == "constant":
        crop = [-pads[2 * i] for i in range(rank)] + [-pads[2 * i + 1] for i in range(rank)]
        return e.add("Pad", [e.x(0), e.ints(crop)], mode="constant")
    xshape = e.static(e.shape(1), f"pad_grad (mode {mode})")
    if e.opset < 16:
        e.fail(f"pad_grad of mode {mode!r} needs opset 16 (ScatterElements reduction='add')")
    # graphc adds each item of g, in C order, onto the x item it was read from: the same
    # ScatterElements(reduction='add') over a constant index map (same order, same bits)
    source = np.pad(np.arange(int(np.prod(xshape)), dtype=np.int64).reshape(xshape),
                    [(pads[2 * i], pads[2 * i + 1]) for i in range(rank)],
                    mode={"reflect": "reflect", "replicate": "edge"}[mode])
    if source.size == 0:
        return e.zeros(xshape, e.dtype(0))
    flat = e.add("ScatterElements", [e.zeros([int(np.prod(xshape))], e.dtype(0)), e.ints(source.reshape(-1)),
                                     e.reshape(e.x(0), [source.size])], axis=0, reduction="add")
    return e.reshape(flat, xshape)


def _band(e, rows_of, row_axis, cols_of, col_axis, k, upper):
    """A bool (rows, cols) mask: j - i >= k (upper) or j - i <= k (lower), rows = dim row_axis
    of rows_of, cols = dim col_axis of cols_of (Trilu's rule; Trilu itself needs opset 14)."""
    def dim(x, axis):
        return e.add("Gather", [e.shape_of(x), e.const(np.asarray(axis, np.int64))], axis=0)
    one, zero = e.scalar(1, "int64"), _zero(e, "int64")
    rows = e.add("Range", [zero, dim(rows_of, row_axis), one])
    cols = e.add("Range", [zero, dim(cols_of, col_axis), one])
    diff = e.add("Sub", [e.unsqueeze(cols, [0]), e.unsqueeze(rows, [1])])
    kk = e.scalar(k, "int64")
    return e.add("Not", [e.add("Less" if upper else "Greater", [diff, kk])])


@exporter("tril", "triu")
def _trilu(e):
    k, upper = int(e.attrs["diagonal"]), e.node.op == "triu"
    if e.opset >= 14:
        return e.add("Trilu", [e.x(0), e.const(np.asarray(k, np.int64))], upper=int(upper))
    x, rank = e.x(0), len(e.shape(0))
    keep = _band(e, x, rank - 2, x, rank - 1, k, upper)
    if e.dtype(0) == "bool":
        return e.add("And", [keep, x])
    return e.add("Where", [keep, x, _zero(e, e.dtype(0))])


# -- gathers ---------------------------------------------------------------------------
@exporter("take_along_axis")
def _take_along_axis(e):
    return e.add("GatherElements", [e.x(0), e.x(1)], axis=int(e.attrs["axis"]))


@exporter("take_along_axis_grad")
def _take_along_axis_grad(e):
    if e.opset < 16:
        e.fail("take_along_axis_grad needs opset 16 (ScatterElements reduction='add')")
    zeros = e.zeros_like_shape(e.shape_of(e.x(2)), e.dtype(0))
    return e.add("ScatterElements", [zeros, e.x(1), e.x(0)], axis=int(e.attrs["axis"]), reduction="add")


@exporter("embedding")
def _embedding(e):
    return e.add("Gather", [e.x(1), e.x(0)], axis=0)


@exporter("embedding_grad")
def _embedding_grad(e):
    if e.opset < 16:
        e.fail("embedding_grad needs opset 16 (ScatterND reduction='add')")
    ids = e.x(1)
    if e.dtype(1) != "int64":
        ids = e.add("Cast", [ids], to=_onnx_type("int64"))
    zeros = e.zeros_like_shape(e.shape_of(e.x(2)), e.dtype(0))
    return e.add("ScatterND", [zeros, e.unsqueeze(ids, [len(e.shape(1))]), e.x(0)], reduction="add")


@exporter("one_hot")
def _one_hot(e):
    # graphc: an index outside [0, depth) gives a row of zeros (ONNX OneHot wraps negatives)
    depth = int(e.attrs["depth"])
    idx = e.unsqueeze(e.x(0), [len(e.shape(0))])
    hit = e.add("Equal", [idx, e.const(np.arange(depth, dtype=e.dtype(0)))])
    if e.attrs["dtype"] == "bool":
        return hit
    return e.add("Cast", [hit], to=_onnx_type(e.attrs["dtype"]))


# -- nn ----------------------------------------------------------------------------------
@exporter("conv2d")
def _conv2d(e):
    if (y := _empty(e)) is not None:
        return y
    a = e.attrs
    return e.add("Conv", [e.x(0), e.x(1)], strides=list(a["stride"]), pads=list(a["pads"]),
                 dilations=list(a["dilation"]), group=int(a["groups"]))


def _conv_transpose(e, x, w, in_hw, k_hw, out_hw, a):
    s, d, p = a["stride"], a["dilation"], a["pads"]
    natural = [s[i] * (in_hw[i] - 1) + d[i] * (k_hw[i] - 1) + 1 - p[i] - p[i + 2] for i in range(2)]
    extra = [out_hw[i] - natural[i] for i in range(2)]   # rows/cols added at the end
    if any(o < 0 for o in extra):
        e.fail(f"output size {tuple(out_hw)} is smaller than the transposed convolution's {tuple(natural)}")
    # Output rows beyond the end crop come back first (a smaller end pad: exact, they hold
    # data); rows beyond the full result are zeros (a Pad).  ONNX Runtime refuses an
    # output_padding of stride or more, which graphc allows (up to the dilation).
    end = [p[2 + i] - extra[i] for i in range(2)]
    y = e.add("ConvTranspose", [x, w], strides=list(s), pads=[p[0], p[1], max(end[0], 0), max(end[1], 0)],
              dilations=list(d), group=int(a["groups"]))
    if min(end) < 0:
        y = e.add("Pad", [y, e.ints([0, 0, 0, 0, 0, 0, max(-end[0], 0), max(-end[1], 0)])], mode="constant")
    return y


@exporter("conv2d_grad_input")
def _conv2d_grad_input(e):
    if (y := _empty(e)) is not None:
        return y
    dy = e.static(e.shape(0), "conv2d_grad_input")
    w = e.static(e.shape(1), "conv2d_grad_input")
    return _conv_transpose(e, e.x(0), e.x(1), dy[2:], w[2:], e.attrs["input_size"], e.attrs)


@exporter("conv_transpose2d")
def _conv_transpose2d(e):
    if (y := _empty(e)) is not None:
        return y
    x = e.static(e.shape(0), "conv_transpose2d")
    w = e.static(e.shape(1), "conv_transpose2d")
    out = e.static(e.out_shape(), "conv_transpose2d")
    return _conv_transpose(e, e.x(0), e.x(1), x[2:], w[2:], out[2:], e.attrs)


def _empty(e):
    """A node whose (static) output has no elements: ConstantOfShape (ONNX Runtime's pools and
    convolutions refuse empty inputs that graphc accepts)."""
    shape = e.out_shape()
    if all(isinstance(d, (int, np.integer)) for d in shape) and 0 in shape:
        return e.zeros(shape, e.out_dtype())
    return None


@exporter("max_pool2d")
def _max_pool2d(e):
    if (y := _empty(e)) is not None:
        return y
    a = e.attrs
    (ph, pw) = a["padding"]
    y = e.add("MaxPool", [e.x(0)], kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
              pads=[ph, pw, ph, pw])
    # graphc: a NaN in the window is the max (PyTorch), a window of -inf gives -inf; ONNX
    # Runtime skips NaNs and starts from the lowest finite value.  One more pool over a code
    # (2: NaN, 1: above -inf, 0: -inf; padding is below all) says which case a window is.
    dt, x = e.dtype(0), e.x(0)
    code = e.add("Where", [e.add("IsNaN", [x]), e.scalar(2, dt),
                           e.add("Cast", [e.add("Greater", [x, e.scalar(-np.inf, dt)])], to=_onnx_type(dt))])
    kind = e.add("MaxPool", [code], kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
                 pads=[ph, pw, ph, pw])
    y = e.add("Where", [e.add("Greater", [kind, e.scalar(1, dt)]), e.scalar(np.nan, dt), y])
    return e.add("Where", [e.add("Equal", [kind, _zero(e, dt)]), e.scalar(-np.inf, dt), y])


@exporter("avg_pool2d")
def _avg_pool2d(e):
    if (y := _empty(e)) is not None:
        return y
    a = e.attrs
    (ph, pw) = a["padding"]
    return e.add("AveragePool", [e.x(0)], kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
                 pads=[ph, pw, ph, pw], count_include_pad=int(a["count_include_pad"]))


@exporter("batch_norm")
def _batch_norm(e):
    x, mean, var, w, b = (e.x(i) for i in range(5))
    dt, rank = e.dtype(0), len(e.shape(0))
    if dt == "float32":
        return e.add("BatchNormalization", [x, w, b, mean, var], epsilon=float(e.attrs["eps"]))
    # float64: graphc's own order of operations (ONNX Runtime's float64 BatchNormalization is
    # off by ~1e-10 relative)
    chan = list(range(1, rank - 1))

    def per_channel(v):
        return e.unsqueeze(v, chan) if chan else v
    scale = e.add("Div", [w, e.add("Sqrt", [e.add("Add", [var, e.scalar(e.attrs["eps"], dt)])])])
    shift = e.add("Sub", [b, e.add("Mul", [mean, scale])])
    return e.add("Add", [e.add("Mul", [x, per_channel(scale)]), per_channel(shift)])


def _channel_axes(rank):
    return [0] + list(range(2, rank))


@exporter("batch_norm_train")
def _batch_norm_train(e):
    x, w, b = e.x(0), e.x(1), e.x(2)
    rank, dt = len(e.shape(0)), e.dtype(0)
    axes = _channel_axes(rank)
    mean = _mean(e, x, e.shape(0), axes, True, dt)
    xc = e.add("Sub", [x, mean])
    var = _mean(e, e.add("Mul", [xc, xc]), e.shape(0), axes, True, dt)
    rstd = e.add("Div", [e.scalar(1, dt), e.add("Sqrt", [e.add("Add", [var, e.scalar(e.attrs["eps"], dt)])])])
    chan = list(range(1, rank - 1))
    w_b = e.unsqueeze(w, chan) if chan else w
    b_b = e.unsqueeze(b, chan) if chan else b
    y = e.add("Add", [e.add("Mul", [e.add("Mul", [xc, rstd]), w_b]), b_b])
    return y, e.squeeze(mean, axes), e.squeeze(var, axes)


@exporter("layer_norm")
def _layer_norm(e):
    x, w, b = e.x(0), e.x(1), e.x(2)
    shape, dt = e.shape(0), e.dtype(0)
    rank = len(shape)
    axis = e.attrs["axis"] % rank if rank else 0
    eps = float(e.attrs["eps"])
    axes = list(range(axis, rank))
    mean = _mean(e, x, shape, axes, True, dt)
    xc = e.add("Sub", [x, mean])
    var = _mean(e, e.add("Mul", [xc, xc]), shape, axes, True, dt)
    rstd = e.add("Div", [e.scalar(1, dt), e.add("Sqrt", [e.add("Add", [var, e.scalar(eps, dt)])])])
    y = e.add("Add", [e.add("Mul", [e.add("Mul", [xc, rstd]), w]), b])
    return y, e.squeeze(mean, axes), e.squeeze(rstd, axes)


@exporter("softmax_cross_entropy")
def _softmax_cross_entropy(e):
    z, labels = e.x(0), e.x(1)
    rank = len(e.shape(0))
    lsm = _nan_rows(e, z, rank - 1, e.add("LogSoftmax", [z], axis=-1))
    lab = labels if e.dtype(1) == "int64" else e.add("Cast", [labels], to=_onnx_type("int64"))
    picked = e.add("GatherElements", [lsm, e.unsqueeze(lab, [rank - 1])], axis=rank - 1)
    loss = e.add("Neg", [e.squeeze(picked, [rank - 1])])
    red = e.attrs["reduction"]
    if red == "none":
        return loss
    if red == "sum":
        return e.reduce("ReduceSum", loss, None if rank > 1 else (), keepdims=False)
    if red == "mean":
        if rank == 1:
            return e.add("Identity", [loss])
        return _mean(e, loss, e.shape(0)[:-1], None, False, e.dtype(0))
    e.fail(f"reduction={red!r} has no ONNX form")


@exporter("softmax_cross_entropy_grad")
def _softmax_cross_entropy_grad(e):
    z, labels, g = e.x(0), e.x(1), e.x(2)
    shape, dt = e.shape(0), e.dtype(0)
    rank = len(shape)
    p = e.add("Softmax", [z], axis=-1)
    depth = e.add("Slice", [e.shape_of(z), e.ints([-1]), e.ints([INT64_MAX])])
    rng = e.add("Range", [_zero(e, "int64"), e.squeeze(depth, [0]), e.scalar(1, "int64")])
    lab = labels if e.dtype(1) == "int64" else e.add("Cast", [labels], to=_onnx_type("int64"))
    onehot = e.add("Cast", [e.add("Equal", [e.unsqueeze(lab, [rank - 1]), rng])], to=_onnx_type(dt))
    d = e.add("Sub", [p, onehot])
    red = e.attrs["reduction"]
    if red == "none":
        return e.add("Mul", [d, e.unsqueeze(g, [rank - 1])])
    d = e.add("Mul", [d, g])
    if red == "mean":
        count = e.reduce("ReduceProd", e.add("Cast", [e.shape_of(lab)], to=_onnx_type(dt)), None, keepdims=False)
        d = e.add("Div", [d, count])
    return d


def _attention_nonfinite(e, pn, v, keep, bad_v, dt):
    """Σ over kept keys of pn·v with v's ±inf/NaN counted, not multiplied: a kept key of
    weight > 0 adds ±inf (both signs: NaN), a NaN or a weight-0 key with ±inf adds NaN."""
    zero, inf = _zero(e, dt), e.scalar(np.inf, dt)

    def f(b):
        return e.add("Cast", [b], to=_onnx_type(dt))
    finite = e.add("MatMul", [pn, e.add("Where", [bad_v, zero, v])])
    pos, neg = f(e.add("Equal", [v, inf])), f(e.add("Equal", [v, e.scalar(-np.inf, dt)]))
    nan = f(e.add("IsNaN", [v]))
    positive = f(e.add("And", [keep, e.add("Greater", [pn, zero])]))
    weightless = f(e.add("And", [keep, e.add("Equal", [pn, zero])]))
    n_pos = e.add("MatMul", [positive, pos])
    n_neg = e.add("MatMul", [positive, neg])
    n_nan = e.add("Add", [e.add("MatMul", [positive, nan]),
                          e.add("MatMul", [weightless, e.add("Add", [e.add("Add", [pos, neg]), nan])])])
    out = e.add("Where", [e.add("Greater", [n_pos, zero]), e.add("Add", [finite, inf]), finite])
    out = e.add("Where", [e.add("Greater", [n_neg, zero]), e.add("Sub", [out, inf]), out])
    return e.add("Where", [e.add("Greater", [n_nan, zero]), e.scalar(np.nan, dt), out])


@exporter("scaled_dot_product_attention")
def _attention(e):
    q, k, v, mask = (e.x(i) for i in range(4))
    dt = e.dtype(0)
    rank = len(e.shape(0))
    s = e.add("Mul", [e.add("MatMul", [q, _swap_last(e, k, len(e.shape(1)))]), e.scalar(e.attrs["scale"], dt)])
    keep = mask
    if e.attrs["causal"]:  # j <= i
        keep = e.add("And", [keep, _band(e, q, rank - 2, k, len(e.shape(1)) - 2, 0, upper=False)])
    neg = e.scalar(-np.inf, dt)
    s = e.add("Where", [keep, s, neg])
    m = e.reduce("ReduceMax", s, [rank - 1], keepdims=True)
    m = e.add("Where", [e.add("Equal", [m, neg]), _zero(e, dt), m])   # a row with no kept key
    p = e.add("Where", [keep, e.add("Exp", [e.add("Sub", [s, m])]), _zero(e, dt)])
    total = e.reduce("ReduceSum", p, [rank - 1], keepdims=True)
    empty = e.add("Equal", [total, _zero(e, dt)])
    pn = e.add("Div", [p, e.add("Where", [empty, e.scalar(1, dt), total])])
    # graphc sums p·v over the kept keys only; a matrix product also multiplies the masked
    # keys' zeros with v, so ±inf/NaN in v would leak from a masked key.  When v holds such
    # values (checked at run time), an exact branch counts them per (query, column) instead.
    bad_v = e.add("Or", [e.add("IsNaN", [v]), e.add("IsInf", [v])])
    any_bad = e.add("Greater", [e.reduce("ReduceMax", e.add("Cast", [bad_v], to=_onnx_type(dt)), None, False),
                                _zero(e, dt)])
    fast = e.branch(lambda: e.add("MatMul", [pn, v]))
    exact = e.branch(lambda: _attention_nonfinite(e, pn, v, keep, bad_v, dt))
    out = e.add("If", [any_bad], then_branch=e.subgraph(exact, dt), else_branch=e.subgraph(fast, dt))
    out = e.add("Where", [empty, _zero(e, dt), out])
    lse = e.squeeze(e.add("Add", [e.add("Log", [total]), m]), [rank - 1])
    return out, lse


@exporter("tile")
def _tile(e):
    if not e.shape(0):
        return e.add("Identity", [e.x(0)])
    return e.add("Tile", [e.x(0), e.ints(e.attrs["repeats"])])


@exporter("einsum")
def _einsum(e):
    if "..." in e.attrs["equation"]:
        # numpy (graphc) broadcasts ellipses of different ranks; ONNX Einsum's inference
        # refuses that: the registry composite (transpose/reshape/matmul/sum) instead
        return COMPOSITE
    return e.add("Einsum", [e.x(i) for i in range(e.num_inputs)], equation=e.attrs["equation"])


@exporter("resize")
def _resize(e):
    a = e.attrs
    mode, ctm = a["mode"], a["coordinate_transformation_mode"]
    if mode not in ("nearest", "linear"):
        e.fail(f"resize mode {mode!r} is not exported")
    if ctm == "half_pixel_symmetric" and e.opset < 19:
        e.fail("coordinate_transformation_mode 'half_pixel_symmetric' needs opset 19")
    if (y := _empty(e)) is not None:
        return y
    shape = e.static(e.shape(0), "resize")
    sizes = list(e.static(e.out_shape(), "resize"))  # (the attr may say -1: keep the input's)
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
    if mode == "nearest":
        attrs["nearest_mode"] = a["nearest_mode"]  # (exclude_outside has no effect on a clamped tap)
    elif a["exclude_outside"]:
        attrs["exclude_outside"] = 1
    if a["scales"] is not None:
        scales = [float(v) for v in a["scales"]]
        inexact = [v for v in scales if float(np.float32(v)) != v]
        if inexact:
            e.fail(f"scales {inexact} are not float32 values: ONNX Resize's scales are float32, and the "
                   "coordinate transform reads them (give float32-exact scales, or sizes only)")
        # ONNX takes the output size from the scales: floor(in · scale) must be graphc's sizes
        implied = [int(np.floor(d * np.float32(sc))) for d, sc in zip(shape, np.asarray(scales, np.float32))]
        if implied != sizes:
            e.fail(f"scales {scales} give ONNX output sizes {implied}, not the node's sizes {sizes}")
        return e.add("Resize", [e.x(0), "", e.const(np.asarray(scales, np.float32))], **attrs)
    return e.add("Resize", [e.x(0), "", "", e.ints(sizes)], **attrs)


refuse("a gradient op without a clean ONNX form (the exported graph is the user's forward graph, "
       "not a compiled training step)", "resize_grad")

# -- OPSU's math ops (mapped when the registry has them) ---------------------------------
_OPSU_UNARY = {"erf": "Erf", "floor": "Floor", "ceil": "Ceil", "round": "Round", "reciprocal": "Reciprocal",
               "sin": "Sin", "cos": "Cos", "tan": "Tan", "asin": "Asin", "acos": "Acos", "atan": "Atan",
               "sinh": "Sinh", "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh",
               "sign": "Sign", "isnan": "IsNaN"}
_OPSU_BINARY = {"power": "Pow", "greater_equal": "GreaterOrEqual", "less_equal": "LessOrEqual",
                "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor"}


def _isinf(e):
    return e.add("IsInf", [e.x(0)], detect_positive=int(e.attrs["detect_positive"]),
                 detect_negative=int(e.attrs["detect_negative"]))


def _mod(e):
    a, b, dt = e.x(0), e.x(1), e.dtype(0)
    zero = _zero(e, dt)
    if dt in dtypes.INTS:
        # graphc: x mod 0 = 0 (ONNX Runtime would trap): divide by 1 there, then select 0
        b0 = e.add("Equal", [b, zero])
        r = e.add("Mod", [a, e.add("Where", [b0, e.scalar(1, dt), b])], fmod=int(e.attrs["fmod"]))
        return e.add("Where", [b0, zero, r])
    r = e.add("Mod", [a, b], fmod=1)
    if e.attrs["fmod"]:
        return r
    # the sign of the divisor (numpy.mod): r + b where r is nonzero and of the other sign
    other = e.add("Xor", [e.add("Less", [r, zero]), e.add("Less", [b, zero])])
    fix = e.add("And", [other, e.add("Not", [e.add("Equal", [r, zero])])])
    return e.add("Where", [fix, e.add("Add", [r, b]), r])


def _int_div(e):
    a, b, dt = e.x(0), e.x(1), e.dtype(0)
    zero, one = _zero(e, dt), e.scalar(1, dt)
    # graphc: x / 0 = 0 and INT_MIN / -1 = INT_MIN (ONNX Runtime would trap on both)
    b0 = e.add("Equal", [b, zero])
    overflow = e.add("And", [e.add("Equal", [a, e.scalar(np.iinfo(dt).min, dt)]),
                             e.add("Equal", [b, e.scalar(-1, dt)])])
    safe = e.add("Where", [e.add("Or", [b0, overflow]), one, b])
    return e.add("Where", [b0, zero, e.add("Div", [a, safe])])


def _map_opsu():
    for op, onnx_op in _OPSU_UNARY.items():
        if registry.has_op(op):
            EXPORTERS[op] = _unary(onnx_op)
    for op, onnx_op in _OPSU_BINARY.items():
        if registry.has_op(op):
            EXPORTERS[op] = _binary(onnx_op)
    for op, fn in (("isinf", _isinf), ("mod", _mod), ("int_div", _int_div)):
        if registry.has_op(op):
            EXPORTERS[op] = fn


_map_opsu()


# -- composites: exported through their registry definition ----------------------------
for _op in ("instance_norm", "silu", "dropout", "upsample_nearest2d", "lstm_cell", "gru_cell", "lstm_cell_grad",
            "gru_cell_grad",
            "layer_norm_grad", "batch_norm_train_grad", "scaled_dot_product_attention_grad",
            "fused_elementwise", "fused_matmul", "fused_reduce"):
    EXPORTERS[_op] = COMPOSITE


@exporter("constant")
def _constant(e):
    return e.const(np.asarray(e.attrs["value"]))


# -- documentation -----------------------------------------------------------------------
DOC_PATH = "docs/onnx_export.md"


def refusal_table():
    """The Markdown table of REFUSED, grouped by reason (docs/onnx_export.md, between the
    ``refusals`` markers; a test checks it is current)."""
    by_reason = {}
    for op in sorted(REFUSED):
        by_reason.setdefault(REFUSED[op], []).append(op)
    lines = ["| graphc op | why it has no ONNX form |", "|---|---|"]
    for reason, ops in sorted(by_reason.items(), key=lambda kv: kv[1][0]):
        lines.append(f"| {', '.join(f'`{o}`' for o in ops)} | {reason} |")
    return "\n".join(lines) + "\n"


def _write_doc(path=DOC_PATH):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new, n = re.subn(r"(<!-- refusals:begin -->\n).*?(<!-- refusals:end -->)",
                     lambda m: m.group(1) + refusal_table() + m.group(2), text, flags=re.S)
    if n != 1:
        raise SystemExit(f"{path} lacks the refusal markers")
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python -m graphc.onnx._export_ops --write  (regenerates docs/onnx_export.md's table)")
    _write_doc()
