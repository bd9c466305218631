"""Structural ops the ONNX importer maps onto (kernels: runtime/cpu/tensor_extra.cc).

* ``identity(x)``: y = x, any dtype, a view (no copy); the gradient passes through.  The ONNX
  importer names a graph output with it when the tensor producing it has another name.
* ``tile(x, repeats)``: x repeated ``repeats[i]`` times along axis i (numpy.tile with one repeat
  per axis, ONNX Tile), any dtype; the gradient sums the copies.
* ``einsum(*xs, equation)``: Einstein summation (numpy.einsum / ONNX Einsum) of one or more float
  operands, a composite of sum, transpose, reshape and matmul (two operands at a time, left to
  right).  An index repeated inside one operand (a diagonal) is refused.
"""

import builtins
import string

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError, ShapeError
from graphc.ops._common import ODD, Example, F, as_tensors, build, numel, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

# -- identity --------------------------------------------------------------------------------------

_IDENTITY_SHAPES = [(), (1,), (0,), (0, 3), (5, 4), (3, 1, 7), ODD]


def _identity_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for shape in _IDENTITY_SHAPES:
            out.append(Example([rand(rng, shape, dt)], {}, note=dt))
        # data moves bit for bit: NaN payloads, -0.0 and extremes included
        out.append(Example([special(rng, (6, 7), dt)], {}, grad=False, note=f"{dt} special values"))
    return out


register_op(
    "identity",
    doc="y = x (ONNX Identity), any dtype.  A view: the output aliases the input's bytes.",
    inputs=[("x", dtypes.ALL)],
    infer=lambda ctx: (ctx.dtype(0), ctx.shape(0)),
    reference=lambda inputs, attrs: inputs[0].copy(),
    examples=_identity_examples,
    view=True,
)


@defgrad("identity")
def _grad_identity(ctx):
    return [ctx.g]


def identity(x, name=None):
    """y = x under a new name (a view, no copy); the gradient passes through."""
    return build("identity", as_tensors(x), name=name)


# -- tile ------------------------------------------------------------------------------------------

def _tile_infer(ctx):
    shape, reps = ctx.shape(0), ctx.attrs["repeats"]
    if len(reps) != len(shape):
        ctx.fail(f"repeats={list(reps)} must hold one entry per axis of x (rank {len(shape)})")
    if any(r < 0 for r in reps):
        ctx.fail(f"repeats={list(reps)} must be >= 0")
    return ctx.dtype(0), tuple(d * r if isinstance(d, int) else (0 if r == 0 else (d if r == 1 else None))
                               for d, r in zip(shape, reps))


def _tile_ref(inputs, attrs):
    x = inputs[0]
    return np.tile(x, attrs["repeats"]) if x.ndim else x.copy()


_TILE_CASES = [((), ()), ((1,), (1,)), ((3,), (2,)), ((0,), (3,)), ((3,), (0,)), ((2, 3), (1, 1)), ((2, 3), (3, 2)),
               ((2, 1, 3), (2, 5, 1)), ((1, 1), (7, 3)), ((5, 4), (0, 2)), ((2, 3, 4, 5), (1, 2, 1, 3)),
               ((72, 73), (1, 3)), ((3, 5, 7), (2, 1, 3))]


def _tile_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for shape, reps in _TILE_CASES:
            out.append(Example([rand(rng, shape, dt)], {"repeats": reps}, note=dt))
        out.append(Example([special(rng, (3, 7), dt)], {"repeats": (2, 3)}, grad=False, note=f"{dt} special values"))
    return out


register_op(
    "tile",
    doc="y = x repeated repeats[i] times along each axis i (numpy.tile with one repeat per axis, ONNX Tile): "
        "y[j] = x[j mod x.shape]; y.shape[i] = x.shape[i] · repeats[i].  Any dtype.",
    inputs=[("x", dtypes.ALL)],
    attrs={"repeats": AttrSpec("ints", doc="how many copies along each axis (one entry per axis, >= 0)")},
    infer=_tile_infer,
    reference=_tile_ref,
    examples=_tile_examples,
)


