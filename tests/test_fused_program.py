"""The C++ fused-program interpreter (runtime/cpu/fused_program.h) through the
fused_elementwise kernel: every member op inside a program computes the very bits of its
standalone kernel, on odd sizes, size 0, size 1, broadcasting, NaN/inf, across the tile and
thread boundaries, on every ISA this CPU has, at threads 1 and 2; chains match the unfused
chain bit for bit; an output that takes over an input's bytes; and the kernel's own checks of
programs the Python side never emits (a hostile or stale plan)."""

import re

import numpy as np
import pytest
from test_isa import same_bits

import graphc as gc
from graphc import _runtime, errors
from graphc.graph import Graph
from graphc.ops._common import special
from graphc.ops.fused import _FE_PROGRAMS, fusible_ops, parse_program
from graphc.session import Session

ISA_ORDER = ["baseline", "avx2", "avx512"]
ISAS = ISA_ORDER[: ISA_ORDER.index(_runtime.cpu_isa(detected=True)) + 1]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "relu_grad"]
UNARY = ["abs", "neg", "exp", "log", "sqrt", "relu", "sigmoid", "tanh"]
POW_EXPONENTS = [2.0, 0.5, -1.5, 3.0, 0.0, -1e-05]
DTYPES = ["float32", "float64"]


@pytest.fixture(autouse=True)
def _no_isa_cap():
    yield
    _runtime.set_isa(None)


def _isa_params(isa):
    """An ISA for pytest.param, skipped (with the reason) when this CPU lacks it."""
    marks = [] if isa in ISAS else [pytest.mark.skip(reason=f"CPU lacks {isa} (detected: {ISAS[-1]})")]
    return pytest.param(isa, marks=marks, id=isa)


def _plan(build, shapes, dtype, fuse=True):
    """Compile a graph of placeholders x0, x1, ... of ``shapes`` mapped by ``build(g, xs)``."""
    with Graph() as g:
        xs = [gc.placeholder(f"x{i}", s, dtype) for i, s in enumerate(shapes)]
        y = build(g, xs)
    return gc.compile(g, shapes={}, fetches=[y.name], fuse=fuse), y.name


def _fused_plan(program, shapes, dtype):
    return _plan(lambda g, xs: g.add_node("fused_elementwise", xs, {"program": program})[0], shapes, dtype)


def _unfused_plan(program, shapes, dtype):
    """The program's members as separate nodes: what the fusion pass replaces."""
    def build(g, xs):
        regs = []
        for ins in parse_program(program, len(xs)):
            args = [regs[n] if kind == "r" else xs[n] for kind, n in ins.args]
            regs.append(g.add_node(ins.op, args, ins.attrs)[0])
        return regs[-1]
    plan, name = _plan(build, shapes, dtype, fuse=False)
    assert not any(s.op.startswith("fused_") for s in plan.proto.steps), "the compiler fused the members"
    return plan, name


def _run(plan_name, feeds, isa, threads):
    plan, name = plan_name
    _runtime.set_isa(isa)
    try:
        s = Session(plan, threads=threads)
        # Random programs may leave inputs that only dead registers read: the unfused plan drops them.
        return s.run({k: v for k, v in feeds.items() if k in s.feed_names})[name]
    finally:
        _runtime.set_isa(None)


def _feeds(rng, shapes, dtype, specials=False, positive=False):
    out = {}
    for i, s in enumerate(shapes):
        if specials:
            x = special(rng, s, dtype)
        else:
            x = rng.uniform(0.1 if positive else -2.0, 2.0, size=s).astype(dtype)
        out[f"x{i}"] = x
    return out


def _same_bits(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, a.shape, b.dtype, b.shape)
    assert a.tobytes() == b.tobytes(), f"{what}: bits differ\n{a!r}\n{b!r}"


