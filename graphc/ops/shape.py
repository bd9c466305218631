"""Shape ops: broadcast_to, reshape, transpose, expand_dims, squeeze, concat, split,
slice, stop_gradient, and the ``x[...]`` indexing builder on top of slice/squeeze.

reshape, expand_dims, squeeze and stop_gradient are views: the compiler makes their
output alias the input's bytes, no copy."""

import builtins

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import (
    ODD,
    Example,
    F,
    as_tensors,
    build,
    check_broadcastable,
    numel,
    rand,
    reshape_as,
    special,
    unbroadcast,
    zeros_like,
)
from graphc.registry import AttrSpec, defgrad, register_op

END = 2 ** 62  # "to the end" in slice ends (ONNX uses INT64_MAX; 2**62 survives arithmetic)


def _all_dtype_examples(cases):
    def examples(rng):
        out = []
        for dt in dtypes.ALL:
            for shape, attrs in cases:
                out.append(Example([rand(rng, shape, dt)], attrs, note=dt))
            # data moves bit for bit: NaN payloads, -0.0 and extremes included
            shape, attrs = max(cases, key=lambda c: (numel(c[0]) or 0) if numel(c[0]) < 10 ** 5 else 0)
            out.append(Example([special(rng, shape, dt)], attrs, grad=False, note=f"{dt} special values"))
        return out
    return examples


# -- broadcast_to --------------------------------------------------------------------------

def _broadcast_to_infer(ctx):
    src, dst = ctx.shape(0), ctx.attrs["shape"]
    if any(d < 0 for d in dst):
        ctx.fail(f"shape={list(dst)} has a negative dim")
    check_broadcastable(ctx, src, tuple(dst))
    return ctx.dtype(0), tuple(dst)


register_op(
    "broadcast_to",
    doc="y = x repeated along broadcast dims to 'shape' (numpy.broadcast_to), as a real array.",
    inputs=[("x", dtypes.ALL)],
    attrs={"shape": AttrSpec("ints", doc="the output shape")},
    infer=_broadcast_to_infer,
    reference=lambda inputs, attrs: np.broadcast_to(inputs[0], attrs["shape"]).copy(),
    examples=_all_dtype_examples([((), {"shape": (3, 2)}), ((3, 1), {"shape": (3, 4)}),
                                  ((1, 4), {"shape": (2, 0, 4)}), ((5,), {"shape": (2, 5)}),
                                  ((73, 1), {"shape": (72, 73, 74)}), ((1,), {"shape": (1,)}),
                                  ((0, 1), {"shape": (0, 3)})]),
)


def broadcast_to(x, shape, name=None):
    """x broadcast to ``shape``."""
    return build("broadcast_to", as_tensors(x), {"shape": tuple(shape)}, name=name)


# -- reshape ----------------------------------------------------------------------------------

def _reshape_infer(ctx):
    src = ctx.shape(0)
    target = list(ctx.attrs["shape"])
    if sum(1 for d in target if d == -1) > 1:
        ctx.fail(f"shape={target} has more than one -1")
    if any(d < -1 for d in target):
        ctx.fail(f"shape={target} has a negative dim")
    n = numel(src)
    known = 1
    for d in target:
        if d != -1:
            known *= d
    if -1 in target:
        i = target.index(-1)
        if n is None:
            target[i] = None
        elif known == 0:
            ctx.fail(f"cannot infer -1 in shape={list(ctx.attrs['shape'])} when the other dims hold 0 elements")
        elif n % known:
            ctx.fail(f"cannot reshape {n} elements into shape={list(ctx.attrs['shape'])}")
        else:
            target[i] = n // known
    elif n is not None and n != known:
        ctx.fail(f"cannot reshape {n} elements into shape={target} ({known} elements)")
    return ctx.dtype(0), tuple(target)


register_op(
    "reshape",
    doc="Same elements in C order, new 'shape' (one dim may be -1: inferred).  A view.",
    inputs=[("x", dtypes.ALL)],
    attrs={"shape": AttrSpec("ints", doc="the output shape; one dim may be -1")},
    infer=_reshape_infer,
    reference=lambda inputs, attrs: np.reshape(inputs[0], attrs["shape"]).copy(),
    examples=_all_dtype_examples([((6,), {"shape": (2, 3)}), ((2, 3), {"shape": (-1,)}), ((), {"shape": (1, 1)}),
                                  ((0, 3), {"shape": (3, 0)}), ((4, 5, 6), {"shape": (20, -1)}),
                                  (ODD, {"shape": (73, -1)})]),
    view=True,
)