@defgrad("tile")
def _grad_tile(ctx):
    # y viewed as (r0, d0, r1, d1, ...): dx sums dy over the r axes
    x, reps = ctx.x, ctx.attrs["repeats"]
    if not all(isinstance(d, int) for d in x.shape):
        raise GraphError(f"{ctx.node.describe()}: the gradient of tile needs x's static shape, got {x.shape}; "
                         "bind the shapes first (gc.compile does)")
    if all(r == 1 for r in reps):
        return [F.reshape(ctx.g, x.shape)]
    split = tuple(v for d, r in zip(x.shape, reps) for v in (r, d))
    g = F.sum(F.reshape(ctx.g, split), axis=tuple(range(0, 2 * len(reps), 2)))
    return [F.reshape(g, x.shape) if g.shape != tuple(x.shape) else g]


def tile(x, repeats, name=None):
    """x repeated ``repeats[i]`` times along axis i (one int per axis of x), as numpy.tile."""
    if isinstance(repeats, (int, np.integer)):
        repeats = (repeats,)
    return build("tile", as_tensors(x), {"repeats": tuple(int(r) for r in repeats)}, name=name)


# -- einsum ----------------------------------------------------------------------------------------

_LETTERS = string.ascii_letters


def parse_einsum(equation, ranks):
    """(operand index strings, output index string) of ``equation`` for operands of ``ranks``, with
    an ellipsis replaced by letters the equation does not use (right-aligned across operands, as
    numpy broadcasts them).  Raises ValueError with the reason for a malformed equation."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation {equation!r} has {len(terms)} operands, got {len(ranks)} inputs")
    used = set(eq) - set(",->.")
    bad = sorted(c for c in used if c not in _LETTERS)
    if bad:
        raise ValueError(f"equation {equation!r} has characters that are not letters: {bad}")
    free = [c for c in _LETTERS if c not in used]
    ell_rank = 0
    for t, r in zip(terms, ranks):
        if t.count("...") > 1 or (t.count(".") != 3 * t.count("...")):
            raise ValueError(f"equation {equation!r}: operand {t!r} has a malformed ellipsis")
        named = len(t.replace("...", ""))
        if "..." in t:
            if named > r:
                raise ValueError(f"equation {equation!r}: operand {t!r} names {named} axes, the input has rank {r}")
            ell_rank = builtins.max(ell_rank, r - named)
        elif named != r:
            raise ValueError(f"equation {equation!r}: operand {t!r} names {named} axes, the input has rank {r}")
    ell = "".join(free[:ell_rank])
    expanded = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            k = r - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_rank - k:])
        if len(set(t)) != len(t):
            raise ValueError(f"equation {equation!r}: operand {t!r} repeats an index (a diagonal): not supported")
        expanded.append(t)
    if arrow:
        if out.count(".") != 3 * out.count("...") or out.count("...") > 1:
            raise ValueError(f"equation {equation!r}: the output has a malformed ellipsis")
        if ell_rank and "..." not in out:
            raise ValueError(f"equation {equation!r}: the operands' ellipsis axes must appear in the output "
                             "('...' on the right, as numpy.einsum requires)")
        out = out.replace("...", ell)
        if len(set(out)) != len(out):
            raise ValueError(f"equation {equation!r}: the output repeats an index")
        missing = [c for c in out if not any(c in t for t in expanded)]
        if missing:
            raise ValueError(f"equation {equation!r}: output indices {missing} appear in no operand")
    else:
        counts = {}
        for t in expanded:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted((c for c, n in counts.items() if n == 1 and c not in ell),
                                   key=_LETTERS.index))
    return expanded, out


def _einsum_infer(ctx):
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs))]
    try:
        terms, out = parse_einsum(ctx.attrs["equation"], [len(s) for s in shapes])
    except ValueError as e:
        ctx.fail(str(e))
    ell = _ellipsis_letters(ctx.attrs["equation"], terms)
    for t, s in zip(terms, shapes):
        for c, d in zip(t, s):
            for t2, s2 in zip(terms, shapes):
                for c2, d2 in zip(t2, s2):
                    if c == c2 and isinstance(d, int) and isinstance(d2, int) and d != d2 and \
                            not (c in ell and 1 in (d, d2)):
                        ctx.fail(f"equation {ctx.attrs['equation']!r}: index {c!r} has sizes {d} and {d2}")
    size = {}
    for t, s in zip(terms, shapes):
        for c, d in zip(t, s):
            if c not in size or size[c] == 1 or (size[c] is None and d != 1):
                size[c] = d
    return ctx.dtype(0), tuple(size[c] for c in out)


def _ellipsis_letters(equation, terms):
    named = set(equation) - set(",->.")
    return {c for t in terms for c in t if c not in named}


def _einsum_ref(inputs, attrs):
    dt = inputs[0].dtype
    terms, out = parse_einsum(attrs["equation"], [x.ndim for x in inputs])
    spec = ",".join(terms) + "->" + out
    return np.asarray(np.einsum(spec, *[x.astype(np.float64) for x in inputs]), np.float64).astype(dt)


def _sum_away(x, term, keep):
    """x (indices ``term``) summed over the indices not in ``keep``; returns (tensor, term)."""
    axes = tuple(i for i, c in enumerate(term) if c not in keep)
    if not axes:
        return x, term
    return F.sum(x, axis=axes), "".join(c for c in term if c in keep)


def _permute(x, term, order):
    if term == order:
        return x
    return F.transpose(x, tuple(term.index(c) for c in order))


def _fold(dims):
    """The product of dims, or -1 when one is unknown (a reshape's -1)."""
    n = numel(dims)
    return -1 if n is None else n


def _reshape(x, dims, what):
    target = tuple(d if isinstance(d, int) else -1 for d in dims)
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"einsum: {what} needs known sizes, got {tuple(dims)}; bind the shapes first")
    return F.reshape(x, target)


