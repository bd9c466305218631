"""IO binding (Session.io_binding, gc.IOBinding) and Session.run(out=...).

Bound arrays are read and written in place when layout and plan allow, copied
otherwise (or refused with copy=False); every result is compared with a plain
Session.run of the same plan and feeds, which is the specification."""

import threading

import numpy as np
import pytest

import graphc as gc
from graphc import errors
from graphc.graph import Graph
from graphc.session import Session, _load_runtime


def _chain_plan(rows=4):
    """y = exp(-relu(x)) (three steps), fetched with a view of it (r = reshape(y))."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.exp(gc.neg(gc.relu(x)), name="y")
        r = gc.reshape(y, (3, rows), name="r")
    return gc.compile(g, shapes={"x": (rows, 3)}, fetches=[y.name]), gc.compile(
        g, shapes={"x": (rows, 3)}, fetches=[r.name])


@pytest.fixture(scope="module")
def chain():
    plan, _ = _chain_plan()
    return Session(plan, threads=1)


def _x(seed, shape=(4, 3)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _misaligned(shape, dtype=np.float32):
    """A C-contiguous array whose data starts 1 byte past an aligned address."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(n + dtype.itemsize + 1, np.uint8)
    start = (-raw.ctypes.data) % dtype.itemsize + 1   # aligned + 1
    arr = raw[start:start + n].view(dtype).reshape(shape)
    assert not arr.flags.aligned and arr.flags.c_contiguous
    return arr


# -- outputs land in the caller's arrays --------------------------------------------------

def test_bound_input_and_output_are_used_in_place(chain):
    x = _x(0)
    want = chain.run({"x": x})["y"]
    b = chain.io_binding()
    b.bind_input("x", x)
    y = np.full((4, 3), -1, np.float32)
    assert b.bind_output("y", y) is y
    assert b.zero_copy == {"x": True, "y": True}
    out = b.run()
    assert out["y"] is y
    np.testing.assert_array_equal(y, want)      # bit for bit: the same kernels
    assert b.bound_inputs["x"] is x and b.bound_outputs["y"] is y
    # Only the steps touching x or y were prepared again (unfused: relu reads x, exp writes y).
    proto = chain._proto
    touched = [s for s in proto.steps if proto.feeds[0] in s.inputs or proto.fetches[0] in s.outputs]
    assert 0 < b._rt.prepared_steps == len(touched) <= len(proto.steps)


def test_bind_output_without_an_array_allocates_one(chain):
    b = gc.IOBinding(chain)
    x = _x(1)
    b.bind_input("x", x)
    y = b.bind_output("y")
    assert isinstance(y, np.ndarray) and y.shape == (4, 3) and y.dtype == np.float32
    assert chain.run_with_binding(b)["y"] is y
    np.testing.assert_array_equal(y, chain.run({"x": x})["y"])


def test_a_bound_input_refilled_between_runs_gives_each_runs_results(chain):
    b = chain.io_binding()
    x = np.zeros((4, 3), np.float32)
    b.bind_input("x", x)
    y = b.bind_output("y")
    for seed in range(5):
        x[...] = _x(seed)                 # in place: the binding keeps reading this array
        b.run()
        np.testing.assert_array_equal(y, chain.run({"x": x.copy()})["y"], err_msg=f"run {seed}")


def test_a_fetched_view_is_written_in_place_through_its_root():
    _, plan = _chain_plan()
    sess = Session(plan, threads=1)
    b = sess.io_binding()
    x = _x(2)
    b.bind_input("x", x)
    r = b.bind_output("r")
    assert b.zero_copy == {"x": True, "r": True}
    b.run()
    np.testing.assert_array_equal(r, sess.run({"x": x})["r"])


def test_unbound_fetches_get_new_arrays_and_unbound_feeds_are_missing(chain):
    b = chain.io_binding()
    with pytest.raises(errors.FeedError, match=r"missing feed for placeholder\(s\) \['x'\]"):
        b.run()
    x = _x(3)
    b.bind_input("x", x)
    out1, out2 = b.run()["y"], b.run()["y"]
    assert out1 is not out2
    np.testing.assert_array_equal(out1, chain.run({"x": x})["y"])


# -- fallback to copying, or FeedError when strict ----------------------------------------

