"""Run-time ISA dispatch (runtime/cpu/isa.h): detection, the GRAPHC_ISA / set_isa cap, and
the promise that makes the choice safe: every ISA build of the elementwise, reduction and
fused-program loops computes identical bits, at any thread count."""

import os
import textwrap

import numpy as np
import pytest
from subproc import run_python

import graphc as gc
from graphc import _runtime
from graphc.graph import Graph
from graphc.ops._common import special
from graphc.session import Session

NAMES = ["baseline", "avx2", "avx512"]
DETECTED = _runtime.cpu_isa(detected=True)
ISAS = NAMES[: NAMES.index(DETECTED) + 1]


@pytest.fixture(autouse=True)
def _no_isa_cap():
    yield
    _runtime.set_isa(None)


def test_names():
    assert DETECTED in NAMES
    assert _runtime.cpu_isa() in NAMES
    assert NAMES.index(_runtime.cpu_isa()) <= NAMES.index(DETECTED)


@pytest.mark.skipif("GRAPHC_ISA" in os.environ, reason="GRAPHC_ISA caps the ISA in this run")
def test_no_cap_uses_the_best_detected():
    assert _runtime.cpu_isa() == DETECTED


@pytest.mark.parametrize("name", NAMES)
def test_set_isa_caps_never_raises_above_the_cpu(name):
    _runtime.set_isa(name)
    assert _runtime.cpu_isa() == NAMES[min(NAMES.index(name), NAMES.index(DETECTED))]
    assert _runtime.cpu_isa(detected=True) == DETECTED


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="baseline, avx2, avx512; got 'sse9'"):
        _runtime.set_isa("sse9")


def _subprocess(code, env_isa):
    return run_python(textwrap.dedent(code), env=dict(os.environ, GRAPHC_ISA=env_isa))


_SESSION_CODE = """
    import numpy as np, graphc as gc
    from graphc import _runtime
    from graphc.graph import Graph
    from graphc.session import Session
    print(_runtime.cpu_isa(detected=True))
    try:
        print(_runtime.cpu_isa())
    except ValueError as e:
        print("cpu_isa:", e)
    with Graph() as g:
        x = gc.placeholder("x", (3,))
        y = gc.relu(x + x)
    plan = gc.compile(g, shapes={}, fetches=[y.name])
    try:
        print(Session(plan).run({"x": np.array([-1, 0, 2], np.float32)})[y.name].tolist())
    except gc.errors.GraphcError as e:
        print("session:", type(e).__name__, e)
"""


@pytest.mark.parametrize("name", NAMES)
def test_env_caps(name):
    r = _subprocess(_SESSION_CODE, name)
    assert r.returncode == 0, r.stderr
    detected, active, result = r.stdout.splitlines()
    assert active == NAMES[min(NAMES.index(name), NAMES.index(detected))]
    assert result == "[0.0, 0.0, 4.0]"