def _contract(a, ta, b, tb, keep):
    """a (indices ta) times b (indices tb), summed over the shared indices not in ``keep``: a batched
    matmul over (batch, a-only, contracted) x (batch, contracted, b-only)."""
    a, ta = _sum_away(a, ta, set(tb) | set(keep))
    b, tb = _sum_away(b, tb, set(ta) | set(keep))
    batch = "".join(c for c in ta if c in tb and c in keep)
    contr = "".join(c for c in ta if c in tb and c not in keep)
    ao = "".join(c for c in ta if c not in tb)
    bo = "".join(c for c in tb if c not in ta)
    sa = dict(zip(ta, a.shape))
    sb = dict(zip(tb, b.shape))
    # ellipsis (batch) dims broadcast: 1 against n
    for c in batch:
        if sa[c] == 1 and sb[c] != 1:
            sa[c] = sb[c]
        elif sb[c] == 1 and sa[c] != 1:
            sb[c] = sa[c]
    a = _permute(a, ta, batch + ao + contr)
    b = _permute(b, tb, batch + contr + bo)
    bshape = [sa[c] for c in batch]
    if [dict(zip(ta, a.shape))[c] for c in batch] != bshape:
        a = F.broadcast_to(a, tuple(bshape + [sa[c] for c in ao + contr]))
    if [dict(zip(tb, b.shape))[c] for c in batch] != bshape:
        b = F.broadcast_to(b, tuple(bshape + [sb[c] for c in contr + bo]))
    fa = (_fold([sa[c] for c in batch]), _fold([sa[c] for c in ao]), _fold([sa[c] for c in contr]))
    fb = (fa[0], _fold([sb[c] for c in contr]), _fold([sb[c] for c in bo]))
    if builtins.sum(1 for v in fa if v == -1) > 1 or builtins.sum(1 for v in fb if v == -1) > 1:
        raise ShapeError(f"einsum: needs known sizes to contract {ta!r} with {tb!r}, got {a.shape} and {b.shape}; "
                         "bind the shapes first")
    y = F.matmul(F.reshape(a, fa), F.reshape(b, fb))
    term = batch + ao + bo
    y = _reshape(y, [sa[c] for c in batch] + [sa[c] for c in ao] + [sb[c] for c in bo], "the product")
    return y, term


