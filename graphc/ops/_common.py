"""Helpers shared by the op declarations: broadcasting with symbolic dims, converting
Python values to constant nodes, random example data, the helpers gradient functions use
to undo broadcasting, and :data:`F`, the op builders by name."""

import numpy as np

from graphc import dtypes
from graphc.graph import Tensor, get_default_graph, user_provenance
from graphc.registry import Example  # noqa: F401  (re-exported for op modules)
from graphc.shapes import format_shape, is_static


class _Builders:
    """The builder functions of graphc.ops by name: ``F.mul(a, b)`` is ``graphc.ops.mul(a, b)``.

    Gradient functions and composites build ops declared in other op modules through it, so
    the op modules never import one another in a circle; graphc.ops installs the builders
    when it is imported (before any gradient or composite can run).
    """

    def __init__(self):
        self._fns = {}

    def install(self, fns):
        self._fns.update(fns)

    def __getattr__(self, name):
        try:
            return self.__dict__["_fns"][name]
        except KeyError:
            raise AttributeError(f"graphc.ops has no builder {name!r}") from None


F = _Builders()


def broadcast_shapes(ctx, *shapes):
    """numpy broadcasting of shapes that may hold symbols (str) or None.

    A symbolic dim against a fixed dim d != 1 becomes d (the compile-time check with
    concrete shapes catches a real mismatch); two different symbols keep the first.
    """
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        res = 1
        for s in shapes:
            j = len(s) - rank + i
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if res == 1:
                res = d
            elif isinstance(res, int) and isinstance(d, int):
                if res != d:
                    ctx.fail("cannot broadcast shapes " + " and ".join(_fmt(x) for x in shapes) +
                             f" (dim {i} of the result: {res} vs {d})")
            elif isinstance(d, int):
                res = d
        out.append(res)
    return tuple(out)


def check_broadcastable(ctx, src, dst, verb="broadcast"):
    """Fail unless ``src`` broadcasts (numpy rules) to ``dst``; symbolic dims pass."""
    if len(src) > len(dst):
        ctx.fail(f"cannot {verb} rank {len(src)} shape {_fmt(src)} to shape {_fmt(dst)} of lower rank")
    lead = len(dst) - len(src)
    for i, d in enumerate(src):
        t = dst[lead + i]
        if isinstance(d, int) and isinstance(t, int) and d not in (1, t):
            ctx.fail(f"cannot {verb} dim {lead + i} of size {d} to size {t} ({_fmt(src)} to {_fmt(dst)})")


def broadcast_axes(small, big):
    """The axes of ``big`` that broadcasting ``small`` to ``big`` added or stretched (static
    shapes): summing over them undoes the broadcast."""
    lead = len(big) - len(small)
    return tuple(range(lead)) + tuple(lead + i for i, d in enumerate(small) if d == 1 and big[lead + i] != 1)


def _fmt(shape):
    return format_shape(shape)


def numel(shape):
    """Static element count, or None when a dim is unknown."""
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def constant_like(value, like_dtype=None, graph=None):
    """A constant node for a Python scalar or numpy array.  A Python scalar takes
    ``like_dtype`` (the dtype of the tensor it meets) so ``x * 2`` stays float32."""
    if isinstance(value, (bool, np.bool_)):
        arr = np.asarray(value, dtype=np.bool_)
    elif isinstance(value, (int, float)) and like_dtype is not None:
        arr = np.asarray(value, dtype=like_dtype)
    else:
        return F.constant(value, graph=graph)
    return F.constant(arr, graph=graph)


def as_tensors(*values):
    """Convert builder arguments to Tensors of one graph; scalars adopt a tensor's dtype."""
    graph = None
    like = None
    for v in values:
        if isinstance(v, Tensor):
            graph = graph or v.graph
            like = like or v.dtype
    out = []
    for v in values:
        if isinstance(v, Tensor):
            out.append(v)
        else:
            out.append(constant_like(v, like, graph))
    return out


def build(op, inputs, attrs=None, name=None):
    """Add a node to the inputs' graph (or the default graph); returns its output(s)."""
    graph = None
    for t in inputs:
        if isinstance(t, Tensor):
            graph = t.graph
            break
    if graph is None:
        graph = get_default_graph()
    outs = graph.add_node(op, inputs, attrs or {}, name=name, provenance=user_provenance())
    return outs[0] if len(outs) == 1 else tuple(outs)


def rand(rng, shape, dtype, low=-2.0, high=2.0):
    """Random example data of a dtype; floats uniform in [low, high)."""
    dtype = dtypes.as_dtype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in dtypes.INTS:
        return rng.integers(int(np.floor(low)) * 3 - 1, int(np.ceil(high)) * 3 + 2, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)


# Shapes every elementwise op is checked on: odd sizes that cross thread and vector
# boundaries, size 1 and size 0.
ODD = (72, 73, 74)
UNARY_SHAPES = [(), (1,), (0,), (7,), (3, 0, 5), (5, 1, 3), ODD]


# -- helpers of gradient functions ---------------------------------------------------------------
# Static ops where the shapes are known; otherwise sum_to / broadcast_like / reshape_like, which
# read only the shape of their second input, so gradients work before the batch size is bound.

def unbroadcast(g, x):
    """Sum the gradient g of a broadcast result back to x's shape (static ops when the
    shapes are known, sum_to otherwise)."""
    if g.shape == x.shape and is_static(x.shape):
        return g
    if is_static(g.shape) and is_static(x.shape):
        axes = broadcast_axes(x.shape, g.shape)
        y = F.sum(g, axis=axes) if axes else g
        return F.reshape(y, x.shape) if y.shape != x.shape else y
    return F.sum_to(g, x)


def broadcast_as(g, x):
    """Broadcast g to x's shape."""
    if g.shape == x.shape and is_static(x.shape):
        return g
    if is_static(x.shape):
        return F.broadcast_to(g, x.shape)
    return F.broadcast_like(g, x)


def zeros_like(x):
    return broadcast_as(F.constant(np.zeros((), x.dtype), graph=x.graph), x)


def ones_like(x):
    return broadcast_as(F.constant(np.ones((), x.dtype), graph=x.graph), x)


def reshape_as(g, x):
    if is_static(x.shape):
        return F.reshape(g, x.shape)
    return F.reshape_like(g, x)


def special_values(dtype, extremes=True):
    """The values where kernels and references most often part ways: NaN, ±inf, ±0.0,
    the smallest normal and (``extremes``) the dtype's largest magnitudes for floats;
    min, max, 0, ±1 for integers; both truth values for bool."""
    dtype = dtypes.as_dtype(dtype)
    if dtype == "bool":
        return np.array([True, False])
    if dtype in dtypes.INTS:
        info = np.iinfo(dtype)
        vals = [0, 1, -1, 2, -2] + ([info.min, info.max, info.min + 1, info.max - 1] if extremes else [])
        return np.array(vals, dtype)
    info = np.finfo(dtype)
    vals = [np.nan, np.inf, -np.inf, -0.0, 0.0, info.tiny, -info.tiny, 1.0, -1.0, 0.5]
    if extremes:
        vals += [info.max, -info.max]
    return np.array(vals, dtype)


def special(rng, shape, dtype, extremes=True):
    """An array of ``shape`` holding every special value of ``dtype`` (cycled, then
    shuffled with ``rng``), so one example covers them all."""
    vals = special_values(dtype, extremes)
    n = int(np.prod(shape, dtype=np.int64))
    flat = np.resize(vals, n) if n else vals[:0]
    return rng.permutation(flat).reshape(shape).astype(dtype)
