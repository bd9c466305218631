"""The data_parallel compiler pass (graphc/compiler/data_parallel.py): buckets, allreduce
nodes, rewired gradients, 1/N in the updates, clipping on the averaged gradient, metadata,
entries and errors.  Semantics are checked with the numpy reference interpreter, including a
simulated world of 2 ranks (the allreduce nodes sum across two in-process replicas); real
multi-process runs are tests/test_data_parallel.py's."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpirun import mpirun, require_mpi

import graphc as gc
from graphc import registry
from graphc.compiler import compile as gc_compile
from graphc.compiler import lower_graph
from graphc.compiler._memory import MemoryModel
from graphc.compiler.data_parallel import (
    DataParallel,
    data_parallel,
    launcher_world_size,
    resolve,
)
from graphc.errors import CompileError
from graphc.graph import GRADIENT, OPTIMIZER

UPDATE_OPS = ("sgd_update", "sgd_momentum_update", "adam_update")
LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch):
    """Tests run outside mpirun unless they say otherwise."""
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delitem(__import__("sys").modules, "mpi4py.MPI", raising=False)


def mlp(sizes=(8, 16, 12, 4), dtype="float32", opt=None, dtypes_per_layer=None):
    """A tanh MLP with a mean squared error loss; layer i's variables in dtypes_per_layer[i]."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, sizes[0]), dtype)
        y = gc.placeholder("y", (None, sizes[-1]), dtype)
        h = x
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            dt = dtypes_per_layer[i] if dtypes_per_layer else dtype
            w = gc.variable(f"w{i}", (a, b), dtype=dt, init=gc.init.xavier_uniform(seed=i))
            bias = gc.variable(f"b{i}", (b,), dtype=dt, init=gc.init.uniform(-0.1, 0.1, seed=10 + i))
            if dt != h.dtype:
                h = h.astype(dt)
            h = h @ w + bias
            if i < len(sizes) - 2:
                h = gc.tanh(h)
        if h.dtype != dtype:
            h = h.astype(dtype)
        d = h - y
        loss = gc.mean(d * d)
        (opt or gc.optim.SGD(lr=0.1)).minimize(loss)
    return g


SHAPES = {"x": (6, 8), "y": (6, 4)}


def stages(model, shapes=SHAPES, **kw):
    out = {}
    lower_graph(model, shapes, on_pass=lambda name, graph: out.__setitem__(name, graph), **kw)
    return out


def buckets_of(graph):
    """[(bucket attr, [input names], [output names])] of the allreduce_start nodes, by bucket."""
    starts = [n for n in graph.nodes if n.op == "allreduce_start"]
    return sorted(((n.attrs["bucket"], list(n.inputs), list(n.outputs)) for n in starts), key=lambda b: b[0])


def rand_feeds(rng, shapes=SHAPES, dtype="float32"):
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


# -- configuration --------------------------------------------------------------------------------

def test_resolve_forms_and_errors(monkeypatch):
    assert resolve(None) is None and resolve(False) is None
    assert resolve(3) == DataParallel(3)
    assert resolve(np.int64(2)).world_size == 2
    dp = DataParallel(4, bucket_cap="4MiB", first_bucket=1000)
    assert resolve(dp) is dp and dp.bucket_cap == 4 * 2**20 and dp.first_bucket == 1000
    assert DataParallel().bucket_cap == 25 * 10**6 and DataParallel().first_bucket == 10**6
    with pytest.raises(CompileError, match="run under mpirun or pass data_parallel=N"):
        resolve(True)
    with pytest.raises(CompileError, match="run under mpirun"):
        resolve(DataParallel(bucket_cap="1MB"))
    for bad in (0, -2):
        with pytest.raises(CompileError, match=">= 1"):
            resolve(bad)
    for bad in (2.0, "2", [2]):
        with pytest.raises(CompileError, match="data_parallel= takes"):
            resolve(bad)
    with pytest.raises(CompileError, match="bucket_cap"):
        DataParallel(2, bucket_cap="lots")
    with pytest.raises(CompileError, match="first_bucket"):
        DataParallel(2, first_bucket=0)
    with pytest.raises(CompileError, match="world_size"):
        DataParallel(world_size=True)
    monkeypatch.setenv("PMI_SIZE", "3")
    assert launcher_world_size() == 3
    assert resolve(True).world_size == 3
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")   # Open MPI's own variable first
    assert resolve(DataParallel(bucket_cap=100)) == DataParallel(2, bucket_cap=100)