def _check_against_unfused(program, shapes, dtype, rng, isas=ISAS, specials=True, check_ref=True):
    """The fused program vs the unfused members, bit for bit, on random and special values,
    every ISA in isas, threads 1 and 2; and against the numpy reference (the registry's)."""
    fused = _fused_plan(program, shapes, dtype)
    unfused = _unfused_plan(program, shapes, dtype)
    kinds = [False, True] if specials else [False]
    for sp in kinds:
        feeds = _feeds(rng, shapes, dtype, specials=sp)
        want = _run(unfused, feeds, "baseline", 1)
        for isa in isas:
            want_isa = _run(unfused, feeds, isa, 1)
            # The standalone kernels are identical on every ISA (but for NaN payloads: test_isa).
            assert same_bits(want_isa, want), f"unfused {program} {shapes} {dtype}: isa={isa} differs from baseline"
            for threads in (1, 2):
                got = _run(fused, feeds, isa, threads)
                _same_bits(got, want_isa, f"{program} {shapes} {dtype} isa={isa} threads={threads} specials={sp}")
        if not check_ref:
            continue
        ref = gc.ops.fused._fe_ref([feeds[f"x{i}"] for i in range(len(shapes))], {"program": program})
        # numpy's exp/log/tanh are not libm's: the reference agrees to rounding (test_kernels' tolerance).
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(want, ref, equal_nan=True, **tol)


def test_fused_ops_is_the_registry_fusible_set():
    assert _runtime.fused_ops() == fusible_ops()


