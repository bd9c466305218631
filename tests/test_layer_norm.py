"""gc.layer_norm through the compiler and the runtime: forward and backward against
torch.nn.functional.layer_norm (odd sizes, axis -1 and -2, without weight/bias, rows of length
1, float32 and float64), the same bits at threads 1 and 2, a few SGD steps through gc.optim,
second order, and the errors.  The registry-driven tests (test_kernels, test_gradients,
test_ops_reference) check the ops' examples on top of this."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, ShapeError
from graphc.session import Session


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed: layer_norm is checked against PyTorch")


def _graph(shape, axis, affine, dtype, seed=0):
    """y = layer_norm(x); loss = Σ y·r; fetches y, loss and the gradients of x (and weight, bias)."""
    rng = np.random.default_rng(seed)
    a = axis + len(shape) if axis < 0 else axis
    tail = shape[a:]
    vals = {"x": rng.standard_normal(shape).astype(dtype) * 2 + 0.5,
            "w": rng.uniform(0.5, 1.5, tail).astype(dtype), "b": rng.uniform(-0.5, 0.5, tail).astype(dtype),
            "r": rng.standard_normal(shape).astype(dtype)}
    with gc.Graph() as g:
        x = gc.placeholder("x", shape, dtype)
        w = gc.placeholder("w", tail, dtype) if affine else None
        b = gc.placeholder("b", tail, dtype) if affine else None
        y = gc.layer_norm(x, axis=axis, weight=w, bias=b, eps=1e-5, name="ln")
        loss = gc.sum(y * gc.constant(vals["r"], name="r"))
        wrt = [x, w, b] if affine else [x]
        grads = gc.gradients(loss, wrt)
    feeds = {k: vals[k] for k in (["x", "w", "b"] if affine else ["x"])}
    return g, [y, loss] + list(grads), feeds, vals


def _run(g, fetches, feeds, threads):
    plan = gc.compile(g, fetches=[t.name for t in fetches])
    out = Session(plan, threads=threads).run(feeds)
    return [out[t.name] for t in fetches]


CASES = [((5, 7), -1, True), ((3, 5, 7), -2, True), ((3, 5, 7), -1, False), ((6, 1), -1, True),
         ((2, 9, 1), -2, False), ((7,), 0, True), ((4, 33, 65), -1, True), ((2, 3, 4, 5), -3, True)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,axis,affine", CASES)
def test_forward_and_backward_match_torch(shape, axis, affine, dtype):
    torch = _torch()
    g, fetches, feeds, vals = _graph(shape, axis, affine, dtype)
    got = _run(g, fetches, feeds, threads=2)
    a = axis + len(shape) if axis < 0 else axis
    tx = torch.tensor(vals["x"], requires_grad=True)
    tw = torch.tensor(vals["w"], requires_grad=True) if affine else None
    tb = torch.tensor(vals["b"], requires_grad=True) if affine else None
    ty = torch.nn.functional.layer_norm(tx, shape[a:], tw, tb, eps=1e-5)
    tl = (ty * torch.tensor(vals["r"])).sum()
    tl.backward()
    want = [ty.detach().numpy(), tl.item(), tx.grad.numpy()] + ([tw.grad.numpy(), tb.grad.numpy()] if affine else [])
    tol = 2e-5 if dtype == "float32" else 1e-10
    # torch's float32 dx carries rounding errors times rstd (316 for rows of length 1, var = 0)
    rstd = float(torch.rsqrt(torch.var(tx.detach().double().reshape(-1, *shape[a:]).flatten(1), dim=1,
                                       unbiased=False) + 1e-5).max())
    for name, gv, wv in zip(["y", "loss", "dx", "dweight", "dbias"], got, want):
        scale = max(1.0, float(np.max(np.abs(wv))))  # the loss and column sums grow with the rows
        scale = max(scale, rstd) if name == "dx" else scale
        np.testing.assert_allclose(gv, wv, rtol=tol, atol=tol * scale, err_msg=f"{name} {shape} axis={axis}")


def test_rows_of_length_one_give_bias_and_zero_dx():
    # var = 0: y = 0·rstd·w + b = b exactly, and x̂ does not depend on x: dx = 0
    g, fetches, feeds, vals = _graph((6, 1), -1, True, "float32")
    y, _, dx, dw, db = _run(g, fetches, feeds, threads=1)
    np.testing.assert_array_equal(y, np.broadcast_to(vals["b"], (6, 1)))
    np.testing.assert_array_equal(dx, np.zeros((6, 1), np.float32))
    np.testing.assert_array_equal(dw, np.zeros(1, np.float32))
    np.testing.assert_allclose(db, vals["r"].sum(axis=0), rtol=1e-6)


def test_stats_outputs_match_torch():
    torch = _torch()
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((4, 6, 11)).astype(np.float32)
    with gc.Graph() as g:
        x = gc.placeholder("x", xv.shape)
        y, mean, rstd = gc.layer_norm_stats(x, axis=-2, eps=1e-3)
    got = _run(g, [y, mean, rstd], {"x": xv}, threads=2)
    assert got[1].shape == (4,) and got[2].shape == (4,)
    tx = torch.tensor(xv)
    var, tmean = torch.var_mean(tx, dim=(1, 2), unbiased=False)
    np.testing.assert_allclose(got[1], tmean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], torch.rsqrt(var + 1e-3).numpy(), rtol=1e-5)
    np.testing.assert_allclose(got[0], torch.nn.functional.layer_norm(tx, (6, 11), eps=1e-3).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,axis", [((64, 301), -1), ((3, 40, 257), -2), ((1000, 3), -1)])
def test_identical_bits_at_threads_1_and_2(shape, axis):
    g, fetches, feeds, _ = _graph(shape, axis, True, "float32", seed=5)
    one, two = _run(g, fetches, feeds, threads=1), _run(g, fetches, feeds, threads=2)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_identical_bits_on_every_isa(dtype):
    """The row loops are compiled per ISA (runtime/cpu/layer_norm_rows.inc): same operations in the
    same order, so each ISA the CPU has gives the bits of the baseline build."""
    from graphc import _runtime
    names = ["baseline", "avx2", "avx512"]
    isas = names[: names.index(_runtime.cpu_isa(detected=True)) + 1]
    g, fetches, feeds, _ = _graph((67, 131), -1, True, dtype, seed=9)
    try:
        results = {}
        for isa in isas:
            _runtime.set_isa(isa)
            results[isa] = _run(g, fetches, feeds, threads=2)
    finally:
        _runtime.set_isa(None)
    for isa, outs in results.items():
        for a, b in zip(outs, results["baseline"]):
            assert a.tobytes() == b.tobytes(), isa


def _mlp(dtype, seed=0):
    """x (8, 5, 13) -> layer_norm(axis=-1) with learned weight/bias -> linear 13 -> 3; MSE loss."""
    rng = np.random.default_rng(seed)
    init = {"ln/weight": rng.uniform(0.5, 1.5, 13).astype(dtype), "ln/bias": rng.uniform(-0.5, 0.5, 13).astype(dtype),
            "fc/weight": (rng.standard_normal((13, 3)) * 0.3).astype(dtype)}
    with gc.Graph() as g:
        x = gc.placeholder("x", (8, 5, 13), dtype)
        t = gc.placeholder("t", (8, 5, 3), dtype)
        v = {k: gc.variable(k, init=val) for k, val in init.items()}
        h = gc.layer_norm(x, weight=v["ln/weight"], bias=v["ln/bias"])
        out = h @ v["fc/weight"]
        loss = gc.mean((out - t) * (out - t))
        gc.optim.SGD(lr=0.5).minimize(loss)
    return g, loss, init


def test_sgd_steps_match_torch():
    torch = _torch()
    g, loss, init = _mlp("float32")
    sess = Session(gc.compile(g, fetches=[loss.name]), threads=2)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    opt = torch.optim.SGD(list(params.values()), lr=0.5)
    rng = np.random.default_rng(7)
    losses = []
    for _ in range(4):
        xv = (rng.standard_normal((8, 5, 13)) * 3 + 1).astype(np.float32)
        tv = rng.standard_normal((8, 5, 3)).astype(np.float32)
        got = sess.run({"x": xv, "t": tv})[loss.name]
        opt.zero_grad()
        h = torch.nn.functional.layer_norm(torch.tensor(xv), (13,), params["ln/weight"], params["ln/bias"])
        tl = ((h @ params["fc/weight"] - torch.tensor(tv)) ** 2).mean()
        tl.backward()
        opt.step()
        np.testing.assert_allclose(got, tl.item(), rtol=1e-5)
        losses.append(float(got))
    for k, p in params.items():
        np.testing.assert_allclose(sess.get_variable(k), p.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.allclose(sess.get_variable("ln/weight"), init["ln/weight"])  # the step moved the weight


def test_second_order_through_layer_norm_grad():
    # d/dx of <∂L/∂x, u> (layer_norm_grad differentiated through its composite) vs finite differences
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((3, 7))
    u, r, wv = rng.standard_normal((3, 7)), rng.standard_normal((3, 7)), rng.uniform(0.5, 1.5, 7)
    with gc.Graph() as g:
        x = gc.placeholder("x", (3, 7), "float64")
        w = gc.constant(wv, name="w")
        loss = gc.sum(gc.layer_norm(x, weight=w) * gc.constant(r))
        (gx,) = gc.gradients(loss, [x])
        (hu,) = gc.gradients(gc.sum(gx * gc.constant(u)), [x])
    plan = gc.compile(g, fetches=[gx.name, hu.name])
    sess = Session(plan, threads=2)
    got = sess.run({"x": x0})[hu.name]
    eps = 1e-6
    numeric = (sess.run({"x": x0 + eps * u})[gx.name] - sess.run({"x": x0 - eps * u})[gx.name]) / (2 * eps)
    np.testing.assert_allclose(got, numeric, rtol=1e-4, atol=1e-6)  # the Hessian is symmetric: H·u


def test_errors_name_the_op_and_argument():
    with gc.Graph():
        x = gc.placeholder("x", (4, 5, 6))
        with pytest.raises(GraphError, match="axis"):
            gc.layer_norm(x, axis=3)
        with pytest.raises(GraphError, match="axis"):
            gc.layer_norm(x, axis=(1, 2))
        with pytest.raises(ShapeError, match="layer_norm.*weight.*\\(5, 6\\)"):
            gc.layer_norm(x, axis=-2, weight=gc.placeholder("w", (6,)), bias=gc.placeholder("b", (5, 6)))
        with pytest.raises(ShapeError, match="eps"):
            gc.layer_norm(x, eps=-1.0)
        with pytest.raises(GraphError):
            gc.layer_norm(gc.placeholder("i", (4, 5), "int32"))
        with pytest.raises(GraphError, match="axis"):
            gc.layer_norm(gc.placeholder("s", ()))


def test_second_order_through_batch_norm_train_grad():
    # the same chain as layer norm's (an op whose gradient op reads the op's own statistics outputs):
    # the composite gradient of batch_norm_train_grad treats x and mean/var as independent inputs
    # (graphc/autodiff.py _composite_gradient), so the path through mean/var is counted once
    rng = np.random.default_rng(4)
    x0, u, r = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    with gc.Graph() as g:
        x = gc.placeholder("x", (5, 3), "float64")
        y, _, _ = gc.batch_norm_train(x, gc.constant(np.ones(3)), gc.constant(np.zeros(3)))
        (gx,) = gc.gradients(gc.sum(y * gc.constant(r)), [x])
        (hu,) = gc.gradients(gc.sum(gx * gc.constant(u)), [x])
    sess = Session(gc.compile(g, fetches=[gx.name, hu.name]), threads=1)
    eps = 1e-6
    numeric = (sess.run({"x": x0 + eps * u})[gx.name] - sess.run({"x": x0 - eps * u})[gx.name]) / (2 * eps)
    np.testing.assert_allclose(sess.run({"x": x0})[hu.name], numeric, rtol=1e-4, atol=1e-6)


_HUGE_SCRIPT = """
import numpy as np
import graphc as gc
from graphc.session import Session
BIG = 2 ** 40
for axis in (-1, 1, 2):
    with gc.Graph() as g:
        x = gc.broadcast_to(gc.placeholder("x", (0, 1, 0)), (0, BIG, 0))
        tail = (0, BIG, 0)[axis:] if axis >= 0 else (0,)
        w = gc.broadcast_to(gc.placeholder("w", tuple(0 if d == 0 else 1 for d in tail)), tail)
        y, mean, rstd = gc.layer_norm_stats(x, axis=axis, weight=w, bias=w)
        dx, dw, db = gc.gradients(gc.sum(y), [x, w, w])
        outs = [y, mean, dx, dw]
    feeds = {"x": np.zeros((0, 1, 0), np.float32), "w": np.zeros(tuple(0 if d == 0 else 1 for d in tail), np.float32)}
    got = Session(gc.compile(g, fetches=[t.name for t in outs]), threads=2).run(feeds)
    assert [got[t.name].shape for t in outs] == [(0, BIG, 0), (0, BIG, 0)[:axis % 3], (0, BIG, 0), tail]
print("all done")
"""


def test_zero_size_with_huge_other_dims_runs_at_once():
    # no loop walks the huge dim of a zero-size x (a hang fails here, in a child process, with a timeout)
    root = str(Path(gc.__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, "-c", _HUGE_SCRIPT], capture_output=True, text=True, timeout=300,
                          cwd=root, env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0 and "all done" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_inference_plan_with_unused_statistics():
    # only y is fetched: mean and rstd are dead outputs the plan still gives room to
    torch = _torch()
    rng = np.random.default_rng(8)
    xv = rng.standard_normal((6, 3, 17))
    with gc.Graph() as g:
        x = gc.placeholder("x", xv.shape, "float64")
        y = gc.relu(gc.layer_norm(x, axis=-2, eps=1e-3)) * 2.0
    got = _run(g, [y], {"x": xv}, threads=2)[0]
    want = torch.relu(torch.nn.functional.layer_norm(torch.tensor(xv), (3, 17), eps=1e-3)) * 2.0
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
