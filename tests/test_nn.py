"""gc.nn layers: names, initialisation, reuse, Session.load_state_dict / state_dict, and every
layer against PyTorch (weights copied in by name with load_state_dict): Linear, Conv2d,
BatchNorm2d in training (outputs, running statistics after 3 steps) and inference, pooling,
Dropout statistics, a whole small ResNet forward and 3 SGD-momentum training steps.

Comparisons against PyTorch skip, with the reason, where torch is not installed.  "Equal
within 1e-4 relative" is measured per tensor as max|ours - torch| / max|torch| (an
elementwise relative error is meaningless at the zeros of a gradient).
"""

import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from subproc import child_env

import graphc as gc
from graphc.errors import CheckpointError, CompileError, GraphError, ShapeError
from graphc.session import StateDictError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-4


def _torch():
    torch = pytest.importorskip("torch", reason="torch is not installed: gc.nn is checked against PyTorch")
    torch.set_num_threads(1)
    return torch


def _rel(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    scale = max(float(np.max(np.abs(theirs))), 1e-30) if theirs.size else 1.0
    return float(np.max(np.abs(ours - theirs))) / scale if theirs.size else 0.0


def _assert_close(ours, theirs, what, rtol=RTOL):
    err = _rel(ours, theirs)
    assert err <= rtol, f"{what}: max |graphc - torch| / max |torch| = {err:.3g} > {rtol:g}"


def _state(torch_module):
    return {k: v.detach().numpy().copy() for k, v in torch_module.state_dict().items()}


def _inference(graph, x, y, shape, threads=1):
    plan = gc.compile(graph, shapes={x.name: shape}, fetches=[y], train=False)
    return gc.Session(plan, threads=threads)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- names, init, reuse


def test_sequential_and_module_names():
    class Net(gc.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = gc.nn.Sequential(gc.nn.Linear(6, 5), gc.nn.ReLU(), gc.nn.Linear(5, 4, bias=False))
            self.head = gc.nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.features(x))

    net = Net()
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 6))
        y = net(x)
    assert y.shape == (None, 3)
    shapes = {v.name: v.shape for v in g.variables}
    assert shapes == {"features/0/weight": (5, 6), "features/0/bias": (5,), "features/2/weight": (4, 5),
                      "head/weight": (3, 4), "head/bias": (3,)}
    assert list(net.variables(g)) == list(shapes)
    assert [n for n, _ in net.named_children()] == ["features", "head"]
    seq = net.features
    assert len(seq) == 3 and seq[-1] is seq[2] and isinstance(seq[1], gc.nn.ReLU)
    assert list(seq[1:]) == [seq[1], seq[2]]
    with pytest.raises(IndexError):
        seq[3]


def test_residual_block_names_follow_torchvision():
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3, 9, 9))
        y = gc.nn.ResidualBlock(3, 8, stride=2, name="block")(x)
    assert y.shape == (2, 8, 5, 5)
    names = {v.name: (v.shape, v.trainable) for v in g.variables}
    expected = {}
    for conv, cin, k in (("conv1", 3, 3), ("conv2", 8, 3), ("downsample/0", 3, 1)):
        expected[f"block/{conv}/weight"] = ((8, cin, k, k), True)
    for bn in ("bn1", "bn2", "downsample/1"):
        expected[f"block/{bn}/weight"] = ((8,), True)
        expected[f"block/{bn}/bias"] = ((8,), True)
        expected[f"block/{bn}/running_mean"] = ((8,), False)
        expected[f"block/{bn}/running_var"] = ((8,), False)
    assert names == expected
    # an identity shortcut when neither stride nor width changes
    with gc.Graph() as g2:
        gc.nn.ResidualBlock(4, 4)(gc.placeholder("x", (1, 4, 5, 5)))
    assert not any("downsample" in v.name for v in g2.variables)


