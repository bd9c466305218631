"""gc.nn's recurrent layers (LSTM, LSTMCell, GRU, GRUCell) against torch.nn with the weights
loaded through Session.load_state_dict(torch_module.state_dict()): outputs, final states and
the gradients of sum(out · r) + sum(h_n · s) (+ sum(c_n · u)) for random r, s, u w.r.t. the
input, the initial state and every parameter; names, refusals; and the compiler at the scale
of an unrolled LSTM language model (compile time, arena size).

Errors are measured per tensor as max|graphc − torch| / max|torch|.
"""

import time

import numpy as np
import pytest
from torch_compare import assert_close
from torch_compare import torch_or_skip as _torch

import graphc as gc
from graphc.errors import GraphError, ShapeError

# 1e-4 of a tensor's largest magnitude: an unrolled recurrence over tens of float32 steps
# accumulates rounding (a different GEMM summation order per step), far below a wrong formula
RTOL = 1e-4


def _assert_close(ours, theirs, what, rtol=RTOL):
    assert_close(ours, theirs, what, rtol)


# --------------------------------------------------------------------------- names, refusals


def test_parameter_names_shapes_and_init():
    with gc.Graph() as g:
        x = gc.placeholder("x", (7, None, 5))
        lstm = gc.nn.LSTM(5, 6, num_layers=2, bidirectional=True)
        out, (h, c) = lstm(x)
    assert out.shape == (7, None, 12) and h.shape == c.shape == (4, None, 6)
    shapes = {k: v.shape for k, v in lstm.variables(g).items()}
    expected = {}
    for k in range(2):
        for s in ("", "_reverse"):
            expected.update({f"weight_ih_l{k}{s}": (24, 5 if k == 0 else 12), f"weight_hh_l{k}{s}": (24, 6),
                             f"bias_ih_l{k}{s}": (24,), f"bias_hh_l{k}{s}": (24,)})
    assert shapes == expected
    sess = gc.Session(gc.compile(g, shapes={"x": (7, 2, 5)}, fetches=[out], train=False))
    # U(-1/√H, 1/√H): every draw inside the bound, and the draws spread over it
    bound = 1 / np.sqrt(6)
    for k, v in sess.state_dict().items():
        assert np.all(np.abs(v) <= bound), k
        assert np.max(v) > bound / 2 and np.min(v) < -bound / 2, k


