"""gc.nn attention layers (MultiheadAttention, TransformerEncoderLayer, TransformerEncoder) against
torch.nn with the weights copied in by name through Session.load_state_dict: outputs, attention
weights and the gradients of sum(y · r) for a random r w.r.t. the inputs and every parameter.

Comparisons against PyTorch skip, saying so, where torch is not installed.  Errors are measured
per tensor as max|graphc − torch| / max|torch|, as in test_nn_seq.py.
"""

import numpy as np
import pytest
from torch_compare import assert_close
from torch_compare import torch_or_skip as _torch

import graphc as gc
from graphc.errors import GraphError, ShapeError

# float32 through two matmuls, a softmax and a projection per layer (and its backward): 1e-4 of
# the tensor's largest magnitude is ~1000 float32 ulps, room for different summation orders
RTOL = 1e-4


def _assert_close(ours, theirs, what, rtol=RTOL):
    assert_close(ours, theirs, what, rtol, finite=True)


def _randomize(torch, module, rng):
    """Non-default values for every parameter (zero biases and unit norms would hide a swap)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy((rng.standard_normal(tuple(p.shape)) * 0.3).astype(np.float32)))


def _check(torch, tm, layer, inputs, call_gc, call_torch, what, n_outputs=1, train=False):
    """Build ``call_gc(layer, *placeholders)``, load ``tm``'s weights, and compare the outputs
    and the gradients of sum(out0 · r) with torch's ``call_torch(tm, *tensors)``."""
    rng = np.random.default_rng(7)
    params = dict(tm.named_parameters())
    with gc.Graph() as g:
        phs = [gc.placeholder(f"in{i}", a.shape) for i, a in enumerate(inputs)]
        outs = call_gc(layer, *phs)
        outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        r = gc.placeholder("r", outs[0].shape)
        loss = gc.sum(outs[0] * r)
        variables = layer.variables(g)
        assert sorted(k.replace("/", ".") for k in variables) == sorted(params), what
        names = sorted(variables)
        wrt = phs + [variables[k] for k in names]
        grads = gc.gradients(loss, wrt)
    fetched = [o for o in outs[:n_outputs] if o is not None]
    feeds = {f"in{i}": a for i, a in enumerate(inputs)}
    rb = rng.standard_normal(outs[0].shape).astype(np.float32)
    feeds["r"] = rb
    shapes = {k: v.shape for k, v in feeds.items()}
    sess = gc.Session(gc.compile(g, shapes=shapes, fetches=fetched + grads, train=train))
    sess.load_state_dict(tm.state_dict())
    got = sess.run(feeds)

    tm.zero_grad(set_to_none=True)
    ts = [torch.from_numpy(a).requires_grad_(True) for a in inputs]
    touts = call_torch(tm, *ts)
    touts = list(touts) if isinstance(touts, (tuple, list)) else [touts]
    (touts[0] * torch.from_numpy(rb)).sum().backward()
    for i, o in enumerate(fetched):
        _assert_close(got[o.name], touts[i].detach().numpy(), f"{what} output {i}")
    for i, t in enumerate(ts):
        _assert_close(got[grads[i].name], t.grad.numpy(), f"{what} d/d input {i}")
    for k, gt in zip(names, grads[len(ts):]):
        _assert_close(got[gt.name], params[k.replace("/", ".")].grad.numpy(), f"{what} d/d {k}")


def _const(a):
    return gc.constant(a)


# --------------------------------------------------------------------------- MultiheadAttention

N, L, S, E, H = 3, 5, 7, 8, 2