def test_names_match_torch_state_dict_keys():
    torch = _torch()
    nn = torch.nn
    tm = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                       _torch_block(torch, 4, 6, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    with gc.Graph() as g:
        _gc_twin()(gc.placeholder("x", (None, 1, 8, 8)))
    ours = {v.name: v.shape for v in g.variables}
    theirs = {k.replace(".", "/"): tuple(v.shape) for k, v in tm.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    assert ours == theirs


def test_default_init_follows_pytorch_bounds_and_is_reproducible():
    def build(seed=None):
        if seed is not None:
            gc.nn.manual_seed(seed)
        with gc.Graph() as g:
            x = gc.placeholder("x", (None, 3, 8, 8))
            h = gc.nn.Conv2d(3, 64, 5, name="conv")(x)
            gc.nn.Linear(400, 300, name="fc")(gc.placeholder("z", (None, 400)))
            gc.nn.BatchNorm2d(64, name="bn")(h)
        return {v.name: v.init_value for v in g.variables}

    try:
        a, b = build(0), build(0)
        c = build(1)
    finally:
        gc.nn.manual_seed(0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not np.array_equal(a["conv/weight"], c["conv/weight"])
    # U(-b, b), b = 1/sqrt(fan_in): the sample fills the interval and has its standard deviation
    for name, fan_in in (("conv/weight", 3 * 25), ("conv/bias", 3 * 25), ("fc/weight", 400), ("fc/bias", 400)):
        v = a[name]
        bound = 1.0 / math.sqrt(fan_in)
        assert v.dtype == np.float32
        assert np.max(np.abs(v)) <= bound
        if v.size > 1000:
            assert np.max(np.abs(v)) > 0.99 * bound
            assert abs(np.std(v) - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)
    assert not np.array_equal(a["conv/weight"].ravel()[:64], a["conv/bias"])   # distinct streams
    np.testing.assert_array_equal(a["bn/weight"], np.ones(64, np.float32))
    np.testing.assert_array_equal(a["bn/bias"], np.zeros(64, np.float32))
    np.testing.assert_array_equal(a["bn/running_mean"], np.zeros(64, np.float32))
    np.testing.assert_array_equal(a["bn/running_var"], np.ones(64, np.float32))


def test_float64_model_has_float64_variables():
    """A layer first called on float64 input makes float64 variables, so a whole model runs in
    float64 (as torch's .double())."""
    torch = _torch()
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(),
                             torch.nn.Linear(3 * 4 * 4, 2)).double().eval()
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 2, 6, 6), dtype="float64")
        y = gc.nn.Sequential(gc.nn.Conv2d(2, 3, 3), gc.nn.BatchNorm2d(3), gc.nn.Flatten(), gc.nn.Linear(48, 2))(x)
    assert y.dtype == "float64" and {v.dtype for v in g.variables} == {"float64"}
    sess = _inference(g, x, y, (2, 2, 6, 6))
    sess.load_state_dict(tm.state_dict())
    xb = _rng(10).standard_normal((2, 2, 6, 6))
    _assert_close(sess.run({"x": xb})[y.name], tm(torch.from_numpy(xb)).detach().numpy(), "float64 model", 1e-12)


def test_layer_reuse_shares_variables():
    lin = gc.nn.Linear(4, 4, name="shared")
    with gc.Graph() as g:
        x = gc.placeholder("x", (3, 4))
        y = lin(gc.relu(lin(x)))
        loss = gc.mean(y * y)
        gc.optim.SGD(lr=0.1).minimize(loss)
    assert [v.name for v in g.variables] == ["shared/weight", "shared/bias"]
    w, b = g.variables[0].init_value, g.variables[1].init_value
    xb = _f32(_rng(), 3, 4)
    h = np.maximum(xb @ w.T + b, 0)
    want = h @ w.T + b
    sess = _inference(g, x, y, (3, 4))
    np.testing.assert_allclose(sess.run({"x": xb})[y.name], want, rtol=1e-5, atol=1e-6)
    # a new graph gets its own variables; the old one keeps its own
    with gc.Graph() as g2:
        lin(gc.placeholder("x", (None, 4)))
    assert [v.name for v in g2.variables] == ["shared/weight", "shared/bias"]
    assert set(lin.variables(g)) == set(lin.variables(g2))
    assert lin.variables(g)["shared/weight"].graph is g


