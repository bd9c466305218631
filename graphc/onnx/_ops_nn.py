"""ONNX import handlers for the neural-network ops: Gemm, MatMul, Einsum, Conv, ConvTranspose,
the pools, the normalisations, Resize, the recurrent layers (LSTM, GRU, RNN), DepthToSpace /
SpaceToDepth and the two classification losses (docs/onnx.md).

Each handler maps one ONNX node onto graphc registry ops through the NodeContext of
graphc/onnx/_import.py and either gives ONNX's result (the reference semantics of
``onnx/reference/ops/op_*.py`` and the backend test cases) or raises OnnxUnsupportedError naming
the node, the op and the attribute value it does not take.  The rules, per op:

* Gemm: Y = alpha·A'·B' + beta·C (A' = Aᵀ with transA, likewise B'); C optional, broadcast to
  (M, N).  Float dtypes (graphc's matmul has no integer kernel: integer Gemm/MatMul are refused).
* MatMul: numpy.matmul, 1-D operands included (a size-1 axis added, then removed).
* Conv / ConvTranspose: 2-D natively, 1-D as 2-D over a size-1 H; pads, strides, dilations,
  group, auto_pad (SAME_UPPER / SAME_LOWER / VALID from the static input size), output_padding
  and output_shape (ConvTranspose); 3-D and more are refused.
* MaxPool / AveragePool (1-D, 2-D): ONNX's output size (floor or ceil_mode, the last window
  starting inside the padded input) and divisor (count_include_pad counts the explicit pads but
  never the ceil_mode overhang).  graphc's own pool kernels run when the pads are symmetric and
  at most half the kernel; otherwise the input is padded explicitly (-inf for max, 0 for
  average) and an average is rescaled by k/divisor per output position (a constant computed at
  import).  Dilations: the pool of each phase (position mod the dilation), interleaved back.
  MaxPool's Indices: argmax over the window's taps mapped to flat input positions (static
  shapes).  A NaN in a max window: graphc's max is NaN there (ONNX's reference skips NaNs).
* BatchNormalization: the inference form is graphc's batch_norm (momentum 1 - ONNX's, so a
  training compile updates the running statistics as ONNX's training mode would);
  training_mode=1 is batch_norm_train plus the running-statistics outputs.
* LayerNormalization (+ Mean / InvStdDev outputs), InstanceNormalization, GroupNormalization
  (opset 18's per-group and opset 21's per-channel scale), LpNormalization (p = 1, 2; a zero
  norm gives 0).
* Resize: graphc's resize (nearest / linear; the coordinate modes and nearest modes it has);
  cubic, antialias and tf_crop_and_resize are refused; keep_aspect_ratio_policy as ONNX's
  reference (one scale for the listed axes, sizes rounded half up).
* LSTM / GRU / RNN: forward, reverse, bidirectional, layout 0 and 1, initial states, a
  static sequence length (unrolled); sequence_lens all full, or (forward only) shorter / known
  at run time: past a sequence's end the state is kept and Y is 0 (onnxruntime); the default
  activations only, no clip, no input_forget.  LSTM runs graphc's lstm_cell (gates permuted
  from ONNX's i, o, f, c to graphc's i, f, g, o once, on the weights) — with peepholes the
  cell is composed from elementwise ops; GRU with linear_before_reset=1 runs gru_cell (z, r, h
  → r, z, n), with 0 it is composed.
* DepthToSpace (DCR, CRD), SpaceToDepth: reshape, transpose, reshape.
* SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss: log_softmax and take_along_axis over
  axis 1, class weights, ignore_index, reduction none / sum / mean (ONNX's weighted mean).
"""

import numpy as np

from graphc.errors import GraphcError
from graphc.onnx._import import handler

_FLOATS = ("float32", "float64")


# -- small helpers ----------------------------------------------------------------------------------

def _known(d):
    return isinstance(d, (int, np.integer)) and not isinstance(d, bool)


def _static(dims):
    return dims is not None and all(_known(d) for d in dims)


def _scalar(v, x):
    """x as a 0-d constant of Value v's dtype."""
    return np.asarray(x, dtype=np.dtype(v.dtype))


def _floats_only(ctx, *values):
    for i, v in enumerate(values):
        if v is not None and v.dtype not in _FLOATS:
            ctx.unsupported(f"input {i} of dtype {v.dtype}: graphc's {ctx.op_type} takes float32/float64 only")


def _rank(ctx, v, what):
    if v.shape is None:
        ctx.unsupported(f"needs the rank of {what} (unknown: give the input's shape)")
    return len(v.shape)


def _op(ctx, name, inputs, attrs=None):
    """ctx.op, with a graphc shape/attr refusal (GraphError and the like) reported as an
    OnnxUnsupportedError naming the ONNX node."""
    try:
        return ctx.op(name, inputs, attrs or {})
    except GraphcError as e:
        if type(e).__name__.startswith("Onnx"):
            raise
        ctx.unsupported(f"graphc's {name} refuses it: {e}")


def _reshape(ctx, v, dims):
    """Reshape to dims (ints; at most one unknown, spelt -1)."""
    unknown = [i for i, d in enumerate(dims) if not _known(d)]
    if len(unknown) > 1:
        ctx.unsupported(f"a reshape to {tuple(dims)} needs all but one dim known: pass shapes= to gc.onnx.load")
    return _op(ctx, "reshape", [v], {"shape": tuple(int(d) if _known(d) else -1 for d in dims)})


def _expand(ctx, v, axes):
    return _op(ctx, "expand_dims", [v], {"axes": tuple(axes)})


def _squeeze(ctx, v, axes):
    return _op(ctx, "squeeze", [v], {"axes": tuple(axes)})


def _take(ctx, v, i, axis=0):
    """v[i] along axis (the axis removed)."""
    s = _op(ctx, "slice", [v], {"starts": (i,), "ends": (i + 1,), "axes": (axis,)})
    return _squeeze(ctx, s, (axis,))


def _cols(ctx, v, start, stop, axis=-1):
    return _op(ctx, "slice", [v], {"starts": (start,), "ends": (stop,), "axes": (axis,)})