def test_launcher_size_from_an_imported_mpi4py(monkeypatch):
    class World:
        @staticmethod
        def Get_size():  # noqa: N802 — mpi4py's name
            return 5

    class FakeMPI:
        COMM_WORLD = World

    monkeypatch.setitem(__import__("sys").modules, "mpi4py.MPI", FakeMPI)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert launcher_world_size() == 5


def test_compile_errors_name_the_fix():
    g = mlp()
    with pytest.raises(CompileError, match="run under mpirun or pass data_parallel=N"):
        gc_compile(g, SHAPES, data_parallel=True)
    with pytest.raises(CompileError, match=">= 1"):
        gc_compile(g, SHAPES, data_parallel=0)
    with pytest.raises(CompileError, match="inference plan"):
        gc_compile(g, SHAPES, data_parallel=2, train=False)
    with gc.Graph() as inf:
        x = gc.placeholder("x", (None, 3))
        gc.relu(x)
    with pytest.raises(CompileError, match="no training spec"):
        gc_compile(inf, {"x": (2, 3)}, data_parallel=2)


def test_compile_under_a_launcher_takes_its_world(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    for dp in (True, DataParallel(bucket_cap="1KB")):
        plan = gc_compile(mlp(), SHAPES, data_parallel=dp)
        assert plan.proto.metadata["data_parallel.world_size"] == "3"
        assert {s.attrs["grad_scale"].f for s in plan.proto.steps if s.op == "sgd_update"} == {1 / 3}


# -- buckets ---------------------------------------------------------------------------------------

def test_one_bucket_by_default_with_every_gradient_once_and_rewired():
    g = mlp()
    st = stages(g, data_parallel=2)
    before, after = st["append_gradients"], st["data_parallel"]
    buckets = buckets_of(after)
    assert len(buckets) == 1 and buckets[0][0] == 0
    _, ins, outs = buckets[0]
    assert sorted(ins) == sorted(set(before.gradients_of.values()))
    # the wait's outputs are what the variables' gradients now are
    waits = [n for n in after.nodes if n.op == "allreduce_wait"]
    assert len(waits) == 1 and waits[0].inputs == outs and waits[0].attrs["bucket"] == 0
    assert waits[0].name == "data_parallel/allreduce_wait_0"
    reduced = dict(zip(ins, waits[0].outputs))
    assert after.gradients_of == {v: reduced[gv] for v, gv in before.gradients_of.items()}
    for n in after.nodes:
        if n.op.startswith("allreduce_"):
            assert n.role == GRADIENT
    assert after.metadata["data_parallel.world_size"] == "2"
    assert after.metadata["data_parallel.buckets"] == "1"
    assert after.metadata["data_parallel.copied_bytes"] == "0"
    # the updates read the reduced gradients
    updates = [n for n in st["append_optimizer"].nodes if n.role == OPTIMIZER and n.op in UPDATE_OPS]
    assert sorted(u.inputs[1] for u in updates) == sorted(waits[0].outputs)


def test_caps_first_bucket_and_schedule_order():
    sizes = (8, 64, 32, 16, 4)   # w: 2048, 8192, 2048, 256 bytes; b: 256, 128, 64, 16
    g = mlp(sizes)
    dp = DataParallel(2, bucket_cap=9000, first_bucket=300)
    st = stages(g, {"x": (6, 8), "y": (6, 4)}, data_parallel=dp)
    before, after = st["append_gradients"], st["data_parallel"]
    model = MemoryModel(before)
    buckets = buckets_of(after)
    assert [b for b, _, _ in buckets] == list(range(len(buckets)))

    def aligned(n):
        return -(-n // 64) * 64

    sizes_b = [[model.nbytes[v] for v in ins] for _, ins, _ in buckets]
    for k, s in enumerate(sizes_b):
        cap = 300 if k == 0 else 9000
        assert len(s) == 1 or sum(aligned(n) for n in s) <= cap, (k, s)
    # greedy: the next bucket's first member did not fit
    for k in range(len(sizes_b) - 1):
        cap = 300 if k == 0 else 9000
        assert sum(aligned(n) for n in sizes_b[k]) + aligned(sizes_b[k + 1][0]) > cap
    assert after.metadata["data_parallel.bucket_bytes"] == ",".join(
        str(sum(aligned(n) for n in s[:-1]) + s[-1]) for s in sizes_b)
    assert after.metadata["data_parallel.buckets"] == str(len(buckets))
    # members in the order a schedule of the backward pass writes them: last layer first
    position = {n.name: k for k, n in enumerate(before.topological_order())}
    flat = [v for _, ins, _ in buckets for v in ins]
    written = [position[before.producer(v).name] for v in flat]
    assert written == sorted(written)
    owner = {gv: var for var, gv in before.gradients_of.items()}
    assert owner[flat[0]] in ("w3", "b3")   # the last layer's gradients come first
    assert {owner[flat[-1]]} <= {"w0", "b0"}
    assert sorted(flat) == sorted(set(before.gradients_of.values()))
    # a bucket_cap below first_bucket caps the first bucket too
    small = buckets_of(stages(g, {"x": (6, 8), "y": (6, 4)},
                              data_parallel=DataParallel(2, bucket_cap=300))["data_parallel"])
    for _, ins, _ in small:
        assert len(ins) == 1 or sum(aligned(model.nbytes[v]) for v in ins) <= 300


def test_one_dtype_per_bucket():
    g = mlp((8, 16, 12, 4), dtypes_per_layer=("float32", "float64", "float32"))
    st = stages(g, data_parallel=DataParallel(2, first_bucket="1MB"))
    after = st["data_parallel"]
    buckets = buckets_of(after)
    assert len(buckets) == 3   # float32 (layer 2), float64 (layer 1), float32 (layer 0)
    kinds = [{after.tensor(v).dtype for v in ins} for _, ins, _ in buckets]
    assert kinds == [{"float32"}, {"float64"}, {"float32"}]


def test_an_integer_gradient_is_refused():
    with gc.Graph() as g:
        x = gc.placeholder("x", (3,))
        w = gc.variable("w", (3,), init=gc.init.ones())
        loss = gc.sum(x * w)
        gc.optim.SGD(lr=0.1).minimize(loss)
    st = stages(g, {"x": (3,)})
    graph = st["append_gradients"]
    graph.gradients_of = {"w": "x"}
    # a feed is materialised (float32): fine
    out = data_parallel(graph, DataParallel(2))
    assert out.metadata["data_parallel.copied_bytes"] == "12"
    with gc.Graph() as gi:
        xi = gc.placeholder("xi", (3,), "int32")
        w = gc.variable("w", (3,), init=gc.init.ones())
        loss = gc.sum(xi.astype("float32") * w)
        gc.optim.SGD(lr=0.1).minimize(loss)
    graph = stages(gi, {"xi": (3,)})["append_gradients"]
    graph.gradients_of = {"w": "xi"}
    with pytest.raises(CompileError, match="gradient of variable 'w' is int32"):
        data_parallel(graph, DataParallel(2))


def test_shared_gradient_is_reduced_once():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 5))
        a = gc.variable("a", (5,), init=gc.init.uniform(-1, 1, seed=1))
        b = gc.variable("b", (5,), init=gc.init.uniform(-1, 1, seed=2))
        h = gc.tanh(x)
        s = gc.sum(h, axis=0) + 0.0
        c = s * (a + b)
        loss = gc.sum(c * c)
        gc.optim.SGD(lr=0.01).minimize(loss)
    st = stages(g, {"x": (4, 5)}, data_parallel=2)
    before, after = st["append_gradients"], st["data_parallel"]
    assert before.gradients_of["a"] == before.gradients_of["b"]   # d(a+b)/da = d(a+b)/db
    (bucket,) = buckets_of(after)
    assert bucket[1] == [before.gradients_of["a"]]
    assert after.gradients_of["a"] == after.gradients_of["b"] == bucket[2][0].replace("start", "wait")