def test_misaligned_arrays_are_copied_or_refused_when_strict(chain):
    x = _misaligned((4, 3))
    x[...] = _x(4)
    y = _misaligned((4, 3))
    b = chain.io_binding()
    b.bind_input("x", x)
    b.bind_output("y", y)
    assert b.zero_copy == {"x": False, "y": False}
    assert b.run()["y"] is y
    np.testing.assert_array_equal(y, chain.run({"x": np.ascontiguousarray(x)})["y"])
    x[...] = _x(5)                        # still re-read every run
    b.run()
    np.testing.assert_array_equal(y, chain.run({"x": x.copy()})["y"])
    with pytest.raises(errors.FeedError, match=r"bind_input\('x', copy=False\).*not aligned to 4 bytes"):
        chain.io_binding().bind_input("x", x, copy=False)
    with pytest.raises(errors.FeedError, match=r"bind_output\('y', copy=False\).*not aligned to 4 bytes"):
        chain.io_binding().bind_output("y", y, copy=False)


def test_non_contiguous_arrays_are_copied_or_refused_when_strict(chain):
    big = np.zeros((3, 8), np.float32)
    x = big[:, ::2].T                     # (4, 3), strided
    x[...] = _x(6)
    ybig = np.full((8, 3), 7, np.float32)
    y = ybig[::2]                         # (4, 3), strided rows
    b = chain.io_binding()
    b.bind_input("x", x)
    b.bind_output("y", y)
    assert b.zero_copy == {"x": False, "y": False}
    assert b.run()["y"] is y
    np.testing.assert_array_equal(y, chain.run({"x": np.ascontiguousarray(x)})["y"])
    assert (ybig[1::2] == 7).all()        # the rows between were not written
    big[...] = 0.5                        # refill through the base: the next run sees it
    b.run()
    np.testing.assert_array_equal(y, chain.run({"x": np.full((4, 3), 0.5, np.float32)})["y"])
    with pytest.raises(errors.FeedError, match=r"bind_input\('x', copy=False\).*not C-contiguous"):
        b.bind_input("x", x, copy=False)
    with pytest.raises(errors.FeedError, match=r"bind_output\('y', copy=False\).*not C-contiguous"):
        b.bind_output("y", y, copy=False)
    assert b.zero_copy == {"x": False, "y": False}   # a refused bind changes nothing


def test_big_endian_input_is_converted_each_run(chain):
    x = _x(7).astype(">f4")
    b = chain.io_binding()
    b.bind_input("x", x)
    y = b.bind_output("y")
    assert b.zero_copy == {"x": False, "y": True}
    b.run()
    np.testing.assert_array_equal(y, chain.run({"x": x.astype(np.float32)})["y"])
    with pytest.raises(errors.FeedError, match=r"copy=False.*big-endian"):
        b.bind_input("x", x, copy=False)


def test_copy_true_always_copies(chain):
    x = _x(8)
    b = chain.io_binding()
    b.bind_input("x", x, copy=True)
    y = b.bind_output("y", np.empty((4, 3), np.float32), copy=True)
    assert b.zero_copy == {"x": False, "y": False}
    b.run()
    np.testing.assert_array_equal(y, chain.run({"x": x})["y"])


@pytest.mark.parametrize("value, pattern", [
    (np.zeros((4, 3), np.float64), r"feed 'x' expects dtype float32, got float64"),
    (np.zeros((3, 4), np.float32), r"feed 'x' expects shape \(4, 3\), got \(3, 4\)"),
    ([[1.0, 2.0, 3.0]] * 4, r"bind_input\('x'\) expects a numpy array of float32 \(4, 3\), got list"),
    (np.ma.masked_array(np.zeros((4, 3), np.float32)), r"feed 'x' is a masked array"),
])
def test_bad_inputs_are_feed_errors_worded_as_for_run(chain, value, pattern):
    with pytest.raises(errors.FeedError, match=pattern):
        chain.io_binding().bind_input("x", value)


@pytest.mark.parametrize("value, pattern", [
    (np.zeros((4, 3), np.float64), r"bind_output\('y'\) expects dtype float32, got float64"),
    (np.zeros((4, 3), ">f4"), r"bind_output\('y'\) expects dtype float32, got float32 \(big-endian"),
    (np.zeros((12,), np.float32), r"bind_output\('y'\) expects shape \(4, 3\), got \(12,\)"),
    ([0.0] * 12, r"bind_output\('y'\) expects a writable numpy array of float32 \(4, 3\), got list"),
])
def test_bad_outputs_are_feed_errors(chain, value, pattern):
    with pytest.raises(errors.FeedError, match=pattern):
        chain.io_binding().bind_output("y", value)


def test_read_only_output_is_refused_even_without_strict(chain):
    y = np.zeros((4, 3), np.float32)
    y.flags.writeable = False
    with pytest.raises(errors.FeedError, match=r"bind_output\('y'\) is read-only"):
        chain.io_binding().bind_output("y", y)