def test_reprs():
    assert repr(gc.nn.LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(gc.nn.GRU(3, 4, num_layers=2, batch_first=True, dropout=0.5)) == \
        "GRU(3, 4, num_layers=2, batch_first=True, dropout=0.5)"
    assert repr(gc.nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"


@pytest.mark.parametrize("make, words", [
    (lambda: gc.nn.LSTM(3, 4, proj_size=2), "proj_size"),
    (lambda: gc.nn.LSTM(0, 4), "input_size"),
    (lambda: gc.nn.GRU(3, 4.0), "hidden_size"),
    (lambda: gc.nn.LSTM(3, 4, num_layers=0), "num_layers"),
    (lambda: gc.nn.LSTM(3, 4, dropout=1.0), "dropout"),
    (lambda: gc.nn.GRUCell(3, 0), "hidden_size"),
])
def test_refused_arguments(make, words):
    with pytest.raises(GraphError, match=words):
        make()


def test_wrong_inputs():
    with gc.Graph():
        with pytest.raises(ShapeError, match="sequence length.*must be known"):
            gc.nn.LSTM(3, 4)(gc.placeholder("a", (None, 2, 3)))
        with pytest.raises(ShapeError, match="rank 3"):
            gc.nn.GRU(3, 4)(gc.placeholder("b", (5, 3)))
        with pytest.raises(ShapeError, match="input_size 3"):
            gc.nn.LSTM(3, 4)(gc.placeholder("c", (5, 2, 4)))
        x = gc.placeholder("d", (5, 2, 3))
        with pytest.raises(ShapeError, match="h_0 of shape"):
            gc.nn.LSTM(3, 4)(x, (gc.placeholder("h", (2, 2, 4)), gc.placeholder("c0", (2, 2, 4))))
        with pytest.raises(GraphError, match=r"hx = \(h_0, c_0\)"):
            gc.nn.LSTM(3, 4)(x, gc.placeholder("h1", (1, 2, 4)))
        with pytest.raises(ShapeError, match="rank 2"):
            gc.nn.LSTMCell(3, 4)(x)


# --------------------------------------------------------------------------- layers vs torch.nn


def _load(sess, tm, unread):
    """Load torch's weights.  From the zero state a single step never reads weight_hh (h = 0),
    so the plan holds no such variable: exactly those keys are unexpected then."""
    report = sess.load_state_dict(tm.state_dict(), strict=not unread)
    assert sorted(report["unexpected_keys"]) == sorted(unread) and not report["missing_keys"], report


def _run_seq_layer(torch, kind, kwargs, steps, batch, in_size, hidden, with_hx, seed):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    tm = getattr(torch.nn, kind)(in_size, hidden, **kwargs)
    params = dict(tm.named_parameters())
    layer = getattr(gc.nn, kind)(in_size, hidden, **kwargs)
    bf = kwargs.get("batch_first", False)
    dirs = 2 if kwargs.get("bidirectional") else 1
    xshape = (batch, steps, in_size) if bf else (steps, batch, in_size)
    oshape = xshape[:2] + (dirs * hidden,)
    sshape = (kwargs.get("num_layers", 1) * dirs, batch, hidden)
    lstm = kind == "LSTM"
    with gc.Graph() as g:
        x = gc.placeholder("x", xshape)
        r = gc.placeholder("r", oshape)
        s = gc.placeholder("s", sshape)
        u = gc.placeholder("u", sshape)
        hx = None
        if with_hx:
            h0 = gc.placeholder("h0", sshape)
            c0 = gc.placeholder("c0", sshape)
            hx = (h0, c0) if lstm else h0
        out, state = layer(x, hx)
        h_n, c_n = state if lstm else (state, None)
        loss = gc.sum(out * r) + gc.sum(h_n * s)
        if lstm:
            loss = loss + gc.sum(c_n * u)
        variables = layer.variables(g)
        assert sorted(variables) == sorted(params)
        wrt = [x] + ([h0, c0] if (with_hx and lstm) else [h0] if with_hx else []) + \
            [variables[k] for k in sorted(variables)]
        grads = gc.gradients(loss, wrt)
    # a parameter the graph never reads (weight_hh with T = 1 from the zero state) has no
    # gradient node: torch's gradient of it must then be zero
    fetches = [out, h_n] + ([c_n] if lstm else []) + [t for t in grads if t is not None]
    sess = gc.Session(gc.compile(g, fetches=fetches, train=False), threads=1)
    _load(sess, tm, unread=[] if with_hx or steps > 1 else [k for k in params if k.startswith("weight_hh")])
    feed = {k: rng.standard_normal(v).astype(np.float32) for k, v in
            [("x", xshape), ("r", oshape), ("s", sshape), ("u", sshape), ("h0", sshape), ("c0", sshape)]}
    if not with_hx:
        del feed["h0"], feed["c0"]
    if not lstm:
        del feed["u"]
        feed.pop("c0", None)
    res = sess.run(feed)
    xt = torch.from_numpy(feed["x"]).requires_grad_(True)
    txs = []
    if with_hx:
        txs = [torch.from_numpy(feed["h0"]).requires_grad_(True)]
        if lstm:
            txs.append(torch.from_numpy(feed["c0"]).requires_grad_(True))
    th = None if not with_hx else (tuple(txs) if lstm else txs[0])
    tout, tstate = tm(xt, th)
    th_n, tc_n = tstate if lstm else (tstate, None)
    tl = (tout * torch.from_numpy(feed["r"])).sum() + (th_n * torch.from_numpy(feed["s"])).sum()
    if lstm:
        tl = tl + (tc_n * torch.from_numpy(feed["u"])).sum()
    tl.backward()
    what = f"{kind}({kwargs}, T={steps}, hx={with_hx})"
    _assert_close(res[out.name], tout.detach().numpy(), f"{what} output")
    _assert_close(res[h_n.name], th_n.detach().numpy(), f"{what} h_n")
    if lstm:
        _assert_close(res[c_n.name], tc_n.detach().numpy(), f"{what} c_n")
    _assert_close(res[grads[0].name], xt.grad.numpy(), f"{what} d/dx")
    for i, t in enumerate(txs):
        _assert_close(res[grads[1 + i].name], t.grad.numpy(), f"{what} d/dstate{i}")
    for k, gt in zip(sorted(variables), grads[1 + len(txs):]):
        tg = params[k].grad.numpy()
        if gt is None:
            assert not tg.any(), f"{what}: graphc has no gradient for {k}, torch's is not zero"
        else:
            _assert_close(res[gt.name], tg, f"{what} d/d{k}")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_lstm_two_layers_matches_torch(batch_first, with_hx):
    _run_seq_layer(_torch(), "LSTM", {"num_layers": 2, "batch_first": batch_first}, steps=6, batch=3, in_size=5,
                   hidden=7, with_hx=with_hx, seed=1)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("kwargs, steps", [
    ({}, 1),                                              # sequence of length 1
    ({"bias": False}, 4),
    ({"bidirectional": True, "num_layers": 2}, 5),
    ({"bidirectional": True, "batch_first": True}, 3),
])
def test_variants_match_torch(kind, kwargs, steps):
    for with_hx in (False, True):
        _run_seq_layer(_torch(), kind, kwargs, steps=steps, batch=2, in_size=3, hidden=9, with_hx=with_hx, seed=2)


@pytest.mark.parametrize("batch_first", [False, True])
def test_gru_two_layers_matches_torch(batch_first):
    for with_hx in (False, True):
        _run_seq_layer(_torch(), "GRU", {"num_layers": 2, "batch_first": batch_first}, steps=6, batch=3,
                       in_size=5, hidden=7, with_hx=with_hx, seed=3)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [False, True])
def test_cells_match_torch(kind, bias, with_hx):
    torch = _torch()
    rng = np.random.default_rng(4)
    torch.manual_seed(4)
    batch, in_size, hidden = 3, 5, 11
    tm = getattr(torch.nn, kind)(in_size, hidden, bias=bias)
    params = dict(tm.named_parameters())
    layer = getattr(gc.nn, kind)(in_size, hidden, bias=bias)
    lstm = kind == "LSTMCell"
    with gc.Graph() as g:
        x = gc.placeholder("x", (batch, in_size))
        h = gc.placeholder("h", (batch, hidden))
        c = gc.placeholder("c", (batch, hidden))
        r = gc.placeholder("r", (batch, hidden))
        s = gc.placeholder("s", (batch, hidden))
        hx = ((h, c) if lstm else h) if with_hx else None
        res = layer(x, hx)
        h1, c1 = res if lstm else (res, None)
        loss = gc.sum(h1 * r) + (gc.sum(c1 * s) if lstm else 0.0)
        variables = layer.variables(g)
        assert sorted(variables) == sorted(params)
        states = ([h, c] if lstm else [h]) if with_hx else []
        wrt = [x] + states + [variables[k] for k in sorted(variables)]
        grads = gc.gradients(loss, wrt)
    fetches = [h1] + ([c1] if lstm else []) + [t for t in grads if t is not None]
    sess = gc.Session(gc.compile(g, fetches=fetches, train=False), threads=1)
    _load(sess, tm, unread=[] if with_hx else ["weight_hh"])
    feed = {k: rng.standard_normal((batch, in_size if k == "x" else hidden)).astype(np.float32)
            for k in ("x", "h", "c", "r", "s")}
    if not with_hx:
        del feed["h"], feed["c"]
    if not lstm:
        feed.pop("c", None)
        del feed["s"]
    out = sess.run(feed)
    xt = torch.from_numpy(feed["x"]).requires_grad_(True)
    ts = [torch.from_numpy(feed[k]).requires_grad_(True) for k in (["h", "c"] if lstm else ["h"])] if with_hx else []
    th = None if not with_hx else (tuple(ts) if lstm else ts[0])
    tres = tm(xt, th)
    th1, tc1 = tres if lstm else (tres, None)
    tl = (th1 * torch.from_numpy(feed["r"])).sum()
    if lstm:
        tl = tl + (tc1 * torch.from_numpy(feed["s"])).sum()
    tl.backward()
    _assert_close(out[h1.name], th1.detach().numpy(), f"{kind} h'")
    if lstm:
        _assert_close(out[c1.name], tc1.detach().numpy(), f"{kind} c'")
    _assert_close(out[grads[0].name], xt.grad.numpy(), f"{kind} d/dx")
    for i, t in enumerate(ts):
        _assert_close(out[grads[1 + i].name], t.grad.numpy(), f"{kind} d/dstate{i}")
    for k, gt in zip(sorted(variables), grads[1 + len(ts):]):
        tg = params[k].grad.numpy()
        if gt is None:      # weight_hh from the zero state: unread, torch's gradient is zero
            assert not tg.any(), f"{kind}: graphc has no gradient for {k}, torch's is not zero"
        else:
            _assert_close(out[gt.name], tg, f"{kind} d/d{k}")


def test_dropout_between_layers_only_in_training():
    """dropout > 0: the inference plan equals torch's eval(); the training plan's output differs
    from the inference plan's (the mask applies) but its first layer's states do not."""
    torch = _torch()
    torch.manual_seed(5)
    tm = torch.nn.LSTM(4, 6, num_layers=2, dropout=0.5).eval()
    layer = gc.nn.LSTM(4, 6, num_layers=2, dropout=0.5)
    with gc.Graph() as g:
        x = gc.placeholder("x", (5, 2, 4))
        out, (h, c) = layer(x)
        gc.optim.SGD(lr=1e-30).minimize(gc.sum(out))
    xb = np.random.default_rng(5).standard_normal((5, 2, 4)).astype(np.float32)
    infer = gc.Session(gc.compile(g, fetches=[out, h], train=False))
    infer.load_state_dict(tm.state_dict())
    train = gc.Session(gc.compile(g, fetches=[out, h]))
    train.load_state_dict(tm.state_dict())
    a, b = infer.run({"x": xb}), train.run({"x": xb})
    tout, (th, _) = tm(torch.from_numpy(xb))
    _assert_close(a[out.name], tout.detach().numpy(), "eval output")
    np.testing.assert_allclose(b[h.name][0], a[h.name][0], rtol=1e-6, atol=1e-7)   # layer 0 sees no dropout
    assert not np.allclose(b[out.name], a[out.name])


# --------------------------------------------------------------------------- the compiler at LSTM scale


class _LSTMLM(gc.nn.Module):
    def __init__(self, vocab, emb, hidden, layers):
        super().__init__()
        self.emb = gc.nn.Embedding(vocab, emb)
        self.lstm = gc.nn.LSTM(emb, hidden, num_layers=layers, batch_first=True)
        self.fc = gc.nn.Linear(hidden, vocab)

    def forward(self, ids):
        out, _ = self.lstm(self.emb(ids))
        return self.fc(out)


def _lstm_lm(seq, batch=32, vocab=128, emb=64, hidden=256, layers=2):
    """The issue's LSTM language model training graph: embedding, 2 LSTM layers, Linear to the
    vocabulary, softmax cross-entropy, Adam."""
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (batch, seq), dtype="int64")
        y = gc.placeholder("y", (batch, seq), dtype="int64")
        logits = _LSTMLM(vocab, emb, hidden, layers)(ids)
        loss = gc.softmax_cross_entropy(gc.reshape(logits, (-1, vocab)), gc.reshape(y, (-1,)))
        gc.optim.Adam(lr=1e-3).minimize(loss)
    return g, loss