def test_a_view_gradient_is_reduced_in_its_root_and_a_fetched_one_is_copied():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 12))
        w = gc.variable("w", (3, 4), init=gc.init.uniform(-1, 1, seed=1))
        v = gc.variable("v", (12,), init=gc.init.uniform(-1, 1, seed=2))
        h = x * gc.reshape(w, (12,)) + v   # w's gradient is a reshape (a view) of a (12,) value
        loss = gc.mean(h * h)
        gc.optim.SGD(lr=0.01).minimize(loss)
    st = stages(g, {"x": (4, 12)}, data_parallel=2)
    before, after = st["append_gradients"], st["data_parallel"]
    model = MemoryModel(before)
    gw = before.gradients_of["w"]
    root = model.root[gw]
    assert root != gw
    assert not [n for n in after.nodes if n.name.startswith("data_parallel/copy_")]
    (bucket,) = buckets_of(after)
    assert root in bucket[1] and gw not in bucket[1]
    view = after.producer(after.gradients_of["w"])
    assert view.op == "reshape" and view.name.startswith("data_parallel/view_")
    assert view.inputs[0] in [o.replace("start", "wait") for o in bucket[2]]
    assert after.tensor(after.gradients_of["w"]).shape == (3, 4)
    assert after.metadata["data_parallel.copied_bytes"] == "0"
    # the step is the plain one (a world of one, N=1)
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 12)).astype(np.float32)}
    s1, s2 = {}, {}
    run_reference(stages(g, {"x": (4, 12)}, data_parallel=1)["schedule_nodes"], feeds, s1)
    run_reference(stages(g, {"x": (4, 12)})["schedule_nodes"], feeds, s2)
    np.testing.assert_array_equal(s1["w"], s2["w"])
    # a fetched gradient is copied (the fetch shows this rank's gradient; the copy is summed)
    before.outputs = [before.training.loss, gw]
    after = data_parallel(before, DataParallel(2))
    copies = [n for n in after.nodes if n.name.startswith("data_parallel/copy_")]
    assert len(copies) == 1 and copies[0].op == "broadcast_to" and copies[0].inputs == [gw]
    assert copies[0].role == GRADIENT and tuple(copies[0].attrs["shape"]) == (3, 4)
    assert copies[0].outputs[0] in buckets_of(after)[0][1]
    assert after.metadata["data_parallel.copied_bytes"] == str(3 * 4 * 4)


