"""Gathering rows by integer index: ``embedding`` (ops embedding and embedding_grad) and ``take``
(a builder over transpose + embedding).

Convention (torch.nn.functional.embedding / torch.index_select): every index must lie in
``[0, n)`` for the ``n`` rows it selects from.  An index outside — a negative one included — is a
runtime error naming the node and the bad index, never a read out of bounds.  Unlike
``numpy.take``, a negative index does NOT count from the end (torch's rule: a silently wrapped
``-1`` hides an off-by-one in the data pipeline); wrap explicitly with ``gc.where`` if wanted.

The gradient of ``embedding`` w.r.t. the weight is ``embedding_grad``, a scatter-add whose sums
are DETERMINISTIC: every output row is the sum, in index order (C order of ``ids``), of the
gradient rows that selected it, starting from zero — the same bits as ``numpy.add.at`` at any
thread count (the kernel splits the work over disjoint column blocks, never over the indices).
"""

import numpy as np

from graphc import dtypes
from graphc.errors import DTypeError, ShapeError
from graphc.ops._common import Example, as_tensors, build, rand, special
from graphc.registry import IndexRange, defgrad, register_op


def _check_ids(ids, n, what):
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        bad = ids[(ids < 0) | (ids >= n)].flat[0]
        raise ValueError(f"{what}: id {int(bad)} is outside [0, {n})")


# -- embedding ---------------------------------------------------------------------------------------

def _emb_infer(ctx):
    w = ctx.shape(1)
    if len(w) < 1:
        ctx.fail(f"weight must have rank >= 1 (V rows of shape (...)), got shape {tuple(w)}")
    return ctx.dtype(1), tuple(ctx.shape(0)) + tuple(w[1:])


def _emb_ref(inputs, attrs):
    ids, w = inputs
    _check_ids(ids, w.shape[0], "embedding")
    return w[ids.astype(np.int64)].reshape(ids.shape + w.shape[1:])


# (ids shape, weight shape): size 0 ids, V = 1, a scalar id, odd sizes, weight of rank 1 and 3.
_CASES = [((5,), (7, 3)), ((2, 3), (4, 5)), ((), (3, 2)), ((0,), (4, 3)), ((3, 0), (2, 5)), ((6,), (1, 4)),
          ((4,), (5,)), ((3, 2), (6, 2, 3)), ((9,), (3, 0)), ((2, 37), (11, 73)), ((1,), (1, 1))]


def _emb_examples(rng):
    out = []
    for idt in dtypes.INTS:
        for dt in dtypes.ALL:
            for ishape, wshape in _CASES:
                ids = rng.integers(0, wshape[0], size=ishape).astype(idt)
                out.append(Example([ids, rand(rng, wshape, dt)], {}, note=f"{idt} {dt}"))
        for dt in dtypes.FLOATS:
            # many repeated ids (the gradient sums them) and special values in the weight
            ids = rng.integers(0, 3, size=(40,)).astype(idt)
            out.append(Example([ids, special(rng, (3, 5), dt)], {}, grad=False, note=f"{idt} {dt} special"))
            out.append(Example([rng.integers(0, 3, size=(25,)).astype(idt), rand(rng, (3, 7), dt)], {},
                               note=f"{idt} {dt} repeated ids"))
    return out


register_op(
    "embedding",
    doc="y[i..., :] = weight[ids[i...], :] (torch.nn.functional.embedding / index_select along axis 0): "
        "ids int32/int64 of any shape, weight (V, ...) of any dtype, y of shape ids.shape + weight.shape[1:].  "
        "An id outside [0, V) (negative included) is an error.",
    inputs=[("ids", dtypes.INTS), ("weight", dtypes.ALL)],
    index_inputs={0: IndexRange(input=1, axis=0)},
    infer=_emb_infer,
    reference=_emb_ref,
    examples=_emb_examples,
)


# -- embedding_grad ----------------------------------------------------------------------------------

def _emb_grad_infer(ctx):
    w = ctx.shape(2)
    if len(w) < 1:
        ctx.fail(f"weight must have rank >= 1, got shape {tuple(w)}")
    want = tuple(ctx.shape(1)) + tuple(w[1:])
    g = ctx.shape(0)
    if len(g) != len(want) or any(isinstance(p, int) and isinstance(q, int) and p != q for p, q in zip(g, want)):
        ctx.fail(f"expects a gradient of shape ids.shape + weight.shape[1:] = {want}, got {tuple(g)}")
    return ctx.dtype(0), tuple(w)


def _emb_grad_ref(inputs, attrs):
    g, ids, w = inputs
    _check_ids(ids, w.shape[0], "embedding_grad")
    rows = int(np.prod(w.shape[1:], dtype=np.int64))
    out = np.zeros((w.shape[0], rows), g.dtype)
    # np.add.at adds in index order: the order the kernel's sums follow.
    with np.errstate(over="ignore", invalid="ignore"):
        np.add.at(out, ids.reshape(-1).astype(np.int64), g.reshape(ids.size, rows))
    return out.reshape(w.shape)