def test_reused_layer_trains_like_torch():
    """Gradients from both uses of a shared layer add up, as in PyTorch."""
    torch = _torch()
    t_lin = torch.nn.Linear(4, 4)
    lin = gc.nn.Linear(4, 4, name="shared")
    with gc.Graph() as g:
        x = gc.placeholder("x", (3, 4))
        loss = gc.mean(lin(gc.relu(lin(x))) ** 2)
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    sess = gc.Session(gc.compile(g, shapes={"x": (3, 4)}), threads=1)
    sess.load_state_dict({"shared." + k: v for k, v in t_lin.state_dict().items()})
    opt = torch.optim.SGD(t_lin.parameters(), lr=0.1, momentum=0.9)
    rng = _rng(8)
    for step in range(2):
        xb = _f32(rng, 3, 4)
        ours = sess.run({"x": xb})[loss.name]
        opt.zero_grad()
        lt = (t_lin(torch.relu(t_lin(torch.from_numpy(xb)))) ** 2).mean()
        lt.backward()
        opt.step()
        _assert_close(ours, lt.item(), f"shared layer loss, step {step}")
    for k, v in _state(t_lin).items():
        _assert_close(sess.get_variable("shared/" + k), v, f"shared layer {k} after 2 steps")


def test_layer_errors():
    with gc.Graph():
        x = gc.placeholder("x", (2, 5))
        with pytest.raises(ShapeError, match="last dim of 4"):
            gc.nn.Linear(4, 3)(x)
        gc.nn.Linear(5, 3)(x)
        with pytest.raises(GraphError, match="different names"):
            gc.nn.Linear(5, 3)(x)   # a second unnamed root layer at the same scope
        with gc.name_scope("other"):
            gc.nn.Linear(5, 3)(x)
        img = gc.placeholder("img", (2, 3, 8, 8))
        with pytest.raises(ShapeError, match="input channels 4"):
            gc.nn.Conv2d(4, 8, 3, name="c")(img)
        with pytest.raises(ShapeError, match="NCHW"):
            gc.nn.BatchNorm2d(5, name="bn")(x)
        with pytest.raises(ShapeError, match="channels 4"):
            gc.nn.BatchNorm2d(4, name="bn")(img)
    for make, match in ((lambda: gc.nn.Conv2d(3, 8, 3, groups=2), "divisible by groups"),
                        (lambda: gc.nn.Conv2d(3, 8, 3, padding="full"), "padding"),
                        (lambda: gc.nn.Conv2d(3, 8, 3, stride=2, padding="same"), "stride 1"),
                        (lambda: gc.nn.Conv2d(3, 8, 3, padding_mode="circular"), "padding_mode"),
                        (lambda: gc.nn.Conv2d(3, 8, (3, 3, 3)), "kernel_size"),
                        (lambda: gc.nn.Linear(0, 3), "in_features"),
                        (lambda: gc.nn.BatchNorm2d(4, momentum=1.5), "momentum"),
                        (lambda: gc.nn.Dropout(1.5), "probability"),
                        (lambda: gc.nn.MaxPool2d(2, dilation=2), "dilation"),
                        (lambda: gc.nn.AvgPool2d(2, divisor_override=3), "divisor_override"),
                        (lambda: gc.nn.AdaptiveAvgPool2d(2), "output_size 1"),
                        (lambda: gc.nn.Linear(3, 3, name="a/b"), "'/'"),
                        (lambda: gc.nn.manual_seed(-1), "manual_seed")):
        with pytest.raises(GraphError, match=match):
            make()


def test_module_without_super_init_is_a_clear_error():
    class Bad(gc.nn.Module):
        def __init__(self):
            self.fc = gc.nn.Linear(2, 2)

    with pytest.raises(GraphError, match=r"must call super\(\)\.__init__\(\)"):
        Bad()


# --------------------------------------------------------------------------- load_state_dict


def _mlp_session():
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        y = gc.nn.Sequential(gc.nn.Linear(3, 4), gc.nn.ReLU(), gc.nn.Linear(4, 2))(x)
        loss = gc.mean(y * y)
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    return gc.Session(gc.compile(g, shapes={"x": (2, 3)}), threads=1), g