def _mha_cases():
    rng = np.random.default_rng(3)
    bool_mask = rng.random((L, L)) < 0.4
    np.fill_diagonal(bool_mask, False)            # every row keeps at least itself
    float_mask = (rng.standard_normal((L, L)) * 2).astype(np.float32)
    mask3 = rng.random((N * H, L, L)) < 0.4
    mask3[:, :, 0] = False                        # key 0: never padded, so no row is fully masked
    kpm = np.zeros((N, L), bool)
    kpm[0, -2:] = True
    kpm[2, 1] = True
    causal = np.triu(np.ones((L, L), bool), 1)    # torch: True = not allowed
    cases = []
    for bf in (False, True):
        cases += [
            (f"self bf={bf}", bf, {}, {}),
            (f"causal bf={bf}", bf, {"is_causal": True}, {"attn_mask": causal, "is_causal": True}),
            (f"bool mask bf={bf}", bf, {"attn_mask": bool_mask}, {"attn_mask": bool_mask}),
            (f"float mask bf={bf}", bf, {"attn_mask": float_mask}, {"attn_mask": float_mask}),
            (f"key padding bf={bf}", bf, {"key_padding_mask": kpm}, {"key_padding_mask": kpm}),
        ]
    cases += [
        ("3-D mask + causal + padding", True, {"attn_mask": mask3, "key_padding_mask": kpm, "is_causal": True},
         {"attn_mask": mask3 | causal, "key_padding_mask": kpm}),
        ("float mask + bool padding", True, {"attn_mask": float_mask, "key_padding_mask": kpm},
         {"attn_mask": float_mask, "key_padding_mask": kpm}),
    ]
    return cases


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("what, batch_first, gc_kw, torch_kw", _mha_cases(), ids=[c[0] for c in _mha_cases()])
def test_mha_self_attention_matches_torch(what, batch_first, gc_kw, torch_kw, need_weights):
    torch = _torch()
    rng = np.random.default_rng(11)
    tm = torch.nn.MultiheadAttention(E, H, batch_first=batch_first)
    _randomize(torch, tm, rng)
    layer = gc.nn.MultiheadAttention(E, H, batch_first=batch_first)
    x = rng.standard_normal((N, L, E) if batch_first else (L, N, E)).astype(np.float32)

    def call_gc(m, xt):
        kw = {k: (_const(v) if isinstance(v, np.ndarray) else v) for k, v in gc_kw.items()}
        return m(xt, xt, xt, need_weights=need_weights, **kw)

    def call_torch(m, xt):
        kw = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in torch_kw.items()}
        return m(xt, xt, xt, need_weights=need_weights, **kw)

    _check(torch, tm, layer, [x], call_gc, call_torch, what, n_outputs=2 if need_weights else 1)


@pytest.mark.parametrize("kdim, vdim", [(None, None), (5, 6)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_cross_attention_matches_torch(kdim, vdim, batch_first):
    torch = _torch()
    rng = np.random.default_rng(12)
    tm = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=batch_first)
    _randomize(torch, tm, rng)
    layer = gc.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=batch_first)

    def shape(length, d):
        return (N, length, d) if batch_first else (length, N, d)

    q = rng.standard_normal(shape(L, E)).astype(np.float32)
    k = rng.standard_normal(shape(S, kdim or E)).astype(np.float32)
    v = rng.standard_normal(shape(S, vdim or E)).astype(np.float32)
    kpm = np.zeros((N, S), bool)
    kpm[1, :3] = True
    _check(torch, tm, layer, [q, k, v],
           lambda m, a, b, c: m(a, b, c, key_padding_mask=_const(kpm), average_attn_weights=False),
           lambda m, a, b, c: m(a, b, c, key_padding_mask=torch.from_numpy(kpm), average_attn_weights=False),
           f"cross kdim={kdim} vdim={vdim} bf={batch_first}", n_outputs=2)


def test_mha_unbatched_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(13)
    tm = torch.nn.MultiheadAttention(E, H, bias=False)
    _randomize(torch, tm, rng)
    layer = gc.nn.MultiheadAttention(E, H, bias=False)
    x = rng.standard_normal((L, E)).astype(np.float32)
    _check(torch, tm, layer, [x], lambda m, a: m(a, a, a), lambda m, a: m(a, a, a), "unbatched", n_outputs=2)


def test_mha_names_and_initial_values():
    e = 64
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 10, e))
        out, w = gc.nn.MultiheadAttention(e, 4, batch_first=True)(x, x, x)
    assert out.shape[1:] == (10, e) and w.shape[1:] == (10, 10)
    sess = gc.Session(gc.compile(g, shapes={"x": (2, 10, e)}, fetches=[out], train=False))
    state = sess.state_dict()
    assert sorted(state) == ["in_proj_bias", "in_proj_weight", "out_proj.bias", "out_proj.weight"]
    np.testing.assert_array_equal(state["in_proj_bias"], 0)
    np.testing.assert_array_equal(state["out_proj.bias"], 0)
    # xavier uniform on (3E, E): U(-b, b) with b = √(6 / 4E); kaiming_uniform(a=√5) on out_proj: b = 1/√E.
    # The extremes of 12288 (4096) draws lie within 1% of b; the variance b²/3 within 5 sd of its estimate.
    for key, bound in (("in_proj_weight", np.sqrt(6 / (4 * e))), ("out_proj.weight", 1 / np.sqrt(e))):
        w = state[key].astype(np.float64)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound, key
        n = w.size
        assert abs(w.var() - bound ** 2 / 3) < 5 * np.sqrt(4 / 45 / n) * bound ** 2, key


