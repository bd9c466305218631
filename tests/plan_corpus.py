"""The malformed-plan corpus: hostile plans built from a real compiled plan.

Each :class:`Case` mutates a copy of :func:`base_plan` (a small training plan with a
constant, a view and Adam state) or builds a plan of its own, and says what every
entry point must answer:

- ``error``: the graphc.errors class that ``Session(path)``, ``Session(proto)`` and
  ``graphc run`` (exit 2, one stderr line) must raise; None: the plan is valid and
  must load and run once, quickly.
- ``load``: what ``gc.load_plan(path)`` must raise (None: it loads; the plan is
  well-formed and only the runtime can refuse it: a memory limit, a kernel's check).
- ``layer``: which layer catches it: ``validator`` (runtime/validate.cc and
  graphc/plan.py's validate_plan), ``wrapper`` (the Cython plan conversion),
  ``resource`` (the memory limit or a failed allocation), ``kernel`` (a kernel
  factory's checks of its own dims and attrs).

tests/test_plan_corpus.py runs every case against every entry point in subprocesses
(this file is also the worker: ``python tests/plan_corpus.py ENTRY CASE_DIR [NAME...]``
prints one JSON line per case), under a memory rlimit, so a crash or a hang fails a
test instead of killing pytest.
"""

import contextlib
import io
import json
import os
import resource
import sys
from dataclasses import dataclass, field

import numpy as np

ENTRY_POINTS = ("load_plan", "session_path", "session_proto", "cli")
RLIMIT_AS_BYTES = 4 << 30


@dataclass
class Case:
    name: str
    mutate: object            # fn(proto) mutating a copy of the base plan, or fn() -> a new proto
    error: str | None         # graphc.errors class name the runtime entry points raise
    load: str | None          # ... and gc.load_plan
    layer: str
    own_plan: bool = False    # mutate() builds its own plan
    env: dict = field(default_factory=dict)


def base_plan():
    """A compiled training plan: matmul, relu, a constant, a reshape view, cross-entropy, Adam."""
    import graphc as gc
    from graphc.graph import Graph

    with Graph() as g:
        x = gc.placeholder("x", (None, 4))
        lab = gc.placeholder("lab", (None,), dtype="int64")
        w1 = gc.variable("w1", (4, 8), init=gc.init.xavier_uniform(seed=1))
        w2 = gc.variable("w2", (8, 3), init=gc.init.xavier_uniform(seed=2))
        h = gc.relu(x @ w1) * gc.constant(np.full((8,), 0.5, np.float32))
        flat = gc.reshape(h, (6 * 8,))
        h2 = gc.reshape(flat, (6, 8))
        loss = gc.softmax_cross_entropy(h2 @ w2, lab)
        gc.optim.Adam(lr=1e-2).minimize(loss)
    plan = gc.compile(g, shapes={"x": (6, 4), "lab": (6,)}, fuse=False)  # the corpus mutates steps by op
    return plan.proto


def base_feeds():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((6, 4)).astype(np.float32), "lab": rng.integers(0, 3, 6)}


# -- helpers over a proto ---------------------------------------------------------------------

def _pb():
    from graphc._proto import graphc_pb2 as pb
    return pb


def _first(p, pred):
    for i, v in enumerate(p.values):
        if pred(v):
            return i
    raise LookupError("the base plan has no such value")


def _arena(p):
    pb = _pb()
    return _first(p, lambda v: v.storage == pb.ARENA and v.nbytes > 0)


def _step(p, op):
    for s, st in enumerate(p.steps):
        if st.op == op:
            return s
    raise LookupError(f"the base plan has no {op} step")


def _set(obj, name, value):
    setattr(obj, name, value)


def _move_onto_live(p):
    """Put the first matmul's output on the bytes of the feed x, which is still live
    (its gradient matmul reads it later): silently wrong numbers without the check."""
    p.values[p.steps[_step(p, "matmul")].outputs[0]].offset = p.values[p.feeds[0]].offset


