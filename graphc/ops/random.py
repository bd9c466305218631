"""Dropout and the counter-based generator behind it.

Masks come from Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; the Random123 library), keyed on the 64-bit ``seed`` (key words: its low and high
32 bits), with the 128-bit counter ``(b_lo, b_hi, step_lo, step_hi)``: ``b = i // 4`` is the
block of element ``i`` (row-major index), ``step`` the training step (the persistent
``rng/step`` counter, see graphc/compiler/select_mode.py).  One call gives four words, one
per element ``4b .. 4b+3`` (word ``i % 4``).  Element ``i`` is kept iff
``u = (word >> 8) · 2⁻²⁴ >= p`` (the top 24 bits: a float32-exact uniform in [0, 1)), and
``y = x · m`` with ``m = 1/(1 - p)`` for a kept element, 0 otherwise (PyTorch: a NaN input
stays NaN even where dropped).  So a mask bit depends on (seed, step, i) only: not on the
shape, the thread count, the plan or the device; the C++ twin is runtime/cpu/philox.h.

``dropout`` as declared is the inference form (the identity).  In a training plan the
select_mode pass replaces it by ``dropout_train(x, step)``.  ``dropout_train`` is linear and
diagonal in x, so its gradient is ``dropout_train(dy, step)`` itself: the mask is
regenerated, never stored (and a recomputed forward equals the original)."""

import zlib

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.ops._common import Example, F, build, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

# -- Philox4x32-10 (numpy, vectorised over counters) --------------------------------------------

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # the round multipliers
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # the Weyl key increments (golden ratio, √3 - 1)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(ctr, key):
    """Philox4x32-10 of counters ``ctr`` (four equal-shaped integer arrays or ints, the words
    c0..c3) under ``key`` (two 32-bit ints k0, k1); returns the four output words as uint32
    arrays.  Ten rounds: (c0, c1, c2, c3) ← (hi(M1·c2) ^ c1 ^ k0, lo(M1·c2), hi(M0·c0) ^ c3 ^ k1,
    lo(M0·c0)), the key bumped by (W0, W1) between rounds."""
    c = [np.asarray(w, dtype=np.uint64) & _MASK32 for w in ctr]
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    m0, m1, s32 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1), np.uint64(32)
    for r in range(10):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & 0xFFFFFFFF, (k1 + PHILOX_W1) & 0xFFFFFFFF
        p0, p1 = m0 * c[0], m1 * c[2]  # 32 × 32 → 64 bits: exact in uint64
        c = [(p1 >> s32) ^ c[1] ^ np.uint64(k0), p1 & _MASK32, (p0 >> s32) ^ c[3] ^ np.uint64(k1), p0 & _MASK32]
    return [w.astype(np.uint32) for w in c]


def keep_threshold(p):
    """Element kept iff (word >> 8) >= this: ceil(p · 2²⁴), i.e. u >= p with u = (word >> 8) · 2⁻²⁴
    (exact: scaling by a power of two rounds nothing)."""
    return int(np.ceil(float(p) * (1 << 24)))


