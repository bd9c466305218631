"""Memory planning of data-parallel plans (issue 17, PLAN): gradient buckets.

The collectives ``allreduce_start`` / ``allreduce_wait`` declare ``alias`` (output k is a view of
input k, written in place), ``contiguous_inputs`` (the inputs' roots back to back in one arena
range) and ``schedule`` ("asap" / "alap").  These tests build the bucket nodes by hand (the
data_parallel pass is tested in test_data_parallel_pass.py) and check what the planner, the
scheduler, the Python verifier (graphc/plan.py) and the C++ validator (runtime/validate.cc) make
of them: the layout, the live ranges, the order, and the refusal of every malformed variant.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

import graphc as gc
from graphc._proto import graphc_pb2 as pb
from graphc.compiler.verify_plan import PlanVerificationError, verify_plan
from graphc.errors import CompileError, ModelFormatError
from graphc.graph import GRADIENT, OPTIMIZER, Graph
from graphc.plan import validate_plan

ALIGN = 64
VARS = {"w1": (5, 7), "b1": (7,), "w2": (7, 3), "b2": (3,)}   # sizes not multiples of 64 bytes
BATCH = 6


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _runtime():
    return pytest.importorskip("graphc._runtime")


def dp_graph(buckets, dtype="float32", extra=None):
    """An MLP whose gradients go through one allreduce_start/allreduce_wait pair per bucket
    (``buckets``: lists of variable names, in the order of the bucket's inputs), then SGD.
    ``extra(g, grads, waits)`` may add nodes; it returns extra fetches."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 5), dtype)
        scale = gc.placeholder("scale", (7,), dtype)
        lab = gc.placeholder("lab", (None,), dtype="int64")
        v = {name: gc.variable(name, shape, dtype, init=gc.init.xavier_uniform(seed=k) if len(shape) == 2
                               else gc.init.zeros())
             for k, (name, shape) in enumerate(VARS.items())}
        h = gc.relu(x @ v["w1"] + v["b1"]) * scale
        loss = gc.softmax_cross_entropy(h @ v["w2"] + v["b2"], lab)
        names = list(VARS)
        grads = dict(zip(names, gc.gradients(loss, [v[n] for n in names])))
        waits = {}
        for b, members in enumerate(buckets):
            r = g.add_node("allreduce_start", [grads[n] for n in members], {"bucket": b},
                           name=f"data_parallel/allreduce_start_{b}", role=GRADIENT)
            s = g.add_node("allreduce_wait", r, {"bucket": b}, name=f"data_parallel/allreduce_wait_{b}",
                           role=GRADIENT)
            waits.update(zip(members, s))
        fetches = [loss] + (extra(g, grads, waits) if extra else [])
        for n in names:
            g.add_node("sgd_update", [v[n], waits.get(n, grads[n])], {"lr": 0.1}, role=OPTIMIZER)
    return g, fetches


def compile_dp(buckets, fuse=False, **kw):
    g, fetches = dp_graph(buckets, **kw)
    return gc.compile(g, shapes={"x": (BATCH, 5), "lab": (BATCH,)}, fetches=fetches, fuse=fuse)


def root(p, i):
    return p.values[i].alias_of if p.values[i].storage == pb.VIEW else i


def steps_of(p, op):
    return [s for s, st in enumerate(p.steps) if st.op == op]


def check_buckets(plan):
    """Every bucket's layout, aliasing and reserved live range; returns {bucket: member roots}."""
    p = plan.proto if hasattr(plan, "proto") else plan
    live = verify_plan(p)
    writer = {}
    for s, st in enumerate(p.steps):
        for o in st.outputs:
            writer.setdefault(o, s)
    out = {}
    for s in steps_of(p, "allreduce_start"):
        st = p.steps[s]
        roots = [root(p, i) for i in st.inputs]
        assert len(set(roots)) == len(roots)
        at = p.values[roots[0]].offset
        for r in roots:
            v = p.values[r]
            assert v.storage == pb.ARENA and r not in p.feeds
            assert v.offset == at, f"{v.name} at {v.offset}, expected {at} (back to back)"
            at = _align(v.offset + v.nbytes)
        for i, o in zip(st.inputs, st.outputs):
            assert p.values[o].storage == pb.VIEW and p.values[o].alias_of == root(p, i)
        bucket = st.attrs["bucket"].i
        (w,) = [k for k in steps_of(p, "allreduce_wait") if p.steps[k].attrs["bucket"].i == bucket]
        wait = p.steps[w]
        assert list(wait.inputs) == list(st.outputs)
        assert [p.values[o].alias_of for o in wait.outputs] == roots
        # The range the kernel reduces, padding included, belongs to the bucket from its first
        # member's write to the last read of any member or alias of one.
        lo = p.values[roots[0]].offset
        hi = p.values[roots[-1]].offset + p.values[roots[-1]].nbytes
        first = min(live[r][0] for r in roots)
        last = max(live[r][1] for r in roots)
        assert first < s < w <= last
        for i, (a, b) in live.items():
            v = p.values[i]
            if i in roots or not v.nbytes or b < first or a > last:
                continue
            assert v.offset + v.nbytes <= lo or v.offset >= hi, (
                f"{v.name} [{v.offset}, {v.offset + v.nbytes}) live {a}..{b} inside bucket {bucket} [{lo}, {hi}) "
                f"live {first}..{last}")
        out[bucket] = [p.values[r].name for r in roots]
    return out


# -- layout ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("buckets", [[["w2", "b2", "w1", "b1"]], [["b2", "w2"], ["b1", "w1"]],
                                     [["w2"], ["b2"], ["w1"], ["b1"]], [["b1", "w2"], ["w1", "b2"]]])
