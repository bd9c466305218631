"""The k largest (or smallest) items along an axis, and the gather/scatter pair its gradient is built
from: ``topk``, ``take_along_axis`` and ``take_along_axis_grad`` (kernels: runtime/cpu/topk.cc).

* ``topk(x, k, axis, largest, sorted)`` -> (values, indices int64), ``torch.topk``/ONNX TopK:
  the order is a strict total order, so the result is unique: NaN counts as larger than every
  number (torch's rule: with ``largest`` the NaNs come first, with ``largest=False`` last); equal
  values (``-0.0 == 0.0`` included) and NaNs among themselves keep the lower index first.
  ``sorted=True`` lists the k items best first; ``sorted=False`` lists the same k items in the
  order of their index along the axis (torch leaves that order unspecified).  ``0 <= k <= n``.
  The kernel selects without sorting the whole axis (``std::partial_sort``: O(n log k)).
  The gradient of the values goes back to the positions they came from (``take_along_axis_grad``);
  the indices have none.
* ``take_along_axis(x, indices, axis)`` = ``torch.gather(x, axis, indices)`` =
  ``numpy.take_along_axis``: ``y[..., j, ...] = x[..., indices[..., j, ...], ...]``; indices int64
  of x's rank and x's shape on every other axis; an index outside ``[0, x.shape[axis])`` (a
  negative one included) is a run-time error, never a read out of bounds.
* ``take_along_axis_grad(g, indices, x, axis)``: its adjoint, a scatter-add into zeros of x's
  shape; each line along the axis adds its items in index order, so the sums are the same bits
  at any thread count.  Only the shape of x is read.
"""

import numpy as np

from graphc import dtypes
from graphc.errors import DTypeError, GraphError, ShapeError
from graphc.ops._common import ODD, Example, as_tensors, build, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

_AXIS = AttrSpec("int", default=-1, doc="the axis selected along (negative: from the end)")


def _norm_axis(ctx, rank):
    if rank == 0:
        ctx.fail("expects an input of rank >= 1 (it selects along an axis), got a scalar")
    return ctx.normalize_axis(ctx.attrs["axis"], rank)


def _same_except(ctx, a_shape, b_shape, axis, a_name, b_name):
    """a and b have one rank and equal dims except on axis (symbolic dims pass)."""
    if len(a_shape) != len(b_shape):
        ctx.fail(f"{a_name} and {b_name} must have the same rank, got {tuple(a_shape)} and {tuple(b_shape)}")
    for i, (p, q) in enumerate(zip(a_shape, b_shape)):
        if i != axis and isinstance(p, int) and isinstance(q, int) and p != q:
            ctx.fail(f"{a_name} {tuple(a_shape)} and {b_name} {tuple(b_shape)} must agree on every axis but "
                     f"{axis}; they differ on axis {i}")


# -- topk ------------------------------------------------------------------------------------------


def _topk_infer(ctx):
    shape = tuple(ctx.shape(0))
    axis = _norm_axis(ctx, len(shape))
    k = ctx.attrs["k"]
    n = shape[axis]
    if k < 0 or (isinstance(n, int) and k > n):
        ctx.fail(f"k={k} must lie in [0, {n}] (the size of axis {axis} of x {shape})")
    out = shape[:axis] + (k,) + shape[axis + 1:]
    return [(ctx.dtype(0), out), ("int64", out)]


def _topk_order(xm, largest):
    """The positions of each last-axis line of xm, best first (the op's total order)."""
    nan = np.isnan(xm)
    filled = np.where(nan, 0, xm)
    # lexsort: the last key is the primary one, and equal keys keep their index order (stable).
    if largest:
        return np.lexsort((-filled, ~nan), axis=-1)
    return np.lexsort((filled, nan), axis=-1)