def test_lstm_lm_training_plan_compiles_in_seconds():
    """The 2-layer, 64-step LSTM LM training plan (~700 steps with the fused lstm_cell, ~3,700
    nodes after fusion without it): 0.15 s here, 1.1-1.8 s without (2 shared cores, load 1-7).
    A pass quadratic in the node count (as the weight-gradient add chain's fusion or the
    on-demand scheduler search were) takes minutes; 20 s is generous."""
    g, loss = _lstm_lm(64)
    t = time.perf_counter()
    plan = gc.compile(g, fetches=[loss])
    elapsed = time.perf_counter() - t
    assert elapsed < 20.0, f"compiling the 64-step LSTM LM training plan took {elapsed:.1f} s"
    assert len(plan.steps) > 4 * 64       # it is the unrolled graph: a cell and a GEMM per step, each way


def test_lstm_lm_training_arena_is_near_the_saved_activations():
    """Every forward value a gradient node reads (the stash) is live when the backward pass
    starts, so the arena holds at least their sum S; a good plan adds only a step's working set
    (a few (B, 4H) tensors, the logits' gradient).  Bound: 1.35 S (measured: arena 41.3 MiB, S =
    33.3 MiB, 1.24 S).  Summing a weight's 64 per-step gradient terms in one fused node kept all
    64 terms of 1 MiB live per layer (87.6 MiB, 2.6 S)."""
    from graphc.compiler import pipeline
    from graphc.compiler._memory import MemoryModel
    from graphc.compiler.assign_buffers import assign_buffers
    from graphc.compiler.recompute import stash_values

    g, loss = _lstm_lm(64)
    before = {}
    graph = pipeline.lower_graph(g, fetches=[loss], on_pass=lambda name, gr: before.setdefault(name, gr))
    pre = before["prune_graph"]
    model = MemoryModel(pre)
    saved = sum(model.nbytes[v] for v in stash_values(pre, model))
    arena = assign_buffers(graph).arena_bytes
    assert saved <= arena <= 1.35 * saved, f"arena {arena / 2**20:.1f} MiB, saved {saved / 2**20:.1f} MiB"


