"""gc.scaled_dot_product_attention against torch's (forward and gradients: bool masks, causal
with L != S, scale, rank 3 and 4), fully masked rows (0, no NaN in gradients), identical bits at
any thread count and ISA, the memory promise (no (L, S) buffer in the plan), and the errors.
The registry-driven tests (test_kernels, test_gradients, ...) check the op on its examples."""

import numpy as np
import pytest

import graphc as gc
from graphc import _runtime
from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.session import Session

NAMES = ["baseline", "avx2", "avx512"]
ISAS = NAMES[: NAMES.index(_runtime.cpu_isa(detected=True)) + 1]


def _run(q, k, v, mask=None, causal=False, scale=None, grads=False, threads=1, dout=None):
    """(out, [dq, dk, dv]) of gc's attention on numpy inputs; the loss for the gradients is Σ out·dout."""
    with Graph() as g:
        ph = [gc.placeholder(n, x.shape, x.dtype.name) for n, x in zip("qkv", (q, k, v))]
        m = gc.placeholder("m", mask.shape, "bool") if mask is not None else None
        out = gc.scaled_dot_product_attention(*ph, mask=m, causal=causal, scale=scale)
        fetches = [out]
        if grads:
            r = gc.constant(dout)
            fetches += gc.gradients(gc.sum(out * r), ph)
    feeds = {"q": q, "k": k, "v": v}
    if mask is not None:
        feeds["m"] = mask
    plan = gc.compile(g, shapes={}, fetches=[t.name for t in fetches])
    res = Session(plan, threads=threads).run(feeds)
    return [res[t.name] for t in fetches]


def _torch(q, k, v, mask=None, causal=False, scale=None, dout=None):
    torch = pytest.importorskip("torch", reason="torch is the oracle here (absent in CI)")
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tm = torch.tensor(mask) if mask is not None else None
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal, scale=scale)
    if dout is None:
        return [out.detach().numpy()]
    out.backward(torch.tensor(dout))
    return [out.detach().numpy()] + [t.grad.numpy() for t in (tq, tk, tv)]


def _qkv(rng, lead, L, S, E, Ev, dtype="float64"):
    return [rng.standard_normal(lead + (n, e)).astype(dtype) for n, e in ((L, E), (S, E), (S, Ev))]


CASES = [  # (lead, L, S, E, Ev, mask shape or None, causal, scale)
    ((2, 3), 7, 13, 5, 4, None, False, None),
    ((2, 3), 7, 13, 5, 4, None, True, None),
    ((2, 3), 13, 7, 5, 4, None, True, 0.3),
    ((3,), 70, 150, 16, 8, None, True, None),
    ((3,), 70, 150, 16, 8, (3, 70, 150), False, None),
    ((2, 2), 9, 11, 4, 6, (2, 1, 9, 11), False, 1.7),
    ((2, 2), 9, 11, 4, 6, (1, 11), False, None),
    ((1,), 1, 1, 3, 2, None, True, None),
    ((2,), 200, 130, 32, 32, None, False, None),
]


def _mask(rng, shape):
    # no fully masked row here: torch gives NaN there (tested apart)
    m = rng.random(shape) < 0.7
    m[..., 0] = True
    return m


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_torch(case, dtype):
    lead, L, S, E, Ev, mshape, causal, scale = case
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, lead, L, S, E, Ev, dtype)
    mask = _mask(rng, mshape) if mshape else None
    (want,) = _torch(q, k, v, mask, causal, scale)
    (got,) = _run(q, k, v, mask, causal, scale)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradients_match_torch(case):
    lead, L, S, E, Ev, mshape, causal, scale = case
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, lead, L, S, E, Ev)
    mask = _mask(rng, mshape) if mshape else None
    dout = rng.standard_normal(lead + (L, Ev))
    want = _torch(q, k, v, mask, causal, scale, dout=dout)
    got = _run(q, k, v, mask, causal, scale, grads=True, dout=dout)
    for name, a, b in zip(["out", "dq", "dk", "dv"], got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)