def test_zero_size_gradients_are_not_reduced():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3,), init=gc.init.ones())
        e = gc.variable("e", (0,), init=gc.init.ones())
        loss = gc.sum(x * w) + gc.sum(e)
        gc.optim.SGD(lr=0.1).minimize(loss)
    st = stages(g, {"x": (2, 3)}, data_parallel=2)
    before, after = st["append_gradients"], st["data_parallel"]
    (bucket,) = buckets_of(after)
    assert bucket[1] == [before.gradients_of["w"]]
    assert after.gradients_of["e"] == before.gradients_of["e"]


# -- the update ops and clipping ------------------------------------------------------------------

@pytest.mark.parametrize("opt", [gc.optim.SGD(lr=0.1), gc.optim.SGD(lr=0.1, momentum=0.9),
                                 gc.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
                                 gc.optim.Adam(1e-2), gc.optim.AdamW(1e-2), gc.optim.Adam(1e-2, clip_global_norm=0.5)],
                         ids=["sgd", "momentum", "nesterov", "adam", "adamw", "adam-clip"])
def test_grad_scale_on_every_update_op(opt):
    g = mlp(opt=opt)
    for n, scale in ((4, 0.25), (3, 1 / 3), (1, 1.0)):
        st = stages(g, data_parallel=n)
        updates = [u for u in st["append_optimizer"].nodes if u.op in UPDATE_OPS]
        assert len(updates) == 6
        assert all(u.attrs.get("grad_scale", 1.0) == scale for u in updates)
        reduced = set(st["data_parallel"].gradients_of.values())
        if not opt.clip_global_norm:
            assert {u.inputs[1] for u in updates} == reduced
    plain = stages(g)["append_optimizer"]
    assert all(u.attrs.get("grad_scale", 1.0) == 1.0 for u in plain.nodes if u.op in UPDATE_OPS)
    assert not [n for n in plain.nodes if n.op.startswith("allreduce_")]


def test_a_plain_compile_is_unchanged():
    g = mlp(opt=gc.optim.Adam(1e-2))
    assert gc_compile(g, SHAPES).to_bytes() == gc_compile(g, SHAPES, data_parallel=None).to_bytes()
    assert gc_compile(g, SHAPES).to_bytes() == gc_compile(g, SHAPES, data_parallel=False).to_bytes()
    g.metadata["data_parallel.world_size"] = "8"   # a model's own key scales no update
    plan = gc_compile(g, SHAPES)
    assert {s.attrs["grad_scale"].f for s in plan.proto.steps if s.op == "adam_update"} == {1.0}
    plan = gc_compile(g, SHAPES, data_parallel=2)   # the pass's record wins
    assert plan.proto.metadata["data_parallel.world_size"] == "2"
    assert {s.attrs["grad_scale"].f for s in plan.proto.steps if s.op == "adam_update"} == {0.5}


def run_reference(graph, feeds, state, steps=1):
    for _ in range(steps):
        out = gc.reference.evaluate(graph, feeds, fetches=[graph.training.loss], state=state)
    return out


@pytest.mark.parametrize("opt", [gc.optim.SGD(lr=0.2, momentum=0.9, clip_global_norm=0.05),
                                 gc.optim.Adam(1e-2, clip_global_norm=0.05)], ids=["momentum", "adam"])
