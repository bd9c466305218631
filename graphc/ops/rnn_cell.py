"""The fused LSTM and GRU cells: the gate arithmetic of one recurrent step as one kernel, forward
and backward.

PyTorch's equations and gate order (i, f, g, o), from the pre-activations ``gates`` (N, 4H) that
already hold x·W_ihᵀ + h·W_hhᵀ + the biases, and the previous cell state ``c_prev`` (N, H)::

    i = σ(gates[:, 0:H])   f = σ(gates[:, H:2H])   g = tanh(gates[:, 2H:3H])   o = σ(gates[:, 3H:4H])
    c = f·c_prev + i·g     h = o·tanh(c)

- ``lstm_cell(gates, c_prev) -> (h, c)``: one pass over a row of the gates (an unrolled LSTM
  step is otherwise a split, three sigmoids, two tanhs, three muls and an add, and twice as many
  ops backward, each a plan step).
- ``lstm_cell_grad(dh, dc, gates, c_prev, c) -> (dgates, dc_prev)``: recomputes the activations
  from the saved ``gates`` and ``c_prev`` and tanh(c) from the saved ``c`` (nothing else is kept
  for the backward).  With dĉ = dc + dh·o·(1 - tanh²c)::

      dgates = [dĉ·g·i(1-i), dĉ·c_prev·f(1-f), dĉ·i·(1-g²), dh·tanh(c)·o(1-o)]    dc_prev = dĉ·f

  Its own gradient differentiates its composite definition (the same formulas from elementwise
  ops), so second order works too.
- ``gru_cell(xw, hw, h) -> h'`` with xw = x·W_ihᵀ + b_ih and hw = h·W_hhᵀ + b_hh (N, 3H), gate
  order (r, z, n): r = σ(xw_r + hw_r), z = σ(xw_z + hw_z), n = tanh(xw_n + r·hw_n),
  h' = n + z·(h - n); ``gru_cell_grad(dy, xw, hw, h) -> (dxw, dhw, dh)`` recomputes r, z, n.

Every element is independent, so the results do not depend on the thread count.  The references
compute in float64 and round each output once; the float32 kernels compute in float32 with the
runtime's vectorised exp/tanh (within a few ulps)."""

import numpy as np

from graphc import dtypes
from graphc.ops._common import Example, F, build, rand, special
from graphc.registry import defgrad, register_op

_FLOAT_T = {"T": dtypes.FLOATS}


# -- references (float64, rounded once) ------------------------------------------------------------

def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _acts(gates):
    i, f, g, o = np.split(gates, 4, axis=1)
    return _sig(i), _sig(f), np.tanh(g), _sig(o)


@np.errstate(all="ignore")  # special values: inf·0, inf - inf
def _lstm_cell_ref(inputs, attrs):
    gates, cp = (a.astype(np.float64) for a in inputs)
    t = inputs[0].dtype
    i, f, g, o = _acts(gates)
    c = f * cp + i * g
    h = o * np.tanh(c)
    return h.astype(t), c.astype(t)


@np.errstate(all="ignore")
def _lstm_cell_grad_ref(inputs, attrs):
    dh, dc, gates, cp, c = (a.astype(np.float64) for a in inputs)
    t = inputs[2].dtype
    i, f, g, o = _acts(gates)
    tc = np.tanh(c)
    dct = dc + dh * o * (1.0 - tc * tc)
    dgates = np.concatenate([dct * g * (i * (1.0 - i)), dct * cp * (f * (1.0 - f)), dct * i * (1.0 - g * g),
                             dh * tc * (o * (1.0 - o))], axis=1)
    return dgates.astype(t), (dct * f).astype(t)


def _gru_acts(xw, hw):
    xr, xz, xn = np.split(xw, 3, axis=1)
    hr, hz, hn = np.split(hw, 3, axis=1)
    r, z = _sig(xr + hr), _sig(xz + hz)
    return r, z, np.tanh(xn + r * hn), hn


@np.errstate(all="ignore")
def _gru_cell_ref(inputs, attrs):
    xw, hw, h = (a.astype(np.float64) for a in inputs)
    _, z, n, _ = _gru_acts(xw, hw)
    return [(n + z * (h - n)).astype(inputs[0].dtype)]


@np.errstate(all="ignore")
def _gru_cell_grad_ref(inputs, attrs):
    dy, xw, hw, h = (a.astype(np.float64) for a in inputs)
    t = inputs[1].dtype
    r, z, n, hn = _gru_acts(xw, hw)
    dan = dy * (1.0 - z) * (1.0 - n * n)
    dar = dan * hn * (r * (1.0 - r))
    daz = dy * (h - n) * (z * (1.0 - z))
    dxw = np.concatenate([dar, daz, dan], axis=1)
    dhw = np.concatenate([dar, daz, dan * r], axis=1)
    return dxw.astype(t), dhw.astype(t), (dy * z).astype(t)