def test_bucket_members_back_to_back_and_reserved(buckets, fuse):
    plan = compile_dp(buckets, fuse=fuse)
    layout = check_buckets(plan)
    assert len(layout) == len(buckets)
    _runtime().validate_plan(plan.proto)


def test_float64_buckets():
    plan = compile_dp([["w2", "b2"], ["w1", "b1"]], dtype="float64")
    check_buckets(plan)
    _runtime().validate_plan(plan.proto)


def test_bucket_of_one_size_zero_member():
    """A size-0 member still gets the offset its place in the block says (the kernel checks
    contiguity by pointers)."""
    with Graph() as g:
        x = gc.placeholder("x", (4, 3))
        w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
        e = gc.variable("e", (0,), init=gc.init.zeros())
        u = gc.variable("u", (5,), init=gc.init.zeros())
        loss = gc.sum(x @ w) + gc.sum(e) * gc.sum(u)
        grads = gc.gradients(loss, [w, e, u])
        r = g.add_node("allreduce_start", grads, {"bucket": 0}, name="start", role=GRADIENT)
        s = g.add_node("allreduce_wait", r, {"bucket": 0}, name="wait", role=GRADIENT)
        for var, gi in zip([w, e, u], s):
            g.add_node("sgd_update", [var, gi], {"lr": 0.1}, role=OPTIMIZER)
    plan = gc.compile(g, fetches=[loss], fuse=False)
    check_buckets(plan)
    p = plan.proto
    (s0,) = steps_of(p, "allreduce_start")
    offs = [p.values[root(p, i)].offset for i in p.steps[s0].inputs]
    assert offs[1] == offs[2] == offs[0] + _align(24)
    _runtime().validate_plan(p)


def test_alias_outputs_are_views_with_no_arena_bytes_of_their_own():
    plan = compile_dp([["w2", "b2", "w1", "b1"]])
    p = plan.proto
    plain = gc.compile(dp_graph([])[0], shapes={"x": (BATCH, 5), "lab": (BATCH,)}, fuse=False).proto
    aliased = [o for s in steps_of(p, "allreduce_start") + steps_of(p, "allreduce_wait") for o in p.steps[s].outputs]
    assert len(aliased) == 8 and all(p.values[o].storage == pb.VIEW for o in aliased)
    # the bucket keeps every gradient alive together: at most all four gradients more than the plain plan
    grads = sum(_align(int(np.prod(s)) * 4) for s in VARS.values())
    assert plain.arena_bytes <= p.arena_bytes <= plain.arena_bytes + grads


