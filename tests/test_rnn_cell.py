"""The fused LSTM and GRU cell ops (graphc/ops/rnn_cell.py, runtime/cpu/rnn_cell.cc) beyond the
registry-driven tests (tests/test_kernels.py, test_gradients.py, test_ops_reference.py): against
PyTorch's LSTM gate arithmetic and its autograd, the kernel at a size that runs the worker pool
(threads 1 and 2 give the same bits), refusals, and that gc.nn.LSTM puts one lstm_cell node per
step from a state."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, ShapeError


def _torch():
    torch = pytest.importorskip("torch", reason="torch is not installed: lstm_cell is checked against PyTorch")
    torch.set_num_threads(1)
    return torch


def _cell_graph(n, h, dt="float32"):
    with gc.Graph() as g:
        gates = gc.placeholder("gates", (n, 4 * h), dt)
        cp = gc.placeholder("c_prev", (n, h), dt)
        hn, cn = gc.lstm_cell(gates, cp)
        r = gc.placeholder("r", (n, h), dt)
        s = gc.placeholder("s", (n, h), dt)
        loss = gc.sum(hn * r) + gc.sum(cn * s)
        dg, dc = gc.gradients(loss, [gates, cp])
    return g, [hn, cn, dg, dc]


def _feeds(rng, n, h, dt=np.float32):
    return {"gates": rng.uniform(-3, 3, (n, 4 * h)).astype(dt), "c_prev": rng.uniform(-2, 2, (n, h)).astype(dt),
            "r": rng.uniform(-1, 1, (n, h)).astype(dt), "s": rng.uniform(-1, 1, (n, h)).astype(dt)}


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_matches_torch_forward_and_backward(dt):
    torch = _torch()
    n, h = 32, 67   # above the kernel's parallel grain, odd
    g, outs = _cell_graph(n, h, dt)
    sess = gc.Session(gc.compile(g, fetches=outs), threads=1)
    feeds = _feeds(np.random.default_rng(0), n, h, np.dtype(dt))
    got = sess.run(feeds)
    tg = torch.tensor(feeds["gates"], requires_grad=True)
    tc = torch.tensor(feeds["c_prev"], requires_grad=True)
    i, f, gg, o = tg.chunk(4, dim=1)
    c = torch.sigmoid(f) * tc + torch.sigmoid(i) * torch.tanh(gg)
    hh = torch.sigmoid(o) * torch.tanh(c)
    (hh * torch.tensor(feeds["r"])).sum().add((c * torch.tensor(feeds["s"])).sum()).backward()
    tol = dict(rtol=1e-5, atol=1e-6) if dt == "float32" else dict(rtol=1e-12, atol=1e-13)
    for t, want in zip(outs, [hh, c, tg.grad, tc.grad]):
        np.testing.assert_allclose(got[t.name], want.detach().numpy(), err_msg=t.name, **tol)


def test_bits_equal_at_one_and_two_threads_and_every_isa():
    n, h = 64, 256   # the LSTM step: several parallel chunks
    g, outs = _cell_graph(n, h)
    plan = gc.compile(g, fetches=outs)
    feeds = _feeds(np.random.default_rng(1), n, h)
    ref = gc.Session(plan, threads=1).run(feeds)
    for threads in (2, 3):
        got = gc.Session(plan, threads=threads).run(feeds)
        for t in outs:
            assert got[t.name].tobytes() == ref[t.name].tobytes(), (t.name, threads)


def test_refusals():
    with gc.Graph():
        with pytest.raises(ShapeError, match="4H"):
            gc.lstm_cell(gc.placeholder("g", (3, 10)), gc.placeholder("c", (3, 2)))   # 10 is no multiple of 4
        with pytest.raises(ShapeError, match="4H"):
            gc.lstm_cell(gc.placeholder("g2", (3, 12)), gc.placeholder("c2", (3, 2)))
        with pytest.raises(ShapeError, match="rows"):
            gc.lstm_cell(gc.placeholder("g3", (3, 8)), gc.placeholder("c3", (4, 2)))
        with pytest.raises(ShapeError, match="rank 2"):
            gc.lstm_cell(gc.placeholder("g4", (3, 8, 1)), gc.placeholder("c4", (3, 2)))
        with pytest.raises(GraphError):
            gc.lstm_cell(gc.placeholder("g5", (3, 8), "int32"), gc.placeholder("c5", (3, 2), "int32"))
        with pytest.raises(GraphError):
            gc.lstm_cell(gc.placeholder("g6", (3, 8)), gc.placeholder("c6", (3, 2), "float64"))
        with pytest.raises(ShapeError, match="dh"):
            gc.lstm_cell_grad(gc.placeholder("dh", (3, 3)), gc.placeholder("dc", (3, 2)), gc.placeholder("g7", (3, 8)),
                              gc.placeholder("c7", (3, 2)), gc.placeholder("c8", (3, 2)))


def test_symbolic_batch():
    with gc.Graph() as g:
        gates = gc.placeholder("gates", (None, 8))
        cp = gc.placeholder("c_prev", (None, 2))
        hn, cn = gc.lstm_cell(gates, cp)
    assert hn.shape == cn.shape == (None, 2)
    sess = gc.Session(gc.compile(g, shapes={"gates": (5, 8), "c_prev": (5, 2)}, fetches=[hn, cn]))
    rng = np.random.default_rng(2)
    feeds = {"gates": rng.standard_normal((5, 8)).astype(np.float32),
             "c_prev": rng.standard_normal((5, 2)).astype(np.float32)}
    got = sess.run(feeds)
    want = gc.ops.rnn_cell._lstm_cell_ref([feeds["gates"], feeds["c_prev"]], {})
    np.testing.assert_allclose(got[hn.name], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[cn.name], want[1], rtol=1e-5, atol=1e-6)


def test_lstm_layer_uses_one_cell_per_step_from_a_state():
    steps = 5
    with gc.Graph() as g:
        x = gc.placeholder("x", (steps, 3, 4))
        out, _ = gc.nn.LSTM(4, 6)(x)
    cells = [nd for nd in g.nodes if nd.op == "lstm_cell"]
    assert len(cells) == steps - 1   # the first step starts from the zero state: no c_prev to read
    assert out.shape == (steps, 3, 6)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_gru_cell_matches_torch_forward_and_backward(dt):
    torch = _torch()
    n, h = 32, 67
    rng = np.random.default_rng(3)
    feeds = {k: rng.uniform(-2, 2, s).astype(dt) for k, s in
             (("xw", (n, 3 * h)), ("hw", (n, 3 * h)), ("h", (n, h)), ("r", (n, h)))}
    with gc.Graph() as g:
        xw, hw, hh, r = (gc.placeholder(k, feeds[k].shape, dt) for k in ("xw", "hw", "h", "r"))
        out = gc.gru_cell(xw, hw, hh)
        grads = gc.gradients(gc.sum(out * r), [xw, hw, hh])
    got = gc.Session(gc.compile(g, fetches=[out, *grads]), threads=1).run(feeds)
    t = {k: torch.tensor(v, requires_grad=k != "r") for k, v in feeds.items()}
    xr, xz, xn = t["xw"].chunk(3, dim=1)
    hr, hz, hn = t["hw"].chunk(3, dim=1)
    rr, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    nn = torch.tanh(xn + rr * hn)
    want = (1 - z) * nn + z * t["h"]
    (want * t["r"]).sum().backward()
    tol = dict(rtol=1e-5, atol=1e-6) if dt == "float32" else dict(rtol=1e-12, atol=1e-13)
    for tens, w in zip([out, *grads], [want, t["xw"].grad, t["hw"].grad, t["h"].grad]):
        np.testing.assert_allclose(got[tens.name], w.detach().numpy(), err_msg=tens.name, **tol)


def test_gru_bits_equal_at_one_and_two_threads():
    n, h = 64, 256
    rng = np.random.default_rng(4)
    feeds = {k: rng.uniform(-2, 2, s).astype(np.float32) for k, s in
             (("xw", (n, 3 * h)), ("hw", (n, 3 * h)), ("h", (n, h)), ("r", (n, h)))}
    with gc.Graph() as g:
        xw, hw, hh, r = (gc.placeholder(k, feeds[k].shape) for k in ("xw", "hw", "h", "r"))
        out = gc.gru_cell(xw, hw, hh)
        fetches = [out, *gc.gradients(gc.sum(out * r), [xw, hw, hh])]
    plan = gc.compile(g, fetches=fetches)
    ref = gc.Session(plan, threads=1).run(feeds)
    got = gc.Session(plan, threads=2).run(feeds)
    for t in fetches:
        assert got[t.name].tobytes() == ref[t.name].tobytes(), t.name


def test_gru_refusals_and_layer_nodes():
    with gc.Graph():
        with pytest.raises(ShapeError, match="3H"):
            gc.gru_cell(gc.placeholder("x", (3, 8)), gc.placeholder("hw", (3, 8)), gc.placeholder("h", (3, 2)))
        with pytest.raises(ShapeError, match="hw"):
            gc.gru_cell(gc.placeholder("x2", (3, 6)), gc.placeholder("hw2", (3, 9)), gc.placeholder("h2", (3, 2)))
    with gc.Graph() as g:
        out, _ = gc.nn.GRU(4, 6, num_layers=2)(gc.placeholder("x", (5, 3, 4)))
    assert sum(nd.op == "gru_cell" for nd in g.nodes) == 2 * 4   # every step but the first of each layer
    assert out.shape == (5, 3, 6)
