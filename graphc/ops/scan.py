"""Triangle masks, running sums and arg-max: ``tril``/``triu``, ``cumsum`` and ``argmax``
(kernels: runtime/cpu/scan.cc).  PyTorch semantics, with the differences stated per op.

* ``tril(x, diagonal)`` / ``triu(x, diagonal)``: over the last two axes (rank >= 2, any dtype);
  item (i, j) is kept where ``j - i <= diagonal`` (tril) or ``j - i >= diagonal`` (triu), else 0.
  Their gradients are the same op on dy (a mask is its own adjoint).
* ``cumsum(x, axis, exclusive, reverse)``: float and int dtypes; the sum runs sequentially along
  the axis (from the end with ``reverse``), so results are the same bits at any thread count.
  The dtype is kept (torch and numpy promote int32 to int64); int sums wrap around.
* ``argmax(x, axis, keepdims)`` -> int64: the first maximum wins; NaN counts as larger than
  everything (the first NaN wins), as in torch.argmax and numpy.argmax.  Not differentiable.
"""

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import ODD, Example, as_tensors, build, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

# -- tril / triu -----------------------------------------------------------------------------------


def _tri_infer(ctx):
    if len(ctx.shape(0)) < 2:
        ctx.fail(f"expects an input of rank >= 2 (the mask covers the last two axes), got shape {ctx.shape(0)}")
    return ctx.dtype(0), ctx.shape(0)


def _tri_ref(upper):
    def ref(inputs, attrs):
        x = inputs[0]
        k = attrs["diagonal"]
        return (np.triu(x, k) if upper else np.tril(x, k)).astype(x.dtype)
    return ref


_TRI_CASES = [((1, 1), 0), ((3, 3), 0), ((4, 3), 0), ((3, 5), 1), ((5, 3), -1), ((2, 4, 4), 2), ((2, 3, 4, 5), -2),
              ((0, 3), 0), ((3, 0), 0), ((2, 0, 3), 1), ((3, 4), 100), ((3, 4), -100), ((5, 7), -4), ((5, 7), 6),
              ((2, 9, 11), 0), (ODD[1:], 0), ((1, 73, 73), -1)]


def _tri_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for shape, k in _TRI_CASES:
            out.append(Example([rand(rng, shape, dt)], {"diagonal": k}, note=dt))
        out.append(Example([special(rng, (6, 7), dt)], {"diagonal": 0}, grad=False, note=f"{dt} special"))
    return out


_DIAGONAL = AttrSpec("int", default=0, doc="0: the main diagonal; > 0 above it, < 0 below it")

register_op(
    "tril",
    doc="y = x where j - i <= diagonal, else 0, for item (i, j) of the last two axes (torch.tril).",
    inputs=[("x", dtypes.ALL)],
    attrs={"diagonal": _DIAGONAL},
    infer=_tri_infer,
    reference=_tri_ref(False),
    examples=_tri_examples,
)

register_op(
    "triu",
    doc="y = x where j - i >= diagonal, else 0, for item (i, j) of the last two axes (torch.triu).",
    inputs=[("x", dtypes.ALL)],
    attrs={"diagonal": _DIAGONAL},
    infer=_tri_infer,
    reference=_tri_ref(True),
    examples=_tri_examples,
)


@defgrad("tril")
def _grad_tril(ctx):
    return [build("tril", [ctx.g], {"diagonal": ctx.attrs["diagonal"]})]


@defgrad("triu")
def _grad_triu(ctx):
    return [build("triu", [ctx.g], {"diagonal": ctx.attrs["diagonal"]})]


def _check_diagonal(op, diagonal):
    if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
        raise GraphError(f"{op}: diagonal={diagonal!r} must be an int")
    return int(diagonal)


def tril(x, diagonal=0, name=None):
    """``torch.tril(x, diagonal)``: the lower triangle of the last two axes (items with
    ``col - row <= diagonal``), zeros elsewhere.  x of rank >= 2, any dtype."""
    return build("tril", as_tensors(x), {"diagonal": _check_diagonal("tril", diagonal)}, name=name)