def test_one_rank_of_n_steps_as_one_process_on_the_mean_gradient(opt):
    """In a world of one process the allreduce is the identity, so a plan compiled for N=2 takes
    the step of the gradient / 2, clipped by the norm of gradient / 2: exactly the plain plan
    of the loss / 2 (scaling by a power of two is exact), clipping active."""
    rng = np.random.default_rng(0)
    feeds = rand_feeds(rng)
    g = mlp(opt=opt)
    dp = stages(g, data_parallel=2)["schedule_nodes"]
    half = mlp(opt=opt)
    loss = half.tensor(half.training.loss)
    with half:
        halved = loss * 0.5
    half.training = opt.to_spec(halved.name)
    ref = stages(half)["schedule_nodes"]
    s1, s2 = {}, {}
    for _ in range(3):
        run_reference(dp, feeds, s1)
        run_reference(ref, feeds, s2)
    for name in ("w0", "b0", "w2", "b2"):
        np.testing.assert_array_equal(s1[name], s2[name])
    # clipping was active: without it the step differs
    noclip = gc.optim.SGD(lr=0.2, momentum=0.9) if opt.kind == "sgd" else gc.optim.Adam(1e-2)
    s3 = {}
    for _ in range(3):
        run_reference(stages(mlp(opt=noclip), data_parallel=2)["schedule_nodes"], feeds, s3)
    assert not np.array_equal(s1["w0"], s3["w0"])


def test_a_world_of_one_steps_as_the_plain_plan():
    opt = gc.optim.SGD(lr=0.2, momentum=0.9, clip_global_norm=0.05)
    feeds = rand_feeds(np.random.default_rng(3))
    dp = stages(mlp(opt=opt), data_parallel=1)["schedule_nodes"]
    plain = stages(mlp(opt=opt))["schedule_nodes"]
    assert len(buckets_of(dp)) == 1 and dp.metadata["data_parallel.world_size"] == "1"
    s1, s2 = {}, {}
    for _ in range(3):
        run_reference(dp, feeds, s1)
        run_reference(plain, feeds, s2)
    assert s1.keys() == s2.keys()
    for name in s1:
        np.testing.assert_array_equal(s1[name], s2[name])


def simulate(graph, rank_feeds, state):
    """One step of ``graph`` on len(rank_feeds) simulated ranks with the numpy references: each
    rank has its own copy of the state; allreduce_start sums its inputs over the ranks in rank
    order.  Returns the per-rank losses; updates every rank's state in place."""
    order = graph.topological_order()
    envs = []
    for r, feeds in enumerate(rank_feeds):
        env = dict(feeds)
        for v in graph.variables:
            env[v.name] = state[r].setdefault(v.name, np.array(v.init_value, copy=True))
        envs.append(env)
    for node in order:
        opdef = registry.get_op(node.op)
        if node.op == "allreduce_start":
            for x, o in zip(node.inputs, node.outputs):
                total = envs[0][x].copy()
                for env in envs[1:]:
                    total = total + env[x]
                for env in envs:
                    env[o] = total.copy()
            continue
        for r, env in enumerate(envs):
            outs = opdef.evaluate([env[i] for i in node.inputs], node.attrs)
            for o, val in zip(node.outputs, outs):
                env[o] = val
            for out_idx, in_idx in opdef.inplace.items():
                state[r][node.inputs[in_idx]] = outs[out_idx]
    return [float(env[graph.training.loss]) for env in envs]


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("opt", [gc.optim.SGD(lr=0.1), gc.optim.Adam(1e-2),
                                 gc.optim.SGD(lr=0.1, momentum=0.9, clip_global_norm=0.1)],
                         ids=["sgd", "adam", "momentum-clip"])
def test_simulated_ranks_match_one_process_on_the_full_batch(opt, ranks):
    rng = np.random.default_rng(1)
    g = mlp(opt=opt)
    dp = stages(g, {"x": (4, 8), "y": (4, 4)}, data_parallel=DataParallel(ranks, first_bucket=200,
                                                                          bucket_cap=2000))["schedule_nodes"]
    assert len(buckets_of(dp)) > 1
    full_shapes = {"x": (4 * ranks, 8), "y": (4 * ranks, 4)}
    full = stages(g, full_shapes)["schedule_nodes"]
    state = [{} for _ in range(ranks)]
    full_state = {}
    for _ in range(10):
        feeds = rand_feeds(rng, full_shapes)
        shards = [{k: v[r * 4:(r + 1) * 4] for k, v in feeds.items()} for r in range(ranks)]
        losses = simulate(dp, shards, state)
        full_loss = run_reference(full, feeds, full_state)[full.training.loss]
        np.testing.assert_allclose(np.mean(losses), full_loss, rtol=1e-5)
        for r in range(1, ranks):
            for name in state[0]:
                np.testing.assert_array_equal(state[0][name], state[r][name])   # every rank the same
        for name in ("w0", "b1", "w2"):
            np.testing.assert_allclose(state[0][name], full_state[name], rtol=2e-5, atol=2e-6)


# -- entries ----------------------------------------------------------------------------------------