def _topk_ref(inputs, attrs):
    x = inputs[0]
    axis = attrs["axis"] % x.ndim
    xm = np.moveaxis(x, axis, -1)
    sel = _topk_order(xm, attrs["largest"])[..., :attrs["k"]].astype(np.int64)
    if not attrs["sorted"]:
        sel = np.sort(sel, axis=-1)
    values = np.take_along_axis(xm, sel, axis=-1)
    return (np.ascontiguousarray(np.moveaxis(values, -1, axis)),
            np.ascontiguousarray(np.moveaxis(sel, -1, axis)))


# (x shape, axis, k): k = 0, k = 1, k = n, an empty axis, size-1 axes, odd sizes, a long row
_TOPK_CASES = [((7,), 0, 3), ((7,), -1, 0), ((7,), 0, 7), ((1,), 0, 1), ((0,), 0, 0), ((5, 9), 1, 4),
               ((5, 9), 0, 2), ((5, 9), -1, 9), ((3, 0, 4), 1, 0), ((0, 6), 1, 2), ((4, 5, 6), 1, 3),
               ((2, 3, 5), 0, 1), ((5, 1, 3), 1, 1), (ODD, 2, 5), (ODD, 1, 73), ((3, 300), 1, 10),
               ((2, 129), 1, 100)]
_FLAGS = [(True, True), (False, True), (True, False), (False, False)]


def _topk_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for largest, srt in _FLAGS:
            flags = {"largest": largest, "sorted": srt}
            for shape, axis, k in _TOPK_CASES:
                out.append(Example([rand(rng, shape, dt)], {"k": k, "axis": axis, **flags}, note=f"{dt} {flags}"))
            # NaN/±inf/±0.0/extremes; several NaNs and equal values in a line: the order rule decides
            out.append(Example([special(rng, (6, 12), dt)], {"k": 7, "axis": 1, **flags}, grad=False,
                               note=f"{dt} special {flags}"))
            out.append(Example([special(rng, (12, 5), dt)], {"k": 12, "axis": 0, **flags}, grad=False,
                               note=f"{dt} special all {flags}"))
            # a long line and a small k (the kernel's heap path) over special values
            out.append(Example([special(rng, (3, 200), dt)], {"k": 6, "axis": 1, **flags}, grad=False,
                               note=f"{dt} special long {flags}"))
            ties = np.resize(np.asarray([1, 3, 3, -0.0, 0.0, 3, np.nan, 1, np.nan], dt), (4, 9))
            out.append(Example([ties], {"k": 5, "axis": 1, **flags}, grad=False, note=f"{dt} ties {flags}"))
    return out


def _topk_cost(in_shapes, out_shapes, attrs):
    shape = in_shapes[0]
    n = shape[attrs["axis"] % len(shape)] if shape else 1
    lines = int(np.prod(shape, dtype=np.int64)) // max(n, 1)
    return lines * n * max(1, int(np.log2(max(attrs["k"], 2))))


register_op(
    "topk",
    doc="(values, indices) = the k largest (largest=False: smallest) items of x along 'axis' and their int64 "
        "positions (torch.topk, ONNX TopK).  Total order: NaN above every number; equal values and NaNs keep "
        "the lower index first.  sorted: best first; otherwise in index order.  0 <= k <= x.shape[axis].",
    inputs=[("x", dtypes.FLOATS)],
    attrs={"k": AttrSpec("int", doc="how many items to keep, 0 <= k <= x.shape[axis]"),
           "axis": _AXIS,
           "largest": AttrSpec("bool", default=True, doc="keep the largest items (False: the smallest)"),
           "sorted": AttrSpec("bool", default=True, doc="best first (False: in the order of their index)")},
    infer=_topk_infer,
    reference=_topk_ref,
    examples=_topk_examples,
    cost=_topk_cost,
)


@defgrad("topk")
def _grad_topk(ctx):
    x = ctx.inputs[0]
    _, indices = ctx.outputs
    return [build("take_along_axis_grad", [ctx.grads[0], indices, x], {"axis": ctx.attrs["axis"]})]


