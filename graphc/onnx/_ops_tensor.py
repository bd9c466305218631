"""ONNX handlers for tensor and shape ops (docs/onnx.md lists what maps to what).

Every handler follows the ONNX operator spec (onnx.ai/onnx/operators, checked against
``onnx.reference``) or refuses with OnnxUnsupportedError.  Shapes are computed at import:
``Shape(x)`` of a static shape folds to a constant; with symbolic dims it yields a Value
whose ``dims`` hold the symbols, which Gather/Slice/Concat/Unsqueeze/Squeeze/Cast carry
along to the Reshape/Expand/... that reads them.
"""

import numpy as np

from graphc import dtypes
from graphc.onnx._import import FOLD_LIMIT, GRAPHC_TO_ONNX, Value, handler

_INT_DTYPES = ("int32", "int64")


# -- helpers --------------------------------------------------------------------------------

def dims_of(v):
    """The elements of a 0-d/1-D integer value known at import as a list (int | str | None),
    or None."""
    if v is None:
        return None
    if v.dims is not None:
        return list(v.dims)
    s = v.static
    if s is not None and s.dtype.kind in "iu" and s.ndim <= 1:
        return [int(d) for d in s.reshape(-1)]
    return None


def dims_value(ctx, dims, scalar=False):
    """A Value for shape elements ``dims``: a const when all are ints, else a ``dims`` Value."""
    if all(isinstance(d, int) for d in dims):
        arr = np.asarray(dims, dtype=np.int64)
        return ctx.const(arr.reshape(()) if scalar else arr)
    return Value(None, "int64", () if scalar else (len(dims),), dims=list(dims), builder=ctx._imp)


def norm_axis(ctx, axis, rank, what="axis"):
    if not -rank <= axis < rank:
        ctx.format_error(f"{what}={axis} is out of range for rank {rank}")
    return axis % rank


def shape_of(ctx, v, i=0):
    if v is None:
        ctx.format_error(f"input {i} is missing")
    if v.shape is None:
        ctx.unsupported(f"input {i} has an unknown rank")
    return tuple(v.shape)


