"""gc.gelu (erf and tanh forms) and gc.softplus: the compiled CPU kernels and their gradient ops
against torch.nn.functional.gelu / softplus forward and backward (and gc.silu, a composite,
against torch's silu), special values, second derivatives, thread counts and refusals.

Tolerances (float32 against torch): softplus and silu compute the same formulas in float32 with
libm-class exp/log1p on both sides: a few roundings, measured within 3 ulp (away from zeros), so a
relative 16 ulp (16 · 2^-23 ≈ 2e-6) bounds them.  gelu's differences are absolute, not relative:
ATen's vectorised float erf is a polynomial with an absolute error near 1e-7 (we call erfc), times
|x| <= 8; torch's 1 + tanh u cancels for u < 0 (we use σ(2u)); and the tanh form's slope term
½x·(1 - t²)·√(2/π)(1 + 3κx²) near saturation (|x| ≈ 5): one ulp of t near ±1 (6e-8) moves 1 - t²
by 1.2e-7, times that factor (<= 9.6) and the upstream gradient (|r| <= 3.5 here).  Hence atol
4e-6 (measured: 2.2e-6 at x = -5.1, the tanh form's slope).  float64: the same counts of 2^-52
ulp (the tanh-form factor <= 23 where tanh saturates, |x| ≈ 7.2): rtol and atol 1e-13 (measured:
1.2e-14).
"""

import math

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, ModelFormatError
from graphc.graph import Graph
from graphc.session import Session

torch = pytest.importorskip("torch", reason="torch is the reference of these tests (absent in CI)")
TF = torch.nn.functional

TOL = {"float32": dict(rtol=2e-6, atol=4e-6), "float64": dict(rtol=1e-13, atol=1e-13)}

GELU_FORMS = ["none", "tanh"]
SOFTPLUS_ATTRS = [(1.0, 20.0), (2.0, 5.0), (-1.5, 3.0), (0.5, 1000.0)]


def _ours(fn, x, threads=1, second=False):
    """(y, dx of sum(y·r), and with ``second`` d/dx of sum(dx·q)) from one compiled plan."""
    rng = np.random.default_rng(7)
    r = rng.standard_normal(x.shape).astype(x.dtype)
    q = rng.standard_normal(x.shape).astype(x.dtype)
    with Graph() as g:
        xp = gc.placeholder("x", x.shape, x.dtype.name)
        y = fn(xp)
        (dx,) = gc.gradients(gc.sum(y * gc.constant(r)), [xp])
        fetches = [y.name, dx.name]
        if second:
            (ddx,) = gc.gradients(gc.sum(dx * gc.constant(q)), [xp])
            fetches.append(ddx.name)
    plan = gc.compile(g, fetches=fetches)
    out = Session(plan, threads=threads).run({"x": x})
    return [out[f] for f in fetches], r, q


def _torch(fn, x, r, q=None):
    xt = torch.tensor(x, requires_grad=True)
    y = fn(xt)
    (dx,) = torch.autograd.grad((y * torch.tensor(r)).sum(), xt, create_graph=q is not None)
    outs = [y.detach().numpy(), dx.detach().numpy()]
    if q is not None:
        (ddx,) = torch.autograd.grad((dx * torch.tensor(q)).sum(), xt)
        outs.append(ddx.numpy())
    return outs


def _cases():
    out = []
    for form in GELU_FORMS:
        out.append((f"gelu-{form}", lambda x, f=form: gc.gelu(x, approximate=f),
                    lambda t, f=form: TF.gelu(t, approximate=f)))
    for beta, thr in SOFTPLUS_ATTRS:
        out.append((f"softplus-{beta}-{thr}", lambda x, b=beta, t=thr: gc.softplus(x, beta=b, threshold=t),
                    lambda x, b=beta, t=thr: TF.softplus(x, beta=b, threshold=t)))
    out.append(("silu", gc.silu, TF.silu))
    return out


CASES = _cases()


def _inputs(dtype, n=2001):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-8, 8, n), rng.uniform(-1, 1, 200), np.linspace(-30, 30, 301)])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_forward_and_backward_match_torch(name, ours, theirs, dtype):
    x = _inputs(dtype)
    (y, dx), r, _ = _ours(ours, x)
    ty, tdx = _torch(theirs, x, r)
    np.testing.assert_allclose(y, ty, err_msg=f"{name} forward", **TOL[dtype])
    np.testing.assert_allclose(dx, tdx, err_msg=f"{name} backward", **TOL[dtype])


@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_second_derivative_matches_torch(name, ours, theirs):
    x = _inputs("float64", 301)
    (_, _, ddx), r, q = _ours(ours, x, second=True)
    (_, _, tddx) = _torch(theirs, x, r, q)
    # At beta·x == threshold exactly, torch's forward and first derivative take the soft branch but
    # its double backward masks with beta·x < threshold (0 there); ours stays with the soft branch.
    keep = np.ones(x.shape, bool)
    for beta, thr in SOFTPLUS_ATTRS:
        if name == f"softplus-{beta}-{thr}":
            keep = x * beta != thr  # x = -2 for beta -1.5, threshold 3
    np.testing.assert_allclose(ddx[keep], tddx[keep], rtol=1e-10, atol=1e-12, err_msg=name)


