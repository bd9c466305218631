"""Kernels are safe for any plan bytes.

* Every CPU kernel's factory checks the dims and dtypes of the tensors it touches against
  the op's schema: a valid plan of each registry op, with one input's or output's dims
  (or dtype) corrupted while its byte size stays the same (so the structural plan checks
  pass), is refused by ``Session`` with a ModelFormatError naming the op, exactly when
  the op's shape inference refuses the corrupted types too.  Only Session construction
  runs (no kernel touches data), so this cannot crash the test process.
* Zero-size tensors whose other dims are huge ((2**40, 0)) run at once: no loop walks the
  other dims.  These run in a subprocess with a timeout, so that a hang fails the test
  instead of stopping the suite.
* Slice attrs at the int64 extremes give numpy's answer (no overflow).
"""

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from single_op import single_op_graph

import graphc as gc
from graphc import errors, registry
from graphc._proto import graphc_pb2 as pb
from graphc.compiler.attrs import TensorEncoder, encode_attrs
from graphc.session import Session, _load_runtime

_runtime = _load_runtime()
KERNEL_OPS = sorted(_runtime.kernel_ops())
OPS = {op.name: op for op in registry.all_ops()}

_DTYPE_CODE = {name: pb.DataType.Value(name.upper()) for name in ("float32", "float64", "int32", "int64", "bool")}
_DTYPE_NAME = {code: name for name, code in _DTYPE_CODE.items()}
# Same item size, so a dtype swap keeps nbytes and offsets valid.
_SWAP = {"float32": "int32", "int32": "float32", "float64": "int64", "int64": "float64"}

def test_every_kernel_op_is_a_registry_op():
    assert set(KERNEL_OPS) <= set(OPS), sorted(set(KERNEL_OPS) - set(OPS))


def _pick_example(op):
    """The example with the most non-empty, distinct dims (small enough to compile fast)."""
    best, best_key = None, None
    for ex in op.examples(np.random.default_rng(0)):
        shapes = [np.shape(x) for x in ex.inputs]
        if any(0 in s for s in shapes) or sum(int(np.prod(s)) for s in shapes) > 20_000:
            continue
        key = (sum(len(set(s)) for s in shapes), sum(len(s) for s in shapes))
        if best_key is None or key > best_key:
            best, best_key = ex, key
    assert best is not None, f"{op.name}: no non-empty example"
    return best


def _compile_example(op, ex):
    """A plan with one step running ``op`` on placeholders (variables for in-place inputs),
    and that step's index.  View ops compile to aliases without a step; for them the
    output is moved into the arena and the step added, as a plan that materialises the
    view would have it."""
    g, placeholders, outs, shapes, _ = single_op_graph(op, ex)
    # The inputs are fetched too, so that no output takes over a dying input's bytes: a
    # corrupted dtype would then be refused by the plan validator's in-place rule before
    # any kernel sees it.
    plan = gc.compile(g, shapes=shapes, fetches=[t.name for t in outs + placeholders])
    proto = pb.Plan()
    proto.CopyFrom(plan.proto)
    steps = [i for i, s in enumerate(proto.steps) if s.op == op.name]
    if steps:
        return proto, steps[0]
    assert op.view, f"{op.name}: the compiled plan has no {op.name} step"
    index = {v.name: i for i, v in enumerate(proto.values)}
    out = index[outs[0].name]
    v = proto.values[out]
    assert v.storage == pb.VIEW
    v.storage = pb.ARENA
    v.alias_of = 0
    v.offset = (proto.arena_bytes + 63) // 64 * 64
    proto.arena_bytes = v.offset + v.nbytes
    step = proto.steps.add()
    step.op = op.name
    step.node = v.name
    step.inputs.extend(index[f"in{i}"] for i in range(len(ex.inputs)))
    step.outputs.append(out)
    encode_attrs(op, op.check_attrs(ex.attrs), step.attrs, TensorEncoder(), op.name)
    return proto, len(proto.steps) - 1


def _types(proto, indices):
    return [(_DTYPE_NAME[proto.values[i].dtype], tuple(int(d) for d in proto.values[i].dims)) for i in indices]