# -- take_along_axis / take_along_axis_grad ------------------------------------------------------------


def _take_infer(ctx):
    x, idx = tuple(ctx.shape(0)), tuple(ctx.shape(1))
    axis = _norm_axis(ctx, len(x))
    _same_except(ctx, x, idx, axis, "x", "indices")
    return ctx.dtype(0), idx


def _take_grad_infer(ctx):
    g, idx, x = tuple(ctx.shape(0)), tuple(ctx.shape(1)), tuple(ctx.shape(2))
    axis = _norm_axis(ctx, len(x))
    _same_except(ctx, x, idx, axis, "x", "indices")
    if len(g) != len(idx) or any(isinstance(p, int) and isinstance(q, int) and p != q for p, q in zip(g, idx)):
        ctx.fail(f"expects g of the shape of indices {idx}, got {g}")
    return ctx.dtype(0), x


def _check_indices(idx, n, what):
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].flat[0]
        raise ValueError(f"{what}: index {int(bad)} is outside [0, {n})")


def _take_ref(inputs, attrs):
    x, idx = inputs
    axis = attrs["axis"] % x.ndim
    _check_indices(idx, x.shape[axis], "take_along_axis")
    return np.take_along_axis(x, idx.astype(np.int64), axis=axis)


def _take_grad_ref(inputs, attrs):
    g, idx, x = inputs
    axis = attrs["axis"] % x.ndim
    _check_indices(idx, x.shape[axis], "take_along_axis_grad")
    out = np.zeros(x.shape, g.dtype)
    # np.add.at adds in C order of idx, which is the order the kernel's sums follow along each line
    full = np.indices(idx.shape, sparse=False)
    where = tuple(idx if d == axis else full[d] for d in range(x.ndim))
    with np.errstate(over="ignore", invalid="ignore"):
        np.add.at(out, where, g)
    return out


# (x shape, indices shape, axis)
_TAKE_CASES = [((7,), (3,), 0), ((7,), (0,), 0), ((1,), (4,), 0), ((0,), (0,), -1), ((5, 9), (5, 4), 1),
               ((5, 9), (2, 9), 0), ((4, 5, 6), (4, 7, 6), 1), ((4, 5, 6), (4, 5, 1), -1), ((3, 0, 4), (3, 0, 4), 1),
               ((0, 6), (0, 2), 1), ((2, 0, 3), (2, 0, 5), 2), ((5, 1, 3), (5, 2, 3), 1), (ODD, (72, 73, 9), 2),
               ((3, 300), (3, 40), 1)]


def _indices(rng, n, shape):
    return rng.integers(0, n, size=shape).astype(np.int64) if n else np.zeros(shape, np.int64)


def _take_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for xs, ishape, axis in _TAKE_CASES:
            n = xs[axis]
            if n == 0 and int(np.prod(ishape)) > 0:
                continue  # no valid index into an empty axis
            out.append(Example([rand(rng, xs, dt), _indices(rng, n, ishape)], {"axis": axis}, note=dt))
        out.append(Example([special(rng, (6, 11), dt), _indices(rng, 11, (6, 20))], {"axis": 1}, grad=False,
                           note=f"{dt} special"))
    return out


def _take_grad_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for xs, ishape, axis in _TAKE_CASES:
            n = xs[axis]
            if n == 0 and int(np.prod(ishape)) > 0:
                continue
            out.append(Example([rand(rng, ishape, dt), _indices(rng, n, ishape), rand(rng, xs, dt)], {"axis": axis},
                               note=dt))
        # many repeats in a line: the order of the sums matters
        out.append(Example([rand(rng, (3, 40), dt, -1e3, 1e3), _indices(rng, 3, (3, 40)), rand(rng, (3, 3), dt)],
                           {"axis": 1}, note=f"{dt} repeated indices"))
        out.append(Example([special(rng, (6, 20), dt), _indices(rng, 4, (6, 20)), rand(rng, (6, 4), dt)],
                           {"axis": 1}, grad=False, note=f"{dt} special"))
    return out