def _specials(dtype):
    info = np.finfo(dtype)
    return np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, info.max, -info.max, info.tiny, -info.tiny,
                     10.0, -10.0, 40.0, -40.0, 100.0, -100.0, 1000.0, -1000.0, 1e30, -1e30], dtype)


def _saturated(name, v):
    """(y, dy/dx) far in an activation's saturation, derived by hand, or None.

    gelu(x) = x·Φ(x): for |x| >= 40, Φ(x) rounds to 1 or 0 and x·φ(x) to 0 in any float (also in
    the tanh form: tanh(√(2/π)·(x + κx³)) rounds to ±1), so y = x or -0 and the slope 1 or 0 —
    where torch's formula meets inf·0 (x = ±inf; in the tanh form's slope once x³ overflows) and
    gives NaN.  softplus: for z = βx >= 40, log(1 + e^z)/β = x and σ(z) = 1 to rounding — also
    below a large threshold, where torch's e^z overflows to inf (y) and inf/inf (NaN slope)."""
    kind = name.split("-")[0]
    if kind == "gelu" and abs(v) >= 40:
        return (v, 1.0) if v > 0 else (-0.0, 0.0)
    if kind == "softplus" and v * META[name] >= 40:
        return v, 1.0
    return None


META = {f"softplus-{b}-{t}": b for b, t in SOFTPLUS_ATTRS}  # beta by case name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_special_values_match_torch_or_the_limit(name, ours, theirs, dtype):
    x = _specials(dtype)
    xt = torch.tensor(x, requires_grad=True)
    ty = theirs(xt)
    (tdx,) = torch.autograd.grad(ty.sum(), xt)
    ty, tdx = ty.detach().numpy(), tdx.numpy()
    with Graph() as g:
        xp = gc.placeholder("x", x.shape, dtype)
        y = ours(xp)
        (dx,) = gc.gradients(gc.sum(y), [xp])
    out = Session(gc.compile(g, fetches=[y.name, dx.name]), threads=1).run({"x": x})
    y, dx = out[y.name], out[dx.name]
    for i, v in enumerate(x):
        sat = None if np.isnan(v) else _saturated(name, float(v))
        if sat is not None:  # exact, whatever torch says
            assert y[i] == sat[0] and np.signbit(y[i]) == np.signbit(sat[0]), (name, v, y[i], ty[i])
            assert dx[i] == sat[1], (name, v, dx[i], tdx[i])
            continue
        # elsewhere torch's numbers, NaN where torch has NaN (NaN input; silu's composite slope at
        # ±inf, inf·0 as in torch), and zeros with torch's sign
        np.testing.assert_allclose(y[i], ty[i], err_msg=f"{name} y at {v}", **TOL[dtype])
        np.testing.assert_allclose(dx[i], tdx[i], err_msg=f"{name} dx at {v}", **TOL[dtype])
        if y[i] == 0:
            # torch's sign, or, for x·Φ(x) and x·σ(x) (Φ, σ > 0), the exact result's: x's (torch's
            # vectorised gelu gives +0 for x = -0 and -10 in float32 on some CPUs)
            exact_sign = name.split("-")[0] in ("gelu", "silu") and np.signbit(y[i]) == np.signbit(v)
            assert np.signbit(y[i]) == np.signbit(ty[i]) or exact_sign, (name, v, y[i], ty[i])


def test_no_nan_where_exp_overflows():
    """A threshold above log(max float) leaves e^(βx) to overflow: torch's softplus is inf and its
    gradient NaN there; ours stay at x and 1 (the values that float rounding of log(1 + e^z) gives)."""
    x = np.array([89.0, 200.0, 1e4], np.float32)
    (y, dx), r, _ = _ours(lambda t: gc.softplus(t, threshold=1e6), x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, r)


@pytest.mark.parametrize("name,ours,theirs", CASES[:-1], ids=[c[0] for c in CASES[:-1]])
def test_identical_across_thread_counts(name, ours, theirs):
    x = np.random.default_rng(5).uniform(-10, 10, (3, 70_001)).astype(np.float32)  # above the parallel grain
    one, _, _ = _ours(ours, x, threads=1)
    two, _, _ = _ours(ours, x, threads=2)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes(), name


@pytest.mark.parametrize("name,ours,theirs", CASES[:-1], ids=[c[0] for c in CASES[:-1]])
def test_identical_on_every_isa(name, ours, theirs):
    """float32 loops are compiled for baseline, AVX2 and AVX-512 (the same operations in the same
    order, no FMA contraction): every ISA the CPU has gives the baseline's bits, specials included."""
    from graphc import _runtime
    names = ["baseline", "avx2", "avx512"]
    isas = names[: names.index(_runtime.cpu_isa(detected=True)) + 1]
    x = np.concatenate([_inputs("float32"), _specials("float32")])
    try:
        results = {}
        for isa in isas:
            _runtime.set_isa(isa)
            results[isa], _, _ = _ours(ours, x)
    finally:
        _runtime.set_isa(None)
    for isa, outs in results.items():
        for a, b in zip(outs, results["baseline"]):
            assert a.tobytes() == b.tobytes(), (name, isa)