# -- inference ---------------------------------------------------------------------------------------

def _same(p, q):
    return p is None or q is None or not isinstance(p, int) or not isinstance(q, int) or p == q


def _cell_shape(ctx, gi, ci, k=4):
    """(N, H) from gates (input gi, (N, kH)) and a state (input ci, (N, H))."""
    gs, cs = tuple(ctx.shape(gi)), tuple(ctx.shape(ci))
    if len(gs) != 2:
        ctx.fail(f"expects gates (input {gi}) of rank 2 (N, {k}H), got shape {gs}")
    if len(cs) != 2:
        ctx.fail(f"expects the state (input {ci}) of rank 2 (N, H), got shape {cs}")
    if not _same(gs[0], cs[0]):
        ctx.fail(f"expects gates (input {gi}) and the state (input {ci}) with the same rows N, got {gs} and {cs}")
    if isinstance(gs[1], int) and gs[1] % k:
        ctx.fail(f"expects gates (input {gi}) of width {k}H (a multiple of {k}), got shape {gs}")
    if isinstance(gs[1], int) and isinstance(cs[1], int) and gs[1] != k * cs[1]:
        ctx.fail(f"expects gates (input {gi}) of width {k}H = {k}·{cs[1]} for the state of shape {cs}, got shape {gs}")
    n = cs[0] if isinstance(cs[0], int) else gs[0]
    hdim = cs[1] if isinstance(cs[1], int) else (gs[1] // k if isinstance(gs[1], int) else cs[1])
    return (n, hdim), gs


def _lstm_cell_infer(ctx):
    shape, _ = _cell_shape(ctx, 0, 1)
    t = ctx.dtype(0)
    return [(t, shape), (t, shape)]


def _lstm_cell_grad_infer(ctx):
    shape, gs = _cell_shape(ctx, 2, 3)
    for i, name in ((0, "dh"), (1, "dc"), (4, "c")):
        got = tuple(ctx.shape(i))
        if len(got) != 2 or not all(_same(p, q) for p, q in zip(got, shape)):
            ctx.fail(f"expects {name} (input {i}) of shape {shape} (as c_prev), got {got}")
    t = ctx.dtype(2)
    return [(t, (shape[0], gs[1])), (t, shape)]


def _gru_cell_infer(ctx):
    shape, gs = _cell_shape(ctx, 0, 2, 3)
    got = tuple(ctx.shape(1))
    if len(got) != 2 or not all(_same(p, q) for p, q in zip(got, gs)):
        ctx.fail(f"expects hw (input 1) of the shape of xw {gs}, got {got}")
    return [(ctx.dtype(0), shape)]


def _gru_cell_grad_infer(ctx):
    shape, gs = _cell_shape(ctx, 1, 3, 3)
    for i, name, want in ((0, "dy", shape), (2, "hw", gs)):
        got = tuple(ctx.shape(i))
        if len(got) != 2 or not all(_same(p, q) for p, q in zip(got, want)):
            ctx.fail(f"expects {name} (input {i}) of shape {want}, got {got}")
    t = ctx.dtype(1)
    return [(t, gs), (t, gs), (t, shape)]


# -- examples ----------------------------------------------------------------------------------------

# (N, H): no rows, no hidden units, size 1, odd sizes, and a size above the kernel's parallel grain
CASES = [(0, 3), (2, 0), (1, 1), (3, 5), (7, 13), (5, 33), (33, 129)]
_GRAD_MAX = 200  # elements of c: larger cases are left out of the finite-difference gradient checks


def _forward_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for n, h in CASES:
            out.append(Example([rand(rng, (n, 4 * h), dt, -4.0, 4.0), rand(rng, (n, h), dt)],
                               grad=n * h <= _GRAD_MAX, note=dt))
        # NaN/±inf/-0.0/tiny in the gates and in c_prev (no extremes: an overflowing product
        # would depend on the order of the multiplications)
        out.append(Example([special(rng, (4, 20), dt, extremes=False), special(rng, (4, 5), dt, extremes=False)],
                           grad=False, note=f"{dt} special values"))
        # saturated gates: σ and tanh in their flat tails
        sat = rng.choice(np.array([-30.0, 30.0], dt), size=(3, 4 * 6))
        out.append(Example([sat, rand(rng, (3, 6), dt)], grad=False, note=f"{dt} saturated"))
    return out


def _grad_examples(rng):
    out = []
    for ex in _forward_examples(rng):
        gates, cp = ex.inputs
        dt = gates.dtype.name
        _, c = _lstm_cell_ref(ex.inputs, {})
        if ex.grad or "special" not in ex.note:
            dh, dc = rand(rng, c.shape, dt), rand(rng, c.shape, dt)
        else:
            dh, dc = special(rng, c.shape, dt, extremes=False), special(rng, c.shape, dt, extremes=False)
            c = special(rng, c.shape, dt, extremes=False)
        out.append(Example([dh, dc, gates, cp, c], grad=ex.grad, note=ex.note))
    return out


def _gru_forward_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for n, h in CASES:
            out.append(Example([rand(rng, (n, 3 * h), dt, -3.0, 3.0), rand(rng, (n, 3 * h), dt), rand(rng, (n, h), dt)],
                               grad=n * h <= _GRAD_MAX, note=dt))
        out.append(Example([special(rng, (4, 15), dt, extremes=False), special(rng, (4, 15), dt, extremes=False),
                            special(rng, (4, 5), dt, extremes=False)], grad=False, note=f"{dt} special values"))
    return out


def _gru_grad_examples(rng):
    out = []
    for ex in _gru_forward_examples(rng):
        xw, hw, h = ex.inputs
        dt = xw.dtype.name
        dy = special(rng, h.shape, dt, extremes=False) if "special" in ex.note else rand(rng, h.shape, dt)
        out.append(Example([dy, xw, hw, h], grad=ex.grad, note=ex.note))
    return out


# -- declarations ------------------------------------------------------------------------------------

def _cell_composite(ctx):
    gates, cp = ctx.inputs
    i, f, g, o = F.split(gates, 4, axis=1)
    c = F.add(F.mul(F.sigmoid(f), cp), F.mul(F.sigmoid(i), F.tanh(g)))
    return F.mul(F.sigmoid(o), F.tanh(c)), c


register_op(
    "lstm_cell",
    doc="One LSTM step's gate arithmetic (PyTorch's gate order i, f, g, o): from gates (N, 4H) = "
        "x·W_ihᵀ + h·W_hhᵀ + biases and c_prev (N, H): i, f, o = σ(gates[i], gates[f], gates[o]), "
        "g = tanh(gates[g]), c = f·c_prev + i·g, h = o·tanh(c).  Outputs (h, c).",
    inputs=[("gates", "T"), ("c_prev", "T")],
    type_vars=_FLOAT_T,
    infer=_lstm_cell_infer,
    reference=_lstm_cell_ref,
    examples=_forward_examples,
    composite=_cell_composite,
)


def _grad_composite(ctx):
    dh, dc, gates, cp, c = ctx.inputs
    t = gates.dtype
    one = F.constant(np.asarray(1.0, t), graph=gates.graph)
    i, f, g, o = (F.sigmoid(v) if k != 2 else F.tanh(v) for k, v in enumerate(F.split(gates, 4, axis=1)))
    tc = F.tanh(c)
    dct = F.add(dc, F.mul(F.mul(dh, o), F.sub(one, F.mul(tc, tc))))

    def dsig(s):
        return F.mul(s, F.sub(one, s))

    dgates = F.concat([F.mul(F.mul(dct, g), dsig(i)), F.mul(F.mul(dct, cp), dsig(f)),
                       F.mul(F.mul(dct, i), F.sub(one, F.mul(g, g))), F.mul(F.mul(dh, tc), dsig(o))], axis=1)
    return dgates, F.mul(dct, f)


register_op(
    "lstm_cell_grad",
    doc="The gradient of lstm_cell (dh, dc the gradients of its outputs h and c; c its output): with the "
        "activations recomputed from gates and dĉ = dc + dh·o·(1 - tanh²c): dgates = [dĉ·g·i(1-i), "
        "dĉ·c_prev·f(1-f), dĉ·i·(1-g²), dh·tanh(c)·o(1-o)] (N, 4H), dc_prev = dĉ·f (N, H).",
    inputs=[("dh", "T"), ("dc", "T"), ("gates", "T"), ("c_prev", "T"), ("c", "T")],
    type_vars=_FLOAT_T,
    infer=_lstm_cell_grad_infer,
    reference=_lstm_cell_grad_ref,
    examples=_grad_examples,
    composite=_grad_composite,  # no gradient of its own: autodiff differentiates this definition
)


@defgrad("lstm_cell")
def _grad_lstm_cell(ctx):
    gates, cp = ctx.inputs
    _, c = ctx.outputs
    dh, dc = ctx.grads
    return list(lstm_cell_grad(dh, dc, gates, cp, c))


def _gru_split(xw, hw):
    xr, xz, xn = F.split(xw, 3, axis=1)
    hr, hz, hn = F.split(hw, 3, axis=1)
    r, z = F.sigmoid(F.add(xr, hr)), F.sigmoid(F.add(xz, hz))
    return r, z, F.tanh(F.add(xn, F.mul(r, hn))), hn


def _gru_composite(ctx):
    xw, hw, h = ctx.inputs
    _, z, n, _ = _gru_split(xw, hw)
    return F.add(n, F.mul(z, F.sub(h, n)))


register_op(
    "gru_cell",
    doc="One GRU step's gate arithmetic (PyTorch's gate order r, z, n): from xw = x·W_ihᵀ + b_ih and "
        "hw = h·W_hhᵀ + b_hh (N, 3H) and h (N, H): r = σ(xw[r] + hw[r]), z = σ(xw[z] + hw[z]), "
        "n = tanh(xw[n] + r·hw[n]), h' = n + z·(h - n).",
    inputs=[("xw", "T"), ("hw", "T"), ("h", "T")],
    type_vars=_FLOAT_T,
    infer=_gru_cell_infer,
    reference=_gru_cell_ref,
    examples=_gru_forward_examples,
    composite=_gru_composite,
)


def _gru_grad_composite(ctx):
    dy, xw, hw, h = ctx.inputs
    one = F.constant(np.asarray(1.0, xw.dtype), graph=xw.graph)
    r, z, n, hn = _gru_split(xw, hw)
    dan = F.mul(F.mul(dy, F.sub(one, z)), F.sub(one, F.mul(n, n)))
    dar = F.mul(F.mul(dan, hn), F.mul(r, F.sub(one, r)))
    daz = F.mul(F.mul(dy, F.sub(h, n)), F.mul(z, F.sub(one, z)))
    return (F.concat([dar, daz, dan], axis=1), F.concat([dar, daz, F.mul(dan, r)], axis=1), F.mul(dy, z))


register_op(
    "gru_cell_grad",
    doc="The gradient of gru_cell (dy the gradient of h'), the activations recomputed from xw and hw: "
        "dan = dy·(1-z)·(1-n²), dar = dan·hw[n]·r(1-r), daz = dy·(h-n)·z(1-z); "
        "outputs dxw = [dar, daz, dan], dhw = [dar, daz, dan·r] (N, 3H), dh = dy·z (N, H).",
    inputs=[("dy", "T"), ("xw", "T"), ("hw", "T"), ("h", "T")],
    type_vars=_FLOAT_T,
    infer=_gru_cell_grad_infer,
    reference=_gru_cell_grad_ref,
    examples=_gru_grad_examples,
    composite=_gru_grad_composite,  # no gradient of its own: autodiff differentiates this definition
)


@defgrad("gru_cell")
def _grad_gru_cell(ctx):
    xw, hw, h = ctx.inputs
    return list(gru_cell_grad(ctx.g, xw, hw, h))


# -- builders ----------------------------------------------------------------------------------------

def lstm_cell(gates, c_prev, name=None):
    """One LSTM step's gate arithmetic, as ``torch.nn.LSTMCell`` after its matmuls: ``gates``
    (N, 4H) holds x·W_ihᵀ + h·W_hhᵀ + b_ih + b_hh in PyTorch's gate order (i, f, g, o), ``c_prev``
    (N, H) the cell state.  Returns ``(h, c)``, each (N, H)::

        c = σ(f)·c_prev + σ(i)·tanh(g);   h = σ(o)·tanh(c)

    Example::

        h, c = gc.lstm_cell(gc.matmul(x, w_ih, transpose_b=True) + gc.matmul(h, w_hh, transpose_b=True) + b, c)
    """
    return build("lstm_cell", [gates, c_prev], name=name)


def lstm_cell_grad(dh, dc, gates, c_prev, c, name=None):
    """The gradient (dgates, dc_prev) of lstm_cell (see the op's doc)."""
    return build("lstm_cell_grad", [dh, dc, gates, c_prev, c], name=name)


def gru_cell(xw, hw, h, name=None):
    """One GRU step's gate arithmetic, as ``torch.nn.GRUCell`` after its matmuls: ``xw`` (N, 3H)
    = x·W_ihᵀ + b_ih and ``hw`` (N, 3H) = h·W_hhᵀ + b_hh in PyTorch's gate order (r, z, n), ``h``
    (N, H) the state.  Returns h' (N, H)::

        r = σ(xw_r + hw_r);  z = σ(xw_z + hw_z);  n = tanh(xw_n + r·hw_n);  h' = n + z·(h - n)
    """
    return build("gru_cell", [xw, hw, h], name=name)


def gru_cell_grad(dy, xw, hw, h, name=None):
    """The gradient (dxw, dhw, dh) of gru_cell (see the op's doc)."""
    return build("gru_cell_grad", [dy, xw, hw, h], name=name)
