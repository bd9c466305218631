"""Padding and flattening: ``pad`` (ops pad and pad_grad) and ``flatten`` (a builder over reshape).

Convention: ``pads`` is numpy.pad's — one ``(before, after)`` pair per axis, for every axis,
in axis order.  torch.nn.functional.pad's flat list (last axis first, only the trailing axes)
is refused with a message, never guessed at.  In the ops the pairs are stored flat as the
``pads`` attr ``[before_0, after_0, before_1, after_1, ...]``.

Modes (numpy.pad / torch names):
  constant   — the border holds ``value`` (any dtype; for ints/bool an exactly representable value);
  reflect    — mirror without repeating the edge (numpy 'reflect' = torch 'reflect'): pads < dim;
  replicate  — repeat the edge item (numpy 'edge'): a padded axis needs dim >= 1.
"""

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError, ShapeError
from graphc.ops._common import Example, as_tensors, build, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

MODES = ("constant", "reflect", "replicate")
_NUMPY_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def _pairs(flat):
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)]


def _widths(flat):
    """numpy.pad's pad_width for the flat attr (an int array, also for a scalar's empty pads)."""
    return np.asarray(flat, dtype=np.int64).reshape(-1, 2)


def _check_pads(ctx, shape, mode, pads):
    """Shared by pad and pad_grad: the attrs against x's shape (may be symbolic)."""
    if mode not in MODES:
        ctx.fail(f"mode={mode!r} is not one of {', '.join(repr(m) for m in MODES)}")
    if len(pads) != 2 * len(shape):
        ctx.fail(f"pads={list(pads)} must hold 2 * rank = {2 * len(shape)} entries (a (before, after) pair per "
                 f"axis of x, numpy.pad order), got {len(pads)}")
    if any(p < 0 for p in pads):
        ctx.fail(f"pads={list(pads)} has a negative entry (cropping is not padding; use gc.slice)")
    for axis, ((before, after), d) in enumerate(zip(_pairs(pads), shape)):
        if not isinstance(d, int) or (before == 0 and after == 0):
            continue
        if mode == "reflect" and max(before, after) >= d:
            ctx.fail(f"mode 'reflect' needs pads < dim on axis {axis}: dim {d}, pads ({before}, {after})")
        if mode == "replicate" and d == 0:
            ctx.fail(f"mode 'replicate' cannot pad axis {axis} of size 0 (pads ({before}, {after}))")


def _padded_shape(shape, pads):
    return tuple(d + b + a if isinstance(d, int) else None for d, (b, a) in zip(shape, _pairs(pads)))


def _pad_infer(ctx):
    shape = ctx.shape(0)
    a = ctx.attrs
    _check_pads(ctx, shape, a["mode"], a["pads"])
    dt = ctx.dtype(0)
    v = a["value"]
    if a["mode"] != "constant" and dt == "bool":
        ctx.dtype_fail(f"mode {a['mode']!r} takes float or int x, got bool (mode 'constant' takes any dtype)")
    if a["mode"] == "constant" and dt not in dtypes.FLOATS:
        lo, hi = (0, 1) if dt == "bool" else (np.iinfo(dt).min, np.iinfo(dt).max)
        if not (np.isfinite(v) and v == int(v) and lo <= int(v) <= hi):
            ctx.fail(f"value={v!r} is not exactly representable in x's dtype {dt}")
    return dt, _padded_shape(shape, a["pads"])


def _pad_ref(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:  # numpy.pad refuses a scalar; nothing to pad
        return x.copy()
    widths = _widths(attrs["pads"])
    if attrs["mode"] == "constant":
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(attrs["value"]).astype(x.dtype))
    return np.pad(x, widths, mode=_NUMPY_MODE[attrs["mode"]])


def _flat(*pairs):
    return tuple(v for p in pairs for v in p)


# (shape, pads as pairs) cases valid for every mode (reflect: pads < dim; replicate: padded dims >= 1).
_CASES = [((5,), [(2, 3)]), ((3, 4), [(1, 2), (0, 3)]), ((1, 1), [(0, 0), (0, 0)]),
          ((7, 3), [(6, 0), (2, 2)]), ((2, 3, 5), [(0, 0), (1, 1), (4, 4)]),
          ((0, 3), [(0, 0), (1, 2)]), ((1, 3), [(0, 0), (2, 1)]), ((), []),
          ((2, 1, 9, 11), [(0, 0), (0, 0), (3, 2), (1, 4)]), ((4, 37, 37), [(0, 0), (1, 1), (1, 1)])]