def _schema_accepts(op, proto, step):
    """Whether the op's shape inference accepts the step's input types and yields its outputs'."""
    st = proto.steps[step]
    node = types.SimpleNamespace(name=st.node, op=op.name, provenance=None, attrs=None)
    ex_attrs = {}
    for key in op.attrs:
        if key in st.attrs:
            which = st.attrs[key].WhichOneof("value")
            a = st.attrs[key]
            ex_attrs[key] = {"i": a.i, "f": a.f, "s": a.s, "b": a.b, "ints": tuple(a.ints.values),
                             "floats": tuple(a.floats.values),
                             "dtype": _DTYPE_NAME.get(a.dtype)}.get(which)
    try:
        node.attrs = op.check_attrs(ex_attrs)
        got = op.infer_node(node, _types(proto, st.inputs))
    except errors.GraphcError:
        return False
    return got == _types(proto, st.outputs)


def _corruptions(proto, step):
    """(label, value index, new dims or None, new dtype or None): each keeps the byte size."""
    st = proto.steps[step]
    # An input an earlier step writes (the copy that makes a collective's bucket member, see
    # tests/single_op.py) is refused by that step's kernel first; the op's own check of it is
    # reached through its twin, the output that is a view of it (corrupted below).
    written = {o for s in proto.steps[:step] for o in s.outputs}
    places = [(f"input {k}", i) for k, i in enumerate(st.inputs) if i not in written]
    places += [(f"output {k}", i) for k, i in enumerate(st.outputs)]
    out = []
    for label, i in places:
        v = proto.values[i]
        dims = [int(d) for d in v.dims]
        out.append((label, i, dims + [1], None))
        if len(dims) >= 2 and dims != dims[::-1]:
            out.append((label, i, dims[::-1], None))
        if len(dims) >= 1 and dims[-1] == 1:
            out.append((label, i, dims[:-1], None))
        name = _DTYPE_NAME[v.dtype]
        if name in _SWAP and v.storage == pb.ARENA:
            out.append((label, i, None, _SWAP[name]))
    return out


@pytest.mark.parametrize("name", KERNEL_OPS)
def test_corrupted_dims_are_refused_naming_the_op(name):
    op = OPS[name]
    proto, step = _compile_example(op, _pick_example(op))
    Session(proto, threads=1)  # the uncorrupted plan loads
    checked = 0
    for label, index, dims, dtype in _corruptions(proto, step):
        bad = pb.Plan()
        bad.CopyFrom(proto)
        v = bad.values[index]
        if dims is not None:
            del v.dims[:]
            v.dims.extend(dims)
        if dtype is not None:
            v.dtype = _DTYPE_CODE[dtype]
        what = f"{name}: {label} as {dtype or tuple(dims)}"
        if _schema_accepts(op, bad, step):
            Session(bad, threads=1)  # the kernel accepts what the schema accepts
            continue
        try:
            Session(bad, threads=1)
        except errors.ModelFormatError as e:
            assert f"op '{name}'" in str(e), (what, str(e))
            checked += 1
        else:
            raise AssertionError(f"{what}: the schema refuses it, the kernel accepted it")
    assert checked > 0, f"{name}: no corruption was refused"