def _einsum_composite(ctx):
    xs = list(ctx.inputs)
    terms, out = parse_einsum(ctx.attrs["equation"], [len(x.shape) for x in xs])
    y, ty = xs[0], terms[0]
    for k in range(1, len(xs)):
        rest = set(out).union(*[set(t) for t in terms[k + 1:]])
        y, ty = _contract(y, ty, xs[k], terms[k], rest)
    y, ty = _sum_away(y, ty, set(out))
    y = _permute(y, ty, out)
    # an equation that changes nothing ('->' on a scalar, 'ij->ij'): a view, so the node's output keeps
    # a value of its own (a fetch of it is not renamed to the input)
    return identity(y) if y is xs[0] else y


def _einsum_examples(rng):
    cases = [("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(1, 1), (1, 1)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
             ("ij->ji", [(3, 5)]), ("ij->", [(3, 5)]), ("ijk->kj", [(2, 3, 4)]), ("i,i->", [(7,), (7,)]),
             ("i,j->ij", [(3,), (5,)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
             ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]), ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
             ("ij,jk->ik", [(0, 3), (3, 4)]), ("ij,jk->ik", [(3, 0), (0, 4)]), ("ij,ij->i", [(5, 7), (5, 7)]),
             ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 3)]), ("ik,jk->ij", [(72, 9), (73, 9)]),
             ("i...->...", [(3, 4, 5)]), ("bn,anm->bam", [(3, 4), (2, 4, 5)]), ("ba,ab->", [(3, 1), (1, 3)])]
    out = []
    for dt in dtypes.FLOATS:
        for eq, shapes in cases:
            out.append(Example([rand(rng, s, dt) for s in shapes], {"equation": eq}, note=f"{dt} {eq}"))
        for eq in ("ij->ji", "ij->j"):  # NaN, ±inf, -0.0 through a transpose and a sum
            out.append(Example([special(rng, (4, 9), dt, extremes=False)], {"equation": eq}, grad=False,
                               note=f"{dt} {eq} special values"))
    return out


register_op(
    "einsum",
    doc="Einstein summation (numpy.einsum, ONNX Einsum) of one or more float operands: y[out] = Σ over the "
        "indices not in the output of Π x_k[term_k]; implicit output (no '->'): the ellipsis axes, then the "
        "indices that appear once, alphabetically.  Ellipsis axes broadcast (1 against n); named indices must "
        "agree.  An index repeated within one operand (a diagonal) is refused.  A composite of sum, transpose, "
        "reshape and batched matmul, two operands at a time from the left.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    variadic=True,
    attrs={"equation": AttrSpec("str", doc="the einsum equation, e.g. 'bij,bjk->bik'")},
    infer=_einsum_infer,
    reference=_einsum_ref,
    examples=_einsum_examples,
    composite=_einsum_composite,
    kernels=(),
)


def einsum(equation, *operands, name=None):
    """``numpy.einsum(equation, *operands)`` for float tensors (see the op's doc; no diagonals)."""
    if not isinstance(equation, str):
        raise GraphError(f"einsum: equation must be a str, got {equation!r}")
    xs = as_tensors(*operands)
    try:
        parse_einsum(equation, [len(x.shape) for x in xs])
    except ValueError as e:
        raise GraphError(f"einsum: {e}") from None
    return build("einsum", xs, {"equation": equation}, name=name)


# -- resize (ONNX Resize: nearest and linear) --------------------------------------------------------

RESIZE_MODES = ("nearest", "linear")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")