# constant only: pads larger than the dim, padding a size-0 or size-1 axis.
_CONSTANT_CASES = [((0,), [(2, 1)]), ((1,), [(3, 4)]), ((2, 0, 3), [(1, 0), (2, 2), (0, 1)]), ((3,), [(5, 7)])]


def _pad_examples(rng):
    # first: the default border 0, valid for every dtype (the schema test retypes example 0)
    out = [Example([rand(rng, (3, 5), "float32")], {"pads": (1, 0, 2, 3), "mode": "constant", "value": 0.0})]
    for mode in MODES:
        for dt in dtypes.ALL:
            if mode != "constant" and dt == "bool":
                continue
            value = 0.0 if mode != "constant" else (1.0 if dt == "bool" else -3.0)
            cases = _CASES + (_CONSTANT_CASES if mode == "constant" else [])
            for shape, pairs in cases:
                out.append(Example([rand(rng, shape, dt)], {"pads": _flat(*pairs), "mode": mode, "value": value},
                                   note=f"{mode} {dt}"))
            out.append(Example([special(rng, (5, 7), dt)], {"pads": _flat((2, 4), (3, 1)), "mode": mode,
                                                             "value": value}, grad=False, note=f"{mode} {dt} special"))
    for v in (np.nan, np.inf, -np.inf, -0.0):  # the border value itself special
        for dt in dtypes.FLOATS:
            out.append(Example([rand(rng, (3, 2), dt)], {"pads": _flat((1, 1), (0, 2)), "mode": "constant",
                                                          "value": v}, note=f"constant value {v} {dt}"))
    return out


register_op(
    "pad",
    doc="y = x with pads[2i] items before and pads[2i+1] after along axis i (numpy.pad per-axis pairs, "
        "flattened); 'mode' constant (border = 'value'), reflect (mirror without the edge; pads < dim) or "
        "replicate (repeat the edge, numpy 'edge').",
    inputs=[("x", dtypes.ALL)],
    attrs={"pads": AttrSpec("ints", doc="[before_0, after_0, before_1, after_1, ...], one pair per axis, >= 0"),
           "mode": AttrSpec("str", default="constant", doc="'constant', 'reflect' or 'replicate'"),
           "value": AttrSpec("float", default=0.0, doc="the border value of mode 'constant' (cast to x's dtype)")},
    infer=_pad_infer,
    reference=_pad_ref,
    examples=_pad_examples,
)


# -- pad_grad --------------------------------------------------------------------------------------

def _pad_grad_infer(ctx):
    shape = ctx.shape(1)
    a = ctx.attrs
    _check_pads(ctx, shape, a["mode"], a["pads"])
    want = _padded_shape(shape, a["pads"])
    g = ctx.shape(0)
    if len(g) != len(want) or any(isinstance(p, int) and isinstance(q, int) and p != q for p, q in zip(g, want)):
        ctx.fail(f"expects a gradient of the padded shape {want}, got {g}")
    return ctx.dtype(1), shape


def _pad_grad_ref(inputs, attrs):
    g, x = inputs
    if x.ndim == 0:
        return g.copy()
    # Where each item of the padded output was read from (a flat index of x; -1: the constant border),
    # then every item of g added to its source, in C order of g.
    src = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    widths = _widths(attrs["pads"])
    if attrs["mode"] == "constant":
        src = np.pad(src, widths, mode="constant", constant_values=-1)
    else:
        src = np.pad(src, widths, mode=_NUMPY_MODE[attrs["mode"]])
    out = np.zeros(x.size, g.dtype)
    keep = src.reshape(-1) >= 0
    np.add.at(out, src.reshape(-1)[keep], g.reshape(-1)[keep])
    return out.reshape(x.shape)


def _pad_grad_examples(rng):
    out = []
    for mode in MODES:
        for dt in dtypes.FLOATS:
            cases = _CASES + (_CONSTANT_CASES if mode == "constant" else [])
            for shape, pairs in cases:
                pads = _flat(*pairs)
                g = rand(rng, _padded_shape(shape, pads), dt)
                out.append(Example([g, rand(rng, shape, dt)], {"pads": pads, "mode": mode}, note=f"{mode} {dt}"))
            pads = _flat((2, 4), (3, 1))
            out.append(Example([special(rng, (11, 11), dt), rand(rng, (5, 7), dt)], {"pads": pads, "mode": mode},
                               grad=False, note=f"{mode} {dt} special"))
    return out