def _fake_inplace():
    """y = matmul(relu(x), w) with y written over the exact bytes of relu(x), which dies
    at that step: the takeover is safe only for elementwise ops, so the in-place rule
    must refuse it for matmul (else a silently wrong y)."""
    pb = _pb()
    p = pb.Plan(format_version=1, min_consumer_version=1, target="cpu", arena_bytes=128)
    p.values.add(name="x", dtype=pb.FLOAT32, dims=[2, 2], storage=pb.ARENA, offset=0, nbytes=16)
    p.values.add(name="w", dtype=pb.FLOAT32, dims=[2, 2], storage=pb.CONSTANT, index=0, nbytes=16)
    p.values.add(name="a", dtype=pb.FLOAT32, dims=[2, 2], storage=pb.ARENA, offset=64, nbytes=16)
    p.values.add(name="y", dtype=pb.FLOAT32, dims=[2, 2], storage=pb.ARENA, offset=64, nbytes=16)
    p.constants.add(dtype=pb.FLOAT32, dims=[2, 2], raw_data=np.arange(4, dtype=np.float32).tobytes())
    p.steps.add(op="relu", node="a", inputs=[0], outputs=[2])
    p.steps.add(op="matmul", node="y", inputs=[2, 1], outputs=[3])
    p.feeds.append(0)
    p.fetches.append(3)
    return p


def _zero_size_concat():
    """concat along axis 1 of two (2**40, 0) constants: valid, zero bytes; a kernel that
    loops over the 2**40 rows of nothing hangs."""
    pb = _pb()
    p = pb.Plan(format_version=1, min_consumer_version=1, target="cpu", arena_bytes=0)
    for k in range(2):
        p.constants.add(dtype=pb.FLOAT32, dims=[2 ** 40, 0])
        p.values.add(name=f"c{k}", dtype=pb.FLOAT32, dims=[2 ** 40, 0], storage=pb.CONSTANT, index=k)
    p.values.add(name="y", dtype=pb.FLOAT32, dims=[2 ** 40, 0], storage=pb.ARENA, offset=0, nbytes=0)
    st = p.steps.add(op="concat", node="y", inputs=[0, 1], outputs=[2])
    st.attrs["axis"].i = 1
    p.fetches.append(2)
    return p


def _attr_kind(p):
    """Give matmul's bool attr transpose_a a string value."""
    p.steps[_step(p, "matmul")].attrs["transpose_a"].s = "yes"


def _drop_attr_value(p):
    for st in p.steps:
        for key in st.attrs:
            st.attrs[key].Clear()
            return
    raise LookupError("no attr in the base plan")


def _swap_matmul_out_dims(p):
    v = p.values[p.steps[_step(p, "matmul")].outputs[0]]
    assert len(v.dims) == 2 and v.dims[0] != v.dims[1]
    v.dims[:] = [v.dims[1], v.dims[0]]


def _wrap_nbytes(p):
    """dims whose byte size is 2**64: nbytes wraps to 0 in uint64 arithmetic."""
    v = p.values[_arena(p)]
    v.dims[:] = [2 ** 62, 4] if v.dtype in (1, 3) else [2 ** 61, 4]
    v.nbytes = 0


def _view_index(p):
    return _first(p, lambda v: v.storage == _pb().VIEW)


def _alias_pair(p):
    pb = _pb()
    a = _view_index(p)
    b = _first(p, lambda v: v.storage == pb.VIEW and v.name != p.values[a].name)
    p.values[a].alias_of = b
    p.values[b].alias_of = a


def _write_view(p):
    st = p.steps[_step(p, "relu")]
    st.outputs[0] = _view_index(p)


def _write_constant(p):
    st = p.steps[_step(p, "relu")]
    st.outputs[0] = _first(p, lambda v: v.storage == _pb().CONSTANT)


def _write_feed(p):
    st = p.steps[_step(p, "relu")]
    st.outputs[0] = p.feeds[0]


def _write_twice(p):
    a = p.steps[_step(p, "relu")]
    b = p.steps[_step(p, "mul")]
    b.outputs[0] = a.outputs[0]


def _read_before_write(p):
    p.steps[0].inputs[0] = p.steps[-1].outputs[0] if p.values[p.steps[-1].outputs[0]].storage == 0 else \
        p.steps[_step(p, "softmax_cross_entropy")].outputs[0]