def dropout_keep(n, seed, step, p):
    """The keep mask (bool, length n) of elements 0..n-1 for (seed, step) at drop probability p."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    seed, step = int(seed) & (2**64 - 1), int(step) & (2**64 - 1)
    words = philox4x32_10([blocks & _MASK32, blocks >> np.uint64(32), step & 0xFFFFFFFF, step >> 32],
                          [seed & 0xFFFFFFFF, seed >> 32])
    stream = np.stack(words, axis=-1).reshape(-1)[:n]  # element 4b + j takes word j of block b
    return (stream >> np.uint32(8)) >= keep_threshold(p)


def dropout_scale(p, dtype):
    """The factor of a kept element, 1/(1 - p) rounded once to the dtype (as the kernel)."""
    return np.dtype(dtype).type(1.0 / (1.0 - float(p)))


def _dropout_train_ref(inputs, attrs):
    x, step = inputs
    keep = dropout_keep(x.size, attrs["seed"], int(step), attrs["p"]).reshape(x.shape)
    m = np.where(keep, dropout_scale(attrs["p"], x.dtype), x.dtype.type(0))
    return (x * m).astype(x.dtype)


def _check_p(ctx):
    p = ctx.attrs["p"]
    if not 0.0 <= p < 1.0:
        ctx.fail(f"expects a drop probability p in [0, 1), got {p}")


def _dropout_infer(ctx):
    _check_p(ctx)
    seed = ctx.attrs["seed"]
    if seed is not None and not 0 <= seed < 2**63:
        ctx.fail(f"expects a seed in [0, 2**63), got {seed}")
    return ctx.dtype(0), ctx.shape(0)


def _dropout_train_infer(ctx):
    _dropout_infer(ctx)
    if tuple(ctx.shape(1)) != ():
        ctx.fail(f"expects the step counter (input 1) as an int64 scalar, got shape {tuple(ctx.shape(1))}")
    return ctx.dtype(0), ctx.shape(0)


SHAPES = [(), (1,), (0,), (7,), (3, 5), (2, 0, 3), (5, 1, 3), (72, 73, 74)]
PS = (0.0, 0.1, 0.5, 0.9)


def _dropout_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for shape in SHAPES:
            out.append(Example([rand(rng, shape, dt)], {"p": 0.5, "seed": 7}, note=dt))
        out.append(Example([special(rng, (4, 5), dt)], {"p": 0.3, "seed": None}, grad=False, note=f"{dt} special"))
    return out


def _dropout_train_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for i, shape in enumerate(SHAPES):
            p = PS[i % len(PS)]
            step = np.asarray([0, 1, 5, 2**33 + 3][i % 4], np.int64)  # a step past 2**32 uses the high word
            out.append(Example([rand(rng, shape, dt), step], {"p": p, "seed": 1234 + i}, note=dt))
        out.append(Example([rand(rng, (9, 11), dt), np.asarray(3, np.int64)], {"p": 0.25, "seed": 2**40 + 5},
                           note=f"{dt} 64-bit seed"))
        out.append(Example([special(rng, (4, 5), dt), np.asarray(2, np.int64)], {"p": 0.5, "seed": 3}, grad=False,
                           note=f"{dt} special values"))
    return out


DROPOUT_ATTRS = {
    "p": AttrSpec("float", default=0.5, doc="drop probability, in [0, 1)"),
}

register_op(
    "dropout",
    doc="Dropout, inference form: y = x.  In a training plan select_mode makes it dropout_train(x, rng/step) "
        "(each element zeroed with probability p, the rest scaled by 1/(1 - p)).",
    inputs=[("x", dtypes.FLOATS)],
    attrs=dict(DROPOUT_ATTRS, seed=AttrSpec("int", default=None, optional=True,
                                            doc="Philox key; absent: crc32 of the node name (dropout_seed)")),
    infer=_dropout_infer,
    reference=lambda inputs, attrs: inputs[0].copy(),
    examples=_dropout_examples,
    # the identity as a view (a reshape to its own shape): the inference plan runs no step for it
    composite=lambda ctx: F.reshape(ctx.x, ctx.x.shape),
    kernels=(),
    train_form=lambda ctx: dropout_train(ctx.x, ctx.rng_step(), ctx.attrs["p"],
                                         dropout_seed(ctx.node.name, ctx.attrs["seed"]), name="train"),
)

register_op(
    "dropout_train",
    doc="Dropout, training form: y[i] = x[i] · m[i], m[i] = 1/(1 - p) if (w_i >> 8) · 2⁻²⁴ >= p else 0, where "
        "w_i is word i % 4 of Philox4x32-10(counter = (i // 4, step), key = seed) (graphc/ops/random.py).",
    inputs=[("x", dtypes.FLOATS), ("step", ("int64",))],
    attrs=dict(DROPOUT_ATTRS, seed=AttrSpec("int", doc="Philox key (64 bits: key words low, high)")),
    infer=_dropout_train_infer,
    reference=_dropout_train_ref,
    examples=_dropout_train_examples,
)


@defgrad("dropout_train")
def _grad_dropout_train(ctx):
    # y = x · m with m fixed by (seed, step, index): dy/dx = m, the same op on the gradient
    return [dropout_train(ctx.g, ctx.inputs[1], ctx.attrs["p"], ctx.attrs["seed"]), None]


def dropout_seed(node_name, seed=None):
    """The Philox key of a dropout node: ``seed`` when given, else crc32 of the node's name, so
    a model without explicit seeds still draws the same masks in every run (and two dropout
    nodes differ).  Renaming the node changes its default seed."""
    return int(seed) if seed is not None else zlib.crc32(node_name.encode("utf-8"))


def dropout(x, p=0.5, seed=None, name=None):
    """Dropout (as ``torch.nn.functional.dropout``): in a training plan each element of ``x`` is
    zeroed with probability ``p`` and the rest scaled by 1/(1 - p); in an inference plan (a model
    without training spec, or ``compile(train=False)``) it is the identity.

    ``seed`` (an int in [0, 2**63)) keys the Philox generator; None derives it from the node's
    name (:func:`dropout_seed`).  The mask of a training step depends on (seed, step, element
    index) only, where step counts the plan's training runs (the ``rng/step`` variable, saved in
    checkpoints).  p must be in [0, 1).

    Example::

        h = gc.dropout(gc.relu(x @ w), p=0.2)
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0.0 <= p < 1.0:
        raise GraphError(f"dropout: p must be a number in [0, 1), got {p!r} (p=1 would drop everything)")
    return build("dropout", [x], {"p": float(p), "seed": seed}, name=name)


def dropout_train(x, step, p, seed, name=None):
    """The training form of dropout on the int64 scalar ``step`` (see the module doc)."""
    return build("dropout_train", [x, step], {"p": float(p), "seed": int(seed)}, name=name)