# Shapes per arity: odd, the tile size 512 +- 1, several tiles, size 0, size 1, rank 0 and
# broadcasting of every kind (trailing, leading, both ways, scalar).
UNARY_SHAPES = [[(73, 5)], [(511,)], [(513,)], [(3, 1031)], [(0, 3)], [(1,)], [()]]
BINARY_SHAPES = [
    [(73, 5), (73, 5)], [(513,), (513,)], [(3, 1031), (3, 1031)], [(0, 3), (0, 3)], [(1,), (1,)], [(), ()],
    [(73, 5), (5,)], [(5,), (73, 5)], [(7, 1, 3), (4, 1)], [(1, 1), (600, 3)], [(), (37, 29)], [(37, 29), (1,)],
    [(0, 3), (3,)]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", UNARY)
def test_unary_member_matches_standalone_kernel(op, dtype):
    rng = np.random.default_rng(abs(hash((op, dtype))) % 2**32)
    for shapes in UNARY_SHAPES:
        _check_against_unfused(f"r0={op}(i0)", shapes, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("exponent", POW_EXPONENTS)
def test_pow_member_matches_standalone_kernel(exponent, dtype):
    rng = np.random.default_rng(7)
    program = f"r0=pow[exponent={exponent!r}](i0)"
    for shapes in UNARY_SHAPES:
        _check_against_unfused(program, shapes, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", BINARY)
def test_binary_member_matches_standalone_kernel(op, dtype):
    rng = np.random.default_rng(3)
    for shapes in BINARY_SHAPES:
        if op == "relu_grad" and shapes[0] != shapes[1]:
            continue  # the standalone relu_grad takes equal shapes (the fused one broadcasts)
        _check_against_unfused(f"r0={op}(i0,i1)", shapes, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_grad_broadcasts_inside_a_program(dtype):
    rng = np.random.default_rng(4)
    shapes = [(37, 29), (29,)]
    feeds = _feeds(rng, shapes, dtype, specials=True)
    plan = _fused_plan("r0=relu_grad(i0,i1)", shapes, dtype)
    got = _run(plan, feeds, ISAS[-1], 2)
    g, x = feeds["x0"], np.broadcast_to(feeds["x1"], shapes[0])
    _same_bits(got, np.where(x > 0, g, np.zeros((), dtype)).astype(dtype), "relu_grad broadcast")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("program,n", _FE_PROGRAMS, ids=[p for p, _ in _FE_PROGRAMS])
def test_chains_match_the_unfused_chain(program, n, dtype):
    rng = np.random.default_rng(5)
    for shapes in [[(5, 3)] * n, [(1,)] * n, [(0, 3)] * n, [(1000, 7)] * n, [(73, 5)] + [(5,)] * (n - 1),
                   [(7, 1, 3)] + [(4, 1)] * (n - 1), [(300, 1)] + [(1, 9)] * (n - 1)]:
        if "relu_grad" in program and len(set(shapes)) > 1:
            continue  # the unfused relu_grad takes equal shapes
        _check_against_unfused(program, shapes, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_channel_inputs_within_and_across_rows(dtype):
    """NCHW with (C, 1, 1) scale and shift (batch norm's inference form): a tile inside one H*W
    run reads them as scalars, a tile across runs gathers them; both give the unfused bits.
    H*W of 1024 (tiles within a run), 63 (every tile crosses runs) and 700 (both kinds).
    Finite values only: with NaN in both operands of an add the unfused broadcast kernel may
    return the other operand's NaN (payload and sign differ; NaN-ness does not), on either path."""
    rng = np.random.default_rng(9)
    program = "r0=mul(i0,i1);r1=add(r0,i2);r2=relu(r1)"
    for hw in [(32, 32), (7, 9), (25, 28)]:
        c = 5
        _check_against_unfused(program, [(3, c) + hw, (c, 1, 1), (c, 1, 1)], dtype, rng, specials=False)
        # the per-channel input first, the full one second (operand order does not matter)
        _check_against_unfused("r0=mul(i0,i1);r1=sub(r0,i2)", [(c, 1, 1), (2, c) + hw, (c, 1, 1)], dtype, rng,
                               specials=False)


def test_registers_reused_and_inputs_read_twice():
    rng = np.random.default_rng(6)
    program = "r0=mul(i0,i0);r1=add(r0,i1);r2=mul(r1,r0);r3=sub(r2,i0);r4=div(r3,r1);r5=maximum(r4,r0)"
    _check_against_unfused(program, [(129, 17), (17,)], "float32", rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_parallel_split_identical_across_threads(dtype):
    """Enough elements that threads=2 really splits (the cheap grain is 32768 elements)."""
    rng = np.random.default_rng(8)
    _check_against_unfused("r0=add(i0,i1);r1=relu(r0);r2=mul(r1,i1)", [(301, 407), (407,)], dtype, rng,
                           specials=False)
    _check_against_unfused("r0=tanh(i0);r1=sigmoid(r0)", [(70001,)], dtype, rng, specials=False)


def test_output_takes_over_an_input():
    """The planner lets an elementwise output take a dying input's bytes: exp(x)'s buffer is
    fused_elementwise's output here, read and written in place by every tile."""
    rng = np.random.default_rng(9)
    program = "r0=mul(i0,i1);r1=add(r0,i0);r2=tanh(r1)"
    with Graph() as g:
        x = gc.placeholder("x", (2000, 3))
        b = gc.placeholder("b", (3,))
        h = gc.exp(x)
        y = g.add_node("fused_elementwise", [h, b], {"program": program})[0]
    plan = gc.compile(g, shapes={}, fetches=[y.name])
    steps = list(plan.proto.steps)
    fe = next(s for s in steps if s.op == "fused_elementwise")
    vals = plan.proto.values
    assert vals[fe.outputs[0]].offset == vals[fe.inputs[0]].offset, "the planner no longer works in place here"
    feeds = {"x": rng.uniform(-2, 2, (2000, 3)).astype(np.float32), "b": rng.uniform(-2, 2, 3).astype(np.float32)}
    with Graph() as g2:
        x2 = gc.placeholder("x", (2000, 3))
        b2 = gc.placeholder("b", (3,))
        h2 = gc.exp(x2)
        y2 = gc.tanh(h2 * b2 + h2)
    want = Session(gc.compile(g2, shapes={}, fetches=[y2.name])).run(feeds)[y2.name]
    for isa in ISAS:
        for threads in (1, 2):
            _same_bits(_run((plan, y.name), feeds, isa, threads), want, f"in place isa={isa} threads={threads}")


BAD_PROGRAMS = [
    ("", "empty"),
    ("r0=foo(i0)", "unknown op 'foo'"),
    ("r1=relu(i0)", "defines r1"),
    ("r0=relu(i0);r1=add(r1,i0)", "r1 is not defined yet"),
    ("r0=relu(i0);r1=add(r5,i0)", "r5 is not defined yet"),
    ("r0=relu(i2)", "input i2 is out of range [0, 2)"),
    ("r0=add(i0)", "add takes 2 inputs, got 1"),
    ("r0=relu(i0,i1)", "relu takes 1 inputs, got 2"),
    ("r0=relu(p)", "only allowed in fused_matmul"),
    ("r0=relu(x0)", "bad argument 'x0'"),
    ("r0=relu(i)", "bad argument 'i'"),
    ("r0=relu(i-1)", "bad argument 'i-1'"),
    ("r0=relu(i99999999999)", "bad argument"),
    ("r0=pow(i0)", "pow needs the attr exponent"),
    ("r0=pow[exponent=abc](i0)", "is not a number"),
    ("r0=pow[exponent=](i0)", "is not a number"),
    ("r0=pow[exponent=2.0,exponent=3.0](i0)", "given twice"),
    ("r0=pow[alpha=2.0](i0)", "has no attr 'alpha'"),
    ("r0=relu[exponent=2.0](i0)", "has no attr 'exponent'"),
    ("r0=pow[exponent=2.0(i0)", "attrs must be written"),
    ("r0=relu(i0);", "is not of the form"),
    ("r0relu(i0)", "is not of the form"),
    ("r0=relu i0", "is not of the form"),
    ("r0=add(i0,i1));r1=relu(r0)", "bad argument"),
]


@pytest.mark.parametrize("program,message", BAD_PROGRAMS, ids=[m for _, m in BAD_PROGRAMS])
def test_kernel_rejects_bad_programs(program, message):
    """Programs the Python side never emits (it parses them first): a plan edited by hand or
    by another tool reaches the kernel's own parser, which names the statement at fault."""
    plan, _ = _fused_plan("r0=add(i0,i1)", [(4,), (4,)], "float32")
    proto = type(plan.proto)()
    proto.CopyFrom(plan.proto)
    step = next(s for s in proto.steps if s.op == "fused_elementwise")
    step.attrs["program"].s = program
    with pytest.raises(errors.ModelFormatError) as e:
        Session(proto)
    assert message in str(e.value) and "fused_elementwise" in str(e.value), str(e.value)


def test_kernel_checks_broadcast_and_dtype():
    """The kernel's own shape checks: an output that is not the inputs' broadcast."""
    plan, _ = _fused_plan("r0=add(i0,i1)", [(4, 3), (1, 3)], "float32")
    proto = type(plan.proto)()
    proto.CopyFrom(plan.proto)
    step = next(s for s in proto.steps if s.op == "fused_elementwise")
    v = proto.values[step.inputs[1]]
    del v.dims[:]
    v.dims.extend([3, 1])  # same bytes, no longer broadcasts to (4, 3)
    with pytest.raises(errors.GraphcError) as e:
        Session(proto)
    assert "broadcast" in str(e.value) or "shape" in str(e.value), str(e.value)


def test_number_attrs_round_trip_exactly():
    """pow's exponent goes through Python's repr and C's strtod: exact, also for values with
    no short decimal form, negative zero and inf."""
    rng = np.random.default_rng(10)
    for e in [1 / 3, -2.5e-07, 1e300, float("inf"), -0.0, 2.0**-1074]:
        _check_against_unfused(f"r0=pow[exponent={e!r}](i0)", [(37,)], "float64", rng)


def _random_program(rng, num_inputs, length, ops):
    """A random valid program: each statement a random member over inputs and earlier registers
    (some registers never read, some read many statements later or twice)."""
    stmts = []
    for k in range(length):
        op = ops[rng.integers(len(ops))]
        arity = 2 if op in BINARY else 1
        args = []
        for _ in range(arity):
            if k and rng.random() < 0.7:
                args.append(f"r{rng.integers(k)}")
            else:
                args.append(f"i{rng.integers(num_inputs)}")
        attrs = f"[exponent={[2.0, 0.5, 3.0, -1.0][rng.integers(4)]!r}]" if op == "pow" else ""
        stmts.append(f"r{k}={op}{attrs}({','.join(args)})")
    program = ";".join(stmts)
    # Renumber the inputs the program names to 0..m-1 (the compiler drops unread placeholders).
    used = sorted({int(m) for m in re.findall(r"i(\d+)", program)})
    program = re.sub(r"i(\d+)", lambda m: f"i{used.index(int(m.group(1)))}", program)
    return program, used


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_match_the_unfused_chain(seed):
    """Register buffers are reused once a register is dead: random programs up to 40 statements
    long (dead registers, late and repeated reads) against the unfused members, bit for bit."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 4))
    length = int(rng.integers(1, 41))
    broadcast = seed % 2 == 1
    ops = [o for o in BINARY + UNARY + ["pow"] if not (broadcast and o == "relu_grad")]
    program, used = _random_program(rng, n, length, ops)
    all_shapes = [(700, 3)] + ([(3,)] * (n - 1) if broadcast else [(700, 3)] * (n - 1))
    shapes = [all_shapes[i] for i in used]
    # No reference check: 1-ulp differences between numpy's exp and ours grow along random chains.
    _check_against_unfused(program, shapes, ["float32", "float64"][seed % 3 == 0], rng, isas=[ISAS[-1]],
                           check_ref=False)