@pytest.mark.parametrize("make, words", [
    (lambda: gc.nn.MultiheadAttention(10, 3), "divisible"),
    (lambda: gc.nn.MultiheadAttention(0, 1), "embed_dim"),
    (lambda: gc.nn.MultiheadAttention(8, 2, dropout=1.0), "dropout"),
    (lambda: gc.nn.MultiheadAttention(8, 2, add_bias_kv=True), "add_bias_kv"),
    (lambda: gc.nn.TransformerEncoderLayer(8, 2, activation="tanh"), "activation"),
    (lambda: gc.nn.TransformerEncoderLayer(8, 2, dim_feedforward=0), "dim_feedforward"),
    (lambda: gc.nn.TransformerEncoder("layer", 2), "encoder_layer"),
    (lambda: gc.nn.TransformerEncoder(gc.nn.TransformerEncoderLayer(8, 2), 0), "num_layers"),
])
def test_refused_arguments(make, words):
    with pytest.raises(GraphError, match=words):
        make()


def test_wrong_inputs():
    with gc.Graph():
        x = gc.placeholder("x", (4, 5, 8))
        m = gc.nn.MultiheadAttention(8, 2, batch_first=True)
        with pytest.raises(ShapeError, match="last dim of 8"):
            m(x, x, gc.placeholder("v", (4, 5, 6)))
        with pytest.raises(ShapeError, match="attn_mask"):
            m(x, x, x, attn_mask=gc.constant(np.zeros((5, 4), bool)))
        with pytest.raises(ShapeError, match="key_padding_mask"):
            m(x, x, x, key_padding_mask=gc.constant(np.zeros((4, 6), bool)))
        with pytest.raises(GraphError, match="attn_mask.*bool or float"):
            m(x, x, x, attn_mask=gc.constant(np.zeros((5, 5), np.int64)))
        with pytest.raises(ShapeError, match="rank|unbatched"):
            m(gc.placeholder("y", (8,)), x, x)


# --------------------------------------------------------------------------- TransformerEncoderLayer


def _layer_cases():
    return [(nf, act, bf) for nf in (False, True) for act in ("relu", "gelu") for bf in (False, True)]


@pytest.mark.parametrize("norm_first, activation, batch_first", _layer_cases(),
                         ids=[f"norm_first={c[0]}-{c[1]}-bf={c[2]}" for c in _layer_cases()])
def test_encoder_layer_matches_torch(norm_first, activation, batch_first):
    torch = _torch()
    rng = np.random.default_rng(21)
    kw = dict(dim_feedforward=12, dropout=0.0, activation=activation, batch_first=batch_first, norm_first=norm_first)
    tm = torch.nn.TransformerEncoderLayer(E, H, **kw)
    _randomize(torch, tm, rng)
    layer = gc.nn.TransformerEncoderLayer(E, H, **kw)
    x = rng.standard_normal((N, L, E) if batch_first else (L, N, E)).astype(np.float32)
    kpm = np.zeros((N, L), bool)
    kpm[1, -1] = True
    causal = np.triu(np.ones((L, L), bool), 1)
    # plain, and causal with key padding
    _check(torch, tm, layer, [x], lambda m, a: m(a), lambda m, a: m(a), "encoder layer")
    _check(torch, tm, layer, [x],
           lambda m, a: m(a, src_key_padding_mask=_const(kpm), is_causal=True),
           lambda m, a: m(a, src_mask=torch.from_numpy(causal), src_key_padding_mask=torch.from_numpy(kpm),
                          is_causal=True),
           "encoder layer causal+padding")


def test_encoder_stack_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(22)
    kw = dict(dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, **kw), 2, norm=torch.nn.LayerNorm(E),
                                     enable_nested_tensor=False)
    _randomize(torch, tm, rng)
    layer = gc.nn.TransformerEncoder(gc.nn.TransformerEncoderLayer(E, H, **kw), 2, norm=gc.nn.LayerNorm(E))
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    causal = np.triu(np.ones((L, L), bool), 1)
    _check(torch, tm, layer, [x], lambda m, a: m(a, is_causal=True),
           lambda m, a: m(a, mask=torch.from_numpy(causal), is_causal=True), "encoder stack")


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_with_dropout_inference_equals_torch_eval(norm_first):
    torch = _torch()
    rng = np.random.default_rng(23)
    kw = dict(dim_feedforward=12, dropout=0.3, batch_first=True, norm_first=norm_first)
    tm = torch.nn.TransformerEncoderLayer(E, H, **kw)
    _randomize(torch, tm, rng)
    tm.eval()
    layer = gc.nn.TransformerEncoderLayer(E, H, **kw)
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    with gc.Graph() as g:
        xp = gc.placeholder("x", x.shape)
        y = layer(xp, is_causal=True)
        gc.optim.SGD(lr=0.1).minimize(gc.mean(y * y))     # a training spec: the same .pb trains too
    sess = gc.Session(gc.compile(g, shapes={"x": x.shape}, fetches=[y], train=False))
    sess.load_state_dict(tm.state_dict())
    with torch.no_grad():
        want = tm(torch.from_numpy(x), src_mask=torch.from_numpy(np.triu(np.ones((L, L), bool), 1)),
                  is_causal=True).numpy()
    _assert_close(sess.run({"x": x})[y.name], want, "eval output")
    # the training plan of the same graph does drop: its output differs from eval's
    train = gc.Session(gc.compile(g, shapes={"x": x.shape}, fetches=[y]))
    train.load_state_dict(tm.state_dict())
    assert not np.allclose(train.run({"x": x})[y.name], want, atol=1e-3)