def test_unknown_names(chain):
    b = chain.io_binding()
    with pytest.raises(errors.FeedError, match=r"unknown feed 'nope'; the plan's placeholders are \['x'\]"):
        b.bind_input("nope", _x(0))
    with pytest.raises(errors.FeedError, match=r"unknown fetch 'nope' in bind_output; the plan's fetches are "
                                               r"\['y'\]"):
        b.bind_output("nope")
    with pytest.raises(TypeError, match="copy must be None, True or False"):
        b.bind_input("x", _x(0), copy="no")
    with pytest.raises(TypeError, match="IOBinding of this session"):
        Session(_chain_plan()[0], threads=1).run_with_binding(b)


def test_plan_rules_decide_what_can_be_fetched_in_place():
    """A fetched variable, placeholder or value fetched twice cannot be redirected."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3,), init=gc.init.xavier_uniform(seed=0))
        y = gc.relu(x * w, name="y")
        v = gc.reshape(y, (6,), name="v")
    plan = gc.compile(g, shapes={"x": (2, 3)}, fetches=[y.name, v.name, x.name, w.name], train=False)
    sess = Session(plan, threads=1)
    want = sess.run({"x": _x(9, (2, 3))})
    b = sess.io_binding()
    xin = _x(9, (2, 3))
    b.bind_input("x", xin)
    outs = {name: b.bind_output(name) for name in sess.fetch_names}
    flags = b.zero_copy
    assert flags[y.name] is False and flags[v.name] is False   # y's bytes are fetched twice
    assert flags[w.name] is False
    assert flags[x.name] is False                              # bound in place as input, copied as output
    b.run()
    for name in sess.fetch_names:
        np.testing.assert_array_equal(outs[name], want[name], err_msg=name)
    with pytest.raises(errors.FeedError, match=r"bind_output\('w', copy=False\).*is a variable"):
        b.bind_output(w.name, copy=False)
    with pytest.raises(errors.FeedError, match=r"copy=False.*fetched twice"):
        b.bind_output(y.name, copy=False)
    with pytest.raises(errors.FeedError, match=r"copy=False.*placeholder fed by the caller"):
        b.bind_output(x.name, copy=False)


def test_an_output_overlapping_a_bound_input_is_copied(chain):
    x = _x(10)
    want = chain.run({"x": x})["y"]
    b = chain.io_binding()
    b.bind_input("x", x)
    b.bind_output("y", x)                 # the same memory: computing in place would race
    assert b.zero_copy == {"x": True, "y": False}
    b.run()
    np.testing.assert_array_equal(x, want)
    with pytest.raises(errors.FeedError, match=r"copy=False.*overlaps the array bound as input 'x'"):
        b.bind_output("y", x, copy=False)


def test_runtime_bind_checks_pointers_itself():
    """The C++ layer refuses a misaligned pointer and overlapping bound memory on its own."""
    plan, _ = _chain_plan()
    ex = _load_runtime().Executor(plan.proto, 1, False)
    with pytest.raises(ValueError, match="not aligned to 4 bytes"):
        ex.bind([_misaligned((4, 3))], [None])
    x = _x(0)
    with pytest.raises(ValueError, match="overlaps feed 'x'"):
        ex.bind([x], [x])
    with pytest.raises(ValueError, match="fetch 0: buffer has 4 bytes, expected 48"):
        ex.bind([x], [np.zeros(1, np.float32)])


# -- restoring, training, threads, poison -------------------------------------------------

def test_unbinding_restores_plain_behaviour(chain):
    x = _x(11)
    b = chain.io_binding()
    b.bind_input("x", x)
    y = b.bind_output("y")
    b.run()
    # A plain run between bound runs neither sees nor writes the bound arrays.
    x2 = _x(12)
    plain = chain.run({"x": x2})["y"]
    np.testing.assert_array_equal(y, chain.run({"x": x})["y"])
    b.unbind_output("y")
    y_before = y.copy()
    out = b.run()["y"]
    assert out is not y
    np.testing.assert_array_equal(y, y_before)          # no longer written
    b.unbind_input("x")
    assert b.zero_copy == {}
    with pytest.raises(errors.FeedError, match="missing feed"):
        b.run()
    b.bind_input("x", x2)
    np.testing.assert_array_equal(b.run()["y"], plain)
    b.clear()
    assert b.bound_inputs == {} and b.bound_outputs == {}
    with pytest.raises(KeyError):
        b.unbind_output("y")
    np.testing.assert_array_equal(chain.run({"x": x2})["y"], plain)


def _train_plan():
    with Graph() as g:
        x = gc.placeholder("x", (None, 4))
        lab = gc.placeholder("lab", (None,), dtype="int64")
        w1 = gc.variable("w1", (4, 8), init=gc.init.xavier_uniform(seed=1))
        w2 = gc.variable("w2", (8, 3), init=gc.init.xavier_uniform(seed=2))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, lab, name="loss")
        gc.optim.Adam(lr=1e-2).minimize(loss)
    return gc.compile(g, shapes={"x": (6, 4), "lab": (6,)}), loss


def _batch(step):
    rng = np.random.default_rng(100 + step)
    return rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 3, 6)


@pytest.mark.parametrize("poison", [False, True])
def test_training_with_bound_feeds_matches_plain_runs_bit_for_bit(poison):
    plan, loss = _train_plan()
    plain = Session(plan, threads=2, poison=poison)
    bound = Session(plan, threads=2, poison=poison)
    b = bound.io_binding()
    x, lab = np.zeros((6, 4), np.float32), np.zeros(6, np.int64)
    b.bind_input("x", x)
    b.bind_input("lab", lab)
    out = {name: b.bind_output(name) for name in bound.fetch_names}
    assert b.zero_copy["x"] and b.zero_copy["lab"]
    for step in range(8):
        xb, lb = _batch(step)
        x[...], lab[...] = xb, lb
        keep = x.copy(), lab.copy()
        want = plain.run({"x": xb, "lab": lb})
        got = b.run()
        for name in plain.fetch_names:
            assert got[name] is out[name]
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"step {step} {name}")
        # Poison never touches the caller's arrays, though the plan frees x.
        np.testing.assert_array_equal(x, keep[0])
        np.testing.assert_array_equal(lab, keep[1])
    for name in plain.variable_names:
        np.testing.assert_array_equal(plain.get_variable(name), bound.get_variable(name), err_msg=name)


def test_poison_leaves_bound_inputs_intact(monkeypatch):
    """GRAPHC_POISON=1: the plan frees x after the matmul; poisoning it must not write the
    caller's array."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3, 5), init=gc.init.xavier_uniform(seed=0))
        y = gc.tanh(x @ w, name="y")
    plan = gc.compile(g, shapes={"x": (4, 3)}, train=False)
    x_index = plan.proto.feeds[0]
    assert any(x_index in s.frees for s in plan.proto.steps), "x is never freed: the test proves nothing"
    monkeypatch.setenv("GRAPHC_POISON", "1")
    sess = Session(plan, threads=1)
    assert sess.poison
    xa = _x(13)
    keep = xa.copy()
    b = sess.io_binding()
    b.bind_input("x", xa)
    ya = b.bind_output(y.name)
    assert b.zero_copy == {"x": True, y.name: True}
    for _ in range(2):
        b.run()
        np.testing.assert_array_equal(xa, keep)
        np.testing.assert_array_equal(ya, Session(plan, threads=1, poison=False).run({"x": keep})[y.name])