def _attr_corruptions(op, proto, step):
    """(label, mutate(attr map)) for each attr: extreme, shifted, flipped or missing values."""
    st = proto.steps[step]
    out = []
    for key, spec in op.attrs.items():
        def setter(fn, key=key):
            def mutate(attrs):
                fn(attrs[key])
            return mutate

        def drop(attrs, key=key):
            if key in attrs:
                del attrs[key]
        out.append((f"attr {key!r} removed", drop))
        present = key in st.attrs
        if spec.kind == "int":
            v = st.attrs[key].i if present else 0
            for new in {v + 1, -v - 1, 2 ** 62, -2 ** 63, 2 ** 63 - 1}:
                out.append((f"attr {key!r} = {new}", setter(lambda a, new=new: setattr(a, "i", new))))
        elif spec.kind == "ints":
            vals = list(st.attrs[key].ints.values) if present else []
            news = [vals + [0], vals[:-1], [-v - 1 for v in vals]]
            for extreme in (2 ** 62, -2 ** 63, 2 ** 63 - 1):
                news += [[extreme] + vals[1:], vals[:-1] + [extreme]]
            for new in news:
                def set_ints(a, new=new):
                    a.ints.SetInParent()
                    del a.ints.values[:]
                    a.ints.values.extend(new)
                out.append((f"attr {key!r} = {new}", setter(set_ints)))
        elif spec.kind == "bool":
            v = st.attrs[key].b if present else False
            out.append((f"attr {key!r} = {not v}", setter(lambda a, v=v: setattr(a, "b", not v))))
        elif spec.kind == "str":
            out.append((f"attr {key!r} = 'bogus'", setter(lambda a: setattr(a, "s", "bogus"))))
        elif spec.kind == "dtype":
            for name, code in _DTYPE_CODE.items():
                out.append((f"attr {key!r} = {name}", setter(lambda a, code=code: setattr(a, "dtype", code))))
    return out


@pytest.mark.parametrize("name", KERNEL_OPS)
def test_corrupted_attrs_are_refused_exactly_when_the_schema_refuses_them(name):
    """Attrs at the int64 extremes, off by one, flipped or missing: the kernel accepts a plan
    exactly when the op's inference accepts the attrs and yields the plan's output types."""
    op = OPS[name]
    proto, step = _compile_example(op, _pick_example(op))
    for label, mutate in _attr_corruptions(op, proto, step):
        bad = pb.Plan()
        bad.CopyFrom(proto)
        mutate(bad.steps[step].attrs)
        if _schema_accepts(op, bad, step):
            try:
                Session(bad, threads=1)
            except errors.ModelFormatError as e:
                raise AssertionError(f"{name}: {label}: the schema accepts it, the kernel refused: {e}") from None
            continue
        try:
            Session(bad, threads=1)
        except errors.ModelFormatError as e:
            assert f"op '{name}'" in str(e), (label, str(e))
        else:
            raise AssertionError(f"{name}: {label}: the schema refuses it, the kernel accepted it")


# -- zero-size dims with huge other dims, in a subprocess --------------------------------

# (BIG, 0, M): 2**50 items but for the 0; small enough that the compiler's limit on a
# plan's bytes counted by nonzero dims (2**62) admits a few of them.
BIG, M = 2 ** 40, 2 ** 10
I64_MIN, I64_MAX = -2 ** 63, 2 ** 63 - 1