RESIZE_ATTRS = {
    "sizes": AttrSpec("ints", doc="the output shape, one entry per axis; -1 keeps the input's size (scale 1)"),
    "scales": AttrSpec("floats", default=None, optional=True,
                       doc="per-axis scale the coordinate transform divides by (ONNX's scales input); None: "
                           "sizes[i] / x.shape[i]"),
    "mode": AttrSpec("str", default="nearest", doc="nearest or linear (n-linear over the resized axes)"),
    "coordinate_transformation_mode": AttrSpec(
        "str", default="half_pixel",
        doc="how an output index maps to an input coordinate: " + ", ".join(COORDINATE_MODES)),
    "nearest_mode": AttrSpec("str", default="round_prefer_floor",
                             doc="rounding of the coordinate in nearest mode: " + ", ".join(NEAREST_MODES)),
    "exclude_outside": AttrSpec("bool", default=False,
                                doc="give taps outside the input weight 0 and renormalise the rest"),
}


def _check_resize(ctx, shape):
    a = ctx.attrs
    sizes, scales = a["sizes"], a["scales"]
    if len(sizes) != len(shape):
        ctx.fail(f"sizes={list(sizes)} must hold one entry per axis of x (rank {len(shape)})")
    if any(s < -1 for s in sizes):
        ctx.fail(f"sizes={list(sizes)} must be >= 0 (or -1: the input's size)")
    if scales is not None:
        if len(scales) != len(shape):
            ctx.fail(f"scales={list(scales)} must hold one entry per axis of x (rank {len(shape)})")
        if not all(s > 0 and np.isfinite(s) for s in scales):
            ctx.fail(f"scales={list(scales)} must be finite and > 0")
        for i, (n, s) in enumerate(zip(sizes, scales)):
            if n == -1 and s != 1.0:
                ctx.fail(f"axis {i} keeps its size (sizes[{i}] = -1) but scales[{i}] = {s}, not 1")
    if a["mode"] not in RESIZE_MODES:
        ctx.fail(f"mode={a['mode']!r} must be one of {', '.join(RESIZE_MODES)}")
    ctm = a["coordinate_transformation_mode"]
    if ctm not in COORDINATE_MODES:
        ctx.fail(f"coordinate_transformation_mode={ctm!r} must be one of {', '.join(COORDINATE_MODES)}")
    if ctm == "tf_half_pixel_for_nn" and a["mode"] != "nearest":
        ctx.fail("coordinate_transformation_mode='tf_half_pixel_for_nn' is for mode='nearest' only")
    if a["nearest_mode"] not in NEAREST_MODES:
        ctx.fail(f"nearest_mode={a['nearest_mode']!r} must be one of {', '.join(NEAREST_MODES)}")
    for i, (d, n) in enumerate(zip(shape, sizes)):
        if d == 0 and n > 0:
            ctx.fail(f"cannot resize axis {i} of size 0 to size {n} (nothing to sample)")
    return tuple(d if n == -1 else n for d, n in zip(shape, sizes))


def _resize_infer(ctx):
    if ctx.attrs["mode"] == "linear" and ctx.dtype(0) not in dtypes.FLOATS:
        ctx.dtype_fail(f"mode='linear' expects a float x, got {ctx.dtype(0)}")
    return ctx.dtype(0), _check_resize(ctx, ctx.shape(0))