def _split(ctx, v, n, axis):
    size = v.shape[axis]
    if not _known(size) or size % n:
        ctx.unsupported(f"needs axis {axis} of a static size divisible by {n}, got shape {v.shape}")
    out = _op(ctx, "split", [v], {"axis": axis, "sizes": (size // n,) * n})
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _reorder(ctx, v, n, order, axis=0):
    """v's n equal blocks along axis, in the given order."""
    parts = _split(ctx, v, n, axis)
    return _op(ctx, "concat", [parts[i] for i in order], {"axis": axis})


def _wanted(ctx, k):
    """Whether the node names its output k (ONNX leaves optional outputs out with '')."""
    outs = ctx.node.output
    return k < len(outs) and outs[k] != ""


def _outputs(ctx, values):
    """One value per output slot the node has (None where it leaves the output out)."""
    n = max(len(ctx.node.output), 1)
    return [v if _wanted(ctx, k) or k == 0 else None for k, v in enumerate(values[:n])]


def _present(ctx, i):
    return i < len(ctx.inputs) and ctx.inputs[i] is not None


def _ints(ctx, name, n, default):
    v = ctx.attr(name, None)
    if v is None:
        return tuple(default for _ in range(n))
    v = tuple(int(e) for e in v)
    if len(v) != n:
        ctx.unsupported(f"attr {name}={list(v)} must hold {n} values")
    return v


def _str_attr(ctx, name, default):
    v = ctx.attr(name, default)
    return v.decode() if isinstance(v, bytes) else v


# -- Gemm, MatMul, Einsum -------------------------------------------------------------------------

@handler("Gemm")
def _gemm(ctx):
    """`matmul` (transA/transB as its flags) · alpha + beta · C (C optional, broadcast); float only"""
    a, b = ctx.inputs[0], ctx.inputs[1]
    c = ctx.inputs[2] if _present(ctx, 2) else None
    _floats_only(ctx, a, b, c)
    for v, what in ((a, "A"), (b, "B")):
        if _rank(ctx, v, what) != 2:
            ctx.unsupported(f"expects {what} of rank 2, got shape {v.shape}")
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    y = _op(ctx, "matmul", [a, b], {"transpose_a": bool(ctx.attr("transA", 0)),
                                    "transpose_b": bool(ctx.attr("transB", 0))})
    if alpha != 1.0:
        y = _op(ctx, "mul", [y, _scalar(a, alpha)])
    if c is not None and beta != 0.0:  # beta = 0: C is not read (ONNX's reference)
        if beta != 1.0:
            c = _op(ctx, "mul", [c, _scalar(a, beta)])
        y = _op(ctx, "add", [y, c])
    return [y]


@handler("MatMul")
def _matmul(ctx):
    """`matmul` (numpy.matmul: batch dims broadcast, 1-D operands via a size-1 axis); float only"""
    a, b = ctx.inputs
    _floats_only(ctx, a, b)
    ra, rb = _rank(ctx, a, "A"), _rank(ctx, b, "B")
    if ra == 0 or rb == 0:
        ctx.unsupported("MatMul of a scalar operand is not defined")
    if ra == 1:
        a = _expand(ctx, a, (0,))
    if rb == 1:
        b = _expand(ctx, b, (1,))
    y = _op(ctx, "matmul", [a, b])
    drop = ([len(y.shape) - 2] if ra == 1 else []) + ([len(y.shape) - 1] if rb == 1 else [])
    return [_squeeze(ctx, y, drop) if drop else y]


@handler("Einsum")
def _einsum(ctx):
    """`einsum` (1..n operands, ellipsis; a repeated index inside one operand refused); float only"""
    _floats_only(ctx, *ctx.inputs)
    eq = _str_attr(ctx, "equation", None)
    if eq is None:
        ctx.unsupported("attr equation is required")
    eq = eq.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    if len(ctx.inputs) == 1 and arrow and lhs == rhs:
        # y = x ("->" on a scalar, "ij->ij"): an identity, named (einsum's composite would hand x itself back)
        return [_op(ctx, "identity", [ctx.inputs[0]])]
    return [_op(ctx, "einsum", list(ctx.inputs), {"equation": eq})]


# -- Conv, ConvTranspose --------------------------------------------------------------------------

def _spatial(ctx, x, what="X"):
    r = _rank(ctx, x, what)
    if r not in (3, 4):
        ctx.unsupported(f"{what} of rank {r} ({r - 2}-D): graphc converts 1-D and 2-D only")
    return r - 2


def _same_pads(ctx, sizes, kernel, strides, dilations, mode):
    """auto_pad SAME_UPPER / SAME_LOWER: output ceil(in / stride), the padding split with the
    odd one at the end (UPPER) or the beginning (LOWER)."""
    if not _static(sizes):
        ctx.unsupported(f"auto_pad={mode} needs static spatial sizes, got {tuple(sizes)}")
    begin, end = [], []
    for d, k, s, dil in zip(sizes, kernel, strides, dilations):
        out = -(-d // s)
        need = max(0, (out - 1) * s + (k - 1) * dil + 1 - d)
        head = need // 2 if mode == "SAME_UPPER" else need - need // 2
        begin.append(head)
        end.append(need - head)
    return tuple(begin) + tuple(end)


def _conv_geometry(ctx, x, kernel, transpose=False):
    """(strides, dilations, pads (begins..., ends...)) of a Conv's attrs, auto_pad resolved."""
    nd = len(kernel)
    strides = _ints(ctx, "strides", nd, 1)
    dilations = _ints(ctx, "dilations", nd, 1)
    if any(s <= 0 for s in strides) or any(d <= 0 for d in dilations):
        ctx.unsupported(f"strides={list(strides)} and dilations={list(dilations)} must be positive")
    auto = _str_attr(ctx, "auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = _ints(ctx, "pads", 2 * nd, 0)
    elif auto == "VALID":
        pads = (0,) * (2 * nd)
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = None if transpose else _same_pads(ctx, x.shape[2:], kernel, strides, dilations, auto)
    else:
        ctx.unsupported(f"attr auto_pad={auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if pads is not None and any(p < 0 for p in pads):
        ctx.unsupported(f"negative pads={list(pads)} are not supported")
    return strides, dilations, pads, auto


def _kernel(ctx, w, nd):
    ks = tuple(w.shape[2:]) if w.shape is not None else None
    attr = ctx.attr("kernel_shape", None)
    if attr is not None:
        attr = tuple(int(k) for k in attr)
        if ks is not None and _static(ks) and ks != attr:
            ctx.unsupported(f"attr kernel_shape={list(attr)} differs from W's spatial shape {ks}")
        ks = attr
    if ks is None or len(ks) != nd or not _static(ks):
        ctx.unsupported(f"needs W's static kernel shape ({nd} spatial dims), got W of shape {w.shape}")
    return ks


def _to_2d(ctx, v):
    return _expand(ctx, v, (2,))


def _bias(ctx, y, b, nd):
    if b is None:
        return y
    return _op(ctx, "add", [y, _reshape(ctx, b, (b.shape[0] if b.shape else None,) + (1,) * nd)])


def _conv_inputs(ctx):
    """(X, W, B or None, spatial rank, kernel shape) of Conv / ConvTranspose, checked."""
    x, w = ctx.inputs[0], ctx.inputs[1]
    b = ctx.inputs[2] if _present(ctx, 2) else None
    _floats_only(ctx, x, w, b)
    nd = _spatial(ctx, x)
    if _rank(ctx, w, "W") != nd + 2:
        ctx.unsupported(f"W of shape {w.shape} does not match X of shape {x.shape}")
    return x, w, b, nd, _kernel(ctx, w, nd)


@handler("Conv")
def _conv(ctx):
    """`conv2d` (+ bias add); 1-D over a size-1 H; pads, strides, dilations, group, auto_pad; 3-D refused"""
    x, w, b, nd, kernel = _conv_inputs(ctx)
    strides, dilations, pads, _ = _conv_geometry(ctx, x, kernel)
    if nd == 1:
        x, w = _to_2d(ctx, x), _to_2d(ctx, w)
        strides, dilations, pads = (1,) + strides, (1,) + dilations, (0, pads[0], 0, pads[1])
    y = _op(ctx, "conv2d", [x, w], {"stride": strides, "pads": pads, "dilation": dilations,
                                    "groups": int(ctx.attr("group", 1))})
    if nd == 1:
        y = _squeeze(ctx, y, (2,))
    return [_bias(ctx, y, b, nd)]


@handler("ConvTranspose")
def _conv_transpose(ctx):
    """`conv_transpose2d` (+ bias); 1-D via a size-1 H; output_padding, output_shape, auto_pad; 3-D refused"""
    x, w, b, nd, kernel = _conv_inputs(ctx)
    strides, dilations, pads, auto = _conv_geometry(ctx, x, kernel, transpose=True)
    out_pad = _ints(ctx, "output_padding", nd, 0)
    out_shape = ctx.attr("output_shape", None)
    if out_shape is not None or pads is None:
        # the total padding that makes the requested output size (SAME: in · stride)
        sizes = x.shape[2:]
        if not _static(sizes):
            ctx.unsupported("output_shape / auto_pad SAME need static spatial sizes of X")
        if out_shape is not None:
            out_shape = tuple(int(d) for d in out_shape)[-nd:]
            if len(out_shape) != nd:
                ctx.unsupported(f"attr output_shape={list(out_shape)} must hold {nd} spatial sizes")
        else:
            out_shape = tuple(d * s for d, s in zip(sizes, strides))
        total = [s * (d - 1) + op + (k - 1) * dil + 1 - o
                 for d, s, op, k, dil, o in zip(sizes, strides, out_pad, kernel, dilations, out_shape)]
        if auto == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:  # SAME_LOWER and NOTSET with output_shape (ONNX's reference and onnxruntime)
            begin = [t - t // 2 for t in total]
        computed = tuple(begin) + tuple(t - h for t, h in zip(total, begin))
        given = ctx.attr("pads", None)
        if given is not None and auto == "NOTSET" and tuple(int(p) for p in given) != computed:
            ctx.unsupported(f"attr pads={list(given)} together with output_shape={list(out_shape)}: ambiguous")
        pads = computed
    # a negative pad (output_shape beyond the full output): rows no input reaches, zeros before the bias
    grow = tuple(max(0, -p) for p in pads)
    pads = tuple(max(0, p) for p in pads)
    for p, s, dil in zip(out_pad, strides, dilations):
        if p < 0 or not (p < s or p < dil):
            ctx.unsupported(f"output_padding={list(out_pad)} must be smaller than the stride or the dilation")
    if nd == 1:
        x, w = _to_2d(ctx, x), _to_2d(ctx, w)
        strides, dilations = (1,) + strides, (1,) + dilations
        pads, out_pad = (0, pads[0], 0, pads[1]), (0,) + out_pad
    y = _op(ctx, "conv_transpose2d", [x, w], {"stride": strides, "pads": pads, "dilation": dilations,
                                              "groups": int(ctx.attr("group", 1)), "output_padding": out_pad})
    if any(grow):
        if nd == 1:
            grow = (0, grow[0], 0, grow[1])
        y = _op(ctx, "pad", [y], {"pads": (0, 0, 0, 0, grow[0], grow[2], grow[1], grow[3])})
    if nd == 1:
        y = _squeeze(ctx, y, (2,))
    return [_bias(ctx, y, b, nd)]


# -- pools ---------------------------------------------------------------------------------------

def _pool_geometry(ctx, x, kernel, strides, dilations):
    """ONNX's output sizes and (begin pads, end pads) of a pool: explicit pads or auto_pad, ceil_mode
    (the last window must start inside the input or its begin pad)."""
    nd = len(kernel)
    sizes = tuple(x.shape[2:])
    if not _static(sizes):
        ctx.unsupported(f"needs static spatial sizes, got X of shape {x.shape}")
    ceil = bool(ctx.attr("ceil_mode", 0))
    auto = _str_attr(ctx, "auto_pad", "NOTSET")
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        if ceil:
            ctx.unsupported(f"ceil_mode=1 with auto_pad={auto}")
        if auto == "VALID":
            pads = (0,) * (2 * nd)
            out = [(d - sp) // s + 1 for d, sp, s in zip(sizes, span, strides)]
        else:
            out = [-(-d // s) for d, s in zip(sizes, strides)]
            need = [max(0, (o - 1) * s + sp - d) for o, s, sp, d in zip(out, strides, span, sizes)]
            head = [n // 2 if auto == "SAME_UPPER" else n - n // 2 for n in need]
            pads = tuple(head) + tuple(n - h for n, h in zip(need, head))
    elif auto == "NOTSET":
        pads = _ints(ctx, "pads", 2 * nd, 0)
        out = []
        for i, (d, sp, s) in enumerate(zip(sizes, span, strides)):
            room = d + pads[i] + pads[nd + i] - sp
            if room < 0:
                ctx.unsupported(f"X of shape {x.shape} padded by {list(pads)} is smaller than the window")
            o = (-(-room // s) if ceil else room // s) + 1
            if ceil and (o - 1) * s >= d + pads[i]:
                o -= 1
            out.append(o)
    else:
        ctx.unsupported(f"attr auto_pad={auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if any(p < 0 for p in pads):
        ctx.unsupported(f"negative pads={list(pads)}")
    for i, k in enumerate(span):
        if pads[i] >= k or pads[nd + i] >= k:
            ctx.unsupported(f"pads={list(pads)} of a whole window ({k}) or more: a window of padding only")
    return sizes, tuple(out), pads


def _divisors(sizes, out, kernel, strides, dilations, pads, include_pad):
    """ONNX AveragePool's divisor per output position: the window's taps inside the input
    (count_include_pad=0) or inside the explicitly padded input (=1), never the ceil overhang."""
    nd = len(sizes)
    per_axis = []
    for i in range(nd):
        lo, hi = (-pads[i], sizes[i] + pads[nd + i]) if include_pad else (0, sizes[i])
        taps = (np.arange(out[i]) * strides[i] - pads[i])[:, None] + np.arange(kernel[i]) * dilations[i]
        per_axis.append(((taps >= lo) & (taps < hi)).sum(axis=1))
    d = per_axis[0]
    for a in per_axis[1:]:
        d = np.multiply.outer(d, a)
    return d


def _pool(ctx, kind):
    x = ctx.inputs[0]
    _floats_only(ctx, x)
    nd = _spatial(ctx, x)
    kernel = ctx.attr("kernel_shape", None)
    if kernel is None or len(kernel) != nd:
        ctx.unsupported(f"attr kernel_shape={kernel} must hold {nd} sizes")
    kernel = tuple(int(k) for k in kernel)
    strides = _ints(ctx, "strides", nd, 1)
    dilations = _ints(ctx, "dilations", nd, 1)
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in strides) or any(d <= 0 for d in dilations):
        ctx.unsupported(f"kernel_shape={list(kernel)}, strides={list(strides)} and dilations={list(dilations)} "
                        f"must be positive")
    if kind == "max":
        if int(ctx.attr("storage_order", 0)) not in (0, 1):
            ctx.unsupported(f"attr storage_order={ctx.attr('storage_order')}")
        if _wanted(ctx, 1) and not _static(x.shape):
            ctx.unsupported(f"the Indices output needs X of a static shape, got {x.shape}")
        include = True
    else:
        include = bool(ctx.attr("count_include_pad", 0))
    sizes, out, pads = _pool_geometry(ctx, x, kernel, strides, dilations)
    if nd == 1:
        x = _to_2d(ctx, x)
        sizes, out, kernel, strides, dilations = (1,) + sizes, (1,) + out, (1,) + kernel, (1,) + strides, \
            (1,) + dilations
        pads = (0, pads[0], 0, pads[1])
    x2d = x
    # the end pads that make exactly `out` windows (the ceil overhang included, trailing rows cut)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    ends = tuple((o - 1) * s + sp - d - p for o, s, sp, d, p in zip(out, strides, span, sizes, pads[:2]))
    fill = -np.inf if kind == "max" else 0.0
    divisor = None if kind == "max" else _divisors(sizes, out, kernel, strides, dilations, pads, include)
    full = int(np.prod(kernel))
    symmetric = (pads[:2] == pads[2:] and all(p <= k // 2 for p, k in zip(pads[:2], kernel))
                 and all(e == p for e, p in zip(ends, pads[:2])))
    if dilations == (1, 1) and symmetric:
        # graphc's own padding: -inf for max, the divisor rule of count_include_pad for average
        attrs = {"kernel_size": kernel, "stride": strides, "padding": pads[:2]}
        if kind == "max":
            y = _op(ctx, "max_pool2d", [x], attrs)
        else:
            y = _op(ctx, "avg_pool2d", [x], dict(attrs, count_include_pad=include))
    else:
        x = _window_input(ctx, x, pads, ends, sizes, fill)
        if dilations == (1, 1):
            attrs = {"kernel_size": kernel, "stride": strides, "padding": (0, 0)}
            if kind == "max":
                y = _op(ctx, "max_pool2d", [x], attrs)
            else:
                y = _op(ctx, "avg_pool2d", [x], dict(attrs, count_include_pad=True))
                if not np.all(divisor == full):
                    y = _op(ctx, "mul", [y, (full / divisor).astype(np.dtype(x.dtype))])
        else:
            y = _dilated_pool(ctx, x, kind, kernel, strides, dilations, out, fill)
            if kind == "avg" and not np.all(divisor == full):
                y = _op(ctx, "mul", [y, (full / divisor).astype(np.dtype(x.dtype))])
    outs = [y]
    if kind == "max" and _wanted(ctx, 1):
        outs.append(_max_indices(ctx, _window_input(ctx, x2d, pads, ends, sizes, fill), sizes, kernel, strides,
                                 dilations, pads, out, column_major=bool(ctx.attr("storage_order", 0))))
    if nd == 1:
        outs = [_squeeze(ctx, v, (2,)) for v in outs]
    return _outputs(ctx, outs)


def _dilated_pool(ctx, xp, kind, kernel, strides, dilations, out, fill):
    """A dilated pool of the window input xp as an undilated one: the rows of one phase (position mod
    the dilation) are a dense sequence in which each dilated window is a plain window, so xp is split
    into its dh·dw phases (reshape, transpose), pooled with stride 1, interleaved back, and the
    windows of the stride kept (a strided slice).  Average: the window mean (sum / k_h·k_w)."""
    n, c = xp.shape[:2]
    if not _known(c):
        ctx.unsupported(f"a dilated pool needs a static channel count, got X of shape {xp.shape}")
    (hp, wp), (dh, dw), (kh, kw) = xp.shape[2:], dilations, kernel
    eh, ew = -hp % dh, -wp % dw
    if eh or ew:  # whole phases: the extra rows only make windows past the last one kept
        xp = _op(ctx, "pad", [xp], {"pads": (0, 0, 0, 0, 0, eh, 0, ew), "mode": "constant", "value": fill})
    h2, w2 = (hp + eh) // dh, (wp + ew) // dw
    t = _reshape(ctx, xp, (n, c, h2, dh, w2, dw))
    t = _op(ctx, "transpose", [t], {"perm": (0, 1, 3, 5, 2, 4)})
    t = _reshape(ctx, t, (n, c * dh * dw, h2, w2))
    attrs = {"kernel_size": (kh, kw), "stride": (1, 1), "padding": (0, 0)}
    if kind == "max":
        t = _op(ctx, "max_pool2d", [t], attrs)
    else:
        t = _op(ctx, "avg_pool2d", [t], dict(attrs, count_include_pad=True))
    h3, w3 = h2 - kh + 1, w2 - kw + 1
    t = _reshape(ctx, t, (n, c, dh, dw, h3, w3))
    t = _op(ctx, "transpose", [t], {"perm": (0, 1, 4, 2, 5, 3)})
    t = _reshape(ctx, t, (n, c, h3 * dh, w3 * dw))
    return _op(ctx, "slice", [t], {"starts": (0, 0), "ends": tuple((o - 1) * st + 1 for o, st in zip(out, strides)),
                                   "axes": (2, 3), "steps": tuple(strides)})


def _window_input(ctx, x, pads, ends, sizes, fill):
    """x padded (fill) by the begin pads and the end pads that make exactly the windows ONNX has;
    trailing rows no window reaches cut off."""
    widths = [(0, 0), (0, 0)] + [(p, max(e, 0)) for p, e in zip(pads[:2], ends)]
    if any(w != (0, 0) for w in widths):
        x = _op(ctx, "pad", [x], {"pads": tuple(v for pair in widths for v in pair), "mode": "constant",
                                  "value": fill})
    if any(e < 0 for e in ends):
        stops = tuple(p + d + e for p, d, e in zip(pads[:2], sizes, ends))
        x = _op(ctx, "slice", [x], {"starts": (0, 0), "ends": stops, "axes": (2, 3)})
    return x


def _taps(ctx, xp, kernel, dilations, out, strides):
    """The window taps of the padded input: for tap (a, b), the (N, C, OH, OW) values it reads."""
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            starts = (a * dilations[0], b * dilations[1])
            yield _op(ctx, "slice", [xp], {
                "starts": starts, "ends": tuple(s0 + (o - 1) * s + 1 for s0, o, s in zip(starts, out, strides)),
                "axes": (2, 3), "steps": strides})


def _max_indices(ctx, xp, sizes, kernel, strides, dilations, pads, out, column_major=False):
    """MaxPool's Indices: the flat index into X of each window's first maximum (onnxruntime's choice):
    argmax over the window's taps, mapped through a table of the taps' input positions.  Row major
    ((n·C + c)·H + h)·W + w, or with storage_order=1 (n·C + c)·H·W + w·H + h."""
    n, c = (int(d) for d in xp.shape[:2])
    if kernel[0] * kernel[1] > 64:
        ctx.unsupported(f"the Indices output of a {kernel[0]}x{kernel[1]} window (more than 64 taps)")
    taps = [_expand(ctx, t, (4,)) for t in _taps(ctx, xp, kernel, dilations, out, strides)]
    stacked = taps[0] if len(taps) == 1 else _op(ctx, "concat", taps, {"axis": 4})
    best = _op(ctx, "argmax", [stacked], {"axis": 4, "keepdims": True})
    h, w = sizes
    rows = (np.arange(out[0]) * strides[0] - pads[0])[:, None, None, None] + \
        (np.arange(kernel[0]) * dilations[0])[None, None, :, None]
    cols = (np.arange(out[1]) * strides[1] - pads[1])[None, :, None, None] + \
        (np.arange(kernel[1]) * dilations[1])[None, None, None, :]
    # (OH, OW, k_h·k_w): tap (a, b) of window (i, j) reads X[.., rows, cols]; padding taps (never the max
    # of a window holding an input element) are clamped inside
    rows, cols = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    table = (cols * h + rows) if column_major else (rows * w + cols)
    table = table.reshape(out[0], out[1], -1).astype(np.int64)
    table = np.broadcast_to(table, (n, c) + table.shape)
    spatial = _squeeze(ctx, _op(ctx, "take_along_axis", [np.ascontiguousarray(table), best], {"axis": 4}), (4,))
    offsets = (np.arange(n * c, dtype=np.int64) * (h * w)).reshape(n, c, 1, 1)
    return _op(ctx, "add", [spatial, offsets])


@handler("MaxPool")
def _max_pool(ctx):
    """`max_pool2d`; asymmetric pads/ceil_mode: -inf `pad` first; dilations: per-phase pools; Indices: `argmax`

    1-D via a size-1 H.  Indices (storage_order 0 or 1) need a static X shape: the first maximum's flat index."""
    return _pool(ctx, "max")


@handler("AveragePool")
def _avg_pool(ctx):
    """`avg_pool2d`; asymmetric pads/ceil_mode: zero `pad`, × k/ONNX's divisor; dilations: per-phase pools

    1-D via a size-1 H."""
    return _pool(ctx, "avg")


def _global(ctx, op):
    x = ctx.inputs[0]
    _floats_only(ctx, x)
    r = _rank(ctx, x, "X")
    if r < 3:
        ctx.unsupported(f"X of rank {r}: expects (N, C, spatial...)")
    return [_op(ctx, op, [x], {"axes": tuple(range(2, r)), "keepdims": True})]


@handler("GlobalAveragePool")
def _global_avg(ctx):
    """`mean` over the spatial axes (keepdims)"""
    return _global(ctx, "mean")


@handler("GlobalMaxPool")
def _global_max(ctx):
    """`max` over the spatial axes (keepdims)"""
    return _global(ctx, "max")


# -- normalisations ------------------------------------------------------------------------------

@handler("BatchNormalization")
def _batch_norm(ctx):
    """`batch_norm` (momentum 1 - ONNX's; non-trainable statistics); training_mode=1: `batch_norm_train`

    The running-statistics outputs of training mode: running · momentum + batch · (1 - momentum)."""
    x, scale, bias, mean, var = ctx.inputs[:5]
    _floats_only(ctx, x, scale, bias, mean, var)
    eps = float(ctx.attr("epsilon", 1e-5))
    momentum = float(ctx.attr("momentum", 0.9))
    if _rank(ctx, x, "X") < 2:
        ctx.unsupported(f"X of shape {x.shape}: expects (N, C, ...)")
    for v in (mean, var):
        # running statistics: state a training compile updates in place, never a trained parameter
        if v.init is not None:
            try:
                v.trainable = False
            except RuntimeError:  # already a variable through an earlier node: left as it is
                pass
    if not int(ctx.attr("training_mode", 0)):
        if _wanted(ctx, 1) or _wanted(ctx, 2):
            ctx.unsupported("running-statistics outputs with training_mode=0")
        return [_op(ctx, "batch_norm", [x, mean, var, scale, bias], {"momentum": 1.0 - momentum, "eps": eps})]
    # training mode: the batch's statistics normalise; the running ones come out updated
    y, bmean, bvar = _op(ctx, "batch_norm_train", [x, scale, bias], {"eps": eps})
    outs = [y]
    m, keep = _scalar(x, momentum), _scalar(x, 1.0 - momentum)
    for k, (run, batch) in enumerate(((mean, bmean), (var, bvar)), 1):
        outs.append(_op(ctx, "add", [_op(ctx, "mul", [run, m]), _op(ctx, "mul", [batch, keep])])
                    if _wanted(ctx, k) else None)
    return _outputs(ctx, outs)


def _check_stash(ctx, x):
    stash = int(ctx.attr("stash_type", 1))
    if stash != 1 and not (stash == 11 and x.dtype == "float64"):
        ctx.unsupported(f"attr stash_type={stash} (graphc computes the statistics in the input's dtype)")


@handler("LayerNormalization")
def _layer_norm(ctx):
    """`layer_norm` (axis, epsilon; Mean/InvStdDev outputs); stash_type=1 only (11 for float64)

    Scale/bias that broadcast to the normalised shape are applied after a plain layer_norm."""
    x, scale = ctx.inputs[0], ctx.inputs[1]
    bias = ctx.inputs[2] if _present(ctx, 2) else None
    _floats_only(ctx, x, scale, bias)
    _check_stash(ctx, x)
    r = _rank(ctx, x, "X")
    axis = int(ctx.attr("axis", -1))
    if not -r <= axis < r:
        ctx.unsupported(f"attr axis={axis} out of range for X of rank {r}")
    axis %= r
    tail = tuple(x.shape[axis:])
    eps = float(ctx.attr("epsilon", 1e-5))
    # graphc's layer_norm takes weight and bias of exactly the normalised shape; ONNX broadcasts them
    fits = lambda v: v is not None and tuple(v.shape) == tail  # noqa: E731
    if not _static(tail):
        ctx.unsupported(f"needs the normalised dims {tail} static")
    ones, zeros = np.ones(tail, np.dtype(x.dtype)), np.zeros(tail, np.dtype(x.dtype))
    y, mean, rstd = _op(ctx, "layer_norm", [x, scale if fits(scale) else ones, bias if fits(bias) else zeros],
                        {"axis": axis, "eps": eps})
    if not fits(scale):
        y = _op(ctx, "mul", [y, scale])
    if bias is not None and not fits(bias):
        y = _op(ctx, "add", [y, bias])
    stat_shape = tuple(x.shape[:axis]) + (1,) * (r - axis)
    outs = [y] + [_reshape(ctx, v, stat_shape) if _wanted(ctx, k) else None for k, v in ((1, mean), (2, rstd))]
    return _outputs(ctx, outs)


@handler("InstanceNormalization")
def _instance_norm(ctx):
    """`instance_norm`"""
    x, scale, bias = ctx.inputs[:3]
    _floats_only(ctx, x, scale, bias)
    if _rank(ctx, x, "input") < 3:
        ctx.unsupported(f"input of shape {x.shape}: expects (N, C, spatial...)")
    return [_op(ctx, "instance_norm", [x, scale, bias], {"eps": float(ctx.attr("epsilon", 1e-5))})]


@handler("GroupNormalization")
def _group_norm(ctx):
    """`layer_norm` over (N, groups, rest), then the per-channel (or opset 18 per-group) scale, bias

    Needs static C and spatial sizes."""
    x, scale, bias = ctx.inputs[:3]
    _floats_only(ctx, x, scale, bias)
    _check_stash(ctx, x)
    g = int(ctx.attr("num_groups"))
    eps = float(ctx.attr("epsilon", 1e-5))
    r = _rank(ctx, x, "X")
    if r < 3 or not _static(x.shape[1:]):
        ctx.unsupported(f"X of shape {x.shape}: expects (N, C, spatial...) with static C and spatial sizes")
    c = x.shape[1]
    if g <= 0 or c % g:
        ctx.unsupported(f"num_groups={g} does not divide the {c} channels")
    row = (c // g) * int(np.prod(x.shape[2:]))
    grouped = _reshape(ctx, x, (x.shape[0], g, row))
    dt = np.dtype(x.dtype)
    y = _op(ctx, "layer_norm", [grouped, np.ones(row, dt), np.zeros(row, dt)], {"axis": 2, "eps": eps})[0]
    y = _reshape(ctx, y, x.shape)
    per = (1,) * (r - 2)
    if scale.shape is not None and tuple(scale.shape) == (g,) and g != c:
        # opset 18: one scale and bias per group, repeated over the group's channels
        scale = _reshape(ctx, _op(ctx, "broadcast_to", [_reshape(ctx, scale, (g, 1))], {"shape": (g, c // g)}),
                         (c,))
        bias = _reshape(ctx, _op(ctx, "broadcast_to", [_reshape(ctx, bias, (g, 1))], {"shape": (g, c // g)}), (c,))
    y = _op(ctx, "mul", [y, _reshape(ctx, scale, (c,) + per)])
    return [_op(ctx, "add", [y, _reshape(ctx, bias, (c,) + per)])]


@handler("LpNormalization")
def _lp_norm(ctx):
    """x / (Σ|x| or √Σx²) along axis (`sum`, `sqrt`, `div`); a zero norm gives 0; p in {1, 2}"""
    x = ctx.inputs[0]
    _floats_only(ctx, x)
    p = int(ctx.attr("p", 2))
    axis = int(ctx.attr("axis", -1))
    r = _rank(ctx, x, "input")
    if not -r <= axis < r:
        ctx.unsupported(f"attr axis={axis} out of range for rank {r}")
    if p == 1:
        norm = _op(ctx, "sum", [_op(ctx, "abs", [x])], {"axes": (axis % r,), "keepdims": True})
    elif p == 2:
        norm = _op(ctx, "sqrt", [_op(ctx, "sum", [_op(ctx, "mul", [x, x])], {"axes": (axis % r,), "keepdims": True})])
    else:
        ctx.unsupported(f"attr p={p} (ONNX allows 1 and 2)")
    zero = _op(ctx, "equal", [norm, _scalar(x, 0.0)])
    y = _op(ctx, "div", [x, _op(ctx, "where", [zero, _scalar(x, 1.0), norm])])
    return [_op(ctx, "where", [zero, _scalar(x, 0.0), y])]


# -- Resize --------------------------------------------------------------------------------------

_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _optional_const(ctx, i, what):
    """A const input, or None when omitted or empty (ONNX's way of leaving roi/scales out)."""
    if not _present(ctx, i):
        return None
    a = ctx.const_input(i, what)
    return None if a.size == 0 else a


@handler("Resize")
def _resize(ctx):
    """`resize` (nearest, linear; the coordinate/nearest modes of graphc's resize); cubic, antialias refused

    tf_crop_and_resize is refused; keep_aspect_ratio_policy stretch, not_larger, not_smaller; scales/sizes
    known at import."""
    x = ctx.inputs[0]
    _floats_only(ctx, x)
    mode = _str_attr(ctx, "mode", "nearest")
    coord = _str_attr(ctx, "coordinate_transformation_mode", "half_pixel")
    nearest = _str_attr(ctx, "nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear"):
        ctx.unsupported(f"attr mode={mode!r} (graphc's resize has nearest and linear)")
    if coord not in _COORD_MODES or (coord == "tf_half_pixel_for_nn" and mode != "nearest"):
        ctx.unsupported(f"attr coordinate_transformation_mode={coord!r} with mode={mode!r}")
    if mode == "nearest" and nearest not in _NEAREST_MODES:
        ctx.unsupported(f"attr nearest_mode={nearest!r}")
    if int(ctx.attr("antialias", 0)) and mode != "nearest":
        ctx.unsupported("attr antialias=1")
    r = _rank(ctx, x, "X")
    axes = ctx.attr("axes", None)
    axes = tuple(range(r)) if axes is None else tuple(int(a) % r for a in axes)
    scales = _optional_const(ctx, 2, "scales")
    sizes = None
    if _present(ctx, 3):
        sz = ctx.shape_input(3, "sizes")
        sizes = None if len(sz) == 0 else sz
    if (scales is None) == (sizes is None):
        ctx.unsupported("exactly one of scales and sizes must be given")
    in_shape = tuple(x.shape)
    # sizes: the full output shape, -1 for an axis kept as is (a symbolic batch); scales: ONNX's
    # float32 scales exactly (the coordinate transform divides by them), None when sizes were given
    # (the op then uses sizes / input size, as ONNX)
    out = [-1] * r
    full_scales = [1.0] * r
    if scales is not None:
        if len(scales) != len(axes):
            ctx.unsupported(f"scales of {len(scales)} values for {len(axes)} axes")
        for a, s in zip(axes, np.asarray(scales, np.float32).tolist()):
            if s <= 0:
                ctx.unsupported(f"scale {s} <= 0")
            full_scales[a] = s
            if s != 1.0:
                if not _known(in_shape[a]):
                    ctx.unsupported(f"a scaled axis {a} of unknown size (X of shape {in_shape})")
                out[a] = int(np.floor(in_shape[a] * s))  # ONNX: float32 scale times the size, in float64
                if out[a] < 1:
                    ctx.unsupported(f"scale {s} of axis {a} gives an empty output")
    else:
        policy = _str_attr(ctx, "keep_aspect_ratio_policy", "stretch")
        if policy not in ("stretch", "not_larger", "not_smaller"):
            ctx.unsupported(f"attr keep_aspect_ratio_policy={policy!r}")
        if len(sizes) != len(axes) or not _static(sizes):
            ctx.unsupported(f"sizes={list(sizes)} must be {len(axes)} known ints")
        if policy != "stretch":
            # one scale for every listed axis: the smallest (not_larger) or largest (not_smaller) of
            # sizes / input size; each output size int(scale · input size + 0.5) (ONNX's reference)
            if not _static([in_shape[a] for a in axes]):
                ctx.unsupported(f"keep_aspect_ratio_policy={policy!r} needs the resized axes' sizes static")
            ratios = [s / in_shape[a] for a, s in zip(axes, sizes)]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                full_scales[a] = scale
                out[a] = int(scale * in_shape[a] + 0.5)
                if out[a] < 1:
                    ctx.unsupported(f"keep_aspect_ratio_policy={policy!r} gives an empty axis {a}")
            sizes = ()
        else:
            full_scales = None
        for a, s in zip(axes, sizes):
            if s != in_shape[a]:
                if not _known(in_shape[a]):
                    ctx.unsupported(f"a resized axis {a} of unknown size (X of shape {in_shape})")
                if s < 1:
                    ctx.unsupported(f"sizes[{a}]={s}: an empty output")
                out[a] = int(s)
    if all(d == -1 for d in out) and (full_scales is None or all(s == 1.0 for s in full_scales)):
        return [_op(ctx, "identity", [x])]
    attrs = {"sizes": tuple(out), "scales": None if full_scales is None else tuple(full_scales), "mode": mode,
             "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    if attrs["scales"] is None:
        del attrs["scales"]
    return [_op(ctx, "resize", [x], attrs)]


# -- DepthToSpace, SpaceToDepth ----------------------------------------------------------------------

def _nchw(ctx, x):
    if _rank(ctx, x, "input") != 4 or not _static(x.shape[1:]):
        ctx.unsupported(f"input of shape {x.shape}: expects (N, C, H, W) with static C, H, W")
    return x.shape


@handler("DepthToSpace")
def _depth_to_space(ctx):
    """`reshape` + `transpose` + `reshape` (DCR, CRD); static C, H, W"""
    x = ctx.inputs[0]
    n, c, h, w = _nchw(ctx, x)
    b = int(ctx.attr("blocksize"))
    mode = _str_attr(ctx, "mode", "DCR")
    if b <= 0 or c % (b * b):
        ctx.unsupported(f"blocksize={b}: C={c} must be divisible by blocksize²")
    if mode == "DCR":
        t = _reshape(ctx, x, (n, b, b, c // (b * b), h, w))
        t = _op(ctx, "transpose", [t], {"perm": (0, 3, 4, 1, 5, 2)})
    elif mode == "CRD":
        t = _reshape(ctx, x, (n, c // (b * b), b, b, h, w))
        t = _op(ctx, "transpose", [t], {"perm": (0, 1, 4, 2, 5, 3)})
    else:
        ctx.unsupported(f"attr mode={mode!r} (DCR or CRD)")
    return [_reshape(ctx, t, (n, c // (b * b), h * b, w * b))]


@handler("SpaceToDepth")
def _space_to_depth(ctx):
    """`reshape` + `transpose` + `reshape`; static C, H, W"""
    x = ctx.inputs[0]
    n, c, h, w = _nchw(ctx, x)
    b = int(ctx.attr("blocksize"))
    if b <= 0 or h % b or w % b:
        ctx.unsupported(f"blocksize={b} must divide H={h} and W={w}")
    mode = _str_attr(ctx, "mode", "DCR")  # the attr is newer than opset 13 (DCR before)
    if mode not in ("DCR", "CRD"):
        ctx.unsupported(f"attr mode={mode!r} (DCR or CRD)")
    t = _reshape(ctx, x, (n, c, h // b, b, w // b, b))
    t = _op(ctx, "transpose", [t], {"perm": (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)})
    return [_reshape(ctx, t, (n, c * b * b, h // b, w // b))]


# -- recurrent layers ----------------------------------------------------------------------------

_DEFAULT_ACTS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"), "RNN": ("tanh",)}


def _zero_state(ctx, xw, h, dt):
    """Zeros of shape (N, h) for the (T, N, k) input projections xw (N possibly symbolic)."""
    n = xw.shape[1]
    if _known(n):
        return np.zeros((int(n), h), dt)
    rows = _cols(ctx, _take(ctx, xw, 0, axis=0), 0, h)
    return _op(ctx, "broadcast_like", [np.zeros((1, h), dt), rows])


class _Rnn:
    """What the three recurrent ops share: inputs, attrs, direction loop, output layout."""

    def __init__(self, ctx, kind, gates):
        self.ctx, self.kind, self.gates = ctx, kind, gates
        x, w, r = ctx.inputs[:3]
        for v in (x, w, r):
            _floats_only(ctx, v)
        if ctx.attr("clip", None) is not None:
            ctx.unsupported("attr clip")
        if ctx.attr("activation_alpha", None) is not None or ctx.attr("activation_beta", None) is not None:
            ctx.unsupported("attrs activation_alpha / activation_beta")
        direction = _str_attr(ctx, "direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            ctx.unsupported(f"attr direction={direction!r}")
        self.dirs = 2 if direction == "bidirectional" else 1
        self.reverse = direction == "reverse"
        acts = ctx.attr("activations", None)
        if acts is not None:
            acts = tuple((a.decode() if isinstance(a, bytes) else a).lower() for a in acts)
            if acts != _DEFAULT_ACTS[kind] * self.dirs:
                ctx.unsupported(f"attr activations={list(acts)} (only the defaults {list(_DEFAULT_ACTS[kind])})")
        self.layout = int(ctx.attr("layout", 0))
        if self.layout not in (0, 1):
            ctx.unsupported(f"attr layout={self.layout}")
        if _rank(ctx, x, "X") != 3:
            ctx.unsupported(f"X of shape {x.shape}: expects rank 3")
        if self.layout:
            x = _op(ctx, "transpose", [x], {"perm": (1, 0, 2)})
        self.x = x
        self.steps = x.shape[0]
        if not _known(self.steps):
            ctx.unsupported(f"a sequence of unknown length (X of shape {ctx.inputs[0].shape}): the layer is "
                            f"unrolled at import; pass shapes= to gc.onnx.load")
        self.steps = int(self.steps)
        if self.steps < 1:
            ctx.unsupported("an empty sequence (length 0)")
        hs = ctx.attr("hidden_size", None)
        if hs is None:
            if w.shape is None or not _known(w.shape[1]):
                ctx.unsupported("needs hidden_size or W of a static shape")
            hs = w.shape[1] // gates
        self.h = int(hs)
        if w.shape is not None and _known(w.shape[0]) and w.shape[0] != self.dirs:
            ctx.unsupported(f"W of shape {w.shape} for {self.dirs} direction(s)")
        self.lens = None
        lens = ctx.inputs[4] if _present(ctx, 4) else None
        if lens is not None and not (lens.static is not None and np.all(lens.static == self.steps)):
            # sequences shorter than X: a step past a sequence's end keeps its state and outputs 0
            # (onnxruntime); forward only (a reverse pass would start at each sequence's own end)
            if self.dirs != 1 or self.reverse:
                ctx.unsupported(f"sequence_lens (shorter sequences, or known only at run time) with direction="
                                f"{direction!r}: graphc supports them in the forward direction only")
            if lens.dtype not in ("int32", "int64"):
                ctx.unsupported(f"sequence_lens of dtype {lens.dtype}")
            if lens.static is not None and (np.any(lens.static < 0) or np.any(lens.static > self.steps)):
                ctx.unsupported(f"sequence_lens={lens.static.tolist()} outside [0, {self.steps}]")
            self.lens = lens
        self.w, self.r = w, r
        self.b = ctx.inputs[3] if _present(ctx, 3) else None
        self.dt = np.dtype(x.dtype)

    def _inside(self, t):
        """(N, 1) bool: step t lies inside each sequence (sequence_lens > t)."""
        t_const = np.asarray(t, np.dtype(self.lens.dtype))
        return _expand(self.ctx, _op(self.ctx, "less", [t_const, self.lens]), (1,))

    def advance(self, t, new, old):
        """The state after step t: new inside the sequence, old past its end."""
        if self.lens is None:
            return new
        return _op(self.ctx, "where", [self._inside(t), new, old])

    def final(self, state):
        """The final state (Y_h, Y_c) of one direction: 0 where a sequence is empty (sequence_lens 0:
        no step ran; onnxruntime's result), else the state after the sequence's last step."""
        if self.lens is None:
            return state
        return self.emit(0, state)

    def emit(self, t, new):
        """Y at step t: the new hidden state inside the sequence, 0 past its end."""
        if self.lens is None:
            return new
        return _op(self.ctx, "where", [self._inside(t), new, np.zeros((), self.dt)])

    def initial(self, i, d):
        """Direction d's initial state from input i (layout-aware), or None."""
        ctx = self.ctx
        if not _present(ctx, i):
            return None
        v = ctx.inputs[i]
        _floats_only(ctx, v)
        return _take(ctx, v, d, axis=1 if self.layout else 0)

    def per_dir(self, v, d):
        return _take(self.ctx, v, d, axis=0)

    def biases(self, d):
        """(Wb, Rb) of direction d, or (None, None)."""
        if self.b is None:
            return None, None
        b = self.per_dir(self.b, d)
        n = self.gates * self.h
        return _cols(self.ctx, b, 0, n, axis=0), _cols(self.ctx, b, n, 2 * n, axis=0)

    def inputs_times_w(self, w, bias):
        """X·Wᵀ (+ bias) for all steps at once: (T, N, G·H)."""
        xw = _op(self.ctx, "matmul", [self.x, w], {"transpose_b": True})
        return xw if bias is None else _op(self.ctx, "add", [xw, bias])

    def step_input(self, xw, t):
        return _take(self.ctx, xw, t, axis=0)

    def order(self, d):
        forward = not self.reverse and d == 0
        return range(self.steps) if forward else range(self.steps - 1, -1, -1)

    def outputs(self, ys, finals, extra=None):
        """Y (T, D, N, H) / layout 1 (N, T, D, H), Y_h (D, N, H) / (N, D, H) [, Y_c]."""
        ctx = self.ctx
        y = None
        if _wanted(ctx, 0):
            per_dir = []
            for hs in ys:
                per_dir.append(_op(ctx, "concat", [_expand(ctx, h, (0, 1)) for h in hs], {"axis": 0}))
            y = per_dir[0] if self.dirs == 1 else _op(ctx, "concat", per_dir, {"axis": 1})
            if self.layout:
                y = _op(ctx, "transpose", [y], {"perm": (2, 0, 1, 3)})
        outs = [y]
        for k, states in enumerate([finals] + ([extra] if extra is not None else []), 1):
            if not _wanted(ctx, k):
                outs.append(None)
                continue
            s = _op(ctx, "concat", [_expand(ctx, v, (0,)) for v in states], {"axis": 0})
            if self.layout:
                s = _op(ctx, "transpose", [s], {"perm": (1, 0, 2)})
            outs.append(s)
        return _outputs(ctx, outs)


@handler("LSTM")
def _lstm(ctx):
    """unrolled `lstm_cell` steps (iofc → ifgo weights; peepholes composed); no clip/input_forget

    Directions, layout, initial states; a static length; sequence_lens (shorter: forward only); default activations."""
    rnn = _Rnn(ctx, "LSTM", 4)
    if int(ctx.attr("input_forget", 0)):
        ctx.unsupported("attr input_forget=1")
    peep = None
    if _present(ctx, 7):
        p = ctx.inputs[7]
        known = p.const if p.const is not None else None
        peep = None if known is not None and not np.any(known) else p
    hsz = rnn.h
    ys, finals, cells = [], [], []
    for d in range(rnn.dirs):
        w, r = rnn.per_dir(rnn.w, d), rnn.per_dir(rnn.r, d)
        wb, rb = rnn.biases(d)
        bias = None if wb is None else _op(ctx, "add", [wb, rb])
        if peep is None:
            # graphc's lstm_cell: gates (i, f, g, o); ONNX's W rows are (i, o, f, c)
            order = (0, 2, 3, 1)
            w, r = _reorder(ctx, w, 4, order), _reorder(ctx, r, 4, order)
            bias = None if bias is None else _reorder(ctx, bias, 4, order)
        xw = rnn.inputs_times_w(w, bias)
        h = rnn.initial(5, d)
        c = rnn.initial(6, d)
        # absent initial states are zeros, multiplied by R like any state (0·inf is NaN in ONNX too)
        h = _zero_state(ctx, xw, hsz, rnn.dt) if h is None else h
        c = _zero_state(ctx, xw, hsz, rnn.dt) if c is None else c
        if peep is not None:
            pi, po, pf = _split(ctx, rnn.per_dir(peep, d), 3, 0)
        hs = [None] * rnn.steps
        for t in rnn.order(d):
            gates = _op(ctx, "add", [rnn.step_input(xw, t), _op(ctx, "matmul", [h, r], {"transpose_b": True})])
            if peep is None:
                h_new, c_new = _op(ctx, "lstm_cell", [gates, c])
            else:
                gi, go, gf, gc = _split(ctx, gates, 4, 1)
                i = _op(ctx, "sigmoid", [_op(ctx, "add", [gi, _op(ctx, "mul", [pi, c])])])
                f = _op(ctx, "sigmoid", [_op(ctx, "add", [gf, _op(ctx, "mul", [pf, c])])])
                c_new = _op(ctx, "add", [_op(ctx, "mul", [f, c]), _op(ctx, "mul", [i, _op(ctx, "tanh", [gc])])])
                o = _op(ctx, "sigmoid", [_op(ctx, "add", [go, _op(ctx, "mul", [po, c_new])])])
                h_new = _op(ctx, "mul", [o, _op(ctx, "tanh", [c_new])])
            hs[t] = rnn.emit(t, h_new)
            h, c = rnn.advance(t, h_new, h), rnn.advance(t, c_new, c)
        ys.append(hs)
        finals.append(rnn.final(h))
        cells.append(rnn.final(c))
    return rnn.outputs(ys, finals, cells)


@handler("GRU")
def _gru(ctx):
    """unrolled `gru_cell` steps (linear_before_reset=1) or composed steps (0); no clip

    Directions, layout, initial state; a static length; sequence_lens (shorter: forward only); default activations."""
    rnn = _Rnn(ctx, "GRU", 3)
    linear = int(ctx.attr("linear_before_reset", 0))
    hsz = rnn.h
    ys, finals = [], []
    for d in range(rnn.dirs):
        w, r = rnn.per_dir(rnn.w, d), rnn.per_dir(rnn.r, d)
        wb, rb = rnn.biases(d)
        h = rnn.initial(5, d)
        if linear:
            # graphc's gru_cell: (r, z, n) blocks, n = tanh(xw_n + r·hw_n); ONNX's are (z, r, h)
            order = (1, 0, 2)
            w, r = _reorder(ctx, w, 3, order), _reorder(ctx, r, 3, order)
            wb = None if wb is None else _reorder(ctx, wb, 3, order)
            rb = None if rb is None else _reorder(ctx, rb, 3, order)
        xw = rnn.inputs_times_w(w, wb)
        if not linear:
            r_zr, r_h = _cols(ctx, r, 0, 2 * hsz, axis=0), _cols(ctx, r, 2 * hsz, 3 * hsz, axis=0)
            rb_zr = None if rb is None else _cols(ctx, rb, 0, 2 * hsz, axis=0)
            rb_h = None if rb is None else _cols(ctx, rb, 2 * hsz, 3 * hsz, axis=0)
        hs = [None] * rnn.steps
        for t in rnn.order(d):
            xt = rnn.step_input(xw, t)
            if h is None:
                h = _zero_state(ctx, xw, hsz, rnn.dt)
            if linear:
                hw = _op(ctx, "matmul", [h, r], {"transpose_b": True})
                if rb is not None:
                    hw = _op(ctx, "add", [hw, rb])
                h_new = _op(ctx, "gru_cell", [xt, hw, h])
            else:
                x_zr, x_h = _cols(ctx, xt, 0, 2 * hsz), _cols(ctx, xt, 2 * hsz, 3 * hsz)
                zr = _op(ctx, "add", [x_zr, _op(ctx, "matmul", [h, r_zr], {"transpose_b": True})])
                if rb_zr is not None:
                    zr = _op(ctx, "add", [zr, rb_zr])
                zr = _op(ctx, "sigmoid", [zr])
                z, rg = _cols(ctx, zr, 0, hsz), _cols(ctx, zr, hsz, 2 * hsz)
                hh = _op(ctx, "matmul", [_op(ctx, "mul", [rg, h]), r_h], {"transpose_b": True})
                n = _op(ctx, "add", [x_h, hh])
                if rb_h is not None:
                    n = _op(ctx, "add", [n, rb_h])
                n = _op(ctx, "tanh", [n])
                # (1 - z)·n + z·h, as ONNX writes it
                h_new = _op(ctx, "add", [_op(ctx, "mul", [_op(ctx, "sub", [_scalar(xt, 1.0), z]), n]),
                                         _op(ctx, "mul", [z, h])])
            hs[t] = rnn.emit(t, h_new)
            h = rnn.advance(t, h_new, h)
        ys.append(hs)
        finals.append(rnn.final(h))
    return rnn.outputs(ys, finals)


@handler("RNN")
def _rnn(ctx):
    """unrolled tanh(x·Wᵀ + h·Rᵀ + b) steps; directions, layout, initial state; no clip

    A static length; sequence_lens (shorter ones forward only); the default activation."""
    rnn = _Rnn(ctx, "RNN", 1)
    ys, finals = [], []
    for d in range(rnn.dirs):
        w, r = rnn.per_dir(rnn.w, d), rnn.per_dir(rnn.r, d)
        wb, rb = rnn.biases(d)
        bias = None if wb is None else _op(ctx, "add", [wb, rb])
        xw = rnn.inputs_times_w(w, bias)
        h = rnn.initial(5, d)
        h = _zero_state(ctx, xw, rnn.h, rnn.dt) if h is None else h
        hs = [None] * rnn.steps
        for t in rnn.order(d):
            a = _op(ctx, "add", [rnn.step_input(xw, t), _op(ctx, "matmul", [h, r], {"transpose_b": True})])
            h_new = _op(ctx, "tanh", [a])
            hs[t] = rnn.emit(t, h_new)
            h = rnn.advance(t, h_new, h)
        ys.append(hs)
        finals.append(rnn.final(h))
    return rnn.outputs(ys, finals)


# -- losses --------------------------------------------------------------------------------------

def _nll(ctx, logp, labels, weights):
    """ONNX NegativeLogLikelihoodLoss over log-probabilities (N, C, d...) and labels (N, d...)."""
    x = logp
    r = _rank(ctx, x, "input")
    if r < 2:
        ctx.unsupported(f"input of shape {x.shape}: expects (N, C, ...)")
    if labels.dtype not in ("int32", "int64"):
        ctx.unsupported(f"labels of dtype {labels.dtype}")
    reduction = _str_attr(ctx, "reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        ctx.unsupported(f"attr reduction={reduction!r}")
    ignore = ctx.attr("ignore_index", None)
    lab = labels if labels.dtype == "int64" else _op(ctx, "cast", [labels], {"to": "int64"})
    keep = None
    if ignore is not None:
        keep = _op(ctx, "logical_not", [_op(ctx, "equal", [lab, np.asarray(int(ignore), np.int64)])])
        lab = _op(ctx, "where", [keep, lab, np.asarray(0, np.int64)])
    picked = _squeeze(ctx, _op(ctx, "take_along_axis", [x, _expand(ctx, lab, (1,))], {"axis": 1}), (1,))
    loss = _op(ctx, "neg", [picked])
    wl = None
    if weights is not None:
        wl = _op(ctx, "embedding", [lab, weights])
    if keep is not None:
        mask = _op(ctx, "cast", [keep], {"to": x.dtype})
        wl = mask if wl is None else _op(ctx, "mul", [wl, mask])
    if wl is not None:
        loss = _op(ctx, "mul", [loss, wl])
    if reduction == "none":
        return loss
    total = _op(ctx, "sum", [loss])
    if reduction == "sum":
        return total
    if wl is None:
        return _op(ctx, "mean", [loss])
    return _op(ctx, "div", [total, _op(ctx, "sum", [wl])])


@handler("NegativeLogLikelihoodLoss")
def _nll_loss(ctx):
    """`take_along_axis` over axis 1; class weights, ignore_index, reduction none/sum/mean

    mean with weights is ONNX's weighted mean: Σ w[label]·loss / Σ w[label]."""
    x, labels = ctx.inputs[:2]
    w = ctx.inputs[2] if _present(ctx, 2) else None
    _floats_only(ctx, x, w)
    return [_nll(ctx, x, labels, w)]


@handler("SoftmaxCrossEntropyLoss")
def _sce_loss(ctx):
    """`log_softmax` over axis 1 + the NegativeLogLikelihoodLoss composition; log_prob output"""
    x, labels = ctx.inputs[:2]
    w = ctx.inputs[2] if _present(ctx, 2) else None
    _floats_only(ctx, x, w)
    if _rank(ctx, x, "scores") < 2:
        ctx.unsupported(f"scores of shape {x.shape}: expects (N, C, ...)")
    logp = _op(ctx, "log_softmax", [x], {"axis": 1})
    return _outputs(ctx, [_nll(ctx, logp, labels, w), logp])
