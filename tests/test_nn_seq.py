"""gc.nn layers for sequence models (Embedding, LayerNorm, GELU, SiLU, Softplus): names, initial
values, refused arguments, and each layer against torch.nn with the weights loaded through
Session.load_state_dict(torch_module.state_dict()) — outputs and the gradients of
sum(y · r) for a random r — and a tiny model (Embedding → LayerNorm → GELU → Linear) that
trains 3 SGD steps like PyTorch.

Comparisons against PyTorch skip, saying so, where torch is not installed.  Errors are
measured per tensor as max|graphc − torch| / max|torch| (an elementwise relative error is
meaningless near a gradient's zeros).
"""

import numpy as np
import pytest
from torch_compare import assert_close
from torch_compare import torch_or_skip as _torch

import graphc as gc
from graphc.errors import GraphError, ShapeError

# float32 outputs and gradients of a few rounding steps each: 1e-5 of the tensor's largest
# magnitude is ~100 float32 ulps, room for a different summation order, far below a wrong formula
RTOL = 1e-5


def _assert_close(ours, theirs, what, rtol=RTOL):
    assert_close(ours, theirs, what, rtol)


# --------------------------------------------------------------------------- names, init, refusals


class _Tiny(gc.nn.Module):
    def __init__(self, vocab, dim, classes, approximate="none"):
        super().__init__()
        self.emb = gc.nn.Embedding(vocab, dim)
        self.norm = gc.nn.LayerNorm(dim)
        self.act = gc.nn.GELU(approximate)
        self.fc = gc.nn.Linear(dim, classes)

    def forward(self, ids):
        return self.fc(self.act(self.norm(self.emb(ids))))


def test_names_shapes_and_initial_values():
    vocab, dim = 400, 50
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (None, 7), dtype="int64")
        y = _Tiny(vocab, dim, 3)(ids)
    assert y.shape[1:] == (7, 3)
    sess = gc.Session(gc.compile(g, shapes={"ids": (2, 7)}, fetches=[y], train=False))
    state = sess.state_dict()
    assert sorted(state) == sorted(["emb.weight", "norm.weight", "norm.bias", "fc.weight", "fc.bias"]), state.keys()
    w = state["emb.weight"]
    assert w.shape == (vocab, dim) and w.dtype == np.float32
    # N(0, 1): over n = 20000 draws the sample mean has sd 1/√n and the sample variance sd √(2/n);
    # allow 5 of each
    n = w.size
    assert abs(float(w.mean())) < 5 / np.sqrt(n)
    assert abs(float(w.var()) - 1.0) < 5 * np.sqrt(2 / n)
    np.testing.assert_array_equal(state["norm.weight"], np.ones(dim, np.float32))
    np.testing.assert_array_equal(state["norm.bias"], np.zeros(dim, np.float32))


def test_layernorm_tuple_shape_and_no_affine_names():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3, 4))
        a = gc.nn.LayerNorm((3, 4), name="a")(x)
        b = gc.nn.LayerNorm(4, bias=False, name="b")(x)
        c = gc.nn.LayerNorm([3, 4], elementwise_affine=False, name="c")(x)
    assert a.shape[1:] == b.shape[1:] == c.shape[1:] == (3, 4)
    sess = gc.Session(gc.compile(g, shapes={"x": (2, 3, 4)}, fetches=[a, b, c], train=False))
    shapes = {k: v.shape for k, v in sess.state_dict().items()}
    assert shapes == {"a.weight": (3, 4), "a.bias": (3, 4), "b.weight": (4,)}


def test_reprs():
    assert repr(gc.nn.Embedding(10, 3)) == "Embedding(10, 3)"
    assert repr(gc.nn.LayerNorm(8)) == "LayerNorm((8,), eps=1e-05, elementwise_affine=True)"
    assert repr(gc.nn.GELU("tanh")) == "GELU(approximate='tanh')"
    assert repr(gc.nn.Softplus(2, 5)) == "Softplus(beta=2.0, threshold=5.0)"
    assert repr(gc.nn.SiLU()) == "SiLU()"