def test_load_state_dict_maps_dots_and_reports_optimizer_state_as_not_missing():
    sess, g = _mlp_session()
    assert any(n.endswith("/momentum") for n in sess.variable_names)   # optimizer state exists ...
    state = {"0.weight": np.full((4, 3), 0.5), "0.bias": np.arange(4, dtype=np.float32),
             "2/weight": np.ones((2, 4), np.float32), "2.bias": [1.0, 2.0]}
    result = sess.load_state_dict(state)                               # ... and is not "missing"
    assert result == {"missing_keys": [], "unexpected_keys": []}
    np.testing.assert_array_equal(sess.get_variable("0/weight"), np.full((4, 3), 0.5, np.float32))
    np.testing.assert_array_equal(sess.get_variable("0/bias"), np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(sess.get_variable("2/bias"), np.array([1, 2], np.float32))
    sd = sess.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_array_equal(sd["0.weight"], sess.get_variable("0/weight"))


def test_load_state_dict_lists_every_problem_and_writes_nothing():
    sess, _ = _mlp_session()
    before = {n: sess.get_variable(n) for n in sess.variable_names}
    bad = {"0.weight": np.zeros((3, 4), np.float32),        # transposed: mis-shaped
           "0.bias": np.zeros(4, np.complex64),             # no safe cast to float32
           "2.weight": np.zeros((2, 4), np.float32),        # fine
           "2/weight": np.zeros((2, 4), np.float32),        # the same variable twice
           "fc9.weight": np.zeros(3, np.float32),           # unexpected
           7: np.zeros(1)}                                  # unexpected (not a name)
    with pytest.raises(StateDictError) as info:
        sess.load_state_dict(bad)
    e = info.value
    assert isinstance(e, CheckpointError)
    assert e.missing == ["2/bias"]
    assert e.unexpected == ["fc9.weight", 7]
    assert len(e.mismatched) == 3
    msg = str(e)
    for part in ("nothing was loaded", "'2/bias'", "'fc9.weight'", "7", "expected shape (4, 3), got (3, 4)",
                 "complex64", "already given as '2.weight'", "1 missing", "2 unexpected", "3 mismatched"):
        assert part in msg, part
    for n, v in before.items():
        np.testing.assert_array_equal(sess.get_variable(n), v, err_msg=n)
    # strict=False tolerates missing and unexpected entries, never mis-shaped ones
    result = sess.load_state_dict({"0.weight": np.ones((4, 3), np.float32), "extra": np.zeros(1)}, strict=False)
    assert result == {"missing_keys": ["0/bias", "2/weight", "2/bias"], "unexpected_keys": ["extra"]}
    np.testing.assert_array_equal(sess.get_variable("0/weight"), np.ones((4, 3), np.float32))
    with pytest.raises(StateDictError, match="mismatched"):
        sess.load_state_dict({"0.weight": np.ones((4, 4), np.float32)}, strict=False)
    with pytest.raises(StateDictError, match="mapping"):
        sess.load_state_dict([("0.weight", np.ones((4, 3)))])
    with pytest.raises(StateDictError, match="str"):
        sess.load_state_dict({**sess.state_dict(), "2.bias": "ab"})


def test_load_state_dict_accepts_torch_tensors_and_round_trips():
    torch = _torch()
    sess, _ = _mlp_session()
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    # parameters that require grad, float64 ones, and the state dict itself
    sess.load_state_dict({k: v for k, v in tm.named_parameters()})
    np.testing.assert_array_equal(sess.get_variable("2/weight"), tm[2].weight.detach().numpy())
    sess.load_state_dict({k: v.double() for k, v in tm.state_dict().items()})
    tm2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in sess.state_dict().items()})
    for k, v in tm.state_dict().items():
        assert torch.equal(v, tm2.state_dict()[k]), k


# --------------------------------------------------------------------------- layers vs PyTorch


def test_linear_matches_torch():
    torch = _torch()
    rng = _rng(1)
    for bias in (True, False):
        tm = torch.nn.Linear(7, 5, bias=bias)
        with gc.Graph() as g:
            x = gc.placeholder("x", (None, 7))
            y = gc.nn.Linear(7, 5, bias=bias)(x)
        sess = _inference(g, x, y, (6, 7))
        sess.load_state_dict(tm.state_dict())
        xb = _f32(rng, 6, 7)
        _assert_close(sess.run({"x": xb})[y.name], tm(torch.from_numpy(xb)).detach().numpy(), f"Linear bias={bias}")