def _free_live(p):
    s = _step(p, "matmul")
    p.steps[s].frees.append(p.steps[s].outputs[0])


def _fetch_unwritten(p):
    pb = _pb()
    p.values.add(name="never_written", dtype=pb.FLOAT32, dims=[1], storage=pb.ARENA, offset=0, nbytes=4)
    p.fetches.append(len(p.values) - 1)


def _persistent_index(p):
    p.values[_first(p, lambda v: v.storage == _pb().PERSISTENT)].index = 999


def _constant_index(p):
    p.values[_first(p, lambda v: v.storage == _pb().CONSTANT)].index = -3


def _feed_constant(p):
    p.feeds[0] = _first(p, lambda v: v.storage == _pb().CONSTANT)


def _huge_constant(p):
    pb = _pb()
    c = p.values[_first(p, lambda v: v.storage == pb.CONSTANT)]
    p.constants[c.index].dims[:] = [2 ** 31, 2 ** 31, 2 ** 10]


def _dup_names(p):
    p.values[1].name = p.values[0].name


def _dp_plan():
    """A data-parallel training plan of its own: two gradient buckets, each an allreduce_start /
    allreduce_wait pair whose outputs are views written in place over the bucket's members,
    laid out back to back (graphc/compiler/assign_buffers.py)."""
    import graphc as gc
    from graphc.graph import GRADIENT, OPTIMIZER, Graph

    with Graph() as g:
        x = gc.placeholder("x", (6, 4))
        scale = gc.placeholder("scale", (8,))
        lab = gc.placeholder("lab", (6,), dtype="int64")
        w1 = gc.variable("w1", (4, 8), init=gc.init.xavier_uniform(seed=1))
        b1 = gc.variable("b1", (8,), init=gc.init.zeros())
        w2 = gc.variable("w2", (8, 3), init=gc.init.xavier_uniform(seed=2))
        loss = gc.softmax_cross_entropy((gc.relu(x @ w1 + b1) * scale) @ w2, lab)
        gw1, gb1, gw2 = gc.gradients(loss, [w1, b1, w2])
        r0 = g.add_node("allreduce_start", [gw2], {"bucket": 0}, name="data_parallel/allreduce_start_0", role=GRADIENT)
        (s0,) = g.add_node("allreduce_wait", r0, {"bucket": 0}, name="data_parallel/allreduce_wait_0", role=GRADIENT)
        r1 = g.add_node("allreduce_start", [gb1, gw1], {"bucket": 1}, name="data_parallel/allreduce_start_1",
                        role=GRADIENT)
        sb1, sw1 = g.add_node("allreduce_wait", r1, {"bucket": 1}, name="data_parallel/allreduce_wait_1",
                              role=GRADIENT)
        for var, grad in ((w1, sw1), (b1, sb1), (w2, s0)):
            g.add_node("sgd_update", [var, grad], {"lr": 0.1}, role=OPTIMIZER)
    return gc.compile(g, fetches=[loss], fuse=False).proto


def _dp_bucket(p, op, bucket):
    for s, st in enumerate(p.steps):
        if st.op == op and st.attrs["bucket"].i == bucket:
            return s
    raise LookupError(f"the data-parallel plan has no {op} of bucket {bucket}")


def _dp_root(p, i):
    return p.values[i].alias_of if p.values[i].storage == _pb().VIEW else i


def _bucket_not_contiguous():
    """Bucket 1's second member moved up one alignment slot: the one range the kernel sums
    would cover bytes the bucket does not own (a wild write on every rank)."""
    p = _dp_plan()
    st = p.steps[_dp_bucket(p, "allreduce_start", 1)]
    p.values[_dp_root(p, st.inputs[1])].offset += 64
    p.arena_bytes += 128
    return p


def _bucket_into_feed():
    """Bucket 1's first member (the b1 gradient) swapped for the feed `scale` of the same
    shape: the allreduce would write the caller's feed in place."""
    pb = _pb()
    p = _dp_plan()
    st = p.steps[_dp_bucket(p, "allreduce_start", 1)]
    feed = _first(p, lambda v: v.name == "scale")
    old = _dp_root(p, st.inputs[0])
    st.inputs[0] = feed
    for v in p.values:
        if v.storage == pb.VIEW and v.alias_of == old:
            v.alias_of = feed
    p.values[feed].offset, p.values[old].offset = p.values[old].offset, p.values[feed].offset
    return p


