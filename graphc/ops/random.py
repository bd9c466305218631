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
regenerated, never stored (and a recomputed forward equals the original).

``random_uniform`` / ``random_normal`` (and their ``_like`` forms, whose shape is another
tensor's, symbolic dims included) draw from the same generator: the step input is the same
``rng/step`` variable, created by the builder, and the compiler appends one increment per plan
in every mode (graphc/compiler/rng_step.py), so every run of any plan draws fresh numbers.
Element layout, float32: element ``i`` takes word ``i % 4`` of block ``i // 4`` (as dropout);
float64: element ``i`` takes the word pair ``(2j, 2j + 1)``, ``j = i % 2``, of block ``i // 2``
(53 bits: ``(w_2j << 21) | (w_2j+1 >> 11)``).  Uniform: ``minval + (maxval - minval) · u``.
Normal: Box–Muller on the pairs of uniforms of a block — float32: words (0, 1) give elements
4b, 4b + 1 and words (2, 3) give 4b + 2, 4b + 3; float64: block b gives elements 2b, 2b + 1 —
``z₀ = r cos θ``, ``z₁ = r sin θ``, ``r = √(−2 ln u₁)``, ``θ = 2π u₂``, with ``u₁`` shifted by
one unit into (0, 1] so the log is finite; ``y = mean + stddev · z``.  The arithmetic is in
float64 and rounded once to the dtype; runtime/cpu/random_math.h is the C++ twin."""

import zlib

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError
from graphc.graph import Tensor, Variable, get_default_graph, user_provenance
from graphc.ops._common import Example, F, build, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

RNG_STEP = "rng/step"  # the int64 scalar variable every random draw reads (dropout's and the random ops')

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


def philox_blocks(nblocks, seed, step):
    """The words (uint32, shape (nblocks, 4)) of blocks 0..nblocks-1 at (seed, step): block b is
    Philox4x32-10 of counter (b_lo, b_hi, step_lo, step_hi) under key (seed_lo, seed_hi)."""
    blocks = np.arange(nblocks, dtype=np.uint64)
    seed, step = int(seed) & (2**64 - 1), int(step) & (2**64 - 1)
    words = philox4x32_10([blocks & _MASK32, blocks >> np.uint64(32), step & 0xFFFFFFFF, step >> 32],
                          [seed & 0xFFFFFFFF, seed >> 32])
    return np.stack(words, axis=-1)


def dropout_keep(n, seed, step, p):
    """The keep mask (bool, length n) of elements 0..n-1 for (seed, step) at drop probability p."""
    stream = philox_blocks((n + 3) // 4, seed, step).reshape(-1)[:n]  # element 4b + j takes word j of block b
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


# -- random_uniform / random_normal: plan steps on the same generator ------------------------------

TWO_PI = 6.283185307179586  # 2π rounded to float64 (random_math.h: kTwoPi)


def _bits24(w):
    """The top 24 bits of each word (a float32-exact uniform in units of 2⁻²⁴), as uint64."""
    return np.asarray(w, np.uint64) >> np.uint64(8)


def _bits53(hi, lo):
    """53 bits from two words: (hi << 21) | (lo >> 11), as uint64 (a float64-exact uniform in units of 2⁻⁵³)."""
    return (np.asarray(hi, np.uint64) << np.uint64(21)) | (np.asarray(lo, np.uint64) >> np.uint64(11))


def random_uniforms(n, seed, step, dtype):
    """The uniforms in [0, 1) (float64 values) of elements 0..n-1 of a ``dtype`` draw at (seed, step):
    float32 — word i % 4 of block i // 4, 24 bits; float64 — words (2j, 2j + 1), j = i % 2, of block
    i // 2, 53 bits."""
    if np.dtype(dtype) == np.float32:
        w = philox_blocks((n + 3) // 4, seed, step).reshape(-1)[:n]
        return _bits24(w).astype(np.float64) * 2.0**-24
    w = philox_blocks((n + 1) // 2, seed, step).reshape(-1, 2)[:n]  # row i: element i's word pair
    return _bits53(w[:, 0], w[:, 1]).astype(np.float64) * 2.0**-53


def box_muller(u1, u2):
    """(r cos θ, r sin θ) with r = √(−2 ln u₁), θ = 2π u₂: two independent standard normals from
    u₁ in (0, 1] and u₂ in [0, 1) (float64, the operation order of random_math.h)."""
    r = np.sqrt(-2.0 * np.log(u1))
    t = TWO_PI * u2
    return r * np.cos(t), r * np.sin(t)


def random_normals(n, seed, step, dtype):
    """The standard normals (float64 values) of elements 0..n-1 of a ``dtype`` draw at (seed, step):
    float32 — block b's words (0, 1) give elements 4b, 4b + 1 and words (2, 3) give 4b + 2, 4b + 3
    (24-bit uniforms); float64 — block b gives elements 2b, 2b + 1 (53-bit uniforms).  u₁ takes
    one unit more than its bits (in (0, 1]: the log stays finite), u₂ its bits."""
    if np.dtype(dtype) == np.float32:
        w = philox_blocks((n + 3) // 4, seed, step).reshape(-1, 2)  # row p: the pair of normals 2p, 2p + 1
        u1 = (_bits24(w[:, 0]) + np.uint64(1)).astype(np.float64) * 2.0**-24
        u2 = _bits24(w[:, 1]).astype(np.float64) * 2.0**-24
    else:
        w = philox_blocks((n + 1) // 2, seed, step)
        u1 = (_bits53(w[:, 0], w[:, 1]) + np.uint64(1)).astype(np.float64) * 2.0**-53
        u2 = _bits53(w[:, 2], w[:, 3]).astype(np.float64) * 2.0**-53
    z0, z1 = box_muller(u1, u2)
    return np.stack([z0, z1], axis=-1).reshape(-1)[:n]


def _random_ref(draw, lo, scale):
    def ref(inputs, attrs):
        step = int(inputs[-1])
        shape = tuple(attrs["shape"]) if "shape" in attrs else inputs[0].shape
        dt = np.dtype(_out_dtype(attrs, inputs[0].dtype.name if len(inputs) > 1 else None))
        n = int(np.prod(shape, dtype=np.int64))
        v = draw(n, attrs["seed"], step, dt)
        # float64 arithmetic, rounded once to the dtype (as the kernel)
        return (float(attrs[lo]) + _scale(attrs, lo, scale) * v).astype(dt).reshape(shape)
    return ref


def _scale(attrs, lo, scale):
    return float(attrs[scale]) - float(attrs[lo]) if scale == "maxval" else float(attrs[scale])


def _out_dtype(attrs, like_dtype):
    """The drawn dtype: the attr, else (a _like op) the like tensor's dtype when it is a float, else float32."""
    if attrs.get("dtype") is not None:
        return attrs["dtype"]
    return like_dtype if like_dtype in dtypes.FLOATS else "float32"


def _check_random_attrs(ctx, uniform):
    seed = ctx.attrs["seed"]
    if not 0 <= seed < 2**63:
        ctx.fail(f"expects a seed in [0, 2**63), got {seed}")
    if uniform:
        lo, hi = ctx.attrs["minval"], ctx.attrs["maxval"]
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi and np.isfinite(hi - lo)):
            ctx.fail(f"expects finite minval <= maxval with a finite maxval - minval, got minval={lo}, maxval={hi}")
    else:
        mean, std = ctx.attrs["mean"], ctx.attrs["stddev"]
        if not (np.isfinite(mean) and np.isfinite(std) and std >= 0):
            ctx.fail(f"expects a finite mean and a finite stddev >= 0, got mean={mean}, stddev={std}")
    step = len(ctx.inputs) - 1
    if tuple(ctx.shape(step)) != ():
        ctx.fail(f"expects the step counter (input {step}) as an int64 scalar, got shape {tuple(ctx.shape(step))}")


def _random_infer(uniform):
    def infer(ctx):
        _check_random_attrs(ctx, uniform)
        shape = tuple(ctx.attrs["shape"])
        if any(d < 0 for d in shape):
            ctx.fail(f"expects a shape of sizes >= 0, got {shape}")
        dt = ctx.attrs["dtype"]
        if dt not in dtypes.FLOATS:
            ctx.dtype_fail(f"draws float32 or float64, got dtype {dt}")
        return dt, shape
    return infer


def _random_like_infer(uniform):
    def infer(ctx):
        _check_random_attrs(ctx, uniform)
        dt = _out_dtype(ctx.attrs, ctx.dtype(0))
        if dt not in dtypes.FLOATS:
            ctx.dtype_fail(f"draws float32 or float64, got dtype {dt}")
        return dt, ctx.shape(0)
    return infer


_STEPS = (0, 1, 5, 2**33 + 3, -1)  # past 2**32: the counter's high word; -1: the int64 wrapped (all ones)
_RANDOM_SHAPES = [(), (1,), (0,), (7,), (3, 5), (2, 0, 3), (5, 1, 3), (72, 73, 74)]


def _random_examples(params):
    def examples(rng):
        out = []
        for dt in dtypes.FLOATS:
            for i, shape in enumerate(_RANDOM_SHAPES):
                step = np.asarray(_STEPS[i % len(_STEPS)], np.int64)
                out.append(Example([step], dict(params[i % len(params)], shape=shape, dtype=dt, seed=99 + i),
                                   grad=False, note=dt))
            out.append(Example([np.asarray(3, np.int64)], dict(params[0], shape=(9, 11), dtype=dt, seed=2**40 + 5),
                               grad=False, note=f"{dt} 64-bit seed"))
        return out
    return examples


def _random_like_examples(params):
    def examples(rng):
        out = []
        for k, dt in enumerate(dtypes.ALL):
            for i, shape in enumerate(_RANDOM_SHAPES[:-1]):
                step = np.asarray(_STEPS[(i + k) % len(_STEPS)], np.int64)
                attrs = dict(params[i % len(params)], seed=7 + i, dtype="float64" if i % 3 == 2 else None)
                out.append(Example([rand(rng, shape, dt), step], attrs, grad=False, note=dt))
            if dt in dtypes.FLOATS:  # only x's shape is read: its values (NaN, ±inf, -0.0) change nothing
                attrs = dict(params[1], seed=3, dtype=None)
                out.append(Example([special(rng, (4, 5), dt), np.asarray(2, np.int64)], attrs, grad=False,
                                   note=f"{dt} special values"))
        return out
    return examples


_UNIFORM_PARAMS = [{"minval": 0.0, "maxval": 1.0}, {"minval": -3.0, "maxval": 5.5}, {"minval": 2.0, "maxval": 2.0},
                   {"minval": -1e30, "maxval": 1e30}]
_NORMAL_PARAMS = [{"mean": 0.0, "stddev": 1.0}, {"mean": -2.5, "stddev": 0.25}, {"mean": 3.0, "stddev": 0.0},
                  {"mean": 1e30, "stddev": 1e29}]
_SEED_ATTR = AttrSpec("int", doc="Philox key (64 bits: key words low, high), in [0, 2**63)")
_UNIFORM_ATTRS = {"minval": AttrSpec("float", default=0.0, doc="lower bound (included)"),
                  "maxval": AttrSpec("float", default=1.0, doc="upper bound (excluded but for rounding)"),
                  "seed": _SEED_ATTR}
_NORMAL_ATTRS = {"mean": AttrSpec("float", default=0.0, doc="the mean"),
                 "stddev": AttrSpec("float", default=1.0, doc="the standard deviation, >= 0"),
                 "seed": _SEED_ATTR}
_LAYOUT = ("element i: float32 word i % 4 of block i // 4 (24-bit uniforms); float64 the word pair "
           "(2j, 2j + 1), j = i % 2, of block i // 2 (53-bit uniforms); block b = Philox4x32-10(counter = (b, step), "
           "key = seed) (graphc/ops/random.py)")

register_op(
    "random_uniform",
    doc="Uniform random numbers: y = minval + (maxval - minval) · u, u in [0, 1) (in float64, rounded once to "
        "dtype); " + _LAYOUT + ".  A fresh draw each run (step = rng/step).",
    inputs=[("step", ("int64",))],
    attrs=dict(_UNIFORM_ATTRS, shape=AttrSpec("ints", doc="the output shape"),
               dtype=AttrSpec("dtype", default="float32", doc="float32 or float64")),
    infer=_random_infer(True),
    reference=_random_ref(random_uniforms, "minval", "maxval"),
    examples=_random_examples(_UNIFORM_PARAMS),
    differentiable=False,
)

register_op(
    "random_normal",
    doc="Normal random numbers: y = mean + stddev · z (in float64, rounded once to dtype), z by Box–Muller from "
        "pairs of uniforms (u₁ in (0, 1], u₂ in [0, 1)): z₀ = √(−2 ln u₁) cos 2πu₂, z₁ = √(−2 ln u₁) sin 2πu₂; "
        "float32: words (0, 1) of block b give elements 4b, 4b + 1, words (2, 3) give 4b + 2, 4b + 3; float64: "
        "block b gives 2b, 2b + 1.  A fresh draw each run (step = rng/step).",
    inputs=[("step", ("int64",))],
    attrs=dict(_NORMAL_ATTRS, shape=AttrSpec("ints", doc="the output shape"),
               dtype=AttrSpec("dtype", default="float32", doc="float32 or float64")),
    infer=_random_infer(False),
    reference=_random_ref(random_normals, "mean", "stddev"),
    examples=_random_examples(_NORMAL_PARAMS),
    differentiable=False,
)

_LIKE_DTYPE = AttrSpec("dtype", default=None, optional=True, doc="float32 or float64; None: x's dtype when it is "
                                                                  "a float, else float32")


register_op(
    "random_uniform_like",
    doc="random_uniform with the shape of x: x is a data-less input (its dims, maybe bound at compile time, "
        "are read, never its values; it stays a placeholder of the plan).",
    inputs=[("x", dtypes.ALL), ("step", ("int64",))],
    attrs=dict(_UNIFORM_ATTRS, dtype=_LIKE_DTYPE),
    infer=_random_like_infer(True),
    reference=_random_ref(random_uniforms, "minval", "maxval"),
    examples=_random_like_examples(_UNIFORM_PARAMS),
    differentiable=False,
)

register_op(
    "random_normal_like",
    doc="random_normal with the shape of x: x is a data-less input (its dims, maybe bound at compile time, "
        "are read, never its values; it stays a placeholder of the plan).",
    inputs=[("x", dtypes.ALL), ("step", ("int64",))],
    attrs=dict(_NORMAL_ATTRS, dtype=_LIKE_DTYPE),
    infer=_random_like_infer(False),
    reference=_random_ref(random_normals, "mean", "stddev"),
    examples=_random_like_examples(_NORMAL_PARAMS),
    differentiable=False,
)


def rng_step(graph=None):
    """The graph's step counter ``rng/step`` (an int64 scalar variable, not trainable, initial value
    0), created outside any name scope when absent.  Every random op reads it; the compiler appends
    one increment per plan that reads it (graphc/compiler/rng_step.py)."""
    graph = graph or get_default_graph()
    if graph.has_value(RNG_STEP):
        t = graph.tensor(RNG_STEP)
        if not isinstance(t.producer, Variable) or t.dtype != "int64" or tuple(t.shape) != ():
            raise GraphError(f"{RNG_STEP!r} is the step counter of the random ops: it must be an int64 scalar "
                             f"variable, got a {type(t.producer).__name__.lower()} of {t.dtype} {tuple(t.shape)}")
        return t
    scope, graph._scope = graph._scope, []  # one counter per graph, whatever scope the first draw is built in
    try:
        return graph.add_variable(RNG_STEP, np.zeros((), np.int64), trainable=False, provenance=user_provenance())
    finally:
        graph._scope = scope


def _resolve(op, graph, name, seed):
    """(node name, seed): the name as add_node would give it, and the seed (crc32 of that name when None)."""
    if name is None:
        name = graph.unique_name(op)
    elif graph.scope and "/" not in name:
        name = graph.scope + "/" + name
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or not 0 <= seed < 2**63):
        raise GraphError(f"{op}(name={name}): seed must be an int in [0, 2**63) or None, got {seed!r}")
    return name, dropout_seed(name, seed)


def _draw(op, shape, params, dtype, seed, name):
    if isinstance(shape, Tensor):
        return _draw_like(op + "_like", shape, params, dtype, seed, name)
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
        raise GraphError(f"{op}: shape must be a tuple of ints >= 0 or a Tensor (whose shape is used, symbolic "
                         f"dims included), got {shape!r}")
    graph = get_default_graph()
    name, seed = _resolve(op, graph, name, seed)
    attrs = dict(params, shape=tuple(int(d) for d in shape), dtype=dtype, seed=seed)
    return build(op, [rng_step(graph)], attrs, name=name)


def _draw_like(op, x, params, dtype, seed, name):
    if not isinstance(x, Tensor):
        raise GraphError(f"{op}: x must be a Tensor, got {type(x).__name__}")
    name, seed = _resolve(op, x.graph, name, seed)
    return build(op, [x, rng_step(x.graph)], dict(params, dtype=dtype, seed=seed), name=name)


def random_uniform(shape, minval=0.0, maxval=1.0, dtype="float32", seed=None, name=None):
    """Uniform random numbers in [minval, maxval) (as ``tf.random.uniform``), drawn afresh at every
    run of any plan (training or inference) from the Philox generator of dropout.

    ``shape``: a tuple of ints, or a Tensor whose shape is used (its symbolic dims are bound at
    compile time; same as :func:`random_uniform_like`).  ``dtype``: float32 (24-bit uniforms) or
    float64 (53 bits).  ``seed`` (an int in [0, 2**63)) keys the generator; None derives it from the
    node's name, as dropout does.  The values depend on (seed, rng/step, element index) only: the
    same at any thread count, reproducible from the seed and the step counter (saved in
    checkpoints).  Not differentiable (a constant for autodiff).  maxval itself can be reached only
    by rounding to the dtype.

    Example::

        u = gc.random_uniform((64, 32), -1.0, 1.0, seed=1)
    """
    return _draw("random_uniform", shape, {"minval": minval, "maxval": maxval}, dtype, seed, name)


def random_normal(shape, mean=0.0, stddev=1.0, dtype="float32", seed=None, name=None):
    """Normal random numbers N(mean, stddev²) (as ``tf.random.normal``), drawn afresh at every run
    of any plan from the Philox generator of dropout (Box–Muller on its uniforms).

    ``shape``: a tuple of ints, or a Tensor whose shape is used (symbolic dims included; same as
    :func:`random_normal_like`).  ``seed``: as :func:`random_uniform`.  Not differentiable.

    Example::

        z = gc.random_normal((64, 32), seed=1)             # a fresh batch of latents every run
        eps = gc.random_normal(x)                          # noise shaped like a batch x of images
    """
    return _draw("random_normal", shape, {"mean": mean, "stddev": stddev}, dtype, seed, name)


def random_uniform_like(x, minval=0.0, maxval=1.0, dtype=None, seed=None, name=None):
    """:func:`random_uniform` with the shape of ``x`` (only its shape is read); ``dtype`` None: x's
    dtype when it is a float, else float32."""
    return _draw_like("random_uniform_like", x, {"minval": minval, "maxval": maxval}, dtype, seed, name)


def random_normal_like(x, mean=0.0, stddev=1.0, dtype=None, seed=None, name=None):
    """:func:`random_normal` with the shape of ``x`` (only its shape is read); ``dtype`` None: x's
    dtype when it is a float, else float32."""
    return _draw_like("random_normal_like", x, {"mean": mean, "stddev": stddev}, dtype, seed, name)