@pytest.mark.parametrize("make, words", [
    (lambda: gc.nn.Embedding(10, 3, padding_idx=10), "padding_idx"),
    (lambda: gc.nn.Embedding(10, 3, padding_idx=-11), "padding_idx"),
    (lambda: gc.nn.Embedding(10, 3, padding_idx=1.0), "padding_idx"),
    (lambda: gc.nn.Embedding(10, 3, max_norm=1.0), "max_norm"),
    (lambda: gc.nn.Embedding(10, 3, sparse=True), "sparse"),
    (lambda: gc.nn.Embedding(10, 3, scale_grad_by_freq=True), "scale_grad_by_freq"),
    (lambda: gc.nn.Embedding(10, 3, _weight=np.zeros((10, 3))), "_weight"),
    (lambda: gc.nn.Embedding(0, 3), "num_embeddings"),
    (lambda: gc.nn.Embedding(10, 2.5), "embedding_dim"),
    (lambda: gc.nn.LayerNorm(0), "normalized_shape"),
    (lambda: gc.nn.LayerNorm(()), "normalized_shape"),
    (lambda: gc.nn.LayerNorm((3, True)), "normalized_shape"),
    (lambda: gc.nn.LayerNorm(4, eps=0), "eps"),
    (lambda: gc.nn.GELU("erf"), "approximate"),
    (lambda: gc.nn.Softplus(beta=0), "beta"),
    (lambda: gc.nn.Softplus(threshold=float("nan")), "threshold"),
])
def test_refused_arguments(make, words):
    with pytest.raises(GraphError, match=words):
        make()


def test_wrong_inputs():
    with gc.Graph():
        x = gc.placeholder("x", (None, 5))
        with pytest.raises(ShapeError, match=r"LayerNorm.*last 1 dims.*\(4,\)"):
            gc.nn.LayerNorm(4)(x)
        with pytest.raises(ShapeError, match="rank >= 3"):
            gc.nn.LayerNorm((3, 2, 5))(x)
        with pytest.raises(GraphError, match="Embedding.*int32 or int64 ids.*float32"):
            gc.nn.Embedding(10, 3)(x)


def test_embedding_id_out_of_range_is_a_runtime_error():
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (None,), dtype="int64")
        y = gc.nn.Embedding(4, 2)(ids)
    sess = gc.Session(gc.compile(g, shapes={"ids": (3,)}, fetches=[y], train=False))
    with pytest.raises(gc.errors.RuntimeExecutionError):
        sess.run({"ids": np.array([0, 4, 1], np.int64)})


# --------------------------------------------------------------------------- layers vs torch.nn


def _cases():
    return [
        ("LayerNorm(6)", lambda nn: nn.LayerNorm(6), (4, 5, 6)),
        ("LayerNorm((5, 6), eps=1e-3)", lambda nn: nn.LayerNorm((5, 6), eps=1e-3), (4, 5, 6)),
        ("LayerNorm(6, bias=False)", lambda nn: nn.LayerNorm(6, bias=False), (4, 5, 6)),
        ("LayerNorm(6, affine=False)", lambda nn: nn.LayerNorm(6, elementwise_affine=False), (4, 5, 6)),
        ("GELU()", lambda nn: nn.GELU(), (4, 5, 6)),
        ("GELU('tanh')", lambda nn: nn.GELU(approximate="tanh"), (4, 5, 6)),
        ("SiLU()", lambda nn: nn.SiLU(), (4, 5, 6)),
        ("Softplus()", lambda nn: nn.Softplus(), (4, 5, 6)),
        ("Softplus(2, 3)", lambda nn: nn.Softplus(beta=2, threshold=3), (4, 5, 6)),
    ]


@pytest.mark.parametrize("what, make, shape", _cases(), ids=[c[0] for c in _cases()])
def test_float_layers_match_torch(what, make, shape):
    torch = _torch()
    rng = np.random.default_rng(1)
    tm = make(torch.nn)
    params = dict(tm.named_parameters())
    with torch.no_grad():                 # non-default affine values, so a swapped weight/bias shows
        for p in params.values():
            p.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, tuple(p.shape)).astype(np.float32)))
    layer = make(gc.nn)
    with gc.Graph() as g:
        x = gc.placeholder("x", (None,) + shape[1:])
        r = gc.placeholder("r", (None,) + shape[1:])
        y = layer(x)
        loss = gc.sum(y * r)
        variables = layer.variables(g)
        assert sorted(variables) == sorted(params), what
        wrt = [x] + [variables[k] for k in sorted(variables)]
        grads = gc.gradients(loss, wrt)
    sess = gc.Session(gc.compile(g, shapes={"x": shape, "r": shape}, fetches=[y] + grads, train=False))
    sess.load_state_dict(tm.state_dict())
    # spread over softplus's threshold and gelu's tails
    xb = (rng.standard_normal(shape) * 3).astype(np.float32)
    rb = rng.standard_normal(shape).astype(np.float32)
    out = sess.run({"x": xb, "r": rb})
    xt = torch.from_numpy(xb).requires_grad_(True)
    yt = tm(xt)
    (yt * torch.from_numpy(rb)).sum().backward()
    _assert_close(out[y.name], yt.detach().numpy(), f"{what} output")
    _assert_close(out[grads[0].name], xt.grad.numpy(), f"{what} d/dx")
    for k, gt in zip(sorted(variables), grads[1:]):
        _assert_close(out[gt.name], params[k].grad.numpy(), f"{what} d/d{k}")