def _bucket_stale_read():
    """The w2 update reads the local gradient after the allreduce overwrote it with the sum."""
    p = _dp_plan()
    wait = p.steps[_dp_bucket(p, "allreduce_wait", 0)]
    for st in p.steps:
        if st.op == "sgd_update" and st.inputs[1] in wait.outputs:
            st.inputs[1] = _dp_root(p, st.inputs[1])
            return p
    raise LookupError("no update reads bucket 0")


def _bucket_never_waited():
    """Bucket 0's allreduce_wait dropped, the update reading the started view: the bucket's bytes
    would be free for reuse while the collective may still write them."""
    p = _dp_plan()
    s = _dp_bucket(p, "allreduce_wait", 0)
    started = dict(zip(p.steps[s].outputs, p.steps[s].inputs))
    del p.steps[s]
    for st in p.steps:
        st.inputs[:] = [started.get(i, i) for i in st.inputs]
        del st.frees[:]
    return p


def _bucket_view_by_plain_op():
    """A matmul step claims to write a view of its output in place: matmul declares no alias."""
    pb = _pb()
    p = _dp_plan()
    s = _step(p, "matmul")
    out = p.steps[s].outputs[0]
    v = p.values.add()
    v.CopyFrom(p.values[out])
    v.name, v.storage, v.alias_of = "fake_view", pb.VIEW, out
    p.steps[s].outputs[0] = len(p.values) - 1
    return p