CONV_CASES = [
    dict(in_channels=3, out_channels=5, kernel_size=3),
    dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1)),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=1, groups=2),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4),     # depthwise
    dict(in_channels=3, out_channels=2, kernel_size=4, padding="same"),          # odd total padding
    dict(in_channels=3, out_channels=3, kernel_size=1),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=2, out_channels=3, kernel_size=(3, 5), padding="same", padding_mode="replicate"),
    dict(in_channels=2, out_channels=3, kernel_size=9, padding=3),               # kernel larger than input
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's own note
@pytest.mark.parametrize("kw", CONV_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_conv2d_matches_torch(kw):
    torch = _torch()
    tm = torch.nn.Conv2d(**kw)
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, kw["in_channels"], 7, 8))
        y = gc.nn.Conv2d(**kw)(x)
    xb = _f32(_rng(2), 2, kw["in_channels"], 7, 8)
    want = tm(torch.from_numpy(xb)).detach().numpy()
    assert y.shape[1:] == want.shape[1:]
    for threads in (1, 2):
        sess = _inference(g, x, y, xb.shape, threads)
        sess.load_state_dict(tm.state_dict())
        _assert_close(sess.run({"x": xb})[y.name], want, f"Conv2d {kw} threads={threads}")


def _bn_graph(c, **kw):
    """y = bn(s·x), loss = Σ y·r (r random): the training plan trains γ, β and the scalar s
    (something is trained even without γ and β)."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, c, 5, 4))
        r = gc.placeholder("r", (None, c, 5, 4))
        s = gc.variable("s", (), init=gc.init.ones())
        y = gc.nn.BatchNorm2d(c, **kw)(x * s)
        loss = gc.sum(y * r)
        gc.optim.SGD(lr=0.05).minimize(loss)
    return g, x, r, y, loss


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.3, "eps": 1e-3}, {"momentum": None}, {"affine": False},
                                {"track_running_stats": False}])
def test_batchnorm2d_training_matches_torch(kw):
    torch = _torch()
    c = 3
    tm = torch.nn.BatchNorm2d(c, **kw)
    if tm.affine:
        with torch.no_grad():
            tm.weight.uniform_(0.5, 1.5)
            tm.bias.uniform_(-0.5, 0.5)
    ts = torch.ones((), requires_grad=True)
    opt = torch.optim.SGD(list(tm.parameters()) + [ts], lr=0.05)
    g, x, r, y, loss = _bn_graph(c, **kw)
    plan = gc.compile(g, shapes={"x": (6, c, 5, 4), "r": (6, c, 5, 4)}, fetches=[loss, y])
    sess = gc.Session(plan, threads=1)
    sess.load_state_dict({**tm.state_dict(), "s": ts})
    tm.train()
    rng = _rng(3)
    for step in range(3):
        xb = (_f32(rng, 6, c, 5, 4) * 2 + 1).astype(np.float32)
        rb = _f32(rng, 6, c, 5, 4)
        out = sess.run({"x": xb, "r": rb})
        opt.zero_grad()
        yt = tm(torch.from_numpy(xb) * ts)
        lt = (yt * torch.from_numpy(rb)).sum()
        lt.backward()
        opt.step()
        _assert_close(out[y.name], yt.detach().numpy(), f"BatchNorm2d {kw} output, step {step}")
        # the loss is a sum of terms of both signs: its error is measured against Σ|terms|
        scale = float(np.sum(np.abs(yt.detach().numpy() * rb)))
        assert abs(float(out[loss.name]) - lt.item()) <= RTOL * scale, f"BatchNorm2d {kw} loss, step {step}"
    for k, v in _state(tm).items():
        if k.endswith("num_batches_tracked"):
            if "momentum" in kw and kw["momentum"] is None:    # counted only where it matters
                assert sess.get_variable(k) == v == 3
        else:
            _assert_close(sess.get_variable(k), v, f"BatchNorm2d {kw} {k} after 3 steps")
    _assert_close(sess.get_variable("s"), ts.item(), f"BatchNorm2d {kw} upstream scale after 3 steps")


@pytest.mark.parametrize("kw", [{}, {"affine": False}, {"track_running_stats": False}])
def test_batchnorm2d_inference_matches_torch(kw):
    torch = _torch()
    c = 4
    tm = torch.nn.BatchNorm2d(c, **kw)
    with torch.no_grad():
        if tm.affine:
            tm.weight.uniform_(0.5, 1.5)
            tm.bias.uniform_(-0.5, 0.5)
        if tm.track_running_stats:
            tm.running_mean.uniform_(-1, 1)
            tm.running_var.uniform_(0.5, 2)
    tm.eval()
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, c, 3, 5))
        y = gc.nn.BatchNorm2d(c, **kw)(x)
    sess = _inference(g, x, y, (2, c, 3, 5))
    sess.load_state_dict(tm.state_dict())
    xb = _f32(_rng(4), 2, c, 3, 5)
    _assert_close(sess.run({"x": xb})[y.name], tm(torch.from_numpy(xb)).detach().numpy(), f"BatchNorm2d eval {kw}")


@pytest.mark.parametrize("make", [
    lambda nn: nn.MaxPool2d(2), lambda nn: nn.MaxPool2d(3, stride=2, padding=1), lambda nn: nn.MaxPool2d((2, 3)),
    lambda nn: nn.AvgPool2d(2), lambda nn: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    lambda nn: nn.AvgPool2d(3, stride=2, padding=1), lambda nn: nn.AdaptiveAvgPool2d(1),
    lambda nn: nn.AdaptiveAvgPool2d((1, 1)), lambda nn: nn.Flatten(), lambda nn: nn.Flatten(2), lambda nn: nn.ReLU(),
    lambda nn: nn.Identity()], ids=["max2", "max3s2p1", "max2x3", "avg2", "avg3p1-nopad", "avg3s2p1", "gap1",
                                   "gap11", "flatten", "flatten2", "relu", "identity"])
def test_parameterless_layers_match_torch(make):
    torch = _torch()
    tm = make(torch.nn)
    ours = make(gc.nn)
    assert type(ours).__name__ == type(tm).__name__
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3, 7, 6))
        y = ours(x)
    xb = _f32(_rng(5), 2, 3, 7, 6)
    want = tm(torch.from_numpy(xb)).numpy()
    got = _inference(g, x, y, xb.shape).run({"x": xb})[y.name]
    assert got.shape == want.shape
    _assert_close(got, want, repr(tm))


def test_dropout_statistics_and_inference_identity():
    p = 0.3
    with gc.Graph() as g:
        x = gc.placeholder("x", (64, 1000))
        w = gc.variable("w", (1000,), init=gc.init.ones())
        y = gc.nn.Dropout(p)(x * w)
        loss = gc.mean(y)
        gc.optim.SGD(lr=1e-3).minimize(loss)
    xb = (_rng(6).random((64, 1000)) + 0.5).astype(np.float32)
    plan = gc.compile(g, shapes={"x": xb.shape}, fetches=[y])
    outs = [gc.Session(plan, threads=t).run({"x": xb})[y.name] for t in (1, 2)]
    np.testing.assert_array_equal(outs[0], outs[1])          # the mask does not depend on threads
    out = outs[0]
    dropped = out == 0
    n = out.size
    # the number dropped is Binomial(n, p): within 5 standard deviations
    assert abs(dropped.sum() - p * n) < 5 * math.sqrt(n * p * (1 - p))
    np.testing.assert_allclose(out[~dropped], xb[~dropped] / (1 - p), rtol=1e-6)
    # the next step draws a new mask
    sess = gc.Session(plan, threads=1)
    first = sess.run({"x": xb})[y.name]
    second = sess.run({"x": xb})[y.name]
    np.testing.assert_array_equal(first == 0, dropped)
    assert not np.array_equal(first == 0, second == 0)
    # a second Dropout layer draws another mask (its seed comes from its own scope name)
    with gc.Graph() as g2:
        x2 = gc.placeholder("x", (64, 1000))
        w2 = gc.variable("w", (1000,), init=gc.init.ones())
        a, b = gc.nn.Dropout(p, name="a")(x2 * w2), gc.nn.Dropout(p, name="b")(x2 * w2)
        gc.optim.SGD(lr=1e-3).minimize(gc.mean(a + b))
    two = gc.Session(gc.compile(g2, shapes={"x": xb.shape}, fetches=[a, b]), threads=1).run({"x": xb})
    assert not np.array_equal(two[a.name] == 0, two[b.name] == 0)
    # ... and so does one Dropout layer applied twice
    with gc.Graph() as g3:
        x3 = gc.placeholder("x", (64, 1000))
        w3 = gc.variable("w", (1000,), init=gc.init.ones())
        drop = gc.nn.Dropout(p, name="d")
        a, b = drop(x3 * w3), drop(x3 * w3)
        gc.optim.SGD(lr=1e-3).minimize(gc.mean(a + b))
    two = gc.Session(gc.compile(g3, shapes={"x": xb.shape}, fetches=[a, b]), threads=1).run({"x": xb})
    assert not np.array_equal(two[a.name] == 0, two[b.name] == 0)
    # an inference plan of the same graph is the identity
    infer = gc.Session(gc.compile(g, shapes={"x": xb.shape}, fetches=[y], train=False), threads=1)
    np.testing.assert_array_equal(infer.run({"x": xb})[y.name], xb)


def test_dropout_matches_torch_statistics():
    torch = _torch()
    p = 0.5
    xb = np.ones((200, 500), np.float32)
    tm = torch.nn.Dropout(p)
    tm.train()
    torch_zero_fraction = float((tm(torch.from_numpy(xb)) == 0).float().mean())
    with gc.Graph() as g:
        x = gc.placeholder("x", xb.shape)
        w = gc.variable("w", (), init=gc.init.ones())
        y = gc.nn.Dropout(p)(x * w)
        gc.optim.SGD(lr=1e-3).minimize(gc.mean(y))
    out = gc.Session(gc.compile(g, shapes={"x": xb.shape}, fetches=[y]), threads=1).run({"x": xb})[y.name]
    ours = float(np.mean(out == 0))
    sigma = math.sqrt(p * (1 - p) / xb.size)
    assert abs(ours - p) < 5 * sigma and abs(torch_zero_fraction - p) < 5 * sigma
    assert set(np.unique(out)) <= {0.0, 2.0}


# --------------------------------------------------------------------------- a whole ResNet


def _torch_block(torch, cin, cout, stride):
    """torchvision's BasicBlock: the benchmark's twin of gc.nn.ResidualBlock (tools/_bench_util.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    try:
        import _bench_util
    finally:
        sys.path.pop(0)
    return _bench_util.torch_basic_block(torch, cin, cout, stride)


def _gc_twin():
    nn = gc.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.ResidualBlock(4, 6, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


def _resnet_pair(torch, dropout=0.0):
    nn = torch.nn
    torch.manual_seed(0)
    tm = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                       _torch_block(torch, 8, 8, 1), _torch_block(torch, 8, 16, 2), nn.AdaptiveAvgPool2d(1),
                       nn.Flatten(), nn.Linear(16, 10))
    gm = gc.nn.Sequential(gc.nn.Conv2d(3, 8, 3, padding=1, bias=False), gc.nn.BatchNorm2d(8), gc.nn.ReLU(),
                          gc.nn.ResidualBlock(8, 8), gc.nn.ResidualBlock(8, 16, stride=2),
                          gc.nn.AdaptiveAvgPool2d(1), gc.nn.Flatten(), gc.nn.Linear(16, 10))
    return tm, gm


def test_resnet_forward_and_three_sgd_momentum_steps_match_torch(tmp_path):
    torch = _torch()
    tm, gm = _resnet_pair(torch)
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3, 12, 12))
        labels = gc.placeholder("y", (None,), dtype="int64")
        logits = gm(x)
        loss = gc.softmax_cross_entropy(logits, labels, name="loss")
        gc.optim.SGD(lr=0.05, momentum=0.9).minimize(loss)
    g.save(str(tmp_path / "resnet.pb"))
    model = gc.load(str(tmp_path / "resnet.pb"))          # both plans from the same .pb
    n = 8
    rng = _rng(7)
    xs = [_f32(rng, n, 3, 12, 12) for _ in range(3)]
    ys = [rng.integers(0, 10, n).astype(np.int64) for _ in range(3)]

    # inference: the eval-mode forward (running statistics made non-trivial first)
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    tm.eval()
    infer = gc.Session(gc.compile(model, shapes={"x": (n, 3, 12, 12)}, fetches=[logits.name], train=False),
                       threads=2)
    infer.load_state_dict(tm.state_dict())
    _assert_close(infer.run({"x": xs[0]})[logits.name], tm(torch.from_numpy(xs[0])).detach().numpy(),
                  "ResNet eval forward")

    # training: 3 steps of SGD with momentum, losses, logits, weights and running statistics
    tm.train()
    opt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    train = gc.Session(gc.compile(model, shapes={"x": (n, 3, 12, 12), "y": (n,)}, fetches=[loss.name, logits.name]),
                       threads=2)
    train.load_state_dict(tm.state_dict())
    for step in range(3):
        out = train.run({"x": xs[step], "y": ys[step]})
        opt.zero_grad()
        lt_logits = tm(torch.from_numpy(xs[step]))
        lt = torch.nn.functional.cross_entropy(lt_logits, torch.from_numpy(ys[step]))
        lt.backward()
        opt.step()
        _assert_close(out[logits.name], lt_logits.detach().numpy(), f"ResNet logits, step {step}")
        _assert_close(out[loss.name], lt.item(), f"ResNet loss, step {step}")
    for k, v in _state(tm).items():
        if not k.endswith("num_batches_tracked"):
            _assert_close(train.get_variable(k.replace(".", "/")), v, f"ResNet {k} after 3 steps")
    # the trained weights move to the inference plan through state_dict
    infer.load_state_dict(train.state_dict())
    tm.eval()
    _assert_close(infer.run({"x": xs[1]})[logits.name], tm(torch.from_numpy(xs[1])).detach().numpy(),
                  "ResNet eval forward after training")