def axis_taps(n_in, n_out, scale, attrs):
    """The taps of one axis: for each output index j, the list of (input index, weight) it reads
    (ONNX Resize's coordinate transform and 2-tap kernels, onnx/reference/ops/op_resize.py; taps
    of weight 0 are left out, so an inf or NaN they would read stays out of the sum).  None when
    the axis is left as it is (scale 1 and the same size: the reference skips it too)."""
    if n_out == n_in and abs(scale - 1.0) <= 1e-9 * builtins.max(1.0, abs(scale)):
        return None
    mode, ctm = attrs["mode"], attrs["coordinate_transformation_mode"]
    ow = scale * n_in  # ONNX's float output width
    taps = []
    for j in range(n_out):
        y = float(j)
        if ctm == "align_corners":
            x = 0.0 if ow == 1 else y * (n_in - 1) / (ow - 1)
        elif ctm == "asymmetric":
            x = y / scale
        elif ctm == "pytorch_half_pixel":
            x = -0.5 if ow == 1 else (y + 0.5) / scale - 0.5
        elif ctm == "half_pixel_symmetric":
            offset = (n_in / 2) * (1 - n_out / ow)
            x = offset + (y + 0.5) / scale - 0.5
        elif ctm == "tf_half_pixel_for_nn":
            x = (y + 0.5) / scale
        else:  # half_pixel
            x = (y + 0.5) / scale - 0.5
        xf = np.floor(x)
        ratio = 1.0 if x == xf else x - xf
        # the two neighbours, found as ONNX does: in edge-padded coordinates (pad 1)
        xp = x + 1.0
        p = np.floor(xp)
        start = int(p) + (-1 if xp - p == 0 else 0) - 1
        if mode == "linear":
            w = [1.0 - ratio, ratio]
        elif ratio == 1.0:
            w = [0.0, 1.0]
        else:
            nm = attrs["nearest_mode"]
            if nm == "round_prefer_floor":
                w = [float(ratio <= 0.5), float(ratio > 0.5)]
            elif nm == "round_prefer_ceil":
                w = [float(ratio < 0.5), float(ratio >= 0.5)]
            elif nm == "floor":
                w = [1.0, 0.0]
            else:
                w = [0.0, 1.0]
        idx = [start, start + 1]
        if attrs["exclude_outside"]:
            w = [0.0 if not 0 <= i < n_in else v for i, v in zip(idx, w)]
            total = w[0] + w[1]
            total = 1.0 if total == 0 else total
            w = [v / total for v in w]
        taps.append([(builtins.min(builtins.max(i, 0), n_in - 1), v) for i, v in zip(idx, w) if v != 0])
    return taps


def resize_axes(in_shape, attrs):
    """[(axis, taps)] for every axis resize changes, in order (axis_taps)."""
    sizes, scales = attrs["sizes"], attrs["scales"]
    out = []
    for a, (n_in, n_out) in enumerate(zip(in_shape, sizes)):
        if n_out == -1 or n_out == 0:
            continue  # kept, or empty: the output has no item to compute along it
        scale = scales[a] if scales is not None else n_out / n_in
        taps = axis_taps(n_in, n_out, scale, attrs)
        if taps is not None:
            out.append((a, taps))
    return out


def _out_shape(x_shape, attrs):
    return tuple(d if n == -1 else n for d, n in zip(x_shape, attrs["sizes"]))


def _resize_ref(inputs, attrs):
    x = inputs[0]
    out_shape = _out_shape(x.shape, attrs)
    if 0 in out_shape or 0 in x.shape:
        return np.zeros(out_shape, x.dtype)
    gather = attrs["mode"] == "nearest"
    r = x if gather else x.astype(np.float64)
    for a, taps in resize_axes(x.shape, attrs):
        moved = np.moveaxis(r, a, 0)
        res = np.zeros((len(taps),) + moved.shape[1:], r.dtype)
        for j, tj in enumerate(taps):
            if gather:
                if tj:
                    res[j] = moved[tj[-1][0]]  # nearest: one tap of weight 1
            else:
                acc = np.zeros(moved.shape[1:], np.float64)
                for i, w in tj:
                    acc = acc + w * moved[i]
                res[j] = acc
        r = np.moveaxis(res, 0, a)
    return r.astype(x.dtype)


def _resize_grad_ref(inputs, attrs):
    dy, x = inputs
    if 0 in dy.shape or 0 in x.shape:
        return np.zeros(x.shape, x.dtype)
    r = dy.astype(np.float64)
    for a, taps in reversed(resize_axes(x.shape, attrs)):
        moved = np.moveaxis(r, a, 0)
        res = np.zeros((x.shape[a],) + moved.shape[1:], np.float64)
        for j, tj in enumerate(taps):
            for i, w in tj:
                res[i] = res[i] + w * moved[j]
        r = np.moveaxis(res, 0, a)
    return r.astype(x.dtype)