def test_float32_gelu_erf_against_float64():
    """The float32 erf form (Eigen's rational erf, runtime/cpu/activations.cc) against float64 erfc
    on a dense grid.  Φ's error is absolute: the rational is within 4.2e-7 of erf once evaluated in
    float32, so Φ = ½(1 + erf) within 2.1e-7 plus its rounding (3e-8): |gelu error| <= 2.5e-7·|x|
    plus one ulp of the result; the slope Φ + x·φ within 2.5e-7 plus x·φ's few ulp (<= 0.25):
    atol 3e-7."""
    x = np.concatenate([np.linspace(-14, 14, 280_001), np.geomspace(1e-30, 1, 2001)]).astype(np.float32)
    x = np.concatenate([x, -x])
    with Graph() as g:
        xp = gc.placeholder("x", x.shape, "float32")
        y = gc.gelu(xp)
        (dx,) = gc.gradients(y, [xp])
    out = Session(gc.compile(g, fetches=[y.name, dx.name]), threads=1).run({"x": x})
    xd = x.astype(np.float64)
    erfc = np.vectorize(math.erfc)
    cdf = 0.5 * erfc(-xd / math.sqrt(2))
    want_y = xd * cdf
    want_dx = cdf + xd * np.exp(-0.5 * xd * xd) / math.sqrt(2 * math.pi)
    err = np.abs(out[y.name] - want_y)
    bound = 2.5e-7 * np.abs(xd) + np.spacing(np.abs(want_y).astype(np.float32)).astype(np.float64)
    assert (err <= bound).all(), (x[np.argmax(err - bound)], err.max())
    np.testing.assert_allclose(out[dx.name], want_dx, rtol=0, atol=3e-7)


def test_ops_stay_one_kernel_step():
    with Graph() as g:
        x = gc.placeholder("x", (4, 5), "float32")
        y = gc.softplus(gc.gelu(x, approximate="tanh"), beta=2.0)
        (dx,) = gc.gradients(gc.sum(y), [x])
    ops = [s.op for s in gc.compile(g, fetches=[y.name, dx.name], fuse=False).proto.steps]
    assert {"gelu", "gelu_grad", "softplus", "softplus_grad"} <= set(ops), ops


def test_builder_refusals():
    with Graph():
        x = gc.placeholder("x", (3,), "float32")
        with pytest.raises(GraphError, match="approximate='erf'"):
            gc.gelu(x, approximate="erf")
        with pytest.raises(GraphError, match="beta=0"):
            gc.softplus(x, beta=0)
        with pytest.raises(GraphError, match="beta=inf"):
            gc.softplus(x, beta=math.inf)
        with pytest.raises(GraphError, match="threshold=nan"):
            gc.softplus(x, threshold=math.nan)
        with pytest.raises(GraphError, match="must be a number"):
            gc.softplus(x, beta="2")
        xi = gc.placeholder("xi", (3,), "int32")
        with pytest.raises(GraphError, match="gelu"):
            gc.gelu(xi)
        with pytest.raises(GraphError, match="approximate"):  # the declaration's own check (a .pb's attrs)
            xp = gc.placeholder("x2", (3,), "float32")
            xp.graph.add_node("gelu", [xp], {"approximate": "fast"})


def _tampered(op_name, build, edit):
    with Graph() as g:
        x = gc.placeholder("x", (3, 4), "float32")
        y = build(x)
        (dx,) = gc.gradients(gc.sum(y), [x])
    proto = gc.compile(g, fetches=[y.name, dx.name], fuse=False).proto
    for step in proto.steps:
        if step.op == op_name:
            edit(step.attrs)
    return proto


def _set_s(key, v):
    def edit(a):
        a[key].s = v
    return edit


def _set_f(key, v):
    def edit(a):
        a[key].f = v
    return edit


@pytest.mark.parametrize("op_name,build,edit,match", [
    ("gelu", gc.gelu, _set_s("approximate", "fast"), "attr 'approximate' must be"),
    ("gelu_grad", gc.gelu, _set_s("approximate", "fast"), "attr 'approximate' must be"),
    ("softplus", gc.softplus, _set_f("beta", 0.0), "attr 'beta' must be finite and nonzero"),
    ("softplus_grad", gc.softplus, _set_f("beta", math.inf), "attr 'beta' must be finite and nonzero"),
    ("softplus", gc.softplus, _set_f("threshold", math.nan), "attr 'threshold' must be a number"),
])
def test_kernel_refuses_tampered_attrs(op_name, build, edit, match):
    proto = _tampered(op_name, build, edit)
    with pytest.raises(ModelFormatError, match=match):
        Session(proto).run({"x": np.ones((3, 4), np.float32)})