register_op(
    "take_along_axis",
    doc="y[..., j, ...] = x[..., indices[..., j, ...], ...] along 'axis' (torch.gather, numpy.take_along_axis): "
        "indices int64 of x's rank and x's shape on every other axis; y has indices' shape.  An index outside "
        "[0, x.shape[axis]) (negative included) is an error.",
    inputs=[("x", dtypes.ALL), ("indices", ("int64",))],
    attrs={"axis": _AXIS},
    infer=_take_infer,
    reference=_take_ref,
    examples=_take_examples,
)

register_op(
    "take_along_axis_grad",
    doc="The adjoint of take_along_axis w.r.t. x: zeros of x's shape, then g[..., j, ...] added at "
        "[..., indices[..., j, ...], ...], each line in index order (deterministic at any thread count).  Only "
        "the shape of x is read.",
    inputs=[("g", "T"), ("indices", ("int64",)), ("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"axis": _AXIS},
    infer=_take_grad_infer,
    reference=_take_grad_ref,
    examples=_take_grad_examples,
)


@defgrad("take_along_axis")
def _grad_take_along_axis(ctx):
    x, indices = ctx.inputs
    return [build("take_along_axis_grad", [ctx.g, indices, x], {"axis": ctx.attrs["axis"]}), None]


@defgrad("take_along_axis_grad")
def _grad_take_along_axis_grad(ctx):
    # linear in g, the adjoint of take_along_axis: its adjoint is take_along_axis again
    _, indices, _ = ctx.inputs
    return [build("take_along_axis", [ctx.g, indices], {"axis": ctx.attrs["axis"]}), None, None]


# -- builders --------------------------------------------------------------------------------------


def _check_axis(op, axis):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise GraphError(f"{op}: axis={axis!r} must be an int")
    return int(axis)


def topk(x, k, axis=-1, largest=True, sorted=True, name=None):  # noqa: A002  (torch's argument name)
    """``torch.topk(x, k, axis, largest, sorted)``: the ``k`` largest (``largest=False``: smallest)
    items of float ``x`` along ``axis`` and their int64 positions, as a pair ``(values, indices)``
    of shape ``x.shape`` with ``k`` on ``axis``.

    NaN counts as larger than every number; equal values keep the lower index first, so the
    result is unique.  ``sorted=True``: best first; ``sorted=False``: the same items in the
    order of their index.  ``0 <= k <= x.shape[axis]``.  The values' gradient goes back to the
    positions they came from.

    Example (sampling: the k most likely next tokens, see docs/text.md)::

        values, indices = gc.topk(logits / temperature, k=40)
    """
    (x,) = as_tensors(x)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise GraphError(f"topk: k={k!r} must be an int >= 0")
    attrs = {"k": int(k), "axis": _check_axis("topk", axis), "largest": bool(largest), "sorted": bool(sorted)}
    return build("topk", [x], attrs, name=name)


def take_along_axis(x, indices, axis=-1, name=None):
    """``torch.gather(x, axis, indices)`` / ``numpy.take_along_axis``: ``y[..., j, ...] =
    x[..., indices[..., j, ...], ...]``.  ``indices`` are int64 of x's rank with x's shape on every
    axis but ``axis``; an index outside ``[0, x.shape[axis])`` (negative included) raises
    :class:`graphc.errors.RuntimeExecutionError` at run time naming the node."""
    x, indices = as_tensors(x, indices)
    if indices.dtype != "int64":
        raise DTypeError(f"take_along_axis: indices must be int64, got {indices.dtype}")
    if x.ndim != indices.ndim:
        raise ShapeError(f"take_along_axis: x {tuple(x.shape)} and indices {tuple(indices.shape)} must have the "
                         "same rank")
    return build("take_along_axis", [x, indices], {"axis": _check_axis("take_along_axis", axis)}, name=name)