def test_env_bad_value_fails_loudly():
    r = _subprocess(_SESSION_CODE, "avx3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].startswith("cpu_isa: GRAPHC_ISA must be one of baseline, avx2, avx512; got 'avx3'"), lines
    assert lines[2].startswith("session: ") and "GRAPHC_ISA" in lines[2], lines


# -- identical bits on every ISA -------------------------------------------------------------

def _cases():
    """(name, build(xs) -> tensor, input shapes): the ISA-dispatched kernels on sizes that
    cross the vector, lane (16), block (4096) and parallel-grain boundaries."""
    return [
        ("add", lambda xs: xs[0] + xs[1], [(257, 301), (301,)]),
        ("add_scalar", lambda xs: xs[0] + xs[1], [(70001,), ()]),
        ("sub", lambda xs: xs[1] - xs[0], [(3, 1), (3, 5)]),
        ("mul", lambda xs: xs[0] * xs[1], [(73, 1, 5), (4, 1)]),
        ("div", lambda xs: xs[0] / xs[1], [(70001,), (70001,)]),
        ("maximum", lambda xs: gc.maximum(xs[0], xs[1]), [(1031,), (1031,)]),
        ("minimum", lambda xs: gc.minimum(xs[0], xs[1]), [(17, 19), (17, 1)]),
        ("relu", lambda xs: gc.relu(xs[0]), [(70001,)]),
        ("abs_neg", lambda xs: -gc.abs(xs[0]), [(1031,)]),
        ("sigmoid", lambda xs: gc.sigmoid(xs[0]), [(5003,)]),
        ("tanh_exp_log_sqrt", lambda xs: gc.tanh(gc.exp(xs[0])) + gc.log(xs[0]) + gc.sqrt(xs[0]), [(2049,)]),
        ("pow", lambda xs: gc.pow(xs[0], 3.0) + gc.pow(xs[0], 0.5), [(2049,)]),
        ("sum_all", lambda xs: gc.sum(xs[0]), [(100003,)]),
        ("sum_rows", lambda xs: gc.sum(xs[0], axis=1), [(7, 10007)]),
        ("sum_cols", lambda xs: gc.sum(xs[0], axis=0), [(1001, 37)]),
        ("sum_small", lambda xs: gc.sum(xs[0], axis=-1, keepdims=True), [(5, 15)]),
        ("mean_all", lambda xs: gc.mean(xs[0]), [(3, 33333)]),
        ("mean_mid", lambda xs: gc.mean(xs[0], axis=1), [(3, 4099, 5)]),
        ("max_all", lambda xs: gc.max(xs[0]), [(100003,)]),
        ("max_rows", lambda xs: gc.max(xs[0], axis=1), [(9, 4111)]),
        ("max_cols", lambda xs: gc.max(xs[0], axis=0), [(513, 31)]),
    ]


def same_bits(a, b):
    """Identical bits, except that any NaN equals any NaN: where two NaN operands meet (inf - inf
    + NaN), IEEE leaves which payload and sign comes out open, x86 returns the first operand's,
    and the compiler may commute an add differently in each ISA's build."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if not np.array_equal(nan_a, nan_b):
        return False
    ints = {4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    return np.array_equal(a.view(ints)[~nan_a], b.view(ints)[~nan_b])


def _plan(build, shapes, dtype, fuse=False):
    with Graph() as g:
        xs = [gc.placeholder(f"x{i}", s, dtype) for i, s in enumerate(shapes)]
        y = build(xs)
    return gc.compile(g, shapes={}, fetches=[y.name], fuse=fuse), y.name


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_identical_bits_on_every_isa_and_thread_count(case, dtype, fuse):
    """Unfused: the standalone kernels; fused: chains become fused_elementwise steps."""
    name, build, shapes = case
    plan, out = _plan(build, shapes, dtype, fuse)
    rng = np.random.default_rng(0)
    positive = name.startswith(("tanh", "pow"))
    feeds_list = [{f"x{i}": rng.uniform(0.1 if positive else -2, 2, s).astype(dtype) for i, s in enumerate(shapes)},
                  {f"x{i}": special(rng, s, dtype, extremes=False) for i, s in enumerate(shapes)}]
    firsts = []
    for feeds in feeds_list:
        results = {}
        for isa in ISAS:
            _runtime.set_isa(isa)
            for threads in (1, 2):
                results[isa, threads] = Session(plan, threads=threads).run(feeds)[out]
        _runtime.set_isa(None)
        first = results["baseline", 1]
        firsts.append(first)
        for key, r in results.items():
            assert same_bits(r, first), f"{name} {dtype}: {key} differs from baseline threads=1"
            if key[0] == "baseline":
                assert r.tobytes() == first.tobytes(), f"{name} {dtype}: threads change the bits, NaN included"
    # And the values are right (the reductions' lane order is not numpy's: a tolerance).
    feeds, first = feeds_list[0], firsts[0]
    with np.errstate(all="ignore"):
        want = {
            "sum_all": lambda x: x.astype(np.float64).sum(), "sum_rows": lambda x: x.astype(np.float64).sum(1),
            "max_all": lambda x: x.max(), "mean_all": lambda x: x.astype(np.float64).mean(),
        }.get(name)
    if want is not None:
        np.testing.assert_allclose(first, want(feeds["x0"]), rtol=1e-6 if dtype == "float32" else 1e-12)


@pytest.mark.skipif(len(ISAS) == 1, reason=f"CPU has only the baseline ISA ({DETECTED})")
def test_kernels_built_before_a_cap_keep_their_isa():
    """The ISA is picked when a Session builds its kernels: capping later changes nothing
    for it (and, by the identity above, not its results)."""
    plan, out = _plan(lambda xs: gc.relu(xs[0]), [(1000,)], "float32")
    s = Session(plan)
    _runtime.set_isa("baseline")
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    np.testing.assert_array_equal(s.run({"x0": x})[out], np.maximum(x, 0))


def _ulps(got, want64):
    """|got - round(want64)| in float32 units in the last place (ints of the bit patterns;
    both finite)."""
    want = want64.astype(np.float32)
    return np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))


@pytest.mark.parametrize("op,ref,max_ulp", [
    ("exp", np.exp, 1),
    ("log", np.log, 1),
    ("tanh", np.tanh, 1),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), 2),
])
def test_float32_transcendentals_within_stated_ulps(op, ref, max_ulp):
    """exp_f32 / log_f32 / tanh_f32 (runtime/cpu/elementwise_ops.h) replace glibc's calls for
    float32: within max_ulp of the correctly rounded result on a dense grid that reaches the
    overflow, underflow and subnormal results (log: every 2039th positive float32 bit pattern,
    subnormals included, and [0.5, 2] densely), and exact at the special values; on every ISA."""
    grid = np.concatenate([np.linspace(-110, 95, 400_001), np.geomspace(1e-38, 1, 20_001),
                           -np.geomspace(1e-38, 1, 20_001)]).astype(np.float32)
    if op == "log":
        grid = np.concatenate([np.arange(1, 0x7F800000, 2039, dtype=np.int64).astype(np.int32).view(np.float32),
                               np.linspace(0.5, 2, 200_001, dtype=np.float32), -grid[:1000]])
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, 3.4e38, -3.4e38], np.float32)
    x = np.concatenate([grid, specials])
    plan, out = _plan(lambda xs: getattr(gc, op)(xs[0]), [x.shape], "float32")
    with np.errstate(all="ignore"):
        want64 = ref(x.astype(np.float64))
        want32 = want64.astype(np.float32)  # exp's overflow to inf
    for isa in ISAS:
        _runtime.set_isa(isa)
        got = Session(plan).run({"x0": x})[out]
        fin = np.isfinite(want32)
        assert _ulps(got[fin], want64[fin]).max() <= max_ulp, (isa, x[fin][_ulps(got[fin], want64[fin]).argmax()])
        np.testing.assert_array_equal(got[~fin], want32[~fin])
        n = len(specials)
        # the sign of a NaN result is unspecified (IEEE 754 6.3): numpy's log gives +NaN on one
        # CPU and -NaN on another; every other special value's sign is checked
        signed = ~np.isnan(want32[-n:])
        np.testing.assert_array_equal(np.signbit(got[-n:])[signed], np.signbit(want32[-n:])[signed])
