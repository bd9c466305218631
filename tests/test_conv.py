"""conv2d and its gradient ops beyond the registry-driven tests (test_kernels, test_gradients,
test_ops_reference run every example): against PyTorch where it imports, the same bits at
threads 1 and 2 on realistic shapes, the planned im2col workspace, padding="same", bias,
second order, IO binding, every GEMM kernel the CPU has, and bad arguments."""

import numpy as np
import pytest

import graphc as gc
from graphc import _runtime
from graphc.errors import GraphError, ModelFormatError, ShapeError
from graphc.session import Session

ISA_ORDER = ["baseline", "avx2", "avx512"]
ISAS = ISA_ORDER[: ISA_ORDER.index(_runtime.cpu_isa(detected=True)) + 1]

# (x shape, w shape, conv2d kwargs): the benchmark CNN's layers at batch 3, and the odd ones
CASES = [
    ((3, 3, 32, 32), (32, 3, 3, 3), dict(padding=1)),
    ((3, 32, 16, 16), (32, 32, 3, 3), dict(padding=1)),
    ((3, 32, 16, 16), (64, 32, 3, 3), dict(stride=2, padding=1)),
    ((3, 32, 16, 16), (64, 32, 1, 1), dict(stride=2)),
    ((3, 16, 9, 11), (24, 16, 1, 1), dict()),
    ((2, 6, 9, 8), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ((2, 8, 10, 7), (12, 4, 3, 2), dict(stride=(2, 1), padding=(2, 1), dilation=(2, 3), groups=2)),
    ((2, 4, 5, 6), (5, 4, 4, 4), dict(padding="same")),
    ((1, 3, 3, 3), (4, 3, 5, 5), dict(padding=2)),
    ((5, 2, 7, 7), (3, 2, 7, 7), dict(padding="valid")),
    ((2, 16, 6, 6), (16, 16, 3, 3), dict(padding=3)),  # implicit forward; grad_input's flipped pads < 0: im2col
    ((2, 16, 5, 32), (24, 16, 3, 3), dict(padding=1)),  # implicit, tiles = output rows of 32 (straight into y)
    ((2, 24, 9, 10), (16, 24, 3, 3), dict(stride=(2, 3), padding=(1, 2), dilation=2)),
]


def _ids(case):
    xs, ws, kw = case
    return f"x{'x'.join(map(str, xs))}-w{'x'.join(map(str, ws))}-{kw}"


def _conv_graph(xs, ws, kwargs, dtype="float32", bias=False, grads=True):
    """x, w (and b) placeholders, y = conv2d, loss = sum(y * r); fetches y and the gradients."""
    with gc.Graph() as g:
        x = gc.placeholder("x", xs, dtype)
        w = gc.placeholder("w", ws, dtype)
        b = gc.placeholder("b", (ws[0],), dtype) if bias else None
        y = gc.conv2d(x, w, b, **kwargs)
        r = gc.placeholder("r", y.shape, dtype)
        fetches = [y]
        if grads:
            fetches += list(gc.gradients(gc.sum(y * r), [x, w] + ([b] if bias else [])))
    plan = gc.compile(g, shapes={}, fetches=[t.name for t in fetches])
    return plan, [t.name for t in fetches], tuple(y.shape)


def _feeds(rng, xs, ws, ys, dtype="float32", bias=False):
    feeds = {"x": rng.standard_normal(xs).astype(dtype), "w": (rng.standard_normal(ws) * 0.3).astype(dtype),
             "r": rng.standard_normal(ys).astype(dtype)}
    if bias:
        feeds["b"] = rng.standard_normal(ws[0]).astype(dtype)
    return feeds


def _torch_conv(torch, feeds, kwargs, bias=False):
    x = torch.tensor(feeds["x"], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(feeds["w"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(feeds["b"], dtype=torch.float64, requires_grad=True) if bias else None
    y = torch.nn.functional.conv2d(x, w, b, **kwargs)
    (y * torch.tensor(feeds["r"], dtype=torch.float64)).sum().backward()
    return [y.detach().numpy(), x.grad.numpy(), w.grad.numpy()] + ([b.grad.numpy()] if bias else [])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own copy
@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_and_gradients_match_torch(case, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the comparison needs it")
    xs, ws, kwargs = case
    bias = ws[0] % 2 == 0
    plan, names, ys = _conv_graph(xs, ws, kwargs, dtype, bias=bias)
    feeds = _feeds(np.random.default_rng(0), xs, ws, ys, dtype, bias=bias)
    got = Session(plan, threads=2).run(feeds)
    want = _torch_conv(torch, feeds, kwargs, bias=bias)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    for name, w in zip(names, want):
        assert got[name].shape == w.shape, name
        np.testing.assert_allclose(got[name], w, err_msg=name, **tol)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_threads_one_and_two_give_the_same_bits(case):
    xs, ws, kwargs = case
    xs = (9,) + xs[1:]  # more images than the workspace's slots: several images per thread
    plan, names, ys = _conv_graph(xs, ws, kwargs)
    feeds = _feeds(np.random.default_rng(1), xs, ws, ys)
    one = Session(plan, threads=1).run(feeds)
    for threads in (2, 3):
        other = Session(plan, threads=threads).run(feeds)
        for name in names:
            assert one[name].tobytes() == other[name].tobytes(), (name, threads)


def _isa_param(isa):
    marks = [] if isa in ISAS else [pytest.mark.skip(reason=f"CPU lacks {isa} (detected: {ISAS[-1]})")]
    return pytest.param(isa, marks=marks, id=isa)


@pytest.mark.parametrize("isa", [_isa_param(i) for i in ISA_ORDER])
@pytest.mark.parametrize("xs,ws,kwargs", [
    ((4, 8, 11, 13), (8, 8, 3, 3), dict(padding=1)),                     # im2col into packed panels
    ((4, 16, 11, 13), (20, 16, 3, 3), dict(padding=1)),                  # implicit GEMM, grad_input too
    ((3, 16, 12, 9), (8, 16, 3, 3), dict(stride=2, padding=1, dilation=(1, 2))),  # implicit, stride phases
])
def test_every_gemm_kernel_computes_the_convolution(isa, xs, ws, kwargs):
    """The forward writes its columns in the packed layout of the GEMM kernel that runs (32- or
    16-wide panels), or calls its micro-kernels on the padded image (which read past a tile's
    columns on AVX2 and the portable kernel): each kernel the CPU has must agree with float64."""
    plan, names, ys = _conv_graph(xs, ws, kwargs)
    plan64, _, _ = _conv_graph(xs, ws, kwargs, "float64")
    feeds = _feeds(np.random.default_rng(2), xs, ws, ys)
    want = Session(plan64, threads=1).run({k: v.astype(np.float64) for k, v in feeds.items()})
    _runtime.set_isa(isa)
    try:
        one = Session(plan, threads=1).run(feeds)
        two = Session(plan, threads=2).run(feeds)
    finally:
        _runtime.set_isa(None)
    for name in names:
        np.testing.assert_allclose(one[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)
        assert one[name].tobytes() == two[name].tobytes(), name


def test_the_im2col_scratch_is_a_planned_workspace():
    xs, ws = (8, 16, 12, 12), (32, 16, 3, 3)
    plan, names, ys = _conv_graph(xs, ws, dict(padding=1))
    proto = plan.proto
    by_op = {}
    for step in proto.steps:
        by_op.setdefault(step.op, []).append(step)
    for op in ("conv2d", "conv2d_grad_input", "conv2d_grad_weight"):
        (step,) = by_op[op]
        assert len(step.workspaces) >= 1, op
        for i in step.workspaces:
            v = proto.values[i]
            assert v.kind == "workspace" and v.storage == 0 and v.nbytes > 0, (op, v)  # 0: ARENA
    assert plan.memory_report()["bytes_by_kind"].get("workspace", 0) > 0
    # the kernels use the planned bytes: a plan without its workspaces is refused at load, naming it
    for step in proto.steps:
        if step.op == "conv2d":
            del step.workspaces[:]
    with pytest.raises(ModelFormatError, match="conv2d.*workspace"):
        Session(plan)


def test_a_pointwise_convolution_needs_no_im2col():
    plan, _, _ = _conv_graph((4, 16, 9, 9), (8, 16, 1, 1), {}, grads=False)
    (step,) = [s for s in plan.proto.steps if s.op == "conv2d"]
    assert len(step.workspaces) == 0


def test_runs_through_an_io_binding():
    xs, ws = (5, 8, 10, 10), (16, 8, 3, 3)
    plan, names, ys = _conv_graph(xs, ws, dict(stride=2, padding=1))
    feeds = _feeds(np.random.default_rng(3), xs, ws, ys)
    sess = Session(plan, threads=2)
    want = sess.run(feeds)
    binding = sess.io_binding()
    for k, v in feeds.items():
        binding.bind_input(k, v)
    outs = {n: binding.bind_output(n) for n in names}
    binding.run()
    for n in names:
        assert outs[n].tobytes() == want[n].tobytes(), n


@pytest.mark.parametrize("k,dilation", [(3, 1), (4, 1), (2, 3), ((2, 5), (1, 2))])
def test_same_padding_keeps_the_size_and_puts_the_extra_row_at_the_bottom(k, dilation):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the comparison needs it")
    ks = (k, k) if isinstance(k, int) else k
    xs, ws = (2, 3, 7, 8), (4, 3) + ks
    kwargs = dict(padding="same", dilation=dilation)
    plan, names, ys = _conv_graph(xs, ws, kwargs, "float64")
    assert ys == (2, 4, 7, 8)
    feeds = _feeds(np.random.default_rng(4), xs, ws, ys, "float64")
    got = Session(plan).run(feeds)
    for name, w in zip(names, _torch_conv(torch, feeds, kwargs)):
        np.testing.assert_allclose(got[name], w, rtol=1e-10, atol=1e-10, err_msg=name)


def test_second_order_gradients_match_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the comparison needs it")
    xs, ws, kwargs = (2, 3, 6, 5), (4, 3, 3, 3), dict(stride=2, padding=1)
    rng = np.random.default_rng(5)
    xv, wv = rng.standard_normal(xs), rng.standard_normal(ws)
    with gc.Graph() as g:
        x = gc.placeholder("x", xs, "float64")
        w = gc.placeholder("w", ws, "float64")
        y = gc.conv2d(x, w, **kwargs)
        gx, gw = gc.gradients(gc.sum(y * y), [x, w])
        hx, hw = gc.gradients(gc.sum(gx * gx) + gc.sum(gw * gw), [x, w])
    plan = gc.compile(g, shapes={}, fetches=[hx.name, hw.name])
    got = Session(plan).run({"x": xv, "w": wv})
    tx, tw = torch.tensor(xv, requires_grad=True), torch.tensor(wv, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, **kwargs)
    tgx, tgw = torch.autograd.grad((ty * ty).sum(), [tx, tw], create_graph=True)
    thx, thw = torch.autograd.grad((tgx * tgx).sum() + (tgw * tgw).sum(), [tx, tw])
    np.testing.assert_allclose(got[hx.name], thx.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got[hw.name], thw.numpy(), rtol=1e-9, atol=1e-9)


def _build(xs, ws, **kwargs):
    with gc.Graph():
        x = gc.placeholder("x", xs)
        w = gc.placeholder("w", ws)
        b = kwargs.pop("bias_shape", None)
        return gc.conv2d(x, w, gc.placeholder("b", b) if b is not None else None, **kwargs)


@pytest.mark.parametrize("xs,ws,kwargs,error,match", [
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(groups=2), ShapeError, "3 channels, not divisible by groups=2"),
    ((2, 4, 8, 8), (3, 2, 3, 3), dict(groups=2), ShapeError, "w has 3 output channels, not divisible"),
    ((2, 4, 8, 8), (4, 3, 3, 3), dict(), ShapeError, "expects 3 input channels per group"),
    ((2, 3, 4, 4), (4, 3, 5, 5), dict(), ShapeError, "H=4 padded by .0, 0. is smaller than the dilated kernel"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(dilation=4), ShapeError, "smaller than the dilated kernel .9."),
    ((2, 3, 8), (4, 3, 3, 3), dict(), ShapeError, "input 0 .x. of rank 4"),
    ((2, 3, 8, 8), (4, 3, 3), dict(), ShapeError, "w must have rank 4"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=0), ShapeError, "stride=.0, 0. and dilation=.1, 1. must be positive"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding=-1), ShapeError, r"pads=\[-1, -1, -1, -1\] must be >= 0"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(groups=0), ShapeError, "groups=0 must be positive"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding="same", stride=2), GraphError, "padding='same' needs stride 1"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding="full"), GraphError, "padding='full' must be an int, a pair"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=(1, 2, 3)), GraphError, "stride must be an int or a pair"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(groups=1.5), GraphError, "groups must be an int"),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(bias_shape=(3,)), ShapeError, r"bias must have shape \(4,\)"),
])
def test_bad_arguments_are_refused_naming_them(xs, ws, kwargs, error, match):
    with pytest.raises(error, match=match):
        _build(xs, ws, **kwargs)