def test_resnet_under_a_memory_budget_recomputes_to_the_same_results():
    """A gc.nn ResNet with dropout compiled under a memory budget (the tightest of 60-90% of
    its arena that recompute meets): the arena fits it, and 3
    training steps give the same losses and variables as the plan without a budget (the
    recomputed forward values, the dropout mask included, equal the stored ones)."""
    nn = gc.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.ResidualBlock(8, 8), nn.ResidualBlock(8, 16, stride=2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(16, 10))
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3, 12, 12))
        labels = gc.placeholder("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(model(x), labels, name="loss")
        gc.optim.SGD(lr=0.05, momentum=0.9).minimize(loss)
    shapes = {"x": (8, 3, 12, 12), "y": (8,)}
    full = gc.compile(g, shapes=shapes)
    arena = full.memory_report()["arena_bytes"]
    small = None
    for fraction in (0.6, 0.7, 0.8, 0.9):     # the tightest of these budgets that recompute can meet
        budget = int(arena * fraction)
        try:
            small = gc.compile(g, shapes=shapes, memory_budget=budget)
            break
        except CompileError as e:
            assert "no plan fits the memory budget" in str(e)
    assert small is not None, f"no budget down to 90% of the arena ({arena} B) could be met"
    assert small.memory_report()["arena_bytes"] <= budget
    assert len(small.steps) > len(full.steps)          # something is recomputed
    sessions = [gc.Session(p, threads=2) for p in (full, small)]
    rng = _rng(9)
    for _ in range(3):
        feeds = {"x": _f32(rng, *shapes["x"]), "y": rng.integers(0, 10, 8).astype(np.int64)}
        a, b = (s.run(feeds)[loss.name] for s in sessions)
        np.testing.assert_array_equal(a, b)
    for name in sessions[0].variable_names:
        np.testing.assert_array_equal(sessions[0].get_variable(name), sessions[1].get_variable(name), err_msg=name)


# --------------------------------------------------------------------------- the example


def test_train_cnn_example_quick(tmp_path):
    """The example in its reduced configuration: it trains, the loss falls, it writes its files."""
    env = child_env()   # the graphc under test (installed or in-place), not the bare source tree
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_cnn.py"), "--quick", "--epochs", "1",
                        "--out", str(tmp_path), "--threads", "2"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "loss fell" in r.stdout, r.stdout[-2000:]
    for name in ("model.pb", "train.plan", "infer.plan", "checkpoint.npz"):
        assert (tmp_path / name).exists(), name
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("loss.png", "misclassified.png"):
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    else:
        assert 'pip install "graphc[plot]"' in r.stdout
    # --resume continues from the checkpoint at the next epoch
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_cnn.py"), "--quick", "--epochs", "1",
                        "--out", str(tmp_path), "--threads", "1", "--resume", "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "after epoch 1" in r.stdout, r.stdout[-2000:]