def test_encoder_names_are_torch_keys():
    torch = _torch()
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, 16), 3, enable_nested_tensor=False)
    layer = gc.nn.TransformerEncoder(gc.nn.TransformerEncoderLayer(E, H, 16), 3)
    with gc.Graph() as g:
        y = layer(gc.placeholder("x", (L, N, E)))
    names = sorted(k.replace("/", ".") for k in layer.variables(g))
    assert names == sorted(k for k, _ in tm.named_parameters())
    assert y.shape == (L, N, E)


def test_batch_bound_at_compile_time():
    """A (None, L, E) placeholder: the layers reshape with -1 for the batch, bound by compile."""
    torch = _torch()
    rng = np.random.default_rng(24)
    kw = dict(dim_feedforward=12, dropout=0.0, batch_first=True, norm_first=True)
    tm = torch.nn.TransformerEncoderLayer(E, H, **kw)
    _randomize(torch, tm, rng)
    layer = gc.nn.TransformerEncoderLayer(E, H, **kw)
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    with gc.Graph() as g:
        xp = gc.placeholder("x", (None, L, E))
        y = layer(xp, is_causal=True)
    assert y.shape == (None, L, E)
    sess = gc.Session(gc.compile(g, shapes={"x": x.shape}, fetches=[y], train=False))
    sess.load_state_dict(tm.state_dict())
    with torch.no_grad():
        want = tm(torch.from_numpy(x), src_mask=torch.from_numpy(np.triu(np.ones((L, L), bool), 1)),
                  is_causal=True).numpy()
    _assert_close(sess.run({"x": x})[y.name], want, "batch None")


def test_mha_attention_dropout_acts_in_training_only():
    torch = _torch()
    rng = np.random.default_rng(25)
    tm = torch.nn.MultiheadAttention(E, H, dropout=0.5, batch_first=True)
    _randomize(torch, tm, rng)
    tm.eval()
    layer = gc.nn.MultiheadAttention(E, H, dropout=0.5, batch_first=True)
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    with gc.Graph() as g:
        xp = gc.placeholder("x", x.shape)
        y, w = layer(xp, xp, xp)
        gc.optim.SGD(lr=1e-9).minimize(gc.mean(y * y))
    infer = gc.Session(gc.compile(g, shapes={"x": x.shape}, fetches=[y, w], train=False))
    infer.load_state_dict(tm.state_dict())
    got = infer.run({"x": x})
    with torch.no_grad():
        ty, tw = tm(torch.from_numpy(x), torch.from_numpy(x), torch.from_numpy(x))
    _assert_close(got[y.name], ty.numpy(), "eval output")
    _assert_close(got[w.name], tw.numpy(), "eval weights")
    train = gc.Session(gc.compile(g, shapes={"x": x.shape}, fetches=[y, w]))
    train.load_state_dict(tm.state_dict())
    dropped = train.run({"x": x})[w.name]
    # p = 0.5 zeroes about half the weights and doubles the rest (averaged over heads: some stay 0)
    assert not np.allclose(dropped, tw.numpy(), atol=1e-3)
    kept = train.run({"x": x})[w.name]
    assert not np.array_equal(dropped, kept), "each training step draws a new mask"


@pytest.mark.parametrize("kind", ["function", "layer"])
def test_encoder_layer_callable_activation(kind):
    torch = _torch()
    rng = np.random.default_rng(26)
    kw = dict(dim_feedforward=12, dropout=0.0, batch_first=True)
    tm = torch.nn.TransformerEncoderLayer(E, H, activation=torch.nn.functional.silu, **kw)
    _randomize(torch, tm, rng)
    act = gc.silu if kind == "function" else gc.nn.SiLU()
    layer = gc.nn.TransformerEncoderLayer(E, H, activation=act, **kw)
    x = rng.standard_normal((N, L, E)).astype(np.float32)
    _check(torch, tm, layer, [x], lambda m, a: m(a), lambda m, a: m(a), f"silu {kind}")
