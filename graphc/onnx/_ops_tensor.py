"""ONNX handlers for tensor and shape ops (docs/onnx.md lists what maps to what).

Every handler follows the ONNX operator spec (onnx.ai/onnx/operators, checked against
``onnx.reference``) or refuses with OnnxUnsupportedError.  Shapes are computed at import:
``Shape(x)`` of a static shape folds to a constant; with symbolic dims it yields a Value
whose ``dims`` hold the symbols, which Gather/Slice/Concat/Unsqueeze/Squeeze/Cast carry
along to the Reshape/Expand/... that reads them.
"""

import numpy as np

from graphc import dtypes
from graphc.onnx._import import GRAPHC_TO_ONNX, Value, handler

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
    dt = ctx.onnx_dtype(ctx.attr("to"), "attribute to")
    return cast_value(ctx, ctx.inputs[0], dt)


@handler("CastLike")
def _cast_like(ctx):
    return cast_value(ctx, ctx.inputs[0], ctx.inputs[1].dtype)


# -- Shape, Size ---------------------------------------------------------------------------

@handler("Shape")
def _shape(ctx):
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


__all__ = ["GRAPHC_TO_ONNX", "dims_of", "dims_value", "reshape_to", "resolve_target", "dtypes"]
