"""The implicit-GEMM convolution's packed weights (runtime/cpu/conv.cc, pack_implicit_weights):
a weight whose changes the executor tracks (a variable) is packed once and kept across runs, so
set_variable / load_checkpoint must make the next run see the new weights, for conv2d and for
conv2d_grad_input (which reads the flipped weight, and takes the definition's loops when the
weight holds inf); the kept pack gives the same bits as a weight fed each run (packed per call)
and the same bits at 1 and 2 threads."""

import numpy as np
import pytest

import graphc as gc
from graphc.session import Session

# implicit GEMM at stride 1 (row tiles and grid tiles) and at stride 2; channels >= 16
CASES = [
    ((2, 16, 7, 7), (40, 16, 3, 3), 1),
    ((1, 24, 16, 16), (16, 24, 3, 3), 1),
    ((2, 32, 9, 9), (24, 32, 3, 3), 2),
]


def _reference(x, w, stride, pad=1):
    """float64 conv2d by its definition (padding as zeros)."""
    x64 = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x64, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwab,ocab->nohw", win, w.astype(np.float64))


def _graph(xs, ws, stride, variable):
    with gc.Graph() as g:
        x = gc.placeholder("x", xs)
        w = gc.variable("w", ws, trainable=False) if variable else gc.placeholder("w", ws)
        y = gc.conv2d(x, w, stride=stride, padding=1)
        r = gc.placeholder("r", y.shape)
        (dx,) = gc.gradients(gc.sum(y * r), [x])
    plan = gc.compile(g, shapes={}, fetches=[y.name, dx.name], train=False)
    return plan, y.name, dx.name, tuple(y.shape)


@pytest.mark.parametrize("xs,ws,stride", CASES)
def test_kept_pack_follows_set_variable(xs, ws, stride, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w1 = (rng.standard_normal(ws) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal(ws) * 0.2).astype(np.float32)
    plan_v, y, dx, ys = _graph(xs, ws, stride, variable=True)
    plan_p, yp, dxp, _ = _graph(xs, ws, stride, variable=False)
    r = rng.standard_normal(ys).astype(np.float32)
    fed = Session(plan_p, threads=2)
    kept = {t: Session(plan_v, threads=t) for t in (1, 2)}

    def check(w, what):
        want = fed.run({"x": x, "w": w, "r": r})
        ref = _reference(x, w, stride)
        bound = 1e-5 * (1 + np.abs(ref).max())
        assert np.abs(want[yp] - ref).max() <= bound, what
        for t, sess in kept.items():
            got = sess.run({"x": x, "r": r})
            # the same FMA chains whether the pack is kept or rebuilt, at any thread count
            assert np.array_equal(got[y].view(np.uint32), want[yp].view(np.uint32)), (what, t, "y")
            if stride == 1:  # the implicit conv2d_grad_input (flipped weights) runs at stride 1 only
                assert np.array_equal(got[dx].view(np.uint32), want[dxp].view(np.uint32)), (what, t, "dx")
            else:
                np.testing.assert_allclose(got[dx], want[dxp], rtol=1e-5, atol=1e-5, err_msg=what)

    for sess in kept.values():
        sess.set_variable("w", w1)
    ckpt = tmp_path / "w.ckpt"
    kept[2].save_checkpoint(str(ckpt))
    check(w1, "initial")
    check(w1, "second run (kept pack)")
    for i, w in enumerate((w2, w1, w2)):
        for sess in kept.values():
            sess.set_variable("w", w)
        check(w, f"set_variable {i}")
    for sess in kept.values():
        sess.load_checkpoint(str(ckpt))
    check(w1, "load_checkpoint")
    # an infinite weight: conv2d_grad_input takes the definition's loops (no 0 * inf from the
    # flipped convolution's padding); the decision is kept with the pack and must follow it
    w_inf = w1.copy()
    w_inf[0, 0, 0, 0] = np.inf
    for sess in kept.values():
        sess.set_variable("w", w_inf)
    want = fed.run({"x": x, "w": w_inf, "r": r})
    for t, sess in kept.items():
        got = sess.run({"x": x, "r": r})
        np.testing.assert_array_equal(np.isnan(got[dx]), np.isnan(want[dxp]), err_msg=f"inf weight, {t} threads")
        np.testing.assert_array_equal(got[y], want[yp], err_msg=f"inf weight y, {t} threads")
    for sess in kept.values():
        sess.set_variable("w", w2)
    check(w2, "finite again")


# im2col forward in bands of panels (conv.cc forward_image, kBandFloats = 64 Ki floats): the
# stem-like 7x7/2 (K = 147: bands of 13 panels of 32), a P that ends mid-panel and mid-band,
# and groups (K = 50 per group: bands of 20 panels)
BAND_CASES = [
    ((1, 3, 64, 64), (8, 3, 7, 7), 2, 3, 1),
    ((2, 3, 61, 61), (8, 3, 7, 7), 2, 3, 1),
    ((1, 4, 40, 40), (6, 2, 5, 5), 1, 2, 2),
]


def _reference_groups(x, w, stride, pad, groups):
    cg, og = x.shape[1] // groups, w.shape[0] // groups
    return np.concatenate([_reference(x[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og], stride, pad)
                           for g in range(groups)], axis=1)


@pytest.mark.parametrize("xs,ws,stride,pad,groups", BAND_CASES)
def test_im2col_bands(xs, ws, stride, pad, groups):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) * 0.2).astype(np.float32)
    with gc.Graph() as g:
        xp = gc.placeholder("x", xs)
        wv = gc.variable("w", ws, trainable=False)
        y = gc.conv2d(xp, wv, stride=stride, padding=pad, groups=groups)
    plan = gc.compile(g, shapes={}, fetches=[y.name], train=False)
    ref = _reference_groups(x, w, stride, pad, groups)
    outs = []
    for t in (1, 2):
        sess = Session(plan, threads=t)
        sess.set_variable("w", w)
        outs.append(sess.run({"x": x})[y.name])
        assert outs[-1].shape == ref.shape
        assert np.abs(outs[-1] - ref).max() <= 1e-5 * (1 + np.abs(ref).max()), t
    assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))