def test_fusion_does_not_defer_a_running_sum():
    """acc_k = acc_{k-1} + t_k with t_k = x_k @ w made after acc_{k-1}: fusing the adds into one
    node would run them all at the end with every t_k live.  Each add stays next to its matmul
    (as its epilogue), and the fused and unfused plans agree bit for bit."""
    from graphc.compiler.fuse import find_groups

    with gc.Graph() as g:
        w = gc.variable("w", (16, 16), init=gc.init.uniform(-1, 1, seed=0))
        xs = [gc.placeholder(f"x{k}", (16, 16)) for k in range(6)]
        acc = xs[0] @ w
        for x in xs[1:]:
            acc = acc + x @ w
        out = gc.tanh(acc)
    for members, _producer, _consumer in find_groups(g):
        assert len(members) <= 2, [m.name for m in members]
    feed = {f"x{k}": np.random.default_rng(k).standard_normal((16, 16)).astype(np.float32) for k in range(6)}
    a = gc.Session(gc.compile(g, fetches=[out], train=False)).run(feed)[out.name]
    b = gc.Session(gc.compile(g, fetches=[out], train=False, fuse=False)).run(feed)[out.name]
    np.testing.assert_array_equal(a, b)


def test_resumed_on_demand_search_gives_the_restarted_order(monkeypatch):
    """The scheduler resumes its search for the on-demand (recompute) node to run next; it must
    give exactly the order of a search restarted from scratch each time."""
    from graphc.compiler import pipeline, recompute, schedule_nodes
    from graphc.compiler._memory import MemoryModel

    g, loss = _lstm_lm(6, batch=2, vocab=11, emb=5, hidden=7)
    before = {}
    pipeline.lower_graph(g, fetches=[loss], on_pass=lambda name, gr: before.setdefault(name, gr))
    base = before["prune_graph"]
    model = MemoryModel(base)
    candidates = [recompute.rewrite_with_recompute(base, keep, model, share_variables=True)
                  for _, keep in recompute.strategies(base, recompute.stash_values(base, model))]
    resumed = [[n.name for n in schedule_nodes.schedule_order(c, p)] for c in candidates
               for p in ("memory", "memory-eager")]

    class Restarted(schedule_nodes._Demand):
        def find(self, done, lazy, ready_lazy, steps):
            self.first = None
            return super().find(done, lazy, ready_lazy, steps)

    monkeypatch.setattr(schedule_nodes, "_Demand", Restarted)
    restarted = [[n.name for n in schedule_nodes.schedule_order(c, p)] for c in candidates
                 for p in ("memory", "memory-eager")]
    assert len(candidates) > 5 and resumed == restarted


def test_lstm_lm_training_plan_fits_a_memory_budget():
    """Under a budget the recompute pass drops stashed activations of the 32-step LSTM LM (arena
    21 MiB without one) to fit 15 MB: 6-8 s here (load 6 on 2 cores), where restarting the
    scheduler's on-demand search for every recomputed node took twice as long, growing
    quadratically with the steps.  The budget also turns off stacking of the weight-gradient
    terms (which would keep every step's gate gradients live)."""
    g, loss = _lstm_lm(32)
    t = time.perf_counter()
    plan = gc.compile(g, fetches=[loss], memory_budget="15MB")
    elapsed = time.perf_counter() - t
    assert elapsed < 60.0, f"compiling under a budget took {elapsed:.1f} s"
    assert plan.arena_bytes <= 15 * 10**6