def _resize_grad_infer(ctx):
    x = ctx.shape(1)
    out = _check_resize(ctx, x)
    dy = ctx.shape(0)
    if len(dy) != len(out) or any(isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(dy, out)):
        ctx.fail(f"expects dy of resize's output shape {out}, got {tuple(dy)}")
    return ctx.dtype(1), x


_RESIZE_CASES = [
    # (x shape, sizes, scales or None, mode, coordinate mode, nearest mode)
    ((1, 1, 1, 1), (1, 1, 2, 2), None, "nearest", "asymmetric", "floor"),
    ((1, 1, 1, 1), (1, 1, 3, 1), None, "linear", "half_pixel", "round_prefer_floor"),
    ((2, 3, 4, 5), (2, 3, 8, 10), None, "nearest", "half_pixel", "round_prefer_floor"),
    ((2, 3, 4, 5), (2, 3, 8, 10), None, "nearest", "asymmetric", "floor"),
    ((2, 3, 4, 5), (2, 3, 7, 3), None, "nearest", "half_pixel", "round_prefer_ceil"),
    ((2, 3, 4, 5), (2, 3, 7, 3), None, "nearest", "align_corners", "ceil"),
    ((1, 2, 5, 7), (1, 2, 3, 11), None, "nearest", "tf_half_pixel_for_nn", "round_prefer_floor"),
    ((1, 2, 5, 7), (1, 2, 9, 4), None, "nearest", "pytorch_half_pixel", "floor"),
    ((2, 3, 4, 5), (2, 3, 8, 10), None, "linear", "half_pixel", "round_prefer_floor"),
    ((2, 3, 4, 5), (2, 3, 8, 10), None, "linear", "align_corners", "round_prefer_floor"),
    ((2, 3, 4, 5), (2, 3, 3, 9), None, "linear", "asymmetric", "round_prefer_floor"),
    ((1, 2, 5, 7), (1, 2, 1, 4), None, "linear", "pytorch_half_pixel", "round_prefer_floor"),
    ((1, 2, 5, 7), (1, 2, 9, 4), None, "linear", "half_pixel_symmetric", "round_prefer_floor"),
    ((1, 2, 5, 7), (1, 2, 8, 11), (1.0, 1.0, 1.7, 1.6), "linear", "half_pixel", "round_prefer_floor"),
    ((1, 2, 5, 7), (1, 2, 8, 11), (1.0, 1.0, 1.7, 1.6), "nearest", "asymmetric", "round_prefer_ceil"),
    ((3, 9), (5, 4), None, "linear", "half_pixel", "round_prefer_floor"),
    ((7,), (15,), None, "linear", "align_corners", "round_prefer_floor"),
    ((2, 3, 4, 5, 6), (2, 3, 3, 7, 9), None, "linear", "pytorch_half_pixel", "round_prefer_floor"),
    ((0, 3, 4, 5), (0, 3, 8, 10), None, "linear", "half_pixel", "round_prefer_floor"),
    ((2, 3, 4, 5), (2, 3, 0, 10), None, "nearest", "half_pixel", "round_prefer_floor"),
    ((1, 3, 72, 73), (1, 3, 37, 147), None, "linear", "half_pixel", "round_prefer_floor"),
    ((-1, 3, 4, 5), (-1, -1, 6, 2), None, "linear", "asymmetric", "round_prefer_floor"),
]