def test_plan_is_deterministic():
    a = compile_dp([["b2", "w2"], ["b1", "w1"]]).proto.SerializeToString(deterministic=True)
    b = compile_dp([["b2", "w2"], ["b1", "w1"]]).proto.SerializeToString(deterministic=True)
    assert a == b


def test_metadata_reaches_the_plan():
    g, fetches = dp_graph([["w2", "b2", "w1", "b1"]])
    g.metadata.update({"data_parallel.world_size": "2", "data_parallel.buckets": "1"})
    plan = gc.compile(g, shapes={"x": (BATCH, 5), "lab": (BATCH,)}, fetches=fetches, fuse=False)
    assert plan.proto.metadata["data_parallel.world_size"] == "2"
    assert plan.proto.metadata["data_parallel.buckets"] == "1"


# -- schedule ----------------------------------------------------------------------------------

def _writers(p):
    out = {}
    for s, st in enumerate(p.steps):
        for o in st.outputs:
            out[o] = s
    return out


@pytest.mark.parametrize("buckets", [[["b2", "w2"], ["b1", "w1"]], [["w2"], ["b2"], ["w1"], ["b1"]]])
def test_start_asap_wait_alap(buckets):
    p = compile_dp(buckets).proto
    writer = _writers(p)
    starts, waits = steps_of(p, "allreduce_start"), steps_of(p, "allreduce_wait")
    for s in starts:
        # right after its last dependency (the last member written)
        assert s == max(writer[root(p, i)] for i in p.steps[s].inputs) + 1
    backward = [s for s, st in enumerate(p.steps) if st.role == pb.GRADIENT and not st.op.startswith("allreduce")]
    for w in waits:
        consumers = [s for s, st in enumerate(p.steps) if set(st.inputs) & set(p.steps[w].outputs)]
        assert w == min(consumers) - 1  # right before its first consumer
        assert w > max(backward)         # after the whole backward pass: communication overlaps it
    # buckets start in order of their gradients and are waited for in the same order
    assert [p.steps[s].attrs["bucket"].i for s in waits] == sorted(p.steps[s].attrs["bucket"].i for s in waits)


def test_readers_of_the_local_gradient_run_before_its_start():
    """A node that reads a gradient before the sum (here a fetched norm of the local gradient)
    runs before the allreduce_start that overwrites it in place."""
    def extra(g, grads, waits):
        return [gc.sum(grads["w1"] * grads["w1"]), gc.sum(waits["w1"])]
    plan = compile_dp([["w2", "b2"], ["w1", "b1"]], extra=extra)
    p = plan.proto
    check_buckets(plan)
    (start1,) = [s for s in steps_of(p, "allreduce_start") if p.steps[s].attrs["bucket"].i == 1]
    (wait1,) = [s for s in steps_of(p, "allreduce_wait") if p.steps[s].attrs["bucket"].i == 1]
    gw1 = root(p, p.steps[start1].inputs[1])
    for s, st in enumerate(p.steps):
        if s != start1 and gw1 in st.inputs:
            assert s < start1, f"{st.node} reads the local gradient after the allreduce started"
    sum_after = [s for s, st in enumerate(p.steps)
                 if st.op == "sum" and set(st.inputs) & set(p.steps[wait1].outputs)]
    assert sum_after and min(sum_after) > wait1
    _runtime().validate_plan(p)


# -- compile-time refusals -------------------------------------------------------------------

def test_feed_member_is_a_compile_error():
    with Graph() as g:
        x = gc.placeholder("x", (4, 3))
        w = gc.variable("w", (3,), init=gc.init.zeros())
        r = g.add_node("allreduce_start", [x], {"bucket": 0}, name="start")
        s = g.add_node("allreduce_wait", r, {"bucket": 0}, name="wait")
        y = gc.sum(s[0] * w)
    with pytest.raises(CompileError, match="in place into input 0.*fed placeholder"):
        gc.compile(g, fetches=[y])