register_op(
    "pad_grad",
    doc="The adjoint of pad: each item of g (pad's output shape) added to the item of x it was read from; "
        "the constant border is dropped.  Only the shape of x is read.",
    inputs=[("g", "T"), ("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"pads": AttrSpec("ints", doc="as in pad"),
           "mode": AttrSpec("str", default="constant", doc="as in pad")},
    infer=_pad_grad_infer,
    reference=_pad_grad_ref,
    examples=_pad_grad_examples,
)


@defgrad("pad")
def _grad_pad(ctx):
    return [build("pad_grad", [ctx.g, ctx.x], {"pads": ctx.attrs["pads"], "mode": ctx.attrs["mode"]})]


@defgrad("pad_grad")
def _grad_pad_grad(ctx):
    # pad_grad is the adjoint of the linear map pad (with a zero border), so its adjoint is pad again.
    return [build("pad", [ctx.g], {"pads": ctx.attrs["pads"], "mode": ctx.attrs["mode"], "value": 0.0}), None]


def pad(x, pads, mode="constant", value=0.0, name=None):
    """``x`` padded as ``numpy.pad(x, pads, mode)``.

    ``pads``: one ``(before, after)`` pair of non-negative ints per axis of x, in axis order
    (numpy.pad's convention; torch.nn.functional.pad's flat last-axis-first list is refused).
    ``mode``: ``"constant"`` (border ``value``, cast to x's dtype), ``"reflect"`` (mirror
    without repeating the edge; each pad < the dim) or ``"replicate"`` (repeat the edge item).
    """
    (x,) = as_tensors(x)
    try:
        pairs = [tuple(p) for p in pads]
    except TypeError:
        pairs = None
    if pairs is None or any(len(p) != 2 for p in pairs):
        raise ShapeError(f"pad: pads={pads!r} must be one (before, after) pair per axis of x (numpy.pad "
                         f"convention, {x.ndim} pairs for x of rank {x.ndim}); a flat list such as "
                         f"torch.nn.functional.pad takes (last axis first) is not accepted")
    if len(pairs) != x.ndim:
        raise ShapeError(f"pad: pads={pads!r} has {len(pairs)} pairs, x of shape {x.shape} needs {x.ndim} "
                         f"(one (before, after) pair per axis, numpy.pad convention)")
    if mode not in MODES:
        raise ShapeError(f"pad: mode={mode!r} is not one of {', '.join(repr(m) for m in MODES)} "
                         f"(numpy's 'edge' is 'replicate')")
    flat = []
    for p in pairs:
        for v in p:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ShapeError(f"pad: pads={pads!r} must hold ints, got {v!r}")
            flat.append(int(v))
    return build("pad", [x], {"pads": tuple(flat), "mode": mode, "value": float(value)}, name=name)


# -- flatten ---------------------------------------------------------------------------------------

def flatten(x, start_axis=1, end_axis=-1, name=None):
    """``torch.flatten(x, start_axis, end_axis)``: axes start_axis..end_axis (inclusive) merged into one.

    Emits one ``reshape`` (a view): with the concrete shape when the shape is static, with
    ``-1`` at the one dim that is not known otherwise (a symbolic batch dim, or a symbolic dim
    inside the merged axes).  A shape with unknown dims in two output positions cannot be one
    reshape and is refused.  A scalar flattens to shape (1,).
    """
    (x,) = as_tensors(x)
    shape = tuple(x.shape)
    rank = len(shape)
    span = max(rank, 1)
    for what, a in (("start_axis", start_axis), ("end_axis", end_axis)):
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not -span <= a < span:
            raise ShapeError(f"flatten: {what}={a!r} is out of range for x of shape {shape} (rank {rank})")
    s, e = start_axis % span, end_axis % span
    if s > e:
        raise ShapeError(f"flatten: start_axis={start_axis} comes after end_axis={end_axis} for x of rank {rank}")
    if rank == 0:
        return build("reshape", [x], {"shape": (1,)}, name=name)
    merged = 1
    for d in shape[s:e + 1]:
        merged = merged * d if isinstance(merged, int) and isinstance(d, int) else None
    out = list(shape[:s]) + [merged] + list(shape[e + 1:])
    unknown = [i for i, d in enumerate(out) if not isinstance(d, int)]
    if len(unknown) > 1:
        raise GraphError(f"flatten: x of shape {shape} flattened over axes {s}..{e} leaves {len(unknown)} unknown "
                         f"dims; one reshape can infer only one (-1): bind the shapes first")
    for i in unknown:
        out[i] = -1
    return build("reshape", [x], {"shape": tuple(out)}, name=name)