def _resize_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for shape, sizes, scales, mode, ctm, nm in _RESIZE_CASES:
            if mode == "linear" and dt not in dtypes.FLOATS:
                continue
            shape = tuple(2 if d == -1 else d for d in shape)
            attrs = {"sizes": sizes, "scales": scales, "mode": mode, "coordinate_transformation_mode": ctm,
                     "nearest_mode": nm, "exclude_outside": False}
            out.append(Example([rand(rng, shape, dt)], attrs, note=f"{dt} {mode} {ctm} {nm}"))
        for mode in ("nearest", "linear"):
            if mode == "linear" and dt not in dtypes.FLOATS:
                continue
            attrs = {"sizes": (1, 2, 9, 3), "scales": None, "mode": mode, "coordinate_transformation_mode":
                     "half_pixel", "nearest_mode": "round_prefer_floor", "exclude_outside": True}
            out.append(Example([rand(rng, (1, 2, 4, 5), dt)], attrs, note=f"{dt} {mode} exclude_outside"))
            attrs = dict(attrs, exclude_outside=False)
            out.append(Example([special(rng, (1, 2, 4, 5), dt, extremes=False)], attrs, grad=False,
                               note=f"{dt} {mode} special values"))
    return out


register_op(
    "resize",
    doc="ONNX Resize, modes nearest and linear: along each axis i whose size or scale changes, output index j "
        "maps to the input coordinate x(j) of 'coordinate_transformation_mode' (half_pixel: (j + 0.5) / s - 0.5; "
        "pytorch_half_pixel: the same, -0.5 for a 1-long output; align_corners: j · (in - 1) / (s · in - 1); "
        "asymmetric: j / s; half_pixel_symmetric; tf_half_pixel_for_nn: (j + 0.5) / s) with s = scales[i] "
        "(default sizes[i] / in).  nearest reads the neighbour 'nearest_mode' picks; linear weighs the two "
        "neighbours by distance (n-linear over the resized axes, computed in float64).  Indices clamp to the "
        "input (edge); exclude_outside zeroes taps outside it and renormalises.  Taps of weight 0 are skipped.",
    inputs=[("x", dtypes.ALL)],
    attrs=RESIZE_ATTRS,
    infer=_resize_infer,
    reference=_resize_ref,
    examples=_resize_examples,
)


def _resize_grad_examples(rng):
    out = []
    for ex in _resize_examples(rng):
        x = ex.inputs[0]
        if x.dtype.kind != "f":
            continue
        dy_shape = _out_shape(x.shape, ex.attrs)
        out.append(Example([rand(rng, dy_shape, x.dtype), x], ex.attrs, grad=ex.grad, note=ex.note))
    return out


register_op(
    "resize_grad",
    doc="The gradient of resize with respect to x: dx = Rᵀ dy for the linear map R that resize applies (each "
        "output's taps scatter weight · dy back to the input positions they read), summed in float64.  Input "
        "x gives only the shape.",
    inputs=[("dy", "T"), ("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs=RESIZE_ATTRS,
    infer=_resize_grad_infer,
    reference=_resize_grad_ref,
    examples=_resize_grad_examples,
)


@defgrad("resize")
def _grad_resize(ctx):
    return [build("resize_grad", [ctx.g, ctx.x], dict(ctx.attrs))]


@defgrad("resize_grad")
def _grad_resize_grad(ctx):
    # resize_grad is linear in dy: its adjoint is resize itself
    return [build("resize", [ctx.g], dict(ctx.attrs)), None]


def resize(x, sizes, scales=None, mode="nearest", coordinate_transformation_mode="half_pixel",
           nearest_mode="round_prefer_floor", exclude_outside=False, name=None):
    """ONNX Resize (nearest or linear) of x to ``sizes`` (the full output shape; -1 keeps an axis);
    ``scales`` (one per axis) are what the coordinate transform divides by when they differ from
    sizes / x.shape (ONNX's scales input).  See the op's doc for the coordinate modes."""
    attrs = {"sizes": tuple(int(s) for s in sizes),
             "scales": None if scales is None else tuple(float(s) for s in scales),
             "mode": mode, "coordinate_transformation_mode": coordinate_transformation_mode,
             "nearest_mode": nearest_mode, "exclude_outside": bool(exclude_outside)}
    return build("resize", as_tensors(x), attrs, name=name)