def test_dtype_mismatch_is_refused():
    with gc.Graph():
        x = gc.placeholder("x", (1, 2, 4, 4), "float32")
        w = gc.placeholder("w", (2, 2, 3, 3), "float64")
        with pytest.raises(gc.errors.DTypeError, match="conv2d"):
            gc.conv2d(x, w)


def test_size_zero_batch_and_symbolic_batch():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3, 8, 8))
        w = gc.placeholder("w", (4, 3, 3, 3))
        y = gc.conv2d(x, w, stride=2, padding=1)
        (gw,) = gc.gradients(gc.sum(y), [w])
    assert y.shape == (None, 4, 4, 4)
    for n in (0, 2):
        plan = gc.compile(g, shapes={"x": (n, 3, 8, 8)}, fetches=[y.name, gw.name])
        xv = np.ones((n, 3, 8, 8), np.float32)
        out = Session(plan, threads=2).run({"x": xv, "w": np.ones((4, 3, 3, 3), np.float32)})
        assert out[y.name].shape == (n, 4, 4, 4)
        if n == 0:
            assert not out[gw.name].any()


@pytest.mark.parametrize("op", ["conv2d", "conv2d_grad_input", "conv2d_grad_weight"])
def test_one_infinite_weight_or_input_reaches_exactly_the_outputs_it_should(op):
    """A single inf: the border outputs whose taps fall into the padding must stay finite where
    the definition leaves those taps out (grad_input), and be NaN where padding takes part as 0
    (the forward: inf · 0).  The float32 kernels here run the implicit GEMM (16 channels)."""
    from graphc import registry
    rng = np.random.default_rng(6)
    attrs = {"stride": (1, 1), "pads": (1, 1, 1, 1), "dilation": (1, 1), "groups": 1}
    x = rng.standard_normal((2, 16, 5, 6)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 16, 5, 6)).astype(np.float32)
    if op == "conv2d_grad_weight":
        x[1, 3, 0, 2] = np.inf
        inputs, attrs = [dy, x], dict(attrs, kernel_size=(3, 3))
    else:
        w[4, 7, 0, 0] = np.inf
        inputs = [x, w] if op == "conv2d" else [dy, w]
        if op == "conv2d_grad_input":
            attrs = dict(attrs, input_size=(5, 6))
    want = registry.get_op(op).evaluate(inputs, attrs)[0]
    assert np.isinf(want).any() and np.isfinite(want).any()
    with gc.Graph() as g:
        phs = [gc.placeholder(f"in{i}", a.shape) for i, a in enumerate(inputs)]
        (y,) = g.add_node(op, phs, attrs)
    plan = gc.compile(g, shapes={}, fetches=[y.name])
    for threads in (1, 2):
        got = Session(plan, threads=threads).run({f"in{i}": a for i, a in enumerate(inputs)})[y.name]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        fin = np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4, atol=1e-4)