def test_gradients_float32_within_1e4_of_torch():
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng, (2, 4), 64, 64, 32, 32, "float32")
    dout = rng.standard_normal((2, 4, 64, 32)).astype(np.float32)
    want = _torch(q, k, v, causal=True, dout=dout)
    got = _run(q, k, v, causal=True, grads=True, dout=dout)
    for name, a, b in zip(["out", "dq", "dk", "dv"], got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


def test_fully_masked_rows_give_zero_and_no_nan_in_gradients():
    rng = np.random.default_rng(3)
    q, k, v = _qkv(rng, (2, 2), 6, 9, 4, 3)
    mask = _mask(rng, (2, 2, 6, 9))
    mask[0, 1, 2, :] = False
    mask[1, :, 4, :] = False
    dout = rng.standard_normal((2, 2, 6, 3))
    out, dq, dk, dv = _run(q, k, v, mask, grads=True, dout=dout)
    for a in (out, dq, dk, dv):
        assert np.isfinite(a).all()
    assert (out[0, 1, 2] == 0).all() and (out[1, :, 4] == 0).all()
    assert (dq[0, 1, 2] == 0).all() and (dq[1, :, 4] == 0).all()
    # elsewhere torch's answer (torch: NaN in the masked rows, so compare the others; a fully masked
    # row adds nothing to dk, dv, so zeroing its dout makes torch's dk, dv comparable)
    dout0 = dout.copy()
    dout0[0, 1, 2] = 0
    dout0[1, :, 4] = 0
    keep = mask.any(-1)
    mask_t = mask.copy()
    mask_t[~keep] = True  # torch would NaN them; their dout is 0, so they add nothing to dk, dv
    t_out, t_dq, t_dk, t_dv = _torch(q, k, v, mask_t, dout=dout0)
    g_out, g_dq, g_dk, g_dv = _run(q, k, v, mask, grads=True, dout=dout0)
    np.testing.assert_allclose(g_out[keep], t_out[keep], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_dq[keep], t_dq[keep], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g_dk, t_dk, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g_dv, t_dv, rtol=1e-10, atol=1e-10)


def test_causal_with_more_queries_than_keys_has_no_fully_masked_row():
    # top-left aligned: row i keeps keys 0..min(i, S-1); every row keeps key 0
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng, (1,), 9, 3, 4, 2)
    (got,) = _run(q, k, v, causal=True)
    np.testing.assert_allclose(got[0, 0], v[0, 0], rtol=1e-12)
    (want,) = _torch(q, k, v, causal=True)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_identical_bits_at_any_thread_count_and_isa(causal):
    """Same bits for 1, 2, 3 threads on every ISA, and between AVX2 and AVX-512 (the float32 GEMM
    blocks use gemm's FMA micro-kernels, which agree with each other; the baseline build has no FMA,
    so it agrees with them to rounding only)."""
    rng = np.random.default_rng(5)
    q, k, v = _qkv(rng, (3, 2), 150, 140, 24, 20, "float32")
    dout = rng.standard_normal((3, 2, 150, 20)).astype(np.float32)
    results = {}
    try:
        for isa in ISAS:
            _runtime.set_isa(isa)
            for threads in (1, 2, 3):
                got = _run(q, k, v, causal=causal, grads=True, dout=dout, threads=threads)
                base = results.setdefault(isa, got)
                for a, b in zip(got, base):
                    assert a.tobytes() == b.tobytes(), (isa, threads)
    finally:
        _runtime.set_isa(None)
    fma = [results[i] for i in ("avx2", "avx512") if i in results]
    for other in fma[1:]:
        for a, b in zip(other, fma[0]):
            assert a.tobytes() == b.tobytes()
    for a, b in zip(results["baseline"], fma[0] if fma else results["baseline"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_memory_is_linear_in_the_sequence_length():
    """The plan for L = S = 1024 holds no value of L·S elements (the scores are never stored):
    its workspaces are a few blocks, independent of L."""
    def plan_for(n, grads):
        with Graph() as g:
            q, k, v = (gc.placeholder(c, (2, 4, n, 32)) for c in "qkv")
            out = gc.scaled_dot_product_attention(q, k, v, causal=True)
            fetches = [out] + (gc.gradients(gc.sum(out), [q, k, v]) if grads else [])
        return gc.compile(g, shapes={}, fetches=[t.name for t in fetches])

    for grads in (False, True):
        sizes = {}
        for n in (256, 1024):
            proto = plan_for(n, grads).proto
            if n == 1024:  # no (L, S) float32 matrix, let alone batch · heads of them
                biggest = max(v.nbytes for v in proto.values)
                assert biggest < n * n * 4, (n, biggest)
            ws = [proto.values[i].nbytes for s in proto.steps for i in s.workspaces]
            assert ws, "the kernels' scratch is a planned workspace"
            sizes[n] = (proto.arena_bytes, max(ws))
        # the workspace does not grow with L; the arena grows at most linearly (4x for 4x the length)
        assert sizes[1024][1] == sizes[256][1], sizes
        assert sizes[1024][0] <= 4 * sizes[256][0] + 1024, sizes


def test_second_order_through_the_composite_definition():
    """d/dq of <dq, u>: the grad op's gradient differentiates its composite; compare with
    central differences of the first gradient."""
    rng = np.random.default_rng(6)
    q0, k0, v0 = _qkv(rng, (2,), 4, 5, 3, 2)
    u = rng.standard_normal(q0.shape)
    with Graph() as g:
        q = gc.placeholder("q", q0.shape, "float64")
        k, v = gc.constant(k0), gc.constant(v0)
        out = gc.scaled_dot_product_attention(q, k, v, causal=True)
        (gq,) = gc.gradients(gc.sum(out * out), [q])
        (hu,) = gc.gradients(gc.sum(gq * gc.constant(u)), [q])
    w = rng.standard_normal(q0.shape)
    got = float(np.sum(gc.reference.evaluate(g, {"q": q0}, [hu])[hu] * w))
    eps = 1e-6

    def grad_at(x):
        return gc.reference.evaluate(g, {"q": x}, [gq])[gq]

    numeric = float(np.sum((grad_at(q0 + eps * u) - grad_at(q0 - eps * u)) / (2 * eps) * w))
    assert abs(got - numeric) <= 1e-5 + 1e-4 * abs(numeric), (got, numeric)


def test_errors_name_the_problem():
    with Graph():
        q, k, v = (gc.placeholder(c, (2, 5, 4)) for c in "qkv")
        m = gc.placeholder("m", (5, 5), "bool")
        with pytest.raises(GraphError, match="mask or causal"):
            gc.scaled_dot_product_attention(q, k, v, mask=m, causal=True)
        with pytest.raises(GraphError, match="bool mask"):
            gc.scaled_dot_product_attention(q, k, v, mask=gc.placeholder("f", (5, 5)))
        with pytest.raises(GraphError, match="scaled_dot_product_attention.*broadcast the mask"):
            gc.scaled_dot_product_attention(q, k, v, mask=gc.placeholder("m2", (3, 5), "bool"))
        with pytest.raises(GraphError, match="scaled_dot_product_attention.*one feature size E"):
            gc.scaled_dot_product_attention(q, gc.placeholder("k2", (2, 5, 3)), v)
        with pytest.raises(GraphError, match="scaled_dot_product_attention.*batch dims"):
            gc.scaled_dot_product_attention(q, gc.placeholder("k3", (1, 5, 4)), gc.placeholder("v3", (1, 5, 4)))