def triu(x, diagonal=0, name=None):
    """``torch.triu(x, diagonal)``: the upper triangle of the last two axes (items with
    ``col - row >= diagonal``), zeros elsewhere.  x of rank >= 2, any dtype."""
    return build("triu", as_tensors(x), {"diagonal": _check_diagonal("triu", diagonal)}, name=name)


# -- cumsum ----------------------------------------------------------------------------------------


def _cumsum_infer(ctx):
    ctx.normalize_axis(ctx.attrs["axis"], len(ctx.shape(0)))
    return ctx.dtype(0), ctx.shape(0)


def _cumsum_ref(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        return np.zeros_like(x) if attrs["exclusive"] else x.copy()
    axis = attrs["axis"] % x.ndim
    v = np.flip(x, axis) if attrs["reverse"] else x
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.cumsum(v, axis=axis, dtype=x.dtype)
    if attrs["exclusive"]:
        # y_k = the inclusive sum up to k-1 (so y_1 = x_0 exactly, -0.0 included), y_0 = 0
        zero = np.zeros_like(np.take(s, [0], axis=axis)) if s.shape[axis] else np.take(s, [], axis=axis)
        s = np.concatenate([zero, np.take(s, np.arange(max(s.shape[axis] - 1, 0)), axis=axis)], axis=axis)
        s = s[tuple(slice(0, d) for d in x.shape)]
    return np.ascontiguousarray(np.flip(s, axis) if attrs["reverse"] else s)


_CUMSUM_CASES = [((), 0), ((1,), 0), ((0,), 0), ((7,), 0), ((7,), -1), ((5, 3), 0), ((5, 3), 1), ((4, 3, 5), 1),
                 ((4, 3, 5), -1), ((3, 0, 5), 1), ((3, 0, 5), 2), ((5, 1, 3), 1), (ODD, 1), (ODD, 0), ((2, 300), 1)]
_FLAGS = [(False, False), (True, False), (False, True), (True, True)]


def _cumsum_examples(rng):
    out = []
    for dt in dtypes.NUMERIC:
        for exclusive, reverse in _FLAGS:
            a = {"exclusive": exclusive, "reverse": reverse}
            for shape, axis in _CUMSUM_CASES:
                out.append(Example([rand(rng, shape, dt)], {"axis": axis, **a}, note=f"{dt} {a}"))
            out.append(Example([special(rng, (6, 11), dt)], {"axis": 1, **a}, grad=False, note=f"{dt} special"))
            out.append(Example([special(rng, (11, 6), dt)], {"axis": 0, **a}, grad=False, note=f"{dt} special"))
    return out


register_op(
    "cumsum",
    doc="y_k = x_0 + ... + x_k along 'axis' (exclusive: x_0 + ... + x_{k-1}, y_0 = 0; reverse: the sums run "
        "from the end).  Summed sequentially along the axis; the dtype is kept (int sums wrap).",
    inputs=[("x", dtypes.NUMERIC)],
    attrs={"axis": AttrSpec("int", doc="the axis summed along"),
           "exclusive": AttrSpec("bool", default=False, doc="leave the item itself out of its sum"),
           "reverse": AttrSpec("bool", default=False, doc="sum from the end of the axis")},
    infer=_cumsum_infer,
    reference=_cumsum_ref,
    examples=_cumsum_examples,
)


@defgrad("cumsum")
def _grad_cumsum(ctx):
    # dx_j = sum of dy_i over the i whose sum holds x_j: the same sum run the other way.
    a = ctx.attrs
    return [build("cumsum", [ctx.g], {"axis": a["axis"], "exclusive": a["exclusive"], "reverse": not a["reverse"]})]


def cumsum(x, axis, exclusive=False, reverse=False, name=None):
    """``torch.cumsum(x, axis)``: running sums along ``axis`` (float or int x; the dtype is kept,
    where torch promotes ints to int64).  ``exclusive``: each item's sum leaves the item out
    (the first is 0); ``reverse``: the sums run from the end of the axis."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise GraphError(f"cumsum: axis={axis!r} must be an int")
    return build("cumsum", as_tensors(x), {"axis": int(axis), "exclusive": bool(exclusive),
                                           "reverse": bool(reverse)}, name=name)


# -- argmax ----------------------------------------------------------------------------------------


def arg_extremum_infer(what):
    """The shape inference of argmax / argmin (``what``: "max" / "min"): int64, the axis removed
    (kept as 1 with keepdims); an empty axis is an error."""
    def infer(ctx):
        shape = ctx.shape(0)
        rank = len(shape)
        axis = ctx.normalize_axis(ctx.attrs["axis"], rank)
        if rank == 0:
            return "int64", ()
        if shape[axis] == 0:
            ctx.fail(f"cannot take the arg-{what} over axis {axis} of size 0 (shape {shape})")
        out = list(shape)
        if ctx.attrs["keepdims"]:
            out[axis] = 1
        else:
            del out[axis]
        return "int64", tuple(out)
    return infer


def arg_extremum_ref(np_fn):
    """The numpy reference of argmax / argmin: ``np_fn`` (numpy.argmax / numpy.argmin: the first
    extremum; NaN wins, the first NaN)."""
    def ref(inputs, attrs):
        x = inputs[0]
        if x.ndim == 0:
            return np.zeros((), np.int64)
        return np_fn(x, axis=attrs["axis"] % x.ndim, keepdims=attrs["keepdims"]).astype(np.int64)
    return ref


_ARG_CASES = [((), 0), ((1,), 0), ((7,), -1), ((5, 3), 0), ((5, 3), 1), ((4, 3, 5), 1), ((0, 4), 1),
              ((4, 0, 3), 2), ((5, 1, 3), 1), (ODD, 1), (ODD, 2), ((2, 300), -1)]


def arg_extremum_examples(ties):
    """The examples of argmax / argmin: every numeric dtype, keepdims, the shapes of _ARG_CASES,
    a (4, 5) of repeated ``ties`` rows (the first extremum wins) and special values."""
    def examples(rng):
        out = []
        for dt in dtypes.NUMERIC:
            for keepdims in (False, True):
                for shape, axis in _ARG_CASES:
                    out.append(Example([rand(rng, shape, dt)], {"axis": axis, "keepdims": keepdims}, note=dt))
                x = np.resize(np.asarray(ties, dt), (4, 5))
                out.append(Example([x], {"axis": 1, "keepdims": keepdims}, note=f"{dt} ties"))
                out.append(Example([special(rng, (7, 9), dt)], {"axis": 1, "keepdims": keepdims},
                                   note=f"{dt} special"))
                out.append(Example([special(rng, (9, 7), dt)], {"axis": 0, "keepdims": keepdims},
                                   note=f"{dt} special"))
        return out
    return examples


register_op(
    "argmax",
    doc="y = the index (int64) of the largest item along 'axis'; the first of equal maxima; NaN counts as "
        "the largest (the first NaN wins, torch/numpy).  The axis must not be empty.",
    inputs=[("x", dtypes.NUMERIC)],
    attrs={"axis": AttrSpec("int", default=-1, doc="the axis searched"),
           "keepdims": AttrSpec("bool", default=False, doc="keep the axis with size 1")},
    infer=arg_extremum_infer("max"),
    reference=arg_extremum_ref(np.argmax),
    examples=arg_extremum_examples([1, 3, 3, 2, 3]),   # ties: the first maximum wins
    differentiable=False,
)


def argmax(x, axis=-1, keepdims=False, name=None):
    """``torch.argmax(x, axis, keepdims)``: the int64 index of the largest item along ``axis``;
    the first of equal maxima, and NaN counts as the largest (the first NaN wins)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise GraphError(f"argmax: axis={axis!r} must be an int")
    return build("argmax", as_tensors(x), {"axis": int(axis), "keepdims": bool(keepdims)}, name=name)