def _tiny_cnn():
    """conv(3->16, 3x3, bias) - relu - conv(16->16, 3x3, stride 2) - relu - mean - linear(16->4)."""
    rng = np.random.default_rng(7)
    return {"c1": (rng.standard_normal((16, 3, 3, 3)) * 0.3).astype(np.float32),
            "b1": (rng.standard_normal(16) * 0.1).astype(np.float32),
            "c2": (rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32),
            "fc": (rng.standard_normal((16, 4)) * 0.3).astype(np.float32)}


def test_training_steps_match_torch():
    """Three SGD-with-momentum steps of a small CNN (im2col and implicit-GEMM layers, a bias,
    stride 2) equal PyTorch's: losses and the variables after them (float32, rtol 1e-4)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the comparison needs it")
    params = _tiny_cnn()
    rng = np.random.default_rng(8)
    batches = [(rng.standard_normal((6, 3, 12, 12)).astype(np.float32), rng.integers(0, 4, 6)) for _ in range(3)]
    with gc.Graph() as g:
        x = gc.placeholder("x", (6, 3, 12, 12))
        labels = gc.placeholder("y", (6,), "int64")
        v = {k: gc.variable(k, a.shape) for k, a in params.items()}
        h = gc.relu(gc.conv2d(x, v["c1"], v["b1"], padding=1))
        h = gc.relu(gc.conv2d(h, v["c2"], stride=2, padding=1))
        loss = gc.softmax_cross_entropy(gc.mean(h, axis=(2, 3)) @ v["fc"], labels)
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    plan = gc.compile(g, shapes={}, fetches=[loss.name])
    sess = Session(plan, threads=2)
    for k, a in params.items():
        sess.set_variable(k, a)
    got = [float(sess.run({"x": xb, "y": yb})[loss.name]) for xb, yb in batches]

    tp = {k: torch.tensor(a, requires_grad=True) for k, a in params.items()}
    opt = torch.optim.SGD(tp.values(), lr=0.1, momentum=0.9)
    want = []
    for xb, yb in batches:
        opt.zero_grad()
        th = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(xb), tp["c1"], tp["b1"], padding=1))
        th = torch.relu(torch.nn.functional.conv2d(th, tp["c2"], stride=2, padding=1))
        tl = torch.nn.functional.cross_entropy(th.mean(dim=(2, 3)) @ tp["fc"], torch.from_numpy(yb))
        tl.backward()
        opt.step()
        want.append(float(tl.detach()))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    for k in params:
        np.testing.assert_allclose(sess.get_variable(k), tp[k].detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
