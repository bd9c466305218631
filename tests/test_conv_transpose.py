"""conv_transpose2d beyond the registry-driven tests (test_kernels, test_gradients,
test_ops_reference run every example): forward and gradients against PyTorch where it
imports (stride, padding, output_padding, dilation, groups, bias), the same bits at threads 1
and 2, bad arguments named, and gc.nn.ConvTranspose2d against torch.nn.ConvTranspose2d with
the weights loaded from its state_dict."""

import numpy as np
import pytest
from torch_compare import assert_close
from torch_compare import torch_or_skip as _torch

import graphc as gc
from graphc.errors import GraphError, ShapeError
from graphc.session import Session

# (x shape, w shape, conv_transpose2d kwargs): DCGAN's 4x4 -> 8x8 (k4 s2 p1), output_padding below
# the stride and (under a dilation) at or above it, groups, 1x1, >= 16 channels at stride 1 (the
# float32 implicit GEMM of conv2d_grad_input), odd sizes
CASES = [
    ((4, 64, 4, 4), (64, 32, 4, 4), dict(stride=2, padding=1)),
    ((3, 5, 7, 6), (5, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((2, 4, 5, 3), (4, 3, 3, 2), dict(stride=(3, 2), padding=(1, 0), output_padding=(2, 1))),
    ((2, 4, 5, 6), (4, 2, 3, 3), dict(stride=2, padding=1, groups=2, output_padding=(0, 1))),
    ((2, 3, 4, 5), (3, 2, 3, 3), dict(dilation=2, output_padding=1)),
    ((2, 3, 4, 5), (3, 2, 3, 3), dict(stride=(1, 2), dilation=(3, 1), padding=(2, 1), output_padding=(2, 1))),
    ((2, 6, 5, 5), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ((3, 7, 5, 4), (7, 5, 1, 1), dict()),
    ((2, 3, 3, 3), (3, 4, 1, 1), dict(stride=2, output_padding=1)),
    ((2, 16, 9, 7), (16, 24, 3, 3), dict(padding=1)),
    ((2, 16, 6, 6), (16, 8, 5, 5), dict(padding=4)),
    # the DCGAN layer at batch 1, odd sizes under a dilation at stride 2 (>= 16 channels), a 9x9 map
    # at stride 2, and the digits GAN's last layer (one output channel)
    ((1, 64, 4, 4), (64, 32, 4, 4), dict(stride=2, padding=1)),
    ((5, 17, 3, 5), (17, 6, 3, 3), dict(stride=2, dilation=2, padding=1, output_padding=1)),
    ((3, 16, 9, 9), (16, 8, 4, 4), dict(stride=2, padding=1)),
    ((4, 32, 8, 8), (32, 1, 4, 4), dict(stride=2, padding=1)),
]


def _ids(case):
    xs, ws, kw = case
    return f"x{'x'.join(map(str, xs))}-w{'x'.join(map(str, ws))}-{kw}"


def _graph(xs, ws, kwargs, dtype="float32", bias=False):
    """x, w (and b) placeholders, y = conv_transpose2d, loss = sum(y * r); fetches y and the gradients."""
    with gc.Graph() as g:
        x = gc.placeholder("x", xs, dtype)
        w = gc.placeholder("w", ws, dtype)
        b = gc.placeholder("b", (ws[1] * kwargs.get("groups", 1),), dtype) if bias else None
        y = gc.conv_transpose2d(x, w, b, **kwargs)
        r = gc.placeholder("r", y.shape, dtype)
        fetches = [y] + list(gc.gradients(gc.sum(y * r), [x, w] + ([b] if bias else [])))
    plan = gc.compile(g, shapes={}, fetches=[t.name for t in fetches])
    return plan, [t.name for t in fetches], tuple(y.shape)


def _feeds(rng, xs, ws, ys, dtype="float32", bias=False, groups=1):
    feeds = {"x": rng.standard_normal(xs).astype(dtype), "w": (rng.standard_normal(ws) * 0.3).astype(dtype),
             "r": rng.standard_normal(ys).astype(dtype)}
    if bias:
        feeds["b"] = rng.standard_normal(ws[1] * groups).astype(dtype)
    return feeds


def _torch_transpose(torch, feeds, kwargs, bias=False):
    x = torch.tensor(feeds["x"], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(feeds["w"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(feeds["b"], dtype=torch.float64, requires_grad=True) if bias else None
    y = torch.nn.functional.conv_transpose2d(x, w, b, **kwargs)
    (y * torch.tensor(feeds["r"], dtype=torch.float64)).sum().backward()
    return [y.detach().numpy(), x.grad.numpy(), w.grad.numpy()] + ([b.grad.numpy()] if bias else [])


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_and_gradients_match_torch(case, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the comparison needs it")
    xs, ws, kwargs = case
    bias = ws[1] % 2 == 0
    plan, names, ys = _graph(xs, ws, kwargs, dtype, bias=bias)
    feeds = _feeds(np.random.default_rng(0), xs, ws, ys, dtype, bias=bias, groups=kwargs.get("groups", 1))
    got = Session(plan, threads=2).run(feeds)
    want = _torch_transpose(torch, feeds, kwargs, bias=bias)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    for name, w in zip(names, want):
        assert got[name].shape == w.shape, name
        np.testing.assert_allclose(got[name], w, err_msg=name, **tol)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_threads_one_and_two_give_the_same_bits(case):
    xs, ws, kwargs = case
    xs = (9,) + xs[1:]  # more images than the conv workspaces' slots
    plan, names, ys = _graph(xs, ws, kwargs)
    feeds = _feeds(np.random.default_rng(1), xs, ws, ys)
    one = Session(plan, threads=1).run(feeds)
    for threads in (2, 3):
        other = Session(plan, threads=threads).run(feeds)
        for name in names:
            assert one[name].tobytes() == other[name].tobytes(), (name, threads)


def test_it_is_conv2d_grad_input_and_its_gradients_are_the_conv2d_ops():
    # no third convolution: the forward is conv2d's input gradient, x's gradient a conv2d and w's a
    # conv2d_grad_weight
    plan, _, _ = _graph((2, 8, 4, 4), (8, 4, 4, 4), dict(stride=2, padding=1))
    ops = {s.op for s in plan.steps}
    assert {"conv2d_grad_input", "conv2d", "conv2d_grad_weight"} <= ops, ops
    assert "conv_transpose2d" not in ops


def test_size_zero_batch_and_symbolic_batch():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3, 4, 4))
        w = gc.placeholder("w", (3, 2, 4, 4))
        y = gc.conv_transpose2d(x, w, stride=2, padding=1)
    assert y.shape == (None, 2, 8, 8)
    sess = Session(gc.compile(g, shapes={"x": (0, 3, 4, 4)}, fetches=[y.name]))
    out = sess.run({"x": np.zeros((0, 3, 4, 4), np.float32), "w": np.ones((3, 2, 4, 4), np.float32)})
    assert out[y.name].shape == (0, 2, 8, 8)


def _build(xs, ws, **kwargs):
    with gc.Graph():
        x = gc.placeholder("x", xs)
        w = gc.placeholder("w", ws)
        b = kwargs.pop("bias_shape", None)
        bias = gc.placeholder("b", b) if b is not None else None
        return gc.conv_transpose2d(x, w, bias, **kwargs)


@pytest.mark.parametrize("xs, ws, kwargs, error, match", [
    ((1, 3, 4, 4), (3, 2, 3, 3), dict(stride=2, output_padding=2), ShapeError, "output_padding.*stride"),
    ((1, 3, 4, 4), (3, 2, 3, 3), dict(output_padding=1), ShapeError, "output_padding.*stride \\(1\\).*dilation"),
    ((1, 3, 4, 4), (4, 2, 3, 3), dict(), ShapeError, "expects x with 4 channels, x has 3"),
    ((1, 4, 4, 4), (4, 2, 3, 3), dict(groups=3), ShapeError, "not divisible by groups=3"),
    ((1, 3, 2, 2), (3, 2, 3, 3), dict(padding=3), ShapeError, "output H of -2.*reduce the padding"),
    ((1, 3, 4), (3, 2, 3, 3), dict(), ShapeError, "rank 4"),
    ((1, 3, 4, 4), (3, 2, 3), dict(), ShapeError, "w must have rank 4"),
    ((1, 3, 4, 4), (3, 2, 3, 3), dict(bias_shape=(3,)), ShapeError, "bias must have shape \\(2,\\)"),
    ((1, 3, 4, 4), (3, 2, 3, 3), dict(stride=0), ShapeError, "stride.*positive"),
    ((1, 3, 4, 4), (3, 2, 3, 3), dict(stride=(1, 2, 3)), GraphError, "conv_transpose2d: stride"),
    ((1, 3, 4, 4), (3, 2, 3, 3), dict(groups=1.5), GraphError, "groups must be an int"),
])
def test_bad_arguments_are_refused_naming_them(xs, ws, kwargs, error, match):
    with pytest.raises(error, match=match):
        _build(xs, ws, **kwargs)


def test_dtype_mismatch_is_refused():
    with gc.Graph():
        x = gc.placeholder("x", (1, 2, 3, 3), "float64")
        w = gc.placeholder("w", (2, 2, 3, 3), "float32")
        with pytest.raises(GraphError, match="conv_transpose2d"):
            gc.conv_transpose2d(x, w)


# --------------------------------------------------------------------------- gc.nn.ConvTranspose2d


def test_layer_names_shapes_and_initial_bound():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 64, 4, 4))
        layer = gc.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        y = layer(x)
    assert y.shape == (None, 32, 8, 8)
    sess = Session(gc.compile(g, shapes={"x": (1, 64, 4, 4)}, fetches=[y.name], train=False))
    state = sess.state_dict()
    assert {k: v.shape for k, v in state.items()} == {"weight": (64, 32, 4, 4), "bias": (32,)}
    # torch's bound 1/√fan_in with fan_in = weight.size(1)·kh·kw = 32·16 (not in_channels)
    bound = 1 / np.sqrt(32 * 16)
    for v in state.values():
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.9 * bound
    assert repr(layer) == "ConvTranspose2d(64, 32, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))"


@pytest.mark.parametrize("make, words", [
    (lambda: gc.nn.ConvTranspose2d(4, 6, 3, groups=4), "divisible by groups"),
    (lambda: gc.nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=2), "output_padding"),
    (lambda: gc.nn.ConvTranspose2d(4, 6, 3, padding_mode="reflect"), "padding_mode"),
    (lambda: gc.nn.ConvTranspose2d(4, 6, 0), "kernel_size"),
    (lambda: gc.nn.ConvTranspose2d(0, 6, 3), "in_channels"),
])
def test_layer_refused_arguments(make, words):
    with pytest.raises(GraphError, match=words):
        make()


@pytest.mark.parametrize("kwargs, xs", [
    (dict(in_channels=64, out_channels=32, kernel_size=4, stride=2, padding=1), (3, 64, 4, 4)),
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2,
          bias=False), (2, 4, 5, 3)),
    (dict(in_channels=3, out_channels=2, kernel_size=(3, 2), dilation=(2, 1), output_padding=(1, 0)), (2, 3, 4, 5)),
])
def test_layer_matches_torch(kwargs, xs):
    torch = _torch()
    rng = np.random.default_rng(3)
    tm = torch.nn.ConvTranspose2d(**kwargs)
    layer = gc.nn.ConvTranspose2d(**kwargs)
    with gc.Graph() as g:
        x = gc.placeholder("x", (None,) + xs[1:])
        y = layer(x)
        r = gc.placeholder("r", y.shape)
        variables = layer.variables(g)
        params = dict(tm.named_parameters())
        assert sorted(variables) == sorted(params)
        wrt = [x] + [variables[k] for k in sorted(variables)]
        grads = gc.gradients(gc.sum(y * r), wrt)
    ys = (xs[0],) + tuple(y.shape[1:])
    sess = Session(gc.compile(g, shapes={"x": xs, "r": ys}, fetches=[y] + grads, train=False))
    sess.load_state_dict(tm.state_dict())
    xb = rng.standard_normal(xs).astype(np.float32)
    rb = rng.standard_normal(ys).astype(np.float32)
    out = sess.run({"x": xb, "r": rb})
    xt = torch.from_numpy(xb).requires_grad_(True)
    yt = tm(xt)
    (yt * torch.from_numpy(rb)).sum().backward()
    assert_close(out[y.name], yt.detach().numpy(), "output", 1e-5)
    assert_close(out[grads[0].name], xt.grad.numpy(), "d/dx", 1e-5)
    for k, gt in zip(sorted(variables), grads[1:]):
        assert_close(out[gt.name], params[k].grad.numpy(), f"d/d{k}", 1e-5)