def gan_like():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 4))
        z = gc.placeholder("z", (None, 2))
        wg = gc.variable("wg", (2, 4), init=gc.init.xavier_uniform(seed=1))
        wd = gc.variable("wd", (4, 1), init=gc.init.xavier_uniform(seed=2))
        fake = gc.tanh(z @ wg)
        d_loss = gc.mean(gc.softplus(fake @ wd)) + gc.mean(gc.softplus(-(x @ wd)))
        g_loss = gc.mean(gc.softplus(-(fake @ wd)))
        gc.optim.Adam(1e-3).minimize(d_loss, var_list=[wd], name="train_d")
        gc.optim.Adam(1e-3).minimize(g_loss, var_list=[wg], name="train_g")
        g.entry("sample", [fake])
    return g


def test_entries_take_their_own_buckets():
    g = gan_like()
    shapes = {"x": (4, 4), "z": (4, 2)}
    prog = gc_compile(g, shapes, entries="all", data_parallel=2)
    meta = {name: dict(prog.plan(name).proto.metadata) for name in ("train_d", "train_g", "sample")}
    for m in meta.values():
        assert m["data_parallel.world_size"] == "2"
    assert meta["train_d"]["data_parallel.buckets"] == "1" and meta["train_g"]["data_parallel.buckets"] == "1"
    assert meta["sample"]["data_parallel.buckets"] == "0"
    slots = {}
    for name in ("train_d", "train_g"):
        steps = [s for s in prog.plan(name).proto.steps if s.op.startswith("allreduce_")]
        assert [s.op for s in steps] == ["allreduce_start", "allreduce_wait"]
        slots[name] = {s.attrs["bucket"].i for s in steps}
    assert slots == {"train_d": {0}, "train_g": {1}}
    one = gc_compile(g, shapes, entry="train_g", data_parallel=2)
    assert one.proto.metadata["data_parallel.buckets"] == "1"
    with pytest.raises(CompileError, match="inference entry"):
        gc_compile(g, shapes, entry="sample", data_parallel=2)
    with pytest.raises(CompileError, match="inference entries"):
        gc_compile(g, shapes, entries=["sample"], data_parallel=2)


# -- placement in the scheduled graph -----------------------------------------------------------------

def test_starts_follow_their_gradients_and_waits_precede_their_updates():
    """allreduce_start runs as soon as its bucket's gradients are written (and read: it sums them in
    place); allreduce_wait right before the first node that reads the sum; an early bucket's
    reduction overlaps the backward pass that is still computing the later buckets' gradients."""
    g = mlp((8, 64, 32, 16, 4))
    final = stages(g, {"x": (6, 8), "y": (6, 4)},
                   data_parallel=DataParallel(2, bucket_cap=3000, first_bucket=300))["schedule_nodes"]
    order = final.nodes
    at = {n.name: k for k, n in enumerate(order)}
    buckets = buckets_of(final)
    assert len(buckets) >= 3
    for b, ins, outs in buckets:
        start = at[f"data_parallel/allreduce_start_{b}"]
        wait = at[f"data_parallel/allreduce_wait_{b}"]
        assert order[wait].inputs == outs and start < wait
        # the members and views of them (not the start's outputs: those are the reduced bytes)
        local = set(ins)
        for n in order:
            if registry.get_op(n.op).view and n.inputs[0] in local:
                local.update(n.outputs)
        touching = [k for k, n in enumerate(order) if k != start and not registry.get_op(n.op).view
                    and (set(n.outputs) & set(ins) or set(n.inputs) & local)]
        assert max(touching) < start   # every writer and reader of the members ran before
        # asap: nothing between the last of them and the start but other starts
        assert all(n.op == "allreduce_start" for n in order[max(touching) + 1:start])
        consumers = [k for k, n in enumerate(order) if set(n.inputs) & set(order[wait].outputs)]
        assert consumers and wait < min(consumers)
        # alap: nothing between the wait and its first reader but other waits
        assert all(n.op == "allreduce_wait" for n in order[wait + 1:min(consumers)])
    # overlap: bucket 0's reduction starts before the last bucket's gradients are written
    last_writers = [at[final.producer(v).name] for v in buckets[-1][1]]
    assert at["data_parallel/allreduce_start_0"] < max(last_writers)


# -- whole plans ------------------------------------------------------------------------------------

def bucket_ranges(plan):
    """[(bucket attr, bytes from the first member's offset to the last member's end)] of a plan's
    allreduce_start steps, in step order."""
    out = []
    for step in plan.proto.steps:
        if step.op == "allreduce_start":
            first, last = plan.proto.values[step.inputs[0]], plan.proto.values[step.inputs[-1]]
            out.append((step.attrs["bucket"].i, last.offset + last.nbytes - first.offset))
    return out