# (expression, expected shape, fill: 0, "nan" or None for an empty result).  In the
# expressions, ph(shape, dtype) is a placeholder fed with zeros, wide(shape, dtype) the
# same shape made in the graph by broadcast_to from a fed (1, 0, 1) (so that the kernels
# see it as an intermediate), and n(op, *inputs, **attrs) a node (its first output).
ZERO_SIZE_CASES = [
    ("n('concat', ph((BIG, 0)), ph((BIG, 0)), axis=0)", (2 * BIG, 0), None),
    ("n('concat', ph((BIG, 0)), ph((BIG, 0)), axis=1)", (BIG, 0), None),
    ("n('sum', n('concat', wide((BIG, 0, M)), wide((BIG, 0, M)), axis=2))", (), 0),
    ("n('split', ph((BIG, 0)), axis=0, sizes=(BIG // 2, BIG // 2))", (BIG // 2, 0), None),
    ("n('sum', n('split', wide((BIG, 0, M), 'int64'), axis=2, sizes=(1, M - 1)))", (), 0),
    ("n('sum', ph((0, BIG)))", (), 0),
    ("n('sum', wide((BIG, 0, M)), axes=(0, 2), keepdims=True)", (1, 0, 1), None),
    ("n('sum', wide((0, BIG, 3, M), 'int32'), axes=(1, 3))", (0, 3), None),
    ("n('sum', wide((3, 0, BIG), 'int32'), axes=(1, 2))", (3,), 0),
    ("n('sum', wide((0, BIG, M), 'int64'))", (), 0),
    ("n('mean', wide((0, BIG, M)))", (), "nan"),
    ("n('mean', wide((3, 0, BIG), 'float64'), axes=(1, 2))", (3,), "nan"),
    ("n('max', wide((BIG, 0, M)), axes=(0, 2))", (0,), None),
    ("n('sum_to', wide((BIG, 0, M)), ph((1, 0, 1)))", (1, 0, 1), None),
    ("n('sum', n('transpose', wide((0, BIG, M), 'int32'), perm=(2, 0, 1)))", (), 0),
    ("n('transpose', ph((BIG, 0)))", (0, BIG), None),
    ("n('sum', n('slice', wide((BIG, 0, M)), starts=(5, I64_MIN), ends=(2 ** 62, I64_MAX), axes=(0, 2),"
     " steps=(3, 2 ** 62)))", (), 0),
    ("n('slice', ph((BIG, 0)), starts=(I64_MAX,), ends=(I64_MIN,), axes=(0,), steps=(I64_MIN,))", (1, 0), None),
    ("n('broadcast_to', ph((1, 0)), shape=(BIG, 0))", (BIG, 0), None),
    ("n('sum', n('broadcast_like', ph((1, 0, 1)), wide((BIG, 0, M))))", (), 0),
    ("n('sum', n('add', wide((BIG, 0, M)), ph((0, 1))))", (), 0),
    ("n('sum', n('where', wide((BIG, 0, M), 'bool'), ph((0, 1)), ph((1, 1, 1))))", (), 0),
    ("n('sum', n('exp', wide((BIG, 0, M), 'float64')))", (), 0),
    ("n('sum', n('cast', wide((BIG, 0, M)), to='int32'))", (), 0),
    ("n('sum', n('softmax', wide((BIG, 0, M)), axis=1))", (), 0),
    ("n('sum', n('softmax', wide((BIG, 0, M)), axis=-1))", (), 0),
    ("n('sum', n('log_softmax', wide((BIG, 0, M), 'float64'), axis=0))", (), 0),
    ("n('sum', n('one_hot', wide((BIG, 0, M), 'int64'), depth=5))", (), 0),
    ("n('sum', n('matmul', wide((0, 2 ** 20, 2 ** 20)), wide((0, 2 ** 20, 2 ** 20))))", (), 0),
    ("n('matmul', ph((5, 0), 'float64'), ph((0, 3), 'float64'))", (5, 3), 0),
    ("n('softmax_cross_entropy', wide((0, BIG, M)), wide((0, BIG), 'int64'), reduction='sum')", (), 0),
    ("n('softmax_cross_entropy', wide((0, BIG, M)), wide((0, BIG), 'int32'), reduction='mean')", (), "nan"),
    ("n('sum', n('softmax_cross_entropy', wide((0, BIG, M)), wide((0, BIG), 'int64'), reduction='none'))",
     (), 0),
    ("n('sum', n('softmax_cross_entropy_grad', wide((0, BIG, 3)), wide((0, BIG), 'int64'), ph(())))", (), 0),
    ("n('sum', n('relu_grad', wide((BIG, 0, M)), wide((BIG, 0, M))))", (), 0),
    ("n('sum', n('slice_grad', wide((BIG, 0, M)), wide((BIG, 0, M)), starts=(0,), ends=(2 ** 62,),"
     " axes=(0,), steps=(1,)))", (), 0),
    ("n('sgd_update', var((BIG, 0)), ph((BIG, 0)), lr=0.1)", (BIG, 0), None),
]

_ZERO_SIZE_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import graphc as gc
    from graphc.graph import Graph
    from graphc.session import Session

    BIG, M = 2 ** 40, 2 ** 10
    I64_MIN, I64_MAX = -2 ** 63, 2 ** 63 - 1
    cases = eval(sys.stdin.read())
    for k, (expr, shape, fill) in enumerate(cases):
        print("start", k, expr, flush=True)
        feeds = {}
        g = Graph()

        def ph(s, dtype="float32"):
            name = f"p{len(feeds)}"
            feeds[name] = np.zeros(s, dtype)
            return gc.placeholder(name, s, dtype)

        def var(s, dtype="float32"):
            return gc.variable(f"v{len(feeds)}", init=np.zeros(s, dtype))

        def n(op, *ins, **attrs):
            out = g.add_node(op, list(ins), attrs)
            return out[0] if isinstance(out, (list, tuple)) else out

        def wide(s, dtype="float32"):
            return n("broadcast_to", ph(tuple(0 if d == 0 else 1 for d in s), dtype), shape=s)

        with g:
            y = eval(expr)
        plan = gc.compile(g, shapes={}, fetches=[y.name])
        r = Session(plan, threads=2).run(feeds)[y.name]
        assert r.shape == shape, (k, expr, r.shape, shape)
        if fill == "nan":
            assert np.isnan(r).all(), (k, expr, r)
        elif fill is not None:
            assert (r == fill).all(), (k, expr, r)
        print("ok", k, flush=True)
    print("all done", flush=True)
""")


def _run_script(script, stdin, timeout):
    root = str(Path(gc.__file__).resolve().parent.parent)  # this checkout's graphc, in the child too
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    try:
        proc = subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=root)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        last = [line for line in out.splitlines() if line.startswith("start")][-1:]
        pytest.fail(f"hung (no answer in {timeout} s) at {last}")
    return proc


def test_zero_size_dims_with_huge_other_dims_do_not_loop():
    # The timeout catches a hang (2**40 iterations of nothing take hours), not slowness:
    # every case needs milliseconds of kernel time; the rest is imports and compiles.
    proc = _run_script(_ZERO_SIZE_SCRIPT, repr(ZERO_SIZE_CASES), timeout=300)
    assert proc.returncode == 0 and "all done" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_max_over_an_empty_axis_is_refused_by_the_kernel():
    """Inference refuses it; a plan that asks anyway is refused at load (no identity for max)."""
    op = OPS["max"]
    ex = registry.Example([np.zeros((2, 3), np.float32)], {"axes": (1,), "keepdims": False})
    proto, step = _compile_example(op, ex)
    # The input (2, 3) becomes (2, 0) (0 bytes); the output (2,) stays: a valid plan but
    # for the empty reduced axis.
    x = proto.values[proto.steps[step].inputs[0]]
    del x.dims[:]
    x.dims.extend([2, 0])
    x.nbytes = 0
    with pytest.raises(errors.ModelFormatError, match="op 'max'.*size 0"):
        Session(proto, threads=1)


# -- slice attrs at the int64 extremes ---------------------------------------------------

SLICE_EXTREMES = [
    (I64_MIN, I64_MAX, 1), (I64_MAX, I64_MIN, -1), (I64_MIN, I64_MAX, 2 ** 62), (I64_MAX, I64_MIN, -2 ** 62),
    (-2 ** 63, 5, 2 ** 62), (3, I64_MAX, I64_MAX), (I64_MAX, I64_MIN, I64_MIN), (6, I64_MIN, I64_MIN),
    (0, 10, I64_MAX), (9, 0, -I64_MAX), (I64_MIN, I64_MIN, 1), (I64_MAX, I64_MAX, -1), (-1, I64_MIN, -3),
    (2, -2, 3), (-11, 11, 1), (11, -11, -1), (1, 9, 2 ** 40),
]

_SLICE_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import graphc as gc
    from graphc.graph import Graph
    from graphc.session import Session

    cases = eval(sys.stdin.read())
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    for k, (start, stop, step) in enumerate(cases):
        print("start", k, start, stop, step, flush=True)
        with Graph() as g:
            ph = gc.placeholder("x", x.shape)
            y = gc.slice(ph, (start,), (stop,), (0,), (step,))
        plan = gc.compile(g, shapes={}, fetches=[y.name])
        got = Session(plan, threads=1).run({"x": x})[y.name]
        want = x[start:stop:step]
        assert got.shape == want.shape, (k, got.shape, want.shape)
        np.testing.assert_array_equal(got, want)
        print("ok", k, flush=True)
    print("all done", flush=True)
""")


def test_slice_attrs_at_int64_extremes_match_numpy():
    proc = _run_script(_SLICE_SCRIPT, repr(SLICE_EXTREMES), timeout=300)
    assert proc.returncode == 0 and "all done" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