@pytest.mark.parametrize("padding_idx", [None, 3, -2])
def test_embedding_matches_torch(padding_idx):
    torch = _torch()
    rng = np.random.default_rng(2)
    tm = torch.nn.Embedding(11, 4, padding_idx=padding_idx)
    layer = gc.nn.Embedding(11, 4, padding_idx=padding_idx)
    if padding_idx is not None:
        with torch.no_grad():       # a nonzero padding row: its uses read it, its gradient stays 0
            tm.weight[padding_idx] = 2.0
    for dtype in ("int64", "int32"):
        with gc.Graph() as g:
            ids = gc.placeholder("ids", (None, 6), dtype=dtype)
            r = gc.placeholder("r", (None, 6, 4))
            y = layer(ids)
            (gw,) = gc.gradients(gc.sum(y * r), [layer.variables(g)["weight"]])
        sess = gc.Session(gc.compile(g, shapes={"ids": (5, 6), "r": (5, 6, 4)}, fetches=[y, gw], train=False))
        sess.load_state_dict(tm.state_dict())
        idb = rng.integers(0, 11, (5, 6))          # repeated ids: their gradient rows add up
        if padding_idx is not None:
            idb[0, :3] = padding_idx % 11
        rb = rng.standard_normal((5, 6, 4)).astype(np.float32)
        out = sess.run({"ids": idb.astype(dtype), "r": rb})
        tm.zero_grad()
        yt = tm(torch.from_numpy(idb))
        (yt * torch.from_numpy(rb)).sum().backward()
        np.testing.assert_array_equal(out[y.name], yt.detach().numpy())     # a gather: exact
        _assert_close(out[gw.name], tm.weight.grad.numpy(), f"Embedding {dtype} d/dweight")
        if padding_idx is not None:
            assert not tm.weight.grad[padding_idx].any() and not out[gw.name][padding_idx].any()


def test_embedding_padding_row_starts_at_zero():
    assert repr(gc.nn.Embedding(10, 3, padding_idx=-1)) == "Embedding(10, 3, padding_idx=9)"
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (None,), dtype="int64")
        y = gc.nn.Embedding(10, 3, padding_idx=-1)(ids)
    w = gc.Session(gc.compile(g, shapes={"ids": (2,)}, fetches=[y], train=False)).state_dict()["weight"]
    assert not w[9].any() and np.all(w[:9] != 0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_tiny_sequence_model_trains_like_torch(approximate):
    """Embedding → LayerNorm → GELU → Linear, mean over the sequence, softmax cross-entropy; 3 steps
    of plain SGD from PyTorch's initial weights: losses, logits and every weight within 1e-5."""
    torch = _torch()
    vocab, dim, classes, batch, seq = 13, 8, 5, 6, 7

    class TorchTiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, dim)
            self.norm = torch.nn.LayerNorm(dim)
            self.act = torch.nn.GELU(approximate)
            self.fc = torch.nn.Linear(dim, classes)

        def forward(self, ids):
            return self.fc(self.act(self.norm(self.emb(ids)))).mean(dim=1)

    torch.manual_seed(0)
    tm = TorchTiny()
    with torch.no_grad():
        tm.norm.weight.uniform_(0.5, 1.5)
        tm.norm.bias.uniform_(-0.5, 0.5)
    opt = torch.optim.SGD(tm.parameters(), lr=0.5)
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (None, seq), dtype="int64")
        labels = gc.placeholder("labels", (None,), dtype="int64")
        logits = gc.mean(_Tiny(vocab, dim, classes, approximate)(ids), axis=1)
        loss = gc.softmax_cross_entropy(logits, labels)
        gc.optim.SGD(lr=0.5).minimize(loss)
    sess = gc.Session(gc.compile(g, shapes={"ids": (batch, seq), "labels": (batch,)}, fetches=[loss, logits]),
                      threads=1)
    sess.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(3)
    losses = []
    for step in range(3):
        idb = rng.integers(0, vocab, (batch, seq))
        lb = rng.integers(0, classes, (batch,))
        out = sess.run({"ids": idb, "labels": lb})
        opt.zero_grad()
        lt_logits = tm(torch.from_numpy(idb))
        lt = torch.nn.functional.cross_entropy(lt_logits, torch.from_numpy(lb))
        lt.backward()
        opt.step()
        _assert_close(out[logits.name], lt_logits.detach().numpy(), f"logits, step {step}")
        _assert_close(out[loss.name], lt.detach().numpy(), f"loss, step {step}")
        losses.append(lt.item())
    for k, v in tm.state_dict().items():
        _assert_close(sess.get_variable(k.replace(".", "/")), v.numpy(), f"{k} after 3 steps")
    # the weights moved: the comparison above is not of the initial values
    assert len(set(losses)) == 3