def test_variable_member_is_a_compile_error():
    with Graph() as g:
        w = gc.variable("w", (3,), init=gc.init.zeros())
        r = g.add_node("allreduce_start", [w], {"bucket": 0}, name="start")
        y = gc.sum(r[0])
    with pytest.raises(CompileError, match="in place into input 0.*persistent value"):
        gc.compile(g, fetches=[y])


def test_root_in_two_different_blocks_is_a_compile_error():
    """A gradient reduced again in a second bucket of another arrangement cannot be laid out
    back to back in both."""
    def extra(g, grads, waits):
        r = g.add_node("allreduce_start", [waits["w1"]], {"bucket": 7}, name="again", role=GRADIENT)
        s = g.add_node("allreduce_wait", r, {"bucket": 7}, name="again_wait", role=GRADIENT)
        return [gc.sum(s[0])]
    with pytest.raises(CompileError, match="contiguous block"):
        compile_dp([["w2", "b2"], ["w1", "b1"]], extra=extra)


# -- the validators refuse malformed buckets (Python twin and C++, the same decisions) -------

def _base():
    p = compile_dp([["b2", "w2"], ["b1", "w1"]]).proto
    out = pb.Plan()
    out.CopyFrom(p)
    return out


def _start(p, bucket):
    (s,) = [s for s in steps_of(p, "allreduce_start") if p.steps[s].attrs["bucket"].i == bucket]
    return s


def _wait(p, bucket):
    (s,) = [s for s in steps_of(p, "allreduce_wait") if p.steps[s].attrs["bucket"].i == bucket]
    return s


def _not_contiguous(p):
    st = p.steps[_start(p, 1)]
    r = root(p, st.inputs[1])
    p.values[r].offset += ALIGN
    p.arena_bytes += 2 * ALIGN


def _misaligned_member(p):
    """The second member 64 bytes early: it would overlap the first member's padding... or the
    first member itself."""
    st = p.steps[_start(p, 1)]
    r = root(p, st.inputs[1])
    p.values[r].offset -= ALIGN


def _alias_wrong_root(p):
    """Bucket 1's first output claims the bytes of another value of its size (the feed `scale`)."""
    st = p.steps[_start(p, 1)]
    p.values[st.outputs[0]].alias_of = [i for i in p.feeds if p.values[i].name == "scale"][0]


def _alias_by_plain_op(p):
    """A relu step that claims to write a view in place: relu has no alias."""
    s = [k for k, st in enumerate(p.steps) if st.op == "relu"][0]
    v = p.values.add()
    v.CopyFrom(p.values[p.steps[s].outputs[0]])
    v.name = "fake_view"
    v.storage = pb.VIEW
    v.alias_of = p.steps[s].outputs[0]
    p.steps[s].outputs[0] = len(p.values) - 1


def _stale_read(p):
    """An update reads the local gradient (the root) after the allreduce overwrote it."""
    w = _wait(p, 1)
    for st in p.steps:
        if st.op == "sgd_update" and set(st.inputs) & set(p.steps[w].outputs):
            st.inputs[1] = root(p, st.inputs[1])
            return
    raise AssertionError("no update reads bucket 1")


def _read_before_wait(p):
    """The wait of bucket 1 moved after an update that reads its output."""
    w = _wait(p, 1)
    step = pb.PlanStep()
    step.CopyFrom(p.steps[w])
    del p.steps[w]
    p.steps.add().CopyFrom(step)
    for st in p.steps:
        del st.frees[:]


def _start_without_wait(p):
    """Bucket 1's wait removed (the updates read the started views): after their last read the
    members' bytes could be reused while the collective may still write them."""
    w = _wait(p, 1)
    started = dict(zip(p.steps[w].outputs, p.steps[w].inputs))
    del p.steps[w]
    for st in p.steps:
        st.inputs[:] = [started.get(i, i) for i in st.inputs]
        del st.frees[:]