CASES = [
    # -- indices -----------------------------------------------------------------------------
    Case("step_input_out_of_range", lambda p: p.steps[0].inputs.__setitem__(0, len(p.values) + 5),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("step_output_negative", lambda p: p.steps[0].outputs.__setitem__(0, -1),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("fetch_out_of_range", lambda p: p.fetches.append(2 ** 31 - 1), "ModelFormatError", "ModelFormatError",
         "validator"),
    Case("feed_out_of_range", lambda p: p.feeds.__setitem__(0, -7), "ModelFormatError", "ModelFormatError",
         "validator"),
    Case("frees_out_of_range", lambda p: p.steps[0].frees.append(len(p.values)), "ModelFormatError",
         "ModelFormatError", "validator"),
    Case("workspace_out_of_range", lambda p: p.steps[0].workspaces.append(len(p.values) + 1), "ModelFormatError",
         "ModelFormatError", "validator"),
    Case("workspace_not_arena", lambda p: p.steps[0].workspaces.append(_first(p, lambda v: v.storage == 2)),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("persistent_index_out_of_range", _persistent_index, "ModelFormatError", "ModelFormatError", "validator"),
    Case("constant_index_negative", _constant_index, "ModelFormatError", "ModelFormatError", "validator"),
    Case("view_alias_out_of_range", lambda p: _set(p.values[_view_index(p)], "alias_of", 10 ** 6),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("view_alias_self", lambda p: _set(p.values[_view_index(p)], "alias_of", _view_index(p)),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("view_alias_cycle", _alias_pair, "ModelFormatError", "ModelFormatError", "validator"),
    # -- offsets and sizes ---------------------------------------------------------------------
    Case("offset_outside_arena", lambda p: _set(p.values[_arena(p)], "offset", p.arena_bytes + 64),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("offset_plus_nbytes_overflows", lambda p: _set(p.values[_arena(p)], "offset", 2 ** 64 - 64),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("offset_misaligned", lambda p: _set(p.values[_arena(p)], "offset", p.values[_arena(p)].offset + 8),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("nbytes_lie", lambda p: _set(p.values[_arena(p)], "nbytes", p.values[_arena(p)].nbytes + 4),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("nbytes_wraps_to_zero", _wrap_nbytes, "ModelFormatError", "ModelFormatError", "validator"),
    Case("huge_dims", lambda p: p.values[_arena(p)].dims.extend([2 ** 40, 2 ** 40]), "ModelFormatError",
         "ModelFormatError", "validator"),
    Case("negative_dim", lambda p: p.values[_arena(p)].dims.__setitem__(0, -2), "ModelFormatError",
         "ModelFormatError", "validator"),
    Case("huge_constant_dims", _huge_constant, "ModelFormatError", "ModelFormatError", "validator"),
    Case("constant_data_short", lambda p: _set(p.constants[0], "raw_data", p.constants[0].raw_data[:-1]),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("persistent_data_short", lambda p: _set(p.persistent[0].init, "raw_data", b"\0" * 3),
         "ModelFormatError", "ModelFormatError", "validator"),
    Case("constant_external_data", lambda p: _set(p.constants[0].external, "location", "/etc/passwd"),
         "ModelFormatError", "ModelFormatError", "wrapper"),
    # -- enums and names -----------------------------------------------------------------------
    Case("unknown_dtype", lambda p: _set(p.values[_arena(p)], "dtype", 99), "ModelFormatError",
         "ModelFormatError", "validator"),
    Case("unknown_storage", lambda p: _set(p.values[_arena(p)], "storage", 7), "ModelFormatError",
         "ModelFormatError", "validator"),
    Case("unknown_op", lambda p: _set(p.steps[0], "op", "frobnicate"), "ModelFormatError", "ModelFormatError",
         "validator"),
    Case("empty_op", lambda p: _set(p.steps[0], "op", ""), "ModelFormatError", "ModelFormatError", "validator"),
    Case("duplicate_value_names", _dup_names, "ModelFormatError", "ModelFormatError", "validator"),
    Case("huge_name", lambda p: _set(p.steps[0], "op", "x" * (10 ** 7)), "ModelFormatError", "ModelFormatError",
         "validator"),
    # -- feeds, writes, views ------------------------------------------------------------------
    Case("feed_is_constant", _feed_constant, "ModelFormatError", "ModelFormatError", "validator"),
    Case("feed_listed_twice", lambda p: p.feeds.append(p.feeds[0]), "ModelFormatError", "ModelFormatError",
         "validator"),
    Case("step_writes_view", _write_view, "ModelFormatError", "ModelFormatError", "validator"),
    Case("step_writes_constant", _write_constant, "ModelFormatError", "ModelFormatError", "validator"),
    Case("step_writes_feed", _write_feed, "ModelFormatError", "ModelFormatError", "validator"),
    Case("value_written_twice", _write_twice, "ModelFormatError", "ModelFormatError", "validator"),
    # -- liveness --------------------------------------------------------------------------------
    Case("overlapping_live_values", _move_onto_live, "ModelFormatError", "ModelFormatError", "validator"),
    Case("inplace_by_non_elementwise_op", _fake_inplace, "ModelFormatError", "ModelFormatError", "validator",
         own_plan=True),
    Case("read_before_write", _read_before_write, "ModelFormatError", "ModelFormatError", "validator"),
    Case("free_of_live_value", _free_live, "ModelFormatError", "ModelFormatError", "validator"),
    Case("fetch_never_written", _fetch_unwritten, "ModelFormatError", "ModelFormatError", "validator"),
    # -- data-parallel buckets (alias writes, contiguous inputs) ------------------------------------
    Case("bucket_not_contiguous", _bucket_not_contiguous, "ModelFormatError", "ModelFormatError", "validator",
         own_plan=True),
    Case("bucket_alias_into_feed", _bucket_into_feed, "ModelFormatError", "ModelFormatError", "validator",
         own_plan=True),
    Case("bucket_stale_read", _bucket_stale_read, "ModelFormatError", "ModelFormatError", "validator",
         own_plan=True),
    Case("bucket_never_waited", _bucket_never_waited, "ModelFormatError", "ModelFormatError", "validator",
         own_plan=True),
    Case("view_written_by_op_without_alias", _bucket_view_by_plain_op, "ModelFormatError", "ModelFormatError",
         "validator", own_plan=True),
    # -- memory ----------------------------------------------------------------------------------
    Case("arena_above_physical_memory", lambda p: _set(p, "arena_bytes", 2 ** 62), "ResourceError", None,
         "resource"),
    Case("arena_plus_persistent_overflows", lambda p: _set(p, "arena_bytes", 2 ** 64 - 64), "ResourceError", None,
         "resource"),
    Case("arena_above_memory_limit", lambda p: None, "ResourceError", None, "resource",
         env={"GRAPHC_MEMORY_LIMIT": "512"}),
    # 2**47 bytes is all of x86-64's user address space: the allocation fails whatever the
    # machine (and under ASan, where RLIMIT_AS cannot apply); the limit is raised past it so
    # the allocation itself is what fails.
    Case("arena_allocation_fails", lambda p: _set(p, "arena_bytes", 1 << 47), "ResourceError", None, "resource",
         env={"GRAPHC_MEMORY_LIMIT": str(1 << 50)}),
    # -- what the kernels check ------------------------------------------------------------------
    Case("matmul_output_wrong_dims", _swap_matmul_out_dims, "ModelFormatError", None, "kernel"),
    Case("attr_wrong_kind", _attr_kind, "ModelFormatError", None, "kernel"),
    Case("attr_without_value", _drop_attr_value, "ModelFormatError", None, "wrapper"),
    Case("zero_size_dim_with_huge_dims", _zero_size_concat, None, None, "kernel", own_plan=True),
]


def plan_feeds(p):
    """Zeros for every feed of plan `p` (name → array), for cases with a plan of their own."""
    from graphc.proto_enums import dtype_from_proto

    out = {}
    for i in p.feeds:
        v = p.values[i]
        out[v.name] = np.zeros(tuple(v.dims), np.dtype(dtype_from_proto(v.dtype)))
    return out


def build(case, base):
    """The case's plan (a graphc_pb2.Plan)."""
    pb = _pb()
    if case.own_plan:
        return case.mutate()
    p = pb.Plan()
    p.CopyFrom(base)
    case.mutate(p)
    return p


# -- the worker ---------------------------------------------------------------------------------

def _run_one(entry, path, feeds):
    """Returns ("ok", "") or (error class name, message) or ("exit N", stderr) for the CLI."""
    import graphc as gc
    from graphc import cli, errors
    from graphc._proto import graphc_pb2 as pb

    if entry == "cli":
        argv = ["run", path]
        for name, file in feeds.items():
            argv += ["--feed", f"{name}={file}"]
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = cli.main(argv)
        return f"exit {code}", err.getvalue()
    try:
        if entry == "load_plan":
            gc.load_plan(path)
            return "ok", ""
        if entry == "session_path":
            sess = gc.Session(path, threads=1)
        else:
            with open(path, "rb") as f:
                sess = gc.Session(pb.Plan.FromString(f.read()), threads=1)
        arrays = {name: np.load(file) for name, file in feeds.items() if name in sess.feed_names}
        sess.run(arrays)
        return "ok", ""
    except errors.GraphcError as e:
        return type(e).__name__, str(e)[:300]
    except BaseException as e:  # noqa: BLE001 — an untyped error is what the test reports
        return f"untyped {type(e).__module__}.{type(e).__name__}", str(e)[:300]


def limit_address_space():
    """Bound the process's memory with RLIMIT_AS — except under AddressSanitizer, which
    reserves terabytes of shadow address space at start-up (tools/sanitize.sh bounds each
    allocation with ASAN_OPTIONS=max_allocation_size_mb instead)."""
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    resource.setrlimit(resource.RLIMIT_AS, (RLIMIT_AS_BYTES, RLIMIT_AS_BYTES))


def worker(entry, case_dir, names):
    """Run cases (files CASE_DIR/NAME.plan, feeds in CASE_DIR/feeds.json) through one entry
    point; print one JSON line per case as soon as it finishes."""
    limit_address_space()
    with open(os.path.join(case_dir, "cases.json")) as f:
        meta = json.load(f)
    for name in names or list(meta["cases"]):
        env, feeds = meta["cases"][name]["env"], meta["cases"][name]["feeds"]
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            outcome, message = _run_one(entry, os.path.join(case_dir, name + ".plan"), feeds)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        print(json.dumps({"case": name, "outcome": outcome, "message": message}), flush=True)


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], sys.argv[3:])
