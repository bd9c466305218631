"""The collective ops (allreduce_start / allreduce_wait), the registry properties they introduce
(alias, contiguous_inputs, schedule) and the optimizer updates' grad_scale attr.

- the registry: properties as declared, refusals of malformed declarations, inference;
- runtime/op_schema.h: the properties reach C++ (tests/collective_driver.cc prints them);
- the CPU kernels against a fake communicator (tests/collective_driver.cc, built with g++ from
  runtime/cpu/collective.cc alone): the range handed to the communicator (padding included),
  prepare at load, the sum only after wait, no-ops without a communicator / in a world of one /
  in a dry prepare, the refusals (not contiguous, not in place, mixed dtypes, arity, bucket < 0),
  a failing communicator's message passed through;
- grad_scale: the update kernels on every device give exactly the bits of feeding g · grad_scale
  with grad_scale 1, and match the reference.
The kernels against the registry's reference run in tests/test_kernels.py (every registry op).
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from single_op import single_op_graph

import graphc as gc
from graphc import registry, schema_codegen
from graphc.errors import AotError, DTypeError, RegistryError, ShapeError
from graphc.registry import Example

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIVES = ("allreduce_start", "allreduce_wait")
UPDATES = ("sgd_update", "sgd_momentum_update", "adam_update")


# -- registry -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,schedule", [("allreduce_start", "asap"), ("allreduce_wait", "alap")])
def test_collective_properties(name, schedule):
    op = registry.get_op(name)
    assert op.variadic and not op.differentiable and op.contiguous_inputs
    assert op.schedule == schedule
    assert op.alias == registry.ALIAS_EACH
    assert op.alias_map(3) == {0: 0, 1: 1, 2: 2}
    assert op.alias_map(1) == {0: 0}
    assert not op.view and not op.inplace and set(op.kernels) == {"cpu", "cuda"}
    assert op.dispatch_dtypes == ("float32", "float64")


def test_other_ops_have_no_new_properties():
    for op in registry.all_ops():
        if op.name in COLLECTIVES:
            continue
        assert op.alias_map(4) == {}, op.name
        assert not op.contiguous_inputs and op.schedule is None, op.name


def _declare(name, **kw):
    args = dict(doc="a test op", inputs=[("x", ("float32",))], infer=lambda ctx: (ctx.dtype(0), ctx.shape(0)),
                reference=lambda inputs, attrs: inputs[0], examples=lambda rng: [Example([np.zeros(2, np.float32)])],
                differentiable=False)
    args.update(kw)
    return registry.register_op(name, **args)


@pytest.mark.parametrize("kw,match", [
    ({"schedule": "soon"}, "schedule='soon'"),
    ({"alias": {0: 1}}, "beyond its 1 inputs"),
    ({"alias": {0: -1}}, "int indices"),
    ({"alias": {"0": 0}}, "int indices"),
    ({"alias": [0]}, "int indices"),
    ({"alias": registry.ALIAS_EACH}, "for variadic ops"),
    ({"alias": {0: 0}, "view": True}, "excludes view"),
    ({"alias": {0: 0}, "elementwise": True}, "excludes view"),
    ({"alias": {0: 0}, "inplace": {0: 0}}, "both inplace and alias"),
    ({"contiguous_inputs": True, "inputs": []}, "needs a kernel op with inputs"),
])
def test_register_op_refuses_malformed_properties(kw, match):
    with pytest.raises(RegistryError, match=match):
        _declare("bad_collective_op", **kw)
    assert not registry.has_op("bad_collective_op")


def _collective(op_name, values, bucket=0):
    with gc.Graph():
        ins = [gc.placeholder(f"g{k}", v.shape, v.dtype.name) for k, v in enumerate(values)]
        build = getattr(gc.ops, op_name)
        return build(ins, bucket=bucket)


@pytest.mark.parametrize("name", COLLECTIVES)
def test_inference_keeps_each_input_type(name):
    outs = _collective(name, [np.zeros((2, 3), np.float64), np.zeros((), np.float64), np.zeros((0,), np.float64)])
    assert isinstance(outs, tuple) and len(outs) == 3
    assert [(t.dtype, t.shape) for t in outs] == [("float64", (2, 3)), ("float64", ()), ("float64", (0,))]
    one = _collective(name, [np.zeros(4, np.float32)], bucket=7)
    assert isinstance(one, tuple) and len(one) == 1 and one[0].shape == (4,)


@pytest.mark.parametrize("name", COLLECTIVES)
def test_inference_refusals(name):
    with pytest.raises(ShapeError, match=r"bucket in \[0, 2\^31\) \(a communicator slot\), got -1"):
        _collective(name, [np.zeros(3, np.float32)], bucket=-1)
    with pytest.raises(ShapeError, match=r"got 2147483648"):
        _collective(name, [np.zeros(3, np.float32)], bucket=2 ** 31)
    with pytest.raises(DTypeError, match="of one dtype"):
        _collective(name, [np.zeros(3, np.float32), np.zeros(3, np.float64)])
    with pytest.raises(DTypeError, match="float32/float64"):
        _collective(name, [np.zeros(3, np.int32)])


@pytest.mark.parametrize("name", COLLECTIVES)
def test_reference_is_the_sum_over_a_world_of_one(name):
    op = registry.get_op(name)
    xs = [np.arange(5, dtype=np.float32), np.array([np.nan, -0.0, np.inf], np.float32)]
    out = op.evaluate(xs, {"bucket": 0})
    assert len(out) == 2
    for a, b in zip(out, xs):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes() and a is not b


@pytest.mark.parametrize("name", UPDATES)
def test_grad_scale_attr_declared(name):
    spec = registry.get_op(name).attrs["grad_scale"]
    assert spec.kind == "float" and spec.default == 1.0
    assert "grad_scale = 1.0;" in schema_codegen.generate().split(f"struct {schema_codegen._camel(name)} {{")[1]


# -- C++: the generated schema and the CPU kernels against a fake communicator -------------------

@pytest.fixture(scope="session")
def driver(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the collective test driver cannot be built")
    exe = str(tmp_path_factory.mktemp("collective") / "collective_driver")
    sanitize = ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"] \
        if os.environ.get("GRAPHC_SANITIZE") == "1" else []
    sources = ["tests/collective_driver.cc", "runtime/cpu/collective.cc", "runtime/kernel_registry.cc"]
    cmd = [cxx, "-O1", "-std=c++17", "-pthread", "-Wall", "-Werror", *sanitize, "-I", os.path.join(ROOT, "runtime"),
           *[os.path.join(ROOT, s) for s in sources], "-o", exe]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def run_case(driver, case):
    out = subprocess.run([driver, case], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_schema_header_carries_the_properties(driver):
    lines = run_case(driver, "schema")
    assert lines == [
        "allreduce_start alias_each=1 num_alias=0 contiguous=1 schedule=1 alias_input(0)=0 alias_input(5)=5",
        "allreduce_wait alias_each=1 num_alias=0 contiguous=1 schedule=2 alias_input(0)=0 alias_input(5)=5",
        "sgd_update alias_each=0 num_alias=0 contiguous=0 schedule=0 alias_input(0)=-1 alias_input(5)=-1",
    ]


def _values(line):
    """'stage [a,b] [] [c] pad=P after=A' -> ([[a, b], [], [c]], P, A)."""
    members = [[float(v) for v in m.split(",") if v] for m in re.findall(r"\[([^\]]*)\]", line)]
    tail = dict(kv.split("=") for kv in line.rsplit("] ", 1)[1].split())
    return members, float(tail["pad"]), float(tail["after"])


@pytest.mark.parametrize("case,nbytes,count,dtype", [("f32", 132, 33, 1), ("f64", 136, 17, 2)])
def test_kernels_reduce_the_bucket_range_in_place(driver, case, nbytes, count, dtype):
    lines = run_case(driver, case)
    assert lines[1] == f"prepare slot=3 nbytes={nbytes} stream=null"  # at load, once, padding included
    assert lines[2] == "prepared"
    before = _values(lines[0])
    assert lines[3] == f"start slot=3 count={count} dtype={dtype} stream=null"
    assert _values(lines[4]) == before  # nothing is read from the sum before the wait
    assert lines[5] == "wait slot=3 stream=null pending=1"
    members, pad, after = _values(lines[6])
    assert members == [[2 * v for v in m] for m in before[0]]  # the fake world of 2 equal ranks: x + x
    assert pad == 2 * before[1]  # the padding between members travels with the range (never read)
    assert after == before[2]  # nothing past the last member
    assert lines[7] == lines[3] and lines[9] == lines[5]  # every run calls the communicator again
    assert _values(lines[10])[0] == [[4 * v for v in m] for m in before[0]]
    assert len(lines) == 11 and not any(line.startswith("prepare ") for line in lines[2:])


@pytest.mark.parametrize("case", ["no_comm", "world_of_one", "dry", "all_empty"])
def test_kernels_do_nothing_without_a_world(driver, case):
    lines = run_case(driver, case)
    assert lines[1] == "prepared"
    assert all(line.split(" ", 1)[1] == lines[0].split(" ", 1)[1] for line in lines[2:]), lines
    assert not any(line.startswith(("prepare ", "start ", "wait ")) for line in lines)


@pytest.mark.parametrize("case,message", [
    ("gap", "input 2 does not follow input 0 in the bucket's range (contiguous_inputs"),
    ("overlap", "input 2 does not follow input 0 in the bucket's range"),
    ("order", "input 2 does not follow input 0 in the bucket's range"),
    ("not_in_place", "output 0 must be input 0's bytes (the sum is in place"),
    ("mixed_dtype", "expects every input of one dtype (input 0's), input 2 differs"),
    ("arity", "expects one output per input, got 3 inputs and 2 outputs"),
    ("negative_bucket", "attr bucket must be in [0, 2^31), got -1"),
])
def test_kernels_refuse_malformed_steps(driver, case, message):
    lines = run_case(driver, case)
    assert lines[-1].startswith(f"threw invalid_argument: {message}"), lines
    assert not any(line.startswith(("prepare ", "start ", "wait ")) for line in lines)


@pytest.mark.parametrize("case,code,message,calls", [
    ("fail_prepare", 1, "rank 1: prepare of bucket 3 failed: out of scratch", 1),
    ("fail_start", 2, "rank 1: allreduce of bucket 3 (96 bytes) did not complete within 60 s: peer gone", 2),
    ("fail_wait", 1, "rank 0: allreduce_wait failed (error, code 1)", 3),  # no message: runtime/comm.h words it
])
def test_communicator_failures_raise_its_message(driver, case, code, message, calls):
    lines = run_case(driver, case)
    assert lines[-1] == f"threw CommFailure(code {code}): {message}", lines
    assert sum(line.startswith(("prepare ", "start ", "wait ")) for line in lines) == calls


# -- grad_scale in the update kernels -------------------------------------------------------------

def _update_example(name, dtype, rng, attrs):
    shape = (73, 5)
    w, g = rng.uniform(-2, 2, shape).astype(dtype), rng.uniform(-2, 2, shape).astype(dtype)
    state = [np.abs(rng.uniform(-2, 2, shape)).astype(dtype) for _ in range({"sgd_update": 0,
                                                                            "sgd_momentum_update": 1,
                                                                            "adam_update": 2}[name])]
    inputs = [w, g] + state + ([np.asarray(4, np.int64)] if name == "adam_update" else [])
    return Example(inputs, attrs)


def _run(op, ex, device):
    g, _, outs, shapes, feeds = single_op_graph(op, ex)
    plan = gc.compile(g, shapes=shapes, fetches=[t.name for t in outs], target=device)
    result = gc.Session(plan, device=device).run(feeds)
    return [result[t.name] for t in outs]


_UPDATE_ATTRS = {
    "sgd_update": [{"lr": 0.1, "weight_decay": 0.0}, {"lr": 0.05, "weight_decay": 0.01}],
    "sgd_momentum_update": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
                            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}],
    "adam_update": [{"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.0, "decoupled": False},
                    {"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "decoupled": False},
                    {"lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1, "decoupled": True}],
}


@pytest.mark.parametrize("name", UPDATES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grad_scale_is_one_multiply_first(name, dtype, device):
    """update(g, grad_scale=s) == update(fl(g · s), grad_scale=1), bit for bit, on every device;
    and both match the numpy reference (which is written the same way)."""
    op = registry.get_op(name)
    rng = np.random.default_rng(5)
    for attrs in _UPDATE_ATTRS[name]:
        for scale in (0.5, 1 / 3, 1 / 7):
            ex = _update_example(name, dtype, rng, {**attrs, "grad_scale": scale})
            scaled = list(ex.inputs)
            scaled[1] = (ex.inputs[1] * np.dtype(dtype).type(scale)).astype(dtype)
            plain = Example(scaled, {**attrs, "grad_scale": 1.0})
            got = _run(op, ex, device)
            want = _run(op, plain, device)
            ref = op.evaluate(ex.inputs, ex.attrs)
            for a, b, r in zip(got, want, ref):
                assert a.tobytes() == b.tobytes(), (name, dtype, attrs, scale)
                tol = 1e-5 if dtype == "float32" else 1e-12
                np.testing.assert_allclose(a, r, rtol=tol, atol=tol)
            unscaled = _run(op, Example(ex.inputs, {**attrs, "grad_scale": 1.0}), device)
            assert any(u.tobytes() != a.tobytes() for u, a in zip(unscaled, got))  # the attr is read


# -- AOT: data-parallel plans are refused ----------------------------------------------------------

def _relu_plan():
    with gc.Graph() as g:
        y = gc.relu(gc.placeholder("x", (3,)))
    return gc.compile(g, fetches=[y.name])


def test_aot_refuses_a_plan_compiled_for_data_parallel(tmp_path):
    plan = _relu_plan()
    plan.proto.metadata["data_parallel.world_size"] = "2"
    with pytest.raises(AotError, match=r"'main' is a data-parallel plan \(world size 2; steps none\): "
                                       r"data-parallel plans run in a Session under mpirun"):
        gc.emit_c(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_aot_refuses_a_plan_with_collective_steps(tmp_path):
    plan = _relu_plan()
    plan.proto.steps[0].op = "allreduce_start"
    with pytest.raises(AotError, match=r"no recorded world size; steps allreduce_start\): data-parallel plans"):
        gc.emit_c(plan, tmp_path / "out")


def test_aot_refuses_a_program_with_a_data_parallel_entry(tmp_path):
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        g.entry("a", [gc.relu(x)])
        g.entry("b", [gc.tanh(x)])
    program = gc.compile(g, entries="all")
    program.proto.entries[1].plan.metadata["data_parallel.world_size"] = "4"
    name = program.proto.entries[1].name
    with pytest.raises(AotError, match=rf"entry '{name}' is a data-parallel plan \(world size 4"):
        gc.emit_c(program, tmp_path / "out")


def test_aot_still_emits_a_plain_plan(tmp_path):
    result = gc.emit_c(_relu_plan(), tmp_path / "out")
    assert os.path.isdir(tmp_path / "out") and result is not None


# -- the kernels over MPI: two ranks sum a bucket in place ------------------------------------------

_MPI_SCRIPT = r"""
import sys
import numpy as np
from mpi4py import MPI
import graphc as gc
from graphc import _mpi
from graphc.session import _load_runtime