def test_plain_and_bound_runs_from_several_threads_stay_correct():
    """One session, three threads: plain runs, and runs under two bindings with arrays of
    their own; a run under one binding never sees another's arrays."""
    plan, _ = _chain_plan(rows=256)
    sess = Session(plan, threads=1)
    xs = [_x(20 + k, (256, 3)) for k in range(4)]
    want = [sess.run({"x": x})["y"] for x in xs]
    failures = []
    barrier = threading.Barrier(3)

    def plain():
        barrier.wait(timeout=30)
        for r in range(150):
            k = r % 4
            if not np.array_equal(sess.run({"x": xs[k]})["y"], want[k]):
                failures.append(f"plain run {r}")
                return

    def bound(shift):
        b = sess.io_binding()
        xb = np.zeros((256, 3), np.float32)
        b.bind_input("x", xb)
        yb = b.bind_output("y")
        barrier.wait(timeout=30)
        for r in range(150):
            k = (r + shift) % 4
            xb[...] = xs[k]
            b.run()
            if not np.array_equal(yb, want[k]):
                failures.append(f"bound run {r} (binding {shift})")
                return

    threads = [threading.Thread(target=plain), threading.Thread(target=bound, args=(1,)),
               threading.Thread(target=bound, args=(2,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


def test_zero_size_values_bind():
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.exp(x, name="y")
    sess = Session(gc.compile(g, shapes={"x": (0, 3)}), threads=1)
    b = sess.io_binding()
    b.bind_input("x", np.zeros((0, 3), np.float32))
    y = b.bind_output("y")
    assert b.run()["y"] is y and y.shape == (0, 3)


# -- Session.run(out=...) ----------------------------------------------------------------

def test_run_out_writes_into_the_callers_arrays(chain):
    x = _x(14)
    y = np.empty((4, 3), np.float32)
    out = chain.run({"x": x}, out={"y": y})
    assert out["y"] is y
    np.testing.assert_array_equal(y, chain.run({"x": x})["y"])
    ym = _misaligned((4, 3))              # copied into: alignment does not matter
    chain.run({"x": x}, out={"y": ym})
    np.testing.assert_array_equal(ym, y)


@pytest.mark.parametrize("value, pattern", [
    (np.empty((4, 3), np.float64), r"out\['y'\] expects dtype float32, got float64"),
    (np.empty((3, 4), np.float32), r"out\['y'\] expects shape \(4, 3\), got \(3, 4\)"),
    (np.empty((3, 8), np.float32)[:, ::2].T, r"out\['y'\] must be C-contiguous"),
    (np.frombuffer(bytes(48), np.float32).reshape(4, 3), r"out\['y'\] is read-only"),
    ([0.0] * 12, r"out\['y'\] expects a writable numpy array of float32 \(4, 3\), got list"),
])
def test_run_out_refuses_unusable_arrays(chain, value, pattern):
    with pytest.raises(errors.FeedError, match=pattern):
        chain.run({"x": _x(0)}, out={"y": value})


def test_run_out_names(chain):
    with pytest.raises(errors.FeedError, match=r"unknown fetch 'z' in out"):
        chain.run({"x": _x(0)}, out={"z": np.empty((4, 3), np.float32)})
    with pytest.raises(errors.FeedError, match="out must be a dict"):
        chain.run({"x": _x(0)}, out=[np.empty((4, 3), np.float32)])


def _offset_array(shape, dtype, offset):
    """A C-contiguous array whose address is `offset` bytes past a 64-byte boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(n + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    arr = raw[start:start + n].view(dtype).reshape(shape)
    assert arr.ctypes.data % 64 == offset and arr.flags.aligned
    return arr


def test_arrays_aligned_only_to_their_dtype_are_bound_in_place():
    """Kernels may assume a bound array's dtype alignment, never the arena's 64 bytes:
    float32 arrays at 4 bytes past a 64-byte boundary and float64 ones at 8 bytes past,
    through matmul, broadcast add, unary ops, a reduction, softmax and casts."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 37))
        d = gc.placeholder("d", (None, 5), dtype="float64")
        w = gc.variable("w", (37, 5), init=gc.init.xavier_uniform(seed=5))
        bias = gc.variable("bias", (5,), init=gc.init.xavier_uniform(seed=6))
        h = gc.relu(x @ w + bias)
        s = gc.softmax(h, name="s")
        r = gc.sum(gc.exp(-h), axis=1, name="r")
        m = gc.cast(h, "float64") * d + d
        t = gc.tanh(m, name="t")
    plan = gc.compile(g, shapes={"x": (9, 37), "d": (9, 5)}, fetches=[s.name, r.name, t.name], train=False)
    sess = Session(plan, threads=2)
    rng = np.random.default_rng(7)
    xa = _offset_array((9, 37), np.float32, 4)
    da = _offset_array((9, 5), np.float64, 8)
    xa[...] = rng.standard_normal((9, 37))
    da[...] = rng.standard_normal((9, 5))
    want = sess.run({"x": xa.copy(), "d": da.copy()})
    b = sess.io_binding()
    b.bind_input("x", xa, copy=False)
    b.bind_input("d", da, copy=False)
    outs = {s.name: _offset_array((9, 5), np.float32, 4), r.name: _offset_array((9,), np.float32, 4),
            t.name: _offset_array((9, 5), np.float64, 8)}
    for name, arr in outs.items():
        b.bind_output(name, arr, copy=False)
    assert all(b.zero_copy.values())
    b.run()
    for name, arr in outs.items():
        np.testing.assert_array_equal(arr, want[name], err_msg=name)


def test_onnx_runtime_names(chain):
    """bind_cpu_input, get_outputs, copy_outputs_to_cpu, clear_binding_inputs/outputs."""
    x = _x(15)
    b = chain.io_binding()
    assert b.get_outputs() == []
    b.bind_cpu_input("x", x)
    y = b.bind_output("y")
    b.run()
    (got,) = b.get_outputs()
    assert got is y
    (copied,) = b.copy_outputs_to_cpu()
    assert copied is not y and np.array_equal(copied, y)
    x += 1
    b.run()
    assert not np.array_equal(copied, y)          # the copy kept the first run's values
    b.clear_binding_outputs()
    assert b.zero_copy == {"x": True} and b.get_outputs() == []
    b.clear_binding_inputs()
    assert b.zero_copy == {}
    with pytest.raises(errors.FeedError, match="missing feed"):
        b.run()