def _emb_grad_examples(rng):
    out = []
    for idt in dtypes.INTS:
        for dt in dtypes.FLOATS:
            for ishape, wshape in _CASES:
                ids = rng.integers(0, wshape[0], size=ishape).astype(idt)
                g = rand(rng, ishape + wshape[1:], dt)
                out.append(Example([g, ids, rand(rng, wshape, dt)], {}, note=f"{idt} {dt}"))
            ids = rng.integers(0, 3, size=(40,)).astype(idt)  # many repeats: the order of the sums matters
            out.append(Example([rand(rng, (40, 5), dt, -1e3, 1e3), ids, rand(rng, (3, 5), dt)], {},
                               note=f"{idt} {dt} repeated ids"))
            out.append(Example([special(rng, (40, 5), dt), ids, rand(rng, (3, 5), dt)], {}, grad=False,
                               note=f"{idt} {dt} special"))
    return out


def _emb_grad_workspace(ctx):
    """CUDA only (runtime/cuda/gather.cu): the stable radix sort of (id, position) pairs — keys and
    positions double-buffered (4·n int64 words) — and cub's scratch, bounded by n/4 words + 4 MiB
    (its onesweep look-back tiles and digit bins; the kernel checks cub's exact need at prepare).
    The CPU kernel needs none."""
    if ctx.target != "cuda":
        return []
    n = int(np.prod(ctx.shape(1), dtype=np.int64))
    d = int(np.prod(ctx.shape(2)[1:], dtype=np.int64))
    if n == 0 or d == 0:
        return []
    return [("int64", (4 * n + n // 4 + (1 << 19),))]


register_op(
    "embedding_grad",
    doc="The adjoint of embedding w.r.t. the weight: zeros of weight's shape, then row g[i...] added to row "
        "ids[i...], in index order (C order of ids) — deterministic, the same bits at any thread count.  "
        "Only the shape of weight is read.",
    inputs=[("g", "T"), ("ids", dtypes.INTS), ("weight", "T")],
    type_vars={"T": dtypes.FLOATS},
    index_inputs={1: IndexRange(input=2, axis=0)},
    infer=_emb_grad_infer,
    reference=_emb_grad_ref,
    examples=_emb_grad_examples,
    workspace=_emb_grad_workspace,
)


@defgrad("embedding")
def _grad_embedding(ctx):
    ids, w = ctx.inputs
    return [None, build("embedding_grad", [ctx.g, ids, w], {})]


@defgrad("embedding_grad")
def _grad_embedding_grad(ctx):
    # embedding_grad is linear in g and the adjoint of embedding: its adjoint is embedding again.
    _, ids, _ = ctx.inputs
    return [build("embedding", [ids, ctx.g], {}), None, None]


def embedding(ids, weight, name=None):
    """``torch.nn.functional.embedding(ids, weight)``: rows of ``weight`` (V, ...) picked by the
    int32/int64 ``ids`` of any shape; the result has shape ``ids.shape + weight.shape[1:]``.

    An id outside ``[0, V)`` — a negative one included — raises
    :class:`graphc.errors.RuntimeExecutionError` naming the node and the id.  The weight's
    gradient is the deterministic scatter-add ``embedding_grad``; ids get no gradient.
    """
    ids, weight = as_tensors(ids, weight)
    return build("embedding", [ids, weight], {}, name=name)


def take(x, indices, axis=0, name=None):
    """``torch.index_select(x, axis, indices)`` generalised to indices of any shape (``numpy.take``'s
    shapes): the result has shape ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``.

    ``indices`` are int32/int64 in ``[0, x.shape[axis])``: unlike numpy.take, a NEGATIVE index is an
    error (torch's rule), as is one past the end — raised at run time naming the node.  ``axis`` may
    be negative (counted from the end).  Built as ``embedding`` with the axis moved to the front by
    ``transpose`` (axis 0 needs no transpose), the parts named ``<name>/move_axis`` and
    ``<name>/embedding`` (a bad index names the latter); the gradient follows from those ops.
    """
    x, indices = as_tensors(x, indices)
    rank = x.ndim
    if rank == 0:
        raise ShapeError("take: x is a scalar; it needs an axis to take along")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
        raise ShapeError(f"take: axis={axis!r} is out of range for x of shape {tuple(x.shape)} (rank {rank})")
    if indices.dtype not in dtypes.INTS:
        raise DTypeError(f"take: indices must be int32 or int64, got {indices.dtype}")
    a = int(axis) % rank
    if a == 0:
        return build("embedding", [indices, x], {}, name=name)
    # The parts are named <take>/move_axis and <take>/embedding, so a bad index names the take.
    g = x.graph
    if name is None:
        base = g.unique_name("take")  # with the name scope
    else:
        base = name if "/" in name or not g.scope else f"{g.scope}/{name}"  # as add_node scopes it
    front = build("transpose", [x], {"perm": (a,) + tuple(range(a)) + tuple(range(a + 1, rank))},
                  name=f"{base}/move_axis")
    picked = build("embedding", [indices, front], {}, name=f"{base}/embedding")
    k = indices.ndim
    perm = tuple(range(k, k + a)) + tuple(range(k)) + tuple(range(k + a, k + rank - 1))
    return build("transpose", [picked], {"perm": perm}, name=base)


def gather(params, indices, axis=0, name=None):
    """``tf.gather(params, indices, axis=axis)`` (TensorFlow 1's name for :func:`take`): the rows
    of ``params`` along ``axis`` picked by ``indices`` of any shape; negative or out-of-range
    indices are errors at run time.  PyTorch's element-wise ``torch.gather`` is
    :func:`graphc.take_along_axis`."""
    return take(params, indices, axis=axis, name=name)