deterministic = sys.argv[1] == "1"
world = MPI.COMM_WORLD
rank = world.rank
comm = _mpi.Communicator(world, deterministic=deterministic)
shapes = [(5, 3), (0,), (1,), (17,)]        # odd sizes: padding between members; an empty member
for dtype in ("float32", "float64"):
    with gc.Graph() as g:
        ins = [gc.placeholder(f"p{k}", s, dtype) for k, s in enumerate(shapes)]
        copies = [g.add_node("broadcast_to", [t], {"shape": s})[0] for t, s in zip(ins, shapes)]
        started = gc.ops.allreduce_start(copies, bucket=0)
        summed = gc.ops.allreduce_wait(started, bucket=0)
    plan = gc.compile(g, shapes={}, fetches=[t.name for t in summed])
    ex = _load_runtime().Executor(plan.proto, 1, comm=comm)
    rng = np.random.default_rng(100 + rank)
    for run in range(3):
        feeds = [rng.standard_normal(s).astype(dtype) for s in shapes]
        outs = [np.empty(s, dtype) for s in shapes]
        ex.run(feeds, outs)
        every = world.allgather(feeds)       # every rank's feeds, in rank order
        for k in range(len(shapes)):
            want = every[0][k].copy()
            for r in range(1, world.size):
                want = (want + every[r][k]).astype(dtype)
            if deterministic:
                assert outs[k].tobytes() == want.tobytes(), (dtype, run, k)
            else:
                np.testing.assert_allclose(outs[k], want, rtol=1e-6 if dtype == "float32" else 1e-14)
        same = world.allgather([o.tobytes() for o in outs])
        assert all(s == same[0] for s in same), "the ranks hold different sums"
print(f"rank {rank} ok", flush=True)
"""


@pytest.mark.parametrize("deterministic", [True, False])
def test_mpi_ranks_sum_the_bucket_in_place(deterministic):
    from mpirun import mpirun, require_mpi
    require_mpi()
    ranks = 3 if deterministic else 2
    out = mpirun(_MPI_SCRIPT, np=ranks, args=["1" if deterministic else "0"], timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(line for line in out.stdout.splitlines() if line.endswith(" ok")) == \
        [f"rank {r} ok" for r in range(ranks)]