class _TinyGenerator(gc.nn.Module):
    """A DCGAN-style generator on 8x8: linear -> (16, 2, 2) -> ConvTranspose2d(k4 s2 p1) -> LeakyReLU
    -> Upsample(2) -> ConvTranspose2d(k3 p1, one channel) -> tanh."""

    def __init__(self, nn):
        super().__init__()
        self.fc = nn.Linear(8, 16 * 2 * 2)
        self.up1 = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.up2 = nn.Upsample(scale_factor=2)
        self.out = nn.ConvTranspose2d(8, 1, 3, padding=1)

    def forward(self, z):
        return gc.tanh(self.out(self.up2(self.act(self.up1(gc.reshape(self.fc(z), (-1, 16, 2, 2)))))))


def test_a_tiny_generator_trains_like_torch():
    """Three Adam steps of a generator built from the new layers (a squared error onto fixed
    targets) equal PyTorch's: losses and every variable after them (float32, rtol 1e-4)."""
    torch = _torch()
    torch.manual_seed(0)
    nn = torch.nn
    tfc, tup1 = nn.Linear(8, 64), nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
    tact, tup2, tout = nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2), nn.ConvTranspose2d(8, 1, 3, padding=1)
    tparams = {"fc.weight": tfc.weight, "fc.bias": tfc.bias, "up1.weight": tup1.weight, "up1.bias": tup1.bias,
               "out.weight": tout.weight, "out.bias": tout.bias}
    rng = np.random.default_rng(9)
    batches = [(rng.standard_normal((5, 8)).astype(np.float32),
                rng.uniform(-1, 1, (5, 1, 8, 8)).astype(np.float32)) for _ in range(3)]
    with gc.Graph() as g:
        z = gc.placeholder("z", (5, 8))
        target = gc.placeholder("t", (5, 1, 8, 8))
        fake = _TinyGenerator(gc.nn)(z)
        loss = gc.mean((fake - target) * (fake - target))
        gc.optim.Adam(1e-2, betas=(0.5, 0.999)).minimize(loss)
    sess = Session(gc.compile(g, shapes={}, fetches=[loss.name]), threads=2)
    sess.load_state_dict({k: v.detach().numpy() for k, v in tparams.items()})
    got = [float(sess.run({"z": zb, "t": tb})[loss.name]) for zb, tb in batches]

    opt = torch.optim.Adam(tparams.values(), lr=1e-2, betas=(0.5, 0.999))
    want = []
    for zb, tb in batches:
        opt.zero_grad()
        tf = torch.tanh(tout(tup2(tact(tup1(tfc(torch.from_numpy(zb)).reshape(-1, 16, 2, 2))))))
        tl = ((tf - torch.from_numpy(tb)) ** 2).mean()
        tl.backward()
        opt.step()
        want.append(float(tl.detach()))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    state = sess.state_dict()
    for k, p in tparams.items():
        np.testing.assert_allclose(state[k], p.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=k)