@pytest.mark.parametrize("kw", [{}, {"fuse": False}, {"memory_budget": "400KB"}], ids=["fused", "unfused", "budget"])
def test_plans_verify_and_record_their_buckets(kw):
    g = mlp((8, 64, 64, 64, 64, 64, 4), opt=gc.optim.Adam(1e-3, clip_global_norm=1.0))
    shapes = {"x": (256, 8), "y": (256, 4)}
    plan = gc_compile(g, shapes, data_parallel=DataParallel(3, bucket_cap=20000, first_bucket=2000), **kw)
    gc.verify(plan)
    meta = plan.proto.metadata
    assert meta["data_parallel.world_size"] == "3"
    ranges = bucket_ranges(plan)
    assert [b for b, _ in ranges] == sorted(b for b, _ in ranges) == list(range(int(meta["data_parallel.buckets"])))
    assert meta["data_parallel.bucket_bytes"] == ",".join(str(n) for _, n in ranges)
    assert meta["data_parallel.copied_bytes"] == "0"
    waits = [s for s in plan.proto.steps if s.op == "allreduce_wait"]
    assert len(waits) == len(ranges)
    scales = {s.attrs["grad_scale"].f for s in plan.proto.steps if s.op == "adam_update"}
    assert scales == {1 / 3}
    if "memory_budget" in kw:   # forward values are recomputed to fit (about 420 KB without)
        assert plan.arena_bytes <= 400_000 and meta["graphc.recompute"]


def test_compiles_are_deterministic():
    g = mlp((8, 64, 32, 16, 4))
    dp = DataParallel(2, bucket_cap=3000, first_bucket=300)
    assert gc_compile(g, SHAPES, data_parallel=dp).to_bytes() == gc_compile(g, SHAPES, data_parallel=dp).to_bytes()


@pytest.mark.parametrize("opt", [gc.optim.SGD(lr=0.1, momentum=0.9), gc.optim.Adam(1e-2, clip_global_norm=0.05)],
                         ids=["momentum", "adam-clip"])
def test_a_world_of_one_session_trains_as_the_plain_plan(opt):
    """The runtime: a plan compiled for a world of one (several buckets, no-op collectives outside
    mpirun) trains bit for bit as the plain plan, and as the reference interpreter says."""
    g = mlp((8, 64, 32, 16, 4), opt=opt)
    shapes = {"x": (16, 8), "y": (16, 4)}
    dp_plan = gc_compile(g, shapes, data_parallel=DataParallel(1, bucket_cap=3000, first_bucket=300))
    assert int(dp_plan.proto.metadata["data_parallel.buckets"]) > 2
    plain = gc.Session(gc_compile(g, shapes))
    dp = gc.Session(dp_plan)
    assert (dp.rank, dp.world_size) == (0, 1)
    rng = np.random.default_rng(4)
    for _ in range(5):
        feeds = rand_feeds(rng, shapes)
        a, b = plain.run(feeds), dp.run(feeds)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    want, got = plain.state_dict(), dp.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(want[k], got[k])


MPI_SCRIPT = """
import sys
import numpy as np
import graphc as gc
from mpi4py import MPI

plan = gc.load_plan(sys.argv[1])
want = np.load(sys.argv[2])
sess = gc.Session(plan)
r = sess.rank
assert (sess.rank, sess.world_size) == (MPI.COMM_WORLD.Get_rank(), 2)
for step in range(3):
    feeds = {k[len(f"feed{step}_"):]: want[k][r * 4:(r + 1) * 4] for k in want.files if k.startswith(f"feed{step}_")}
    sess.run(feeds)
names = [k[len("state_"):] for k in want.files if k.startswith("state_")]
state = {name: sess.get_variable(name) for name in names}   # weights and optimizer state
for name in state:
    np.testing.assert_allclose(state[name], want["state_" + name], rtol=1e-5, atol=1e-6, err_msg=name)
mine = np.concatenate([np.ravel(v).astype(np.float64) for _, v in sorted(state.items())])
every = MPI.COMM_WORLD.allgather(mine.tobytes())
assert every[0] == every[1], "ranks differ"
print(f"rank {r}: OK {len(state)} variables")
"""