def reshape(x, shape, name=None):
    """x with a new shape (a view)."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    return build("reshape", as_tensors(x), {"shape": tuple(int(d) for d in shape)}, name=name)


# -- transpose ---------------------------------------------------------------------------------

def _transpose_infer(ctx):
    shape = ctx.shape(0)
    perm = ctx.attrs["perm"]
    if perm is None:
        perm = tuple(reversed(range(len(shape))))
    if sorted(perm) != list(range(len(shape))):
        ctx.fail(f"perm={list(perm)} is not a permutation of {len(shape)} axes")
    return ctx.dtype(0), tuple(shape[p] for p in perm)


register_op(
    "transpose",
    doc="y = x with axes permuted: y.shape[i] = x.shape[perm[i]] (perm None reverses the axes).",
    inputs=[("x", dtypes.ALL)],
    attrs={"perm": AttrSpec("ints", default=None, optional=True, doc="output axis i is input axis perm[i]; "
                            "None reverses the axes")},
    infer=_transpose_infer,
    reference=lambda inputs, attrs: np.transpose(inputs[0], attrs["perm"]).copy(),
    examples=_all_dtype_examples([((3, 4), {"perm": None}), ((2, 3, 4), {"perm": (1, 0, 2)}),
                                  ((2, 3, 4), {"perm": (2, 0, 1)}), ((2, 0, 3), {"perm": (2, 1, 0)}),
                                  ((2, 3, 4, 5), {"perm": (0, 2, 3, 1)}), (ODD, {"perm": (2, 0, 1)}),
                                  ((7,), {"perm": (0,)}), ((), {"perm": ()})]),
)


def transpose(x, perm=None, name=None):
    """x with axes permuted (reversed when perm is None)."""
    return build("transpose", as_tensors(x), {"perm": None if perm is None else tuple(perm)}, name=name)


# -- expand_dims / squeeze ------------------------------------------------------------------

def _expand_dims_infer(ctx):
    shape = list(ctx.shape(0))
    axes = ctx.attrs["axes"]
    rank = len(shape) + len(axes)
    norm = sorted(ctx.normalize_axis(a, rank, "axes") for a in axes)
    if len(set(norm)) != len(norm):
        ctx.fail(f"axes={list(axes)} repeats an axis")
    for a in norm:
        shape.insert(a, 1)
    return ctx.dtype(0), tuple(shape)


register_op(
    "expand_dims",
    doc="Insert size-1 dims at 'axes' (positions in the output).  A view.",
    inputs=[("x", dtypes.ALL)],
    attrs={"axes": AttrSpec("ints", doc="positions of the new size-1 dims in the output")},
    infer=_expand_dims_infer,
    reference=lambda inputs, attrs: np.expand_dims(inputs[0], attrs["axes"]).copy(),
    examples=_all_dtype_examples([((), {"axes": (0,)}), ((3,), {"axes": (-1,)}), ((3, 4), {"axes": (0, 3)}),
                                  ((0, 2), {"axes": (1,)})]),
    view=True,
)


def expand_dims(x, axis, name=None):
    """Insert size-1 dims at ``axis`` (int or tuple)."""
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    return build("expand_dims", as_tensors(x), {"axes": axes}, name=name)


def _squeeze_infer(ctx):
    shape = ctx.shape(0)
    axes = ctx.attrs["axes"]
    if axes is None:
        if any(not isinstance(d, int) for d in shape):
            ctx.fail("squeeze without axes needs a static shape; pass axes=")
        drop = {i for i, d in enumerate(shape) if d == 1}
    else:
        drop = {ctx.normalize_axis(a, len(shape), "axes") for a in axes}
        for a in drop:
            if isinstance(shape[a], int) and shape[a] != 1:
                ctx.fail(f"cannot squeeze axis {a} of size {shape[a]}")
    return ctx.dtype(0), tuple(d for i, d in enumerate(shape) if i not in drop)


def _squeeze_ref(inputs, attrs):
    x = inputs[0]
    axes = attrs["axes"]
    return np.squeeze(x, axis=None if axes is None else tuple(a % x.ndim for a in axes)).copy()


register_op(
    "squeeze",
    doc="Remove size-1 dims at 'axes' (all size-1 dims when None).  A view.",
    inputs=[("x", dtypes.ALL)],
    attrs={"axes": AttrSpec("ints", default=None, optional=True, doc="size-1 dims removed; None: all")},
    infer=_squeeze_infer,
    reference=_squeeze_ref,
    examples=_all_dtype_examples([((1,), {"axes": None}), ((3, 1, 4), {"axes": (1,)}), ((1, 3, 1), {"axes": None}),
                                  ((0, 1), {"axes": (-1,)})]),
    view=True,
)


def squeeze(x, axis=None, name=None):
    """Remove size-1 dims."""
    axes = None if axis is None else (tuple(axis) if isinstance(axis, (tuple, list)) else (axis,))
    return build("squeeze", as_tensors(x), {"axes": axes}, name=name)


# -- stop_gradient ------------------------------------------------------------------------------

register_op(
    "stop_gradient",
    doc="y = x in the forward pass; no gradient flows through it.  A view.",
    inputs=[("x", dtypes.ALL)],
    infer=lambda ctx: (ctx.dtype(0), ctx.shape(0)),
    reference=lambda inputs, attrs: inputs[0].copy(),
    examples=_all_dtype_examples([((), {}), ((0, 3), {}), ((5, 4), {})]),
    view=True,
    differentiable=False,
)


def stop_gradient(x, name=None):
    """Identity that blocks gradients."""
    return build("stop_gradient", as_tensors(x), name=name)


# -- concat / split -------------------------------------------------------------------------------

def _concat_infer(ctx):
    ranks = {len(s) for _, s in ctx.inputs}
    if len(ranks) != 1:
        ctx.fail("expects inputs of one rank")
    rank = ranks.pop()
    if rank == 0:
        ctx.fail("cannot concatenate scalars")
    axis = ctx.normalize_axis(ctx.attrs["axis"], rank)
    out = list(ctx.shape(0))
    total = 0
    for i, (_, s) in enumerate(ctx.inputs):
        for j in range(rank):
            if j != axis and isinstance(s[j], int) and isinstance(out[j], int) and s[j] != out[j]:
                ctx.fail(f"input {i} differs from input 0 in dim {j} ({s[j]} vs {out[j]}), not the concat axis")
        total = total + s[axis] if isinstance(total, int) and isinstance(s[axis], int) else None
    out[axis] = total
    return ctx.dtype(0), tuple(out)


def _concat_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for shapes, axis in [([(3,), (4,)], 0), ([(2, 3), (2, 5), (2, 1)], 1), ([(2, 3), (0, 3)], 0),
                             ([(4, 2)], -1), ([(72, 73, 74), (72, 1, 74)], 1),
                             ([(1,), (1,)], 0)]:
            out.append(Example([rand(rng, s, dt) for s in shapes], {"axis": axis}, note=dt))
        out.append(Example([special(rng, (3, 4), dt), special(rng, (2, 4), dt)], {"axis": 0}, grad=False,
                           note=f"{dt} special values"))
    return out


register_op(
    "concat",
    doc="Join inputs along 'axis'; other dims must match.  One or more inputs of one dtype.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.ALL},
    variadic=True,
    attrs={"axis": AttrSpec("int", doc="the axis joined along")},
    infer=_concat_infer,
    reference=lambda inputs, attrs: np.concatenate(inputs, axis=attrs["axis"]),
    examples=_concat_examples,
)


def concat(values, axis=0, name=None):
    """Join a list of tensors along ``axis``."""
    return build("concat", as_tensors(*values), {"axis": axis}, name=name)


def _split_infer(ctx):
    shape = ctx.shape(0)
    if not shape:
        ctx.fail("cannot split a scalar")
    axis = ctx.normalize_axis(ctx.attrs["axis"], len(shape))
    sizes = ctx.attrs["sizes"]
    if not sizes or any(s < 0 for s in sizes):
        ctx.fail(f"sizes={list(sizes)} must be a non-empty list of sizes >= 0")
    if isinstance(shape[axis], int) and sum(sizes) != shape[axis]:
        ctx.fail(f"sizes={list(sizes)} sum to {sum(sizes)}, but axis {axis} has size {shape[axis]}")
    return [(ctx.dtype(0), shape[:axis] + (s,) + shape[axis + 1:]) for s in sizes]


def _split_ref(inputs, attrs):
    x = inputs[0]
    cuts = np.cumsum(attrs["sizes"])[:-1]
    return [p.copy() for p in np.split(x, cuts, axis=attrs["axis"])]


register_op(
    "split",
    doc="Cut x along 'axis' into pieces of 'sizes' (one output per size).",
    inputs=[("x", dtypes.ALL)],
    attrs={"axis": AttrSpec("int", doc="the axis split"), "sizes": AttrSpec("ints", doc="the size of each part")},
    infer=_split_infer,
    reference=_split_ref,
    examples=_all_dtype_examples([((7,), {"axis": 0, "sizes": (3, 4)}), ((2, 6), {"axis": 1, "sizes": (1, 0, 5)}),
                                  ((4, 3), {"axis": -2, "sizes": (4,)}), ((1,), {"axis": 0, "sizes": (1, 0)}),
                                  ((0, 3), {"axis": 1, "sizes": (2, 1)}),
                                  (ODD, {"axis": 2, "sizes": (37, 37)})]),
)


def split(x, num_or_sizes, axis=0, name=None):
    """Split into ``num_or_sizes`` equal pieces (an int) or pieces of the given sizes."""
    (x,) = as_tensors(x)
    if isinstance(num_or_sizes, (int, np.integer)):
        dim = x.shape[axis]
        if not isinstance(dim, int) or dim % num_or_sizes:
            raise ValueError(f"split: axis {axis} of size {dim} does not divide into {num_or_sizes} pieces")
        sizes = (dim // num_or_sizes,) * num_or_sizes
    else:
        sizes = tuple(int(s) for s in num_or_sizes)
    out = build("split", [x], {"axis": axis, "sizes": sizes}, name=name)
    return list(out) if isinstance(out, tuple) else [out]


# -- slice ---------------------------------------------------------------------------------------

def _slice_params(ctx, rank):
    a = ctx.attrs
    starts, ends = a["starts"], a["ends"]
    axes = a["axes"] if a["axes"] is not None else tuple(range(len(starts)))
    steps = a["steps"] if a["steps"] is not None else (1,) * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        ctx.fail("starts, ends, axes and steps must have one length")
    if any(s == 0 for s in steps):
        ctx.fail("steps must not be 0")
    norm = [ctx.normalize_axis(ax, rank, "axes") for ax in axes]
    if len(set(norm)) != len(norm):
        ctx.fail(f"axes={list(axes)} repeats an axis")
    return starts, ends, norm, steps


def _slice_infer(ctx):
    shape = list(ctx.shape(0))
    starts, ends, axes, steps = _slice_params(ctx, len(shape))
    for s, e, ax, st in zip(starts, ends, axes, steps):
        d = shape[ax]
        shape[ax] = len(range(*builtins.slice(s, e, st).indices(d))) if isinstance(d, int) else None
    return ctx.dtype(0), tuple(shape)


def slice_index(ndim, attrs):
    """The numpy index tuple that the slice attrs describe for a rank-``ndim`` array."""
    starts, ends = attrs["starts"], attrs["ends"]
    axes = attrs["axes"] if attrs["axes"] is not None else range(len(starts))
    steps = attrs["steps"] if attrs["steps"] is not None else (1,) * len(starts)
    index = [builtins.slice(None)] * ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[ax % ndim] = builtins.slice(s, e, st)
    return tuple(index)


SLICE_ATTRS = {"starts": AttrSpec("ints", doc="first index per sliced axis (negative: from the end; clamped)"),
               "ends": AttrSpec("ints", doc="one past the last index per sliced axis (clamped)"),
               "axes": AttrSpec("ints", default=None, optional=True, doc="the sliced axes; None: 0..len(starts)-1"),
               "steps": AttrSpec("ints", default=None, optional=True, doc="stride per sliced axis (nonzero); None: 1")}


def _slice_ref(inputs, attrs):
    x = inputs[0]
    return x[slice_index(x.ndim, attrs)].copy()


def _slice_examples(rng):
    cases = [((10,), dict(starts=(2,), ends=(8,), axes=None, steps=None)),
             ((10,), dict(starts=(-3,), ends=(END,), axes=(0,), steps=(1,))),
             ((10,), dict(starts=(8,), ends=(1,), axes=(0,), steps=(-3,))),
             ((10,), dict(starts=(-1,), ends=(-END,), axes=(0,), steps=(-1,))),
             ((5, 6), dict(starts=(1, 0), ends=(4, 6), axes=(0, 1), steps=(2, 5))),
             ((5, 6), dict(starts=(4,), ends=(2,), axes=(1,), steps=(1,))),
             ((0, 3), dict(starts=(0,), ends=(2,), axes=(1,), steps=(1,))),
             ((1,), dict(starts=(0,), ends=(1,), axes=(0,), steps=(1,))),
             ((72, 73, 74), dict(starts=(1, 3), ends=(70, END), axes=(0, 2), steps=(3, 1)))]
    return _all_dtype_examples(cases)(rng)


register_op(
    "slice",
    doc="y = x[starts:ends:steps] along 'axes' (all axes in order when None; steps default 1), "
        "numpy semantics: negative indices count from the end, out-of-range bounds clamp.",
    inputs=[("x", dtypes.ALL)],
    attrs=SLICE_ATTRS,
    infer=_slice_infer,
    reference=_slice_ref,
    examples=_slice_examples,
)


def slice(x, starts, ends, axes=None, steps=None, name=None):  # noqa: A001
    """x[starts:ends:steps] along ``axes`` (numpy semantics)."""
    attrs = {"starts": tuple(starts), "ends": tuple(ends), "axes": None if axes is None else tuple(axes),
             "steps": None if steps is None else tuple(steps)}
    return build("slice", as_tensors(x), attrs, name=name)


def getitem(x, key):
    """``x[key]`` for ints, slices, ``None`` (new axis) and ``...``; lowers to slice, squeeze
    and expand_dims nodes."""
    if not isinstance(key, tuple):
        key = (key,)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for a tensor of rank {x.ndim}")
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded.extend([builtins.slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(k)
    starts, ends, axes, steps, squeeze_axes, new_axes = [], [], [], [], [], []
    axis = 0
    out_pos = 0
    for k in expanded:
        if k is None:
            new_axes.append(out_pos)
            out_pos += 1
            continue
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            k = int(k)
            d = x.shape[axis]
            if isinstance(d, int) and not -d <= k < d:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {d}")
            starts.append(k)
            ends.append(k + 1 if k != -1 else END)
            axes.append(axis)
            steps.append(1)
            squeeze_axes.append(axis)
        elif isinstance(k, builtins.slice):
            if k != builtins.slice(None):
                step = 1 if k.step is None else int(k.step)
                starts.append((0 if step > 0 else -1) if k.start is None else int(k.start))
                ends.append((END if step > 0 else -END) if k.stop is None else int(k.stop))
                axes.append(axis)
                steps.append(step)
            out_pos += 1
        else:
            raise TypeError(f"unsupported index {k!r}: use ints, slices, None or ...")
        axis += 1
    y = x
    if axes:
        y = slice(y, starts, ends, axes, steps)
    if squeeze_axes:
        y = squeeze(y, tuple(squeeze_axes))
    if new_axes:
        y = expand_dims(y, tuple(new_axes))
    return y




# -- gradients -------------------------------------------------------------------------------------

@defgrad("broadcast_to")
def _grad_broadcast_to(ctx):
    return [unbroadcast(ctx.g, ctx.x)]


def _grad_view(ctx):
    """reshape, expand_dims and squeeze keep the elements in order: the gradient is the
    upstream gradient in the input's shape."""
    return [reshape_as(ctx.g, ctx.x)]


for _view_op in ("reshape", "expand_dims", "squeeze"):
    defgrad(_view_op)(_grad_view)


@defgrad("transpose")
def _grad_transpose(ctx):
    perm = ctx.attrs["perm"]
    if perm is None:
        return [transpose(ctx.g)]
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return [transpose(ctx.g, tuple(inverse))]


@defgrad("concat")
def _grad_concat(ctx):
    axis = ctx.attrs["axis"] % ctx.y.ndim
    grads, start = [], 0
    for x in ctx.inputs:
        size = x.shape[axis]
        if not isinstance(size, int) or not isinstance(start, int):
            raise GraphError(f"{ctx.node.describe()}: the gradient of concat needs static sizes along axis "
                             f"{axis}; bind the shapes first (gc.compile does)")
        if size == 0:
            grads.append(zeros_like(x))
        else:
            grads.append(slice(ctx.g, (start,), (start + size,), (axis,), (1,)))
        start += size
    return grads


@defgrad("split")
def _grad_split(ctx):
    return [concat(list(ctx.grads), axis=ctx.attrs["axis"])]


@defgrad("slice")
def _grad_slice(ctx):
    return [F.slice_grad(ctx.g, ctx.x, ctx.attrs)]