def _prod(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def resolve_target(ctx, in_shape, target):
    """A reshape target (int | str | None entries, at most one -1) as graphc's reshape attr (ints,
    one -1 at most) and the symbolic output shape.  Symbols cancel against the input's symbols."""
    target = list(target)
    if -1 not in target and target.count(None) == 1:
        target[target.index(None)] = -1   # the one dim unknown at import is the inferred one
    if target.count(-1) > 1:
        ctx.format_error(f"reshape target {target} has more than one -1")
    if -1 in target:
        # -1 = numel(input) / prod(other target dims), symbols cancelling
        rest_syms = [d for d in in_shape if not isinstance(d, int)]
        num = _prod([d for d in in_shape if isinstance(d, int)])
        den = 1
        ok = True
        for d in target:
            if d == -1:
                continue
            if isinstance(d, int):
                den *= d
            elif d is not None and d in rest_syms:
                rest_syms.remove(d)
            else:
                ok = False
        if ok and not rest_syms and den and num % den == 0:
            target[target.index(-1)] = num // den
        elif ok and len(rest_syms) == 1 and den and num % den == 0 and num // den == 1:
            target[target.index(-1)] = rest_syms[0]
    unknown = [i for i, d in enumerate(target) if not isinstance(d, int) or d == -1]
    if len(unknown) > 1:
        ctx.unsupported(f"the reshape target {target} has more than one dim unknown at import (symbolic dims "
                        f"of input shape {list(in_shape)}); pin the input shapes: gc.onnx.load(..., shapes=...) "
                        "or graphc import --shape name=d0,d1,...")
    attr = [d if isinstance(d, int) else -1 for d in target]
    out_shape = [None if d == -1 else d for d in target]
    return attr, out_shape


def reshape_to(ctx, x, target):
    attr, out_shape = resolve_target(ctx, shape_of(ctx, x), target)
    y = ctx.op("reshape", [x], {"shape": attr})
    if y.const is None:
        y.shape = tuple(out_shape)
    return y


# -- Constant, Identity, Cast ------------------------------------------------------------------

@handler("Constant")
def _constant(ctx):
    """constant folded at import (value, value_float(s), value_int(s)); sparse/string refused"""
    for key in ("sparse_value", "value_string", "value_strings"):
        if ctx.has_attr(key):
            ctx.unsupported(f"attribute {key} is not supported (graphc has no sparse or string tensors)")
    if ctx.has_attr("value"):
        return ctx.const(ctx.attr("value"))
    if ctx.has_attr("value_float"):
        return ctx.const(np.asarray(ctx.attr("value_float"), np.float32))
    if ctx.has_attr("value_floats"):
        return ctx.const(np.asarray(ctx.attr("value_floats"), np.float32).reshape(-1))
    if ctx.has_attr("value_int"):
        return ctx.const(np.asarray(ctx.attr("value_int"), np.int64))
    if ctx.has_attr("value_ints"):
        return ctx.const(np.asarray(ctx.attr("value_ints"), np.int64).reshape(-1))
    ctx.format_error("Constant has no value attribute")


@handler("Identity")
def _identity(ctx):
    """the input itself (an `identity` node carries the output name)"""
    x = ctx.inputs[0]
    if x is None:
        ctx.format_error("input 0 is missing")
    return x


def cast_value(ctx, x, dt):
    if x.dtype == dt:
        return x
    if x.dims is not None and dt in _INT_DTYPES:
        return Value(None, dt, x.shape, dims=list(x.dims), builder=ctx._imp)
    return ctx.op("cast", [x], {"to": dt})


@handler("Cast")
def _cast(ctx):
    """`cast` (graphc dtypes only; float8/16, uint8, string... refused)"""
    dt = ctx.onnx_dtype(ctx.attr("to"), "attribute to")
    return cast_value(ctx, ctx.inputs[0], dt)


@handler("CastLike")
def _cast_like(ctx):
    """`cast` to the second input's dtype"""
    return cast_value(ctx, ctx.inputs[0], ctx.inputs[1].dtype)


# -- Shape, Size ---------------------------------------------------------------------------

@handler("Shape")
def _shape(ctx):
    """folded at import (start/end); symbolic dims carried as a shape value"""
    shape = list(shape_of(ctx, ctx.inputs[0]))
    r = len(shape)
    start = ctx.attr("start", 0)
    end = ctx.attr("end", None)
    # ONNX: negative start/end count from the back; both clamp to [0, r]
    start = min(max(start + r if start < 0 else start, 0), r)
    end = r if end is None else min(max(end + r if end < 0 else end, 0), r)
    return dims_value(ctx, shape[start:end])


@handler("Size")
def _size(ctx):
    """folded at import (static shape)"""
    shape = shape_of(ctx, ctx.inputs[0])
    if all(isinstance(d, int) for d in shape):
        return ctx.const(np.asarray(_prod(shape), np.int64))
    if len([d for d in shape if not isinstance(d, int)]) == 1 and _prod([d for d in shape if isinstance(d, int)]) == 1:
        return dims_value(ctx, [next(d for d in shape if not isinstance(d, int))], scalar=True)
    ctx.unsupported(f"Size of a tensor of shape {list(shape)} (symbolic dims) needs pinned input shapes "
                    "(shapes=)")


# -- Reshape, Flatten, Squeeze, Unsqueeze, Transpose -------------------------------------------

@handler("Reshape")
def _reshape(ctx):
    """`reshape` (0 copies the input dim unless allowzero=1; -1; symbolic dims cancel)"""
    x = ctx.inputs[0]
    in_shape = shape_of(ctx, x)
    target = ctx.shape_input(1, "shape")
    allowzero = ctx.attr("allowzero", 0)
    if allowzero and 0 in target and -1 in target:
        ctx.format_error(f"allowzero=1 with both 0 and -1 in the shape {target}")
    if not allowzero:
        for i, d in enumerate(target):
            if d == 0:
                if i >= len(in_shape):
                    ctx.format_error(f"shape {target}: 0 at position {i} copies an input dim the input "
                                     f"(rank {len(in_shape)}) does not have")
                target[i] = in_shape[i]
    for d in target:
        if isinstance(d, int) and d < -1:
            ctx.format_error(f"shape {target} has a negative dim")
    return reshape_to(ctx, x, target)


@handler("Flatten")
def _flatten(ctx):
    """`reshape` to 2-D"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    r = len(shape)
    axis = ctx.attr("axis", 1)
    if not -r <= axis <= r:
        ctx.format_error(f"axis={axis} is out of range for rank {r}")
    axis = axis + r if axis < 0 else axis

    def prod(ds):
        if all(isinstance(d, int) for d in ds):
            return _prod(ds)
        syms = [d for d in ds if not isinstance(d, int)]
        return syms[0] if len(syms) == 1 and _prod([d for d in ds if isinstance(d, int)]) == 1 else None

    a, b = prod(shape[:axis]), prod(shape[axis:])
    if a is None and b is None:
        ctx.unsupported(f"Flatten of shape {list(shape)} at axis {axis}: both parts have unknown sizes; pin "
                        "the input shapes (shapes=)")
    if a is None:
        a = -1
    elif b is None:
        b = -1
    return reshape_to(ctx, x, [a, b])


def _axes_input(ctx, idx=1, attr="axes"):
    """Axes from the attr (opset < 13) or input ``idx`` (opset >= 13); None when absent."""
    if ctx.opset < 13 and ctx.has_attr(attr):
        return list(ctx.attr(attr))
    if ctx.input(idx) is None:
        return None
    return [int(a) for a in ctx.const_input(idx, "axes").reshape(-1)]


@handler("Squeeze")
def _squeeze(ctx):
    """`squeeze` (axes input or attr; without axes: the static size-1 dims)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    r = len(shape)
    axes = _axes_input(ctx)
    if axes is None:
        if any(not isinstance(d, int) for d in shape):
            ctx.unsupported(f"Squeeze without axes of shape {list(shape)} (symbolic dims): which dims are 1 is "
                            "not known at import")
        axes = [i for i, d in enumerate(shape) if d == 1]
    else:
        axes = [norm_axis(ctx, a, r, "axes") for a in axes]
        if len(set(axes)) != len(axes):
            ctx.format_error(f"axes {axes} repeat an axis")
        for a in axes:
            if isinstance(shape[a], int) and shape[a] != 1:
                ctx.format_error(f"cannot squeeze axis {a} of size {shape[a]}")
    d = dims_of(x) if x.dims is not None else None
    if d is not None and r == 1 and axes == [0]:
        return dims_value(ctx, d, scalar=True)
    if not axes:
        return x
    y = ctx.op("squeeze", [x], {"axes": tuple(axes)})
    y.shape = tuple(s for i, s in enumerate(shape) if i not in axes)
    return y


@handler("Unsqueeze")
def _unsqueeze(ctx):
    """`expand_dims` (axes input or attr, negative axes of the output)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    axes = _axes_input(ctx)
    if axes is None:
        ctx.format_error("Unsqueeze needs axes")
    out_rank = len(shape) + len(axes)
    axes = sorted(norm_axis(ctx, a, out_rank, "axes") for a in axes)
    if len(set(axes)) != len(axes):
        ctx.format_error(f"axes {axes} repeat an axis")
    if x.dims is not None and len(shape) == 0 and axes == [0]:
        return dims_value(ctx, list(x.dims))
    y = ctx.op("expand_dims", [x], {"axes": tuple(axes)})
    out = list(shape)
    for a in axes:
        out.insert(a, 1)
    y.shape = tuple(out)
    return y


@handler("Transpose")
def _transpose(ctx):
    """`transpose` (perm, default reversed)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    perm = ctx.attr("perm", None)
    if perm is None:
        perm = tuple(reversed(range(len(shape))))
    if sorted(perm) != list(range(len(shape))):
        ctx.format_error(f"perm {list(perm)} is not a permutation of the {len(shape)} axes")
    y = ctx.op("transpose", [x], {"perm": tuple(perm)})
    y.shape = tuple(shape[p] for p in perm)
    return y


# -- Concat -------------------------------------------------------------------------------------

@handler("Concat")
def _concat(ctx):
    """`concat` (shape values concatenated at import)"""
    xs = [v for v in ctx.inputs if v is not None]
    if not xs:
        ctx.format_error("Concat has no inputs")
    axis = ctx.attr("axis")
    ranks = {len(shape_of(ctx, v)) for v in xs}
    if len(ranks) != 1:
        ctx.format_error("inputs have different ranks")
    r = ranks.pop()
    if r == 0:
        ctx.format_error("cannot concatenate scalars")
    axis = norm_axis(ctx, axis, r)
    if r == 1 and any(v.dims is not None for v in xs) and all(dims_of(v) is not None for v in xs):
        out = []
        for v in xs:
            out.extend(dims_of(v))
        return dims_value(ctx, out)
    # size-0 inputs still take part (ONNX allows them); graphc concat takes them too
    if len(xs) == 1:
        return xs[0]
    y = ctx.op("concat", xs, {"axis": axis})
    return y


# -- Split, Slice --------------------------------------------------------------------------------

@handler("Split")
def _split(ctx):
    """`split` (split input/attr, num_outputs with a smaller last chunk, or equal parts)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    axis = norm_axis(ctx, ctx.attr("axis", 0), len(shape))
    d = shape[axis]
    n = ctx.num_outputs
    if ctx.opset < 13 and ctx.has_attr("split"):
        sizes = list(ctx.attr("split"))
    elif ctx.input(1) is not None:
        sizes = [int(v) for v in ctx.const_input(1, "split").reshape(-1)]
    else:
        if not isinstance(d, int):
            ctx.unsupported(f"Split of axis {axis} with symbolic size {d!r} needs its sizes known at import "
                            "(pass shapes=)")
        parts = ctx.attr("num_outputs", len(ctx.node.output))
        if parts <= 0:
            ctx.format_error(f"num_outputs={parts}")
        if ctx.has_attr("num_outputs"):
            chunk = -(-d // parts)   # opset 18: ceil; the last chunk smaller
            sizes = [min(chunk, max(d - chunk * i, 0)) for i in range(parts)]
        else:
            if d % parts:
                ctx.format_error(f"cannot split axis {axis} of size {d} into {parts} equal parts")
            sizes = [d // parts] * parts
    if any(s < 0 for s in sizes):
        ctx.format_error(f"split sizes {sizes} have a negative entry")
    if isinstance(d, int) and sum(sizes) != d:
        ctx.format_error(f"split sizes {sizes} do not add up to the axis size {d}")
    if len(sizes) < n:
        ctx.format_error(f"{len(sizes)} split sizes for {n} outputs")
    if len(sizes) == 1:
        return [x]
    out = ctx.op("split", [x], {"axis": axis, "sizes": tuple(sizes)})
    return list(out)


_BIG = 2 ** 40   # beyond any real dim; keeps the slice attrs far from int64 overflow in the kernels


def onnx_slice_range(start, end, step, d):
    """ONNX Slice's clamping for one axis of static size d: the (start, stop, step) of Python's
    range over the kept indices."""
    if start < 0:
        start += d
    if end < 0:
        end += d
    if step > 0:
        start = min(max(start, 0), d)
        end = min(max(end, 0), d)
    else:
        start = min(max(start, 0), d - 1)
        end = min(max(end, -1), d - 1)
    return start, end, step


@handler("Slice")
def _slice(ctx):
    """`slice` with ONNX's clamping computed at import (negative steps, INT64 bounds)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    r = len(shape)
    starts = [int(v) for v in ctx.const_input(1, "starts").reshape(-1)]
    ends = [int(v) for v in ctx.const_input(2, "ends").reshape(-1)]
    axes = ([int(v) for v in ctx.const_input(3, "axes").reshape(-1)] if ctx.input(3) is not None
            else list(range(len(starts))))
    steps = ([int(v) for v in ctx.const_input(4, "steps").reshape(-1)] if ctx.input(4) is not None
             else [1] * len(starts))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        ctx.format_error("starts, ends, axes and steps must have one length")
    axes = [norm_axis(ctx, a, r, "axes") for a in axes]
    if len(set(axes)) != len(axes):
        ctx.format_error(f"axes {axes} repeat an axis")
    if any(s == 0 for s in steps):
        ctx.format_error("steps must not be 0")
    a_starts, a_ends, a_axes, a_steps = [], [], [], []
    out_shape = list(shape)
    ranges = {}
    for s, e, ax, st in zip(starts, ends, axes, steps):
        d = shape[ax]
        if isinstance(d, int):
            s2, e2, st2 = onnx_slice_range(s, e, st, d)
            rng = range(s2, e2, st2)
            ranges[ax] = rng
            if len(rng) == d and st2 == 1:
                continue   # the whole axis
            # Python-slice attrs for graphc's slice: an empty range → 0:0; a negative stop → below -d
            if len(rng) == 0:
                s2, e2, st2 = 0, 0, 1
            elif st2 < 0 and e2 < 0:
                e2 = -d - 1
            a_starts.append(s2)
            a_ends.append(e2)
            out_shape[ax] = len(rng)
        else:
            if st < 0 and s < -1:
                ctx.unsupported(f"Slice of axis {ax} (symbolic size {d!r}) with a negative step and start {s}: "
                                "ONNX and Python clamp it differently; pin the input shapes (shapes=)")
            a_starts.append(max(min(s, _BIG), -_BIG))
            a_ends.append(max(min(e, _BIG), -_BIG))
            out_shape[ax] = None
            st2 = st
        a_axes.append(ax)
        a_steps.append(st2)
    dims = x.dims if x.dims is not None else None
    if dims is not None and r == 1:
        rng = ranges.get(0, range(len(dims)))
        return dims_value(ctx, [dims[i] for i in rng])
    if not a_axes:
        return x
    y = ctx.op("slice", [x], {"starts": tuple(a_starts), "ends": tuple(a_ends), "axes": tuple(a_axes),
                              "steps": tuple(a_steps)})
    if y.const is None:
        y.shape = tuple(out_shape)
    return y


# -- Gather, GatherElements -------------------------------------------------------------------------

def _indices(ctx, i, n, what):
    """Input i (indices into an axis of size n) with ONNX's negative indices made positive: at import
    when known (an index outside [-n, n) is an error), else where(i < 0, i + n, i)."""
    v = ctx.inputs[i]
    if v.dtype not in _INT_DTYPES:
        ctx.format_error(f"{what} must be int32/int64, got {v.dtype}")
    if v.static is not None:
        arr = np.asarray(v.static).astype(np.int64)
        if isinstance(n, int):
            if arr.size and (arr.min() < -n or arr.max() >= n):
                ctx.format_error(f"{what} hold values outside [-{n}, {n}) (axis size {n})")
            return ctx.const(np.where(arr < 0, arr + n, arr).astype(np.int64))
        if arr.size and arr.min() < 0:
            ctx.unsupported(f"negative {what} into an axis of symbolic size {n!r}; pin the input shapes (shapes=)")
        return ctx.const(arr)
    if not isinstance(n, int):
        ctx.unsupported(f"run-time {what} into an axis of symbolic size {n!r}: negative indices need the size; "
                        "pin the input shapes (shapes=)")
    v64 = v if v.dtype == "int64" else ctx.op("cast", [v], {"to": "int64"})
    neg = ctx.op("less", [v64, np.asarray(0, np.int64)])
    return ctx.op("where", [neg, ctx.op("add", [v64, np.asarray(n, np.int64)]), v64])


@handler("Gather")
def _gather(ctx):
    """`embedding` (+ `transpose` for axis != 0); negative indices wrapped (`where` at run time)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    r = len(shape)
    if r == 0:
        ctx.format_error("Gather of a scalar")
    axis = norm_axis(ctx, ctx.attr("axis", 0), r)
    idx = _indices(ctx, 1, shape[axis], "indices")
    if x.dims is not None and r == 1 and idx.const is not None:
        picked = [x.dims[int(i)] for i in idx.const.reshape(-1)]
        return dims_value(ctx, picked, scalar=idx.const.ndim == 0) if idx.const.ndim <= 1 else \
            ctx.unsupported("Gather of a shape with indices of rank > 1")
    k = len(idx.shape)
    if axis == 0:
        y = ctx.op("embedding", [idx, x])
    else:
        front = ctx.op("transpose", [x], {"perm": (axis,) + tuple(range(axis)) + tuple(range(axis + 1, r))})
        picked = ctx.op("embedding", [idx, front])
        perm = tuple(range(k, k + axis)) + tuple(range(k)) + tuple(range(k + axis, k + r - 1))
        y = ctx.op("transpose", [picked], {"perm": perm})
    if y.const is None:
        y.shape = tuple(shape[:axis]) + tuple(idx.shape) + tuple(shape[axis + 1:])
    return y


@handler("GatherElements")
def _gather_elements(ctx):
    """`take_along_axis`; negative indices wrapped; indices of data's shape off the axis"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    r = len(shape)
    axis = norm_axis(ctx, ctx.attr("axis", 0), r)
    ishape = shape_of(ctx, ctx.inputs[1], 1)
    if len(ishape) != r:
        ctx.format_error(f"indices of rank {len(ishape)} for data of rank {r}")
    for j, (a, b) in enumerate(zip(shape, ishape)):
        if j != axis and isinstance(a, int) and isinstance(b, int) and a != b:
            # ONNX allows indices smaller than data on other axes; graphc's take_along_axis wants equal dims
            ctx.unsupported(f"indices of shape {list(ishape)} differ from data {list(shape)} on axis {j} "
                            "(not the gather axis)")
    idx = _indices(ctx, 1, shape[axis], "indices")
    if idx.dtype != "int64":
        idx = ctx.op("cast", [idx], {"to": "int64"})
    return ctx.op("take_along_axis", [x, idx], {"axis": axis})


@handler("GatherND")
def _gather_nd(ctx):
    """`embedding` of the data reshaped to (indexed part, rest) by the flat index (static indexed dims)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    ishape = shape_of(ctx, ctx.inputs[1], 1)
    b = ctx.attr("batch_dims", 0)
    r, q = len(shape), len(ishape)
    if q < 1 or not isinstance(ishape[-1], int):
        ctx.unsupported(f"indices of shape {list(ishape)}: the last dim must be known at import")
    k = ishape[-1]
    if not 0 <= b < min(r, q) or b + k > r:
        ctx.format_error(f"batch_dims={b} and indices' last dim {k} do not fit data of rank {r}")
    inner = shape[b:b + k]
    batch = shape[:b]
    if any(not isinstance(d, int) for d in list(inner) + list(batch)) or \
            any(not isinstance(d, int) for d in ishape[:b]):
        ctx.unsupported(f"GatherND over dims {list(shape[:b + k])} that are not all known at import (shapes=)")
    idx = ctx.inputs[1]
    if idx.dtype != "int64":
        if idx.dtype != "int32":
            ctx.format_error(f"indices must be int64, got {idx.dtype}")
        idx = ctx.op("cast", [idx], {"to": "int64"})
    lead = tuple(ishape[:-1])
    flat = None
    stride = 1
    for j in reversed(range(k)):
        d = inner[j]
        part = ctx.op("slice", [idx], {"starts": (j,), "ends": (j + 1,), "axes": (q - 1,), "steps": (1,)})
        part = ctx.op("squeeze", [part], {"axes": (q - 1,)})
        if part.const is not None:
            arr = part.const
            if arr.size and (arr.min() < -d or arr.max() >= d):
                ctx.format_error(f"indices hold values outside [-{d}, {d}) for data axis {b + j}")
        neg = ctx.op("less", [part, np.asarray(0, np.int64)])
        part = ctx.op("where", [neg, ctx.op("add", [part, np.asarray(d, np.int64)]), part])
        term = part if stride == 1 else ctx.op("mul", [part, np.asarray(stride, np.int64)])
        flat = term if flat is None else ctx.op("add", [flat, term])
        stride *= d
    nb = int(np.prod(batch, dtype=np.int64)) if b else 1
    if flat is None:   # k == 0: whole slices
        flat = ctx.const(np.zeros(lead, np.int64))
    if b:
        # the batch position of every index row, as an offset into (batch..., inner...) flattened
        offs = (np.arange(nb, dtype=np.int64) * stride).reshape(tuple(batch) + (1,) * (len(lead) - b))
        flat = ctx.op("add", [flat, offs])
    rest = tuple(shape[b + k:])
    if any(not isinstance(d, int) for d in rest):
        if len([d for d in rest if not isinstance(d, int)]) > 1:
            ctx.unsupported(f"GatherND with trailing dims {list(rest)} (more than one symbolic)")
    flat_data = reshape_to(ctx, x, [nb * stride] + list(rest))
    y = ctx.op("embedding", [flat, flat_data])
    return y


@handler("Compress")
def _compress(ctx):
    """`embedding`/`transpose` gather of the positions where the condition (known at import) is true"""
    x = ctx.inputs[0]
    cond = ctx.const_input(1, "condition").reshape(-1).astype(bool)
    shape = shape_of(ctx, x)
    axis = ctx.attr("axis", None)
    if axis is None:
        x = reshape_to(ctx, x, [-1])
        shape = shape_of(ctx, x)
        axis = 0
    axis = norm_axis(ctx, axis, len(shape))
    d = shape[axis]
    if isinstance(d, int) and cond.size > d:
        ctx.format_error(f"condition of length {cond.size} for axis {axis} of size {d}")
    picked = np.nonzero(cond)[0].astype(np.int64)
    idx = ctx.const(picked)
    if axis == 0:
        return ctx.op("embedding", [idx, x])
    r = len(shape)
    front = ctx.op("transpose", [x], {"perm": (axis,) + tuple(range(axis)) + tuple(range(axis + 1, r))})
    y = ctx.op("embedding", [idx, front])
    return ctx.op("transpose", [y], {"perm": tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, r))})


@handler("NonZero")
def _non_zero(ctx):
    """folded at import (the input known at import; the output's size depends on the values)"""
    arr = ctx.const_input(0, "X")
    return ctx.const(np.array(np.nonzero(arr), dtype=np.int64).reshape(arr.ndim, -1))


# -- Expand, Tile --------------------------------------------------------------------------------

def _broadcast_shape(ctx, a, b):
    r = max(len(a), len(b))
    a = [1] * (r - len(a)) + list(a)
    b = [1] * (r - len(b)) + list(b)
    out = []
    for i, (p, q) in enumerate(zip(a, b)):
        if p == q:
            out.append(p)
        elif p == 1:
            out.append(q)
        elif q == 1:
            out.append(p)
        elif isinstance(p, int) and isinstance(q, int):
            ctx.format_error(f"shapes {a} and {b} do not broadcast (dim {i}: {p} vs {q})")
        else:
            out.append(p if isinstance(p, int) else q)
    return out


@handler("Expand")
def _expand(ctx):
    """`broadcast_to` of the bidirectional broadcast shape (static)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    target = ctx.shape_input(1, "shape")
    out = _broadcast_shape(ctx, shape, target)
    if list(out) == list(shape):
        return x
    if any(not isinstance(d, int) for d in out):
        ctx.unsupported(f"Expand of shape {list(shape)} to {target}: the result {out} has symbolic dims; pin the "
                        "input shapes (shapes=)")
    if x.const is not None and x.const.size == 1 and np.prod(out) > 4096:
        # a big splat stays a run-time broadcast of a scalar instead of a stored constant
        scalar = ctx.tensor(x)
        return ctx.op("broadcast_to", [Value(scalar.name, scalar.dtype, scalar.shape, tensor=scalar,
                                             builder=ctx._imp)], {"shape": tuple(out)})
    return ctx.op("broadcast_to", [x], {"shape": tuple(out)})


@handler("Tile")
def _tile(ctx):
    """`reshape` + `broadcast_to` + `reshape` (static shapes); `tile` with symbolic dims"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    reps = [int(v) for v in ctx.const_input(1, "repeats").reshape(-1)]
    if len(reps) != len(shape):
        ctx.format_error(f"repeats {reps} must have one entry per axis of the input (rank {len(shape)})")
    if any(v < 0 for v in reps):
        ctx.format_error(f"repeats {reps} has a negative entry")
    if all(v == 1 for v in reps):
        return x
    if any(not isinstance(d, int) for d in shape):
        # symbolic dims: the registry's tile op (its shape is bound at compile time)
        y = ctx.op("tile", [x], {"repeats": tuple(reps)})
        y.shape = tuple(d * rep if isinstance(d, int) else (d if rep == 1 else None) for d, rep in zip(shape, reps))
        return y
    # exact and differentiable: (d0, d1, ...) -> (1, d0, 1, d1, ...) -> broadcast (r0, d0, r1, d1, ...) -> merge
    inter = []
    for d in shape:
        inter += [1, d]
    big = []
    for rep, d in zip(reps, shape):
        big += [rep, d]
    y = ctx.op("reshape", [x], {"shape": tuple(inter)})
    y = ctx.op("broadcast_to", [y], {"shape": tuple(big)})
    return ctx.op("reshape", [y], {"shape": tuple(rep * d for rep, d in zip(reps, shape))})


# -- Pad -----------------------------------------------------------------------------------------

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


@handler("Pad")
def _pad(ctx):
    """`pad` (constant/reflect/edge; pads/constant_value/axes inputs; negative pads → `slice`); wrap → `concat`"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    r = len(shape)
    mode = ctx.attr("mode", "constant")
    if mode not in _PAD_MODES and mode != "wrap":
        ctx.unsupported(f"attr mode={mode!r} is not supported (constant, reflect, edge, wrap)")
    if ctx.opset < 11 and ctx.has_attr("pads"):
        pads = list(ctx.attr("pads"))
        value = ctx.attr("value", 0.0)
    else:
        pads = [int(v) for v in ctx.const_input(1, "pads").reshape(-1)]
        value = 0
        if ctx.input(2) is not None:
            cv = ctx.const_input(2, "constant_value").reshape(-1)
            if cv.size != 1:
                ctx.format_error(f"constant_value must hold one value, has {cv.size}")
            value = cv[0].item()
    axes = list(range(r))
    if ctx.input(3) is not None:
        axes = [norm_axis(ctx, int(a), r, "axes") for a in ctx.const_input(3, "axes").reshape(-1)]
        if len(set(axes)) != len(axes):
            ctx.format_error(f"axes {axes} repeat an axis")
    if len(pads) != 2 * len(axes):
        ctx.format_error(f"pads {pads} must hold 2 x {len(axes)} entries")
    before = [0] * r
    after = [0] * r
    for k, a in enumerate(axes):
        before[a] = pads[k]
        after[a] = pads[k + len(axes)]
    if mode == "constant":
        fv = float(value)
        if x.dtype in _INT_DTYPES and (fv != value or abs(value) > 2 ** 53):
            ctx.unsupported(f"constant_value {value} is not exactly a float64")
        if x.dtype == "bool":
            fv = 1.0 if value else 0.0
    y = x
    # negative pads crop first (onnxruntime's order: the padding then reflects/repeats the cropped data)
    crop = [(min(b, 0), min(e, 0)) for b, e in zip(before, after)]
    if any(b or e for b, e in crop):
        starts, ends, ax = [], [], []
        for a, (b, e) in enumerate(crop):
            if b or e:
                d = shape[a]
                if not isinstance(d, int):
                    ctx.unsupported(f"negative pads on axis {a} of symbolic size {d!r}")
                if -b - e > d:
                    ctx.format_error(f"negative pads crop more than axis {a} holds ({d})")
                starts.append(-b)
                ends.append(d + e)
                ax.append(a)
        y = ctx.op("slice", [y], {"starts": tuple(starts), "ends": tuple(ends), "axes": tuple(ax),
                                  "steps": (1,) * len(ax)})
    grow = [(max(b, 0), max(e, 0)) for b, e in zip(before, after)]
    if mode == "wrap":
        # the last b items, the data, the first e items along each padded axis (pads up to the axis size)
        ys = shape_of(ctx, y)
        for a, (b, e) in enumerate(grow):
            if not (b or e):
                continue
            d = ys[a]
            if not isinstance(d, int) or b > d or e > d:
                ctx.unsupported(f"mode 'wrap' with pads ({b}, {e}) on axis {a} of size {d!r} (pads up to a static "
                                "axis size are supported)")
            parts = []
            if b:
                parts.append(ctx.op("slice", [y], {"starts": (d - b,), "ends": (d,), "axes": (a,), "steps": (1,)}))
            parts.append(y)
            if e:
                parts.append(ctx.op("slice", [y], {"starts": (0,), "ends": (e,), "axes": (a,), "steps": (1,)}))
            y = ctx.op("concat", parts, {"axis": a})
            ys = shape_of(ctx, y)
        return y
    if any(b or e for b, e in grow):
        attrs = {"pads": tuple(v for p in grow for v in p), "mode": _PAD_MODES[mode]}
        if mode == "constant":
            attrs["value"] = fv
        y = ctx.op("pad", [y], attrs)
    return y


# -- ConstantOfShape, Range, EyeLike -------------------------------------------------------------

_SPLAT_LIMIT = 4096   # elements; a larger splat is a run-time broadcast_to of a scalar, not stored data


@handler("ConstantOfShape")
def _constant_of_shape(ctx):
    """constant (small) or `broadcast_to` of a scalar (static shape)"""
    shape = ctx.shape_input(0, "shape")
    value = ctx.attr("value", None)
    if value is None:
        value = np.zeros((1,), np.float32)
    if value.size != 1:
        ctx.format_error(f"value must hold one element, has {value.size}")
    if any(not isinstance(d, int) for d in shape):
        ctx.unsupported(f"ConstantOfShape of shape {shape} (symbolic dims); pin the input shapes (shapes=)")
    if any(d < 0 for d in shape):
        ctx.format_error(f"shape {shape} has a negative dim")
    scalar = value.reshape(())
    if int(np.prod(shape, dtype=np.int64)) <= _SPLAT_LIMIT:
        return ctx.const(np.full(shape, scalar, dtype=value.dtype))
    t = ctx.tensor(ctx.const(scalar))
    return ctx.op("broadcast_to", [Value(t.name, t.dtype, t.shape, tensor=t, builder=ctx._imp)],
                  {"shape": tuple(shape)})


@handler("Range")
def _range(ctx):
    """folded at import (inputs known at import; values accumulate like ONNX)"""
    start = ctx.const_input(0, "start")
    limit = ctx.const_input(1, "limit")
    delta = ctx.const_input(2, "delta")
    for a, what in ((start, "start"), (limit, "limit"), (delta, "delta")):
        if a.size != 1:
            ctx.format_error(f"{what} must be a scalar, has shape {a.shape}")
    dt = start.dtype
    s, lim, d = start.reshape(()).item(), limit.reshape(()).item(), delta.reshape(()).item()
    if not all(np.isfinite(v) for v in (s, lim, d)):
        ctx.unsupported(f"start {s}, limit {lim}, delta {d}: a bound that is not finite (no finite length)")
    if d == 0:
        ctx.format_error("delta is 0")
    # ONNX: n = max(ceil((limit - start) / delta), 0); the values accumulate in the dtype (the spec's
    # function body and onnxruntime: prev + delta), which add.accumulate does sequentially
    q = (lim - s) / d    # a Python float (inf where float64 bounds overflow in the subtraction)
    if q > FOLD_LIMIT:   # the bound of every fold: a tiny model must not allocate gigabytes at import
        ctx.unsupported(f"Range of {q:.6g} elements (too large to fold at import; the limit is {FOLD_LIMIT})")
    n = max(int(np.ceil(q)), 0)
    steps = np.full(n, d, dtype=dt)
    if n:
        steps[0] = dt.type(s)
    out = np.add.accumulate(steps, dtype=dt)
    return ctx.const(out)


@handler("EyeLike")
def _eye_like(ctx):
    """folded at import (static 2-D shape, k, dtype)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    if len(shape) != 2 or any(not isinstance(d, int) for d in shape):
        ctx.unsupported(f"EyeLike of shape {list(shape)} (needs a static 2-D shape)")
    dt = ctx.onnx_dtype(ctx.attr("dtype"), "attribute dtype") if ctx.has_attr("dtype") else x.dtype
    if shape[0] * shape[1] > FOLD_LIMIT:
        ctx.unsupported(f"EyeLike of shape {list(shape)} (larger than graphc folds at import)")
    return ctx.const(np.eye(shape[0], shape[1], k=ctx.attr("k", 0), dtype=dt))


# -- Where, Trilu, OneHot ---------------------------------------------------------------------------

@handler("Where")
def _where(ctx):
    """`where`"""
    return ctx.op("where", [ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]])


@handler("Trilu")
def _trilu(ctx):
    """`triu` / `tril` with diagonal k"""
    x = ctx.inputs[0]
    k = 0
    if ctx.input(1) is not None:
        kv = ctx.const_input(1, "k")
        if kv.size != 1:
            ctx.format_error("k must be a scalar")
        k = int(kv.reshape(()))
    if len(shape_of(ctx, x)) < 2:
        ctx.format_error("Trilu needs rank >= 2")
    return ctx.op("triu" if ctx.attr("upper", 1) else "tril", [x], {"diagonal": k})


@handler("OneHot")
def _one_hot(ctx):
    """`one_hot` (bool) + `where(on, off)`, negative indices wrapped, axis by `transpose`"""
    idx = ctx.inputs[0]
    depth = ctx.const_input(1, "depth").reshape(-1)
    values = ctx.inputs[2]
    if depth.size != 1:
        ctx.format_error("depth must hold one value")
    depth = int(depth[0])   # ONNX casts a float depth to an integer
    if depth < 1:
        ctx.format_error(f"depth {depth} must be >= 1")
    if shape_of(ctx, values, 2) != (2,):
        ctx.format_error(f"values must have shape (2,), got {values.shape}")
    shape = shape_of(ctx, idx)
    r = len(shape) + 1
    axis = norm_axis(ctx, ctx.attr("axis", -1), r)
    if idx.dtype not in _INT_DTYPES:
        if idx.dtype in ("float32", "float64") and idx.static is not None:
            arr = idx.static
            if np.any(arr != np.trunc(arr)):
                ctx.unsupported("non-integer float indices")
            idx = ctx.const(arr.astype(np.int64))
        else:
            ctx.unsupported(f"indices of dtype {idx.dtype} (graphc takes int32/int64)")
    # negative indices count from the back (ONNX); out of [-depth, depth): a row of off values
    if idx.static is not None:
        arr = idx.static.astype(np.int64)
        idx = ctx.const(np.where(arr < 0, arr + depth, arr))
    else:
        neg = ctx.op("less", [idx, np.asarray(0, idx.dtype)])
        idx = ctx.op("where", [neg, ctx.op("add", [idx, np.asarray(depth, idx.dtype)]), idx])
    mask = ctx.op("one_hot", [idx], {"depth": depth, "dtype": "bool"})
    off = ctx.op("slice", [values], {"starts": (0,), "ends": (1,), "axes": (0,), "steps": (1,)})
    on = ctx.op("slice", [values], {"starts": (1,), "ends": (2,), "axes": (0,), "steps": (1,)})
    off = ctx.op("reshape", [off], {"shape": ()})
    on = ctx.op("reshape", [on], {"shape": ()})
    y = ctx.op("where", [mask, on, off])
    if axis != r - 1:
        perm = tuple(range(axis)) + (r - 1,) + tuple(range(axis, r - 1))
        y = ctx.op("transpose", [y], {"perm": perm})
    return y


# -- TopK, CumSum, Dropout -------------------------------------------------------------------------

@handler("TopK")
def _topk(ctx):
    """`topk` (floats; K known at import; ties: lower index first; sorted=0 gives the sorted order)"""
    x = ctx.inputs[0]
    shape = shape_of(ctx, x)
    if x.dtype not in ("float32", "float64"):
        ctx.unsupported(f"TopK of dtype {x.dtype} (graphc's topk takes float32/float64)")
    kv = ctx.const_input(1, "K").reshape(-1)
    if kv.size != 1:
        ctx.format_error("K must hold one value")
    k = int(kv[0])
    axis = norm_axis(ctx, ctx.attr("axis", -1), len(shape))
    largest = bool(ctx.attr("largest", 1))
    # sorted=0: ONNX leaves the order unspecified; the sorted order is one valid answer
    vals, idx = ctx.op("topk", [x], {"k": k, "axis": axis, "largest": largest, "sorted": True})
    return [vals, idx]


@handler("CumSum")
def _cumsum(ctx):
    """`cumsum` (axis known at import; exclusive, reverse)"""
    x = ctx.inputs[0]
    av = ctx.const_input(1, "axis").reshape(-1)
    if av.size != 1:
        ctx.format_error("axis must hold one value")
    axis = norm_axis(ctx, int(av[0]), len(shape_of(ctx, x)))
    return ctx.op("cumsum", [x], {"axis": axis, "exclusive": bool(ctx.attr("exclusive", 0)),
                                  "reverse": bool(ctx.attr("reverse", 0))})


@handler("Dropout")
def _dropout(ctx):
    """`dropout` (y = x in inference, drops in graphc training plans); mask all True; training_mode=1 refused"""
    x = ctx.inputs[0]
    ratio = 0.5
    if ctx.opset < 12 and ctx.has_attr("ratio"):
        ratio = ctx.attr("ratio")
    elif ctx.input(1) is not None:
        ratio = float(ctx.const_input(1, "ratio").reshape(-1)[0])
    if ctx.input(2) is not None:
        tm = ctx.const_input(2, "training_mode").reshape(-1)
        if tm.size != 1:
            ctx.format_error("training_mode must hold one value")
        if bool(tm[0]):
            ctx.unsupported("training_mode=True (random masks cannot match ONNX's); graphc's own training "
                            "plans drop out where the model was imported with training_mode absent or False")
    seed = ctx.attr("seed", None)
    if x.dtype in ("float32", "float64") and 0.0 <= ratio < 1.0:
        # graphc's dropout: y = x in inference (ONNX's result), dropping in graphc training plans
        attrs = {"p": float(ratio)}
        if seed is not None and seed >= 0:
            attrs["seed"] = int(seed)
        y = ctx.op("dropout", [x], attrs) if x.static is None else x
    else:
        y = x
    outs = [y]
    if ctx.num_outputs > 1:
        shape = shape_of(ctx, x)
        if any(not isinstance(d, int) for d in shape):
            ctx.unsupported("the mask output of a tensor of symbolic shape")
        t = ctx.tensor(ctx.const(np.asarray(True)))
        outs.append(ctx.op("broadcast_to", [Value(t.name, "bool", (), tensor=t, builder=ctx._imp)],
                           {"shape": tuple(shape)}))
    return outs


__all__ = ["GRAPHC_TO_ONNX", "dims_of", "dims_value", "reshape_to", "resolve_target", "dtypes"]