def test_two_mpi_ranks_run_the_plan_as_the_simulated_world(tmp_path):
    """The compiled plan on 2 real ranks (graphc._mpi, the runtime kernels) ends where the pass's
    simulated 2-rank world says, and both ranks hold the same bytes."""
    require_mpi()
    opt = gc.optim.Adam(1e-2, clip_global_norm=0.1)
    g = mlp(opt=opt)
    dp_plan = gc_compile(g, {"x": (4, 8), "y": (4, 4)},
                         data_parallel=DataParallel(2, bucket_cap=2000, first_bucket=200))
    assert int(dp_plan.proto.metadata["data_parallel.buckets"]) > 1
    graph = stages(g, {"x": (4, 8), "y": (4, 4)}, data_parallel=DataParallel(2, bucket_cap=2000,
                                                                            first_bucket=200))["schedule_nodes"]
    rng = np.random.default_rng(5)
    state = [{}, {}]
    saved = {}
    for step in range(3):
        feeds = rand_feeds(rng, {"x": (8, 8), "y": (8, 4)})
        simulate(graph, [{k: v[r * 4:(r + 1) * 4] for k, v in feeds.items()} for r in range(2)], state)
        saved.update({f"feed{step}_{k}": v for k, v in feeds.items()})
    saved.update({f"state_{k}": v for k, v in state[0].items()})
    dp_plan.save(str(tmp_path / "dp.plan"))
    np.savez(tmp_path / "want.npz", **saved)
    proc = mpirun(MPI_SCRIPT, np=2, args=(tmp_path / "dp.plan", tmp_path / "want.npz"), timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count(f"OK {len(state[0])} variables") == 2, proc.stdout


@settings(max_examples=12, deadline=None)
@given(widths=st.lists(st.integers(1, 40), min_size=2, max_size=5), cap=st.integers(1, 6000),
       first=st.integers(1, 6000), f64=st.lists(st.booleans(), min_size=4, max_size=4))
def test_bucket_invariants(widths, cap, first, f64):
    """Any MLP, any caps: every gradient in exactly one bucket, one dtype per bucket, caps kept
    (but for a lone gradient), members in provisional-schedule order, metadata consistent."""
    sizes = (3, *widths)
    layer_dtypes = ["float64" if f64[i % 4] else "float32" for i in range(len(sizes) - 1)]
    g = mlp(sizes, dtypes_per_layer=layer_dtypes)
    st_ = stages(g, {"x": (2, 3), "y": (2, sizes[-1])}, data_parallel=DataParallel(2, bucket_cap=cap,
                                                                                     first_bucket=first))
    before, after = st_["append_gradients"], st_["data_parallel"]
    model = MemoryModel(before)
    buckets = buckets_of(after)
    flat = [v for _, ins, _ in buckets for v in ins]
    assert sorted(flat) == sorted(set(before.gradients_of.values()))
    position = {n.name: k for k, n in enumerate(before.topological_order())}
    ready = [position[before.producer(v).name] for v in flat]
    assert ready == sorted(ready)
    for k, (_, ins, _) in enumerate(buckets):
        assert len({before.tensor(v).dtype for v in ins}) == 1
        limit = min(first, cap) if k == 0 else cap
        assert len(ins) == 1 or sum(-(-model.nbytes[v] // 64) * 64 for v in ins) <= limit
    assert after.metadata["data_parallel.buckets"] == str(len(buckets))
    assert set(after.gradients_of) == set(before.gradients_of)


PROGRAM_SCRIPT = """
import sys
import numpy as np
import graphc as gc
from mpi4py import MPI

sess = gc.Session(gc.load_program(sys.argv[1]))
rng = np.random.default_rng(sess.rank)
before = sess.get_variable("wd").copy()
for _ in range(3):
    x = rng.standard_normal((4, 4)).astype(np.float32)
    z = rng.standard_normal((4, 2)).astype(np.float32)
    sess.run({"x": x, "z": z}, entry="train_d")
    sess.run({"z": z}, entry="train_g")
sess.run({"z": np.ones((4, 2), np.float32)}, entry="sample")
w = np.concatenate([sess.get_variable(n).ravel() for n in ("wg", "wd", "train_d/wd/adam_m", "train_g/wg/adam_v")])
every = MPI.COMM_WORLD.allgather(w.tobytes())
assert every[0] == every[1], "ranks differ"
assert not np.array_equal(before, sess.get_variable("wd"))
print(f"rank {sess.rank}: program OK")
"""


def test_a_program_of_entries_trains_on_two_mpi_ranks(tmp_path):
    """Each training entry's buckets (disjoint slots) reduce over one communicator; the ranks
    hold the same weights and optimizer state."""
    require_mpi()
    prog = gc_compile(gan_like(), {"x": (4, 4), "z": (4, 2)}, entries="all", data_parallel=2)
    prog.save(str(tmp_path / "gan.program"))
    proc = mpirun(PROGRAM_SCRIPT, np=2, args=(tmp_path / "gan.program",), timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("program OK") == 2, proc.stdout