def _read_in_flight(p):
    """An update reads bucket 1's started view (the wait's input) instead of the wait's output."""
    w = p.steps[_wait(p, 1)]
    done = dict(zip(w.outputs, w.inputs))
    for st in p.steps:
        if st.op == "sgd_update" and st.inputs[1] in done:
            st.inputs[1] = done[st.inputs[1]]
            return
    raise AssertionError("no update reads bucket 1")


def _view_written_twice(p):
    w = _wait(p, 1)
    p.steps[w].outputs[:] = list(p.steps[_start(p, 1)].outputs)


def _duplicate_member(p):
    """Bucket 0 names its first member twice (every view of the second now aliases the first)."""
    st = p.steps[_start(p, 0)]
    first, second = root(p, st.inputs[0]), root(p, st.inputs[1])
    st.inputs[1] = st.inputs[0]
    for v in p.values:
        if v.storage == pb.VIEW and v.alias_of == second:
            v.alias_of = first
            v.dims[:] = p.values[first].dims
            v.nbytes = p.values[first].nbytes


def _member_not_arena(p):
    """A bucket whose member is a variable's persistent storage."""
    st = p.steps[_start(p, 0)]
    r = root(p, st.inputs[0])
    var = [i for i, v in enumerate(p.values) if v.storage == pb.PERSISTENT and v.nbytes == p.values[r].nbytes
           and v.dtype == p.values[r].dtype][0]
    st.inputs[0] = var
    p.values[st.outputs[0]].alias_of = var


def _alias_into_feed(p):
    """Bucket 1's member b1-gradient swapped for the feed `scale` (same dtype and shape)."""
    st = p.steps[_start(p, 1)]
    feed = [i for i in p.feeds if p.values[i].name == "scale"][0]
    k = [k for k, i in enumerate(st.inputs) if tuple(p.values[root(p, i)].dims) == (7,)][0]
    old = root(p, st.inputs[k])
    st.inputs[k] = feed
    for v in p.values:
        if v.storage == pb.VIEW and v.alias_of == old:
            v.alias_of = feed
    p.values[feed].offset = p.values[old].offset   # keep the block contiguous: only the feed rule is left
    p.values[old].offset = 0


MALFORMED = {
    "bucket_not_contiguous": (_not_contiguous, "back to back"),
    "bucket_member_misplaced": (_misaligned_member, "back to back|overlap"),
    "alias_of_wrong_root": (_alias_wrong_root, "must alias"),
    "view_written_by_plain_op": (_alias_by_plain_op, "read-only|writes.*view"),
    "stale_read_after_allreduce": (_stale_read, "in place before"),
    "read_before_wait": (_read_before_wait, "before"),
    "view_written_twice": (_view_written_twice, "writes"),
    "start_without_wait": (_start_without_wait, "no later step completes it"),
    "read_in_flight": (_read_in_flight, "started writing in place"),
    "bucket_member_twice": (_duplicate_member, "twice"),
    "bucket_member_not_arena": (_member_not_arena, "arena"),
    "alias_into_feed": (_alias_into_feed, "feed"),
}


def test_base_plan_passes_both_validators():
    p = _base()
    validate_plan(p)
    _runtime().validate_plan(p)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_bucket_refused_by_both_validators(name):
    mutate, match = MALFORMED[name]
    p = _base()
    mutate(p)
    with pytest.raises(ModelFormatError, match=match):
        validate_plan(p)
    with pytest.raises(PlanVerificationError):
        verify_plan(p)
    with pytest.raises(ValueError, match=match):
        _runtime().validate_plan(p)


# -- property: any bucketing compiles to a plan both validators accept -----------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hst.permutations(list(VARS)), hst.lists(hst.booleans(), min_size=3, max_size=3), hst.booleans())
def test_any_bucketing_is_laid_out_and_validated(order, cuts, fuse):
    buckets, cur = [], [order[0]]
    for name, cut in zip(order[1:], cuts):
        if cut:
            buckets.append(cur)
            cur = []
        cur.append(name)
    buckets.append(cur)
    plan = compile_dp(buckets, fuse=fuse)
    assert sorted(sum(check_buckets(plan).values(), [])) == sorted(
        plan.proto.values[i].name for s in steps_of(plan.proto, "allreduce_start")
        for i in [root(plan.proto, j) for j in plan.proto.steps[s].inputs])
    _runtime().validate_plan(plan.proto)


# -- runs: a world of one (no communicator) -----------------------------------------------------

def _feeds(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((BATCH, 5)).astype(dtype), "scale": rng.uniform(0.5, 1.5, 7).astype(dtype),
            "lab": rng.integers(0, 3, BATCH)}


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("poison", [False, True])
def test_world_of_one_steps_bit_identically_to_the_plain_plan(fuse, poison):
    """Without a communicator the collectives are the identity: the bucketed plan (members laid
    out back to back, written in place through views, waits held back) trains exactly as the
    plain plan.  Poison mode fills every freed value with 0xFF: a bucket member freed or
    overwritten too early would show."""
    _runtime()
    shapes = {"x": (BATCH, 5), "lab": (BATCH,)}
    g_dp, f_dp = dp_graph([["b2", "w2"], ["b1", "w1"]])
    g_plain, f_plain = dp_graph([])
    sessions = [gc.Session(gc.compile(g, shapes=shapes, fetches=f, fuse=fuse), threads=1, poison=poison)
                for g, f in ((g_dp, f_dp), (g_plain, f_plain))]
    initial = {name: sessions[0].get_variable(name).copy() for name in VARS}
    for step in range(4):
        feeds = _feeds(seed=step)
        a, b = (s.run(feeds) for s in sessions)
        assert [np.asarray(v).tobytes() for v in a] == [np.asarray(v).tobytes() for v in b]
    for name in VARS:
        assert sessions[0].get_variable(name).tobytes() == sessions[1].get_variable(name).tobytes()
        assert not np.array_equal(sessions[0].get_variable(name), initial[name])   # it trained


def test_validators_agree_on_random_mutations_of_a_bucketed_plan():
    """The Python twin and the C++ validator accept and refuse the same mutated plans (offsets
    moved, views re-aliased, step inputs redirected, steps swapped or dropped)."""
    import random

    runtime = _runtime()
    base = _base()
    rng = random.Random(17)
    outcomes = {"ok": 0, "refused": 0}
    for trial in range(200):
        p = pb.Plan()
        p.CopyFrom(base)
        for _ in range(rng.randint(1, 2)):
            kind = rng.randrange(5)
            if kind == 0:
                i = rng.choice([i for i, v in enumerate(p.values) if v.storage == pb.ARENA])
                p.values[i].offset = max(0, p.values[i].offset + rng.choice([-128, -64, 64, 128]))
            elif kind == 1:
                i = rng.choice([i for i, v in enumerate(p.values) if v.storage == pb.VIEW])
                p.values[i].alias_of = rng.randrange(len(p.values))
            elif kind == 2:
                step = p.steps[rng.randrange(len(p.steps))]
                if step.inputs:
                    step.inputs[rng.randrange(len(step.inputs))] = rng.randrange(len(p.values))
            elif kind == 3:
                a, b = rng.randrange(len(p.steps)), rng.randrange(len(p.steps))
                sa = pb.PlanStep()
                sa.CopyFrom(p.steps[a])
                p.steps[a].CopyFrom(p.steps[b])
                p.steps[b].CopyFrom(sa)
            else:
                del p.steps[rng.randrange(len(p.steps))]
        try:
            validate_plan(p)
            py = "ok"
        except ModelFormatError:
            py = "refused"
        try:
            runtime.validate_plan(p)
            cc = "ok"
        except ValueError:
            cc = "refused"
        assert py == cc, f"trial {trial}: Python {py}, C++ {cc}"
        outcomes[py] += 1
    assert outcomes["ok"] and outcomes["refused"]
