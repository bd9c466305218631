"""Session(program): several entries over one shared store (runtime/executor.h, SharedState).

Checked: a training entry's update is read by the next run of any other entry (also through
matmul's packed-weight cache, which a weight written by another executor must invalidate);
every optimizer's state stays its own; the alternation of entries equals the same alternation
done with separate single-plan sessions that hand their variables over (bit for bit: the same
kernels) and, for the inference outputs, numpy; checkpoints cover the whole program and resume
in a new process exactly; attaching a plan whose persistent list differs is a typed error
naming the difference; the shared arena is the largest plan's; two threads running different
entries give the serial results; entry= errors list the entries.
"""

import threading

import numpy as np
import pytest
from cpuinfo import cpu_flags
from subproc import run_python

import graphc as gc
from graphc import errors
from graphc._proto import graphc_pb2 as pb
from graphc.program import Program, build_program, load_program
from graphc.session import EntryError

M, K, N = 8, 6, 5


def _inits(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": (rng.standard_normal((K, N)) * 0.3).astype(np.float32),
            "v": (rng.standard_normal((N, N)) * 0.3).astype(np.float32)}


def _data(step, seed=1):
    rng = np.random.default_rng(seed * 1000 + step)
    return {"x": rng.standard_normal((M, K)).astype(np.float32),
            "t": rng.standard_normal((M, N)).astype(np.float32)}


def _graph(seed=0):
    """h = x @ w, y = h @ v; loss_a trains w (SGD with momentum) towards t through h,
    loss_b trains v (Adam) towards t through y."""
    init = _inits(seed)
    with gc.Graph() as g:
        x = gc.placeholder("x", (M, K))
        t = gc.placeholder("t", (M, N))
        w = gc.variable("w", init=init["w"])
        v = gc.variable("v", init=init["v"])
        h = gc.matmul(x, w)
        y = gc.matmul(h, v)
        d_a = h - t
        loss_a = gc.mean(d_a * d_a)
        d_b = y - t
        loss_b = gc.mean(d_b * d_b)
    return g, {"x": x, "t": t, "w": w, "v": v, "h": h, "y": y, "loss_a": loss_a, "loss_b": loss_b}


def _plans(seed=0):
    g, h = _graph(seed)
    train_a = gc.compile(g, train={"loss": h["loss_a"], "optimizer": gc.optim.SGD(lr=0.2, momentum=0.9),
                                   "var_list": [h["w"]]})
    train_b = gc.compile(g, train={"loss": h["loss_b"], "optimizer": gc.optim.Adam(lr=0.05),
                                   "var_list": [h["v"]]})
    infer = gc.compile(g, train=False, fetches=[h["y"]])
    hidden = gc.compile(g, train=False, fetches=[h["h"]])
    return {"train_a": train_a, "train_b": train_b, "infer": infer, "hidden": hidden}, h


@pytest.fixture(scope="module")
def plans():
    return _plans()


@pytest.fixture(scope="module")
def program(plans):
    return build_program(plans[0])


def _feeds(sess, entry, step):
    data = _data(step)
    return {n: data[n] for n in sess.feed_names(entry)}


SCHEDULE = ["infer", "train_a", "infer", "train_b", "train_a", "hidden", "train_b", "infer", "train_a", "infer"]


class _Separate:
    """The reference: one single-plan Session per entry; before each run, every variable the
    plan has is copied in from a dict that holds the program's state, and copied back out."""

    def __init__(self, plans, program):
        self.sessions = {name: gc.Session(plan, threads=1) for name, plan in plans.items()}
        self.state = {var.name: None for var in program.persistent}
        first = gc.Session(program.plan(program.entries[0]), threads=1)
        for name in self.state:
            self.state[name] = first.get_variable(name)

    def run(self, entry, feeds):
        sess = self.sessions[entry]
        for name in sess.variable_names:
            sess.set_variable(name, self.state[name])
        out = sess.run({n: feeds[n] for n in sess.feed_names})
        for name in sess.variable_names:
            self.state[name] = sess.get_variable(name)
        return out


def test_alternating_entries_equal_separate_sessions_handing_variables_over(plans, program):
    sess = gc.Session(program, threads=1)
    ref = _Separate(plans[0], program)
    assert sess.entries == ["train_a", "train_b", "infer", "hidden"]
    for step, entry in enumerate(SCHEDULE):
        feeds = _feeds(sess, entry, step)
        got = sess.run(feeds, entry=entry)
        want = ref.run(entry, _data(step))
        assert got.keys() == want.keys()
        for name in got:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"step {step} ({entry}) {name}")
        if entry == "infer":
            # Independently of graphc: y = x @ w @ v with the weights the store holds now.
            x = feeds["x"].astype(np.float64)
            y = x @ sess.get_variable("w").astype(np.float64) @ sess.get_variable("v").astype(np.float64)
            np.testing.assert_allclose(got[plans[1]["y"].name], y, rtol=1e-5, atol=1e-5)
    for name in sess.variable_names:
        np.testing.assert_array_equal(sess.get_variable(name), ref.state[name], err_msg=name)
    # Training moved both weights away from their initial values (the check above could fail).
    init = _inits()
    assert not np.array_equal(sess.get_variable("w"), init["w"])
    assert not np.array_equal(sess.get_variable("v"), init["v"])


def test_each_optimizer_keeps_its_own_state(program):
    sess = gc.Session(program, threads=1)
    names = set(sess.variable_names)
    assert {"w/momentum", "v/adam_m", "v/adam_v"} <= names
    assert not any(n.startswith("w/adam") or n == "v/momentum" for n in names)
    before = {n: sess.get_variable(n) for n in names}
    for step in range(3):
        sess.run(_feeds(sess, "train_a", step), entry="train_a")
    after_a = {n: sess.get_variable(n) for n in names}
    # train_a moved w and its momentum, nothing of train_b's.
    assert not np.array_equal(after_a["w"], before["w"])
    assert not np.array_equal(after_a["w/momentum"], before["w/momentum"])
    for n in ("v", "v/adam_m", "v/adam_v"):
        np.testing.assert_array_equal(after_a[n], before[n], err_msg=n)
    sess.run(_feeds(sess, "train_b", 5), entry="train_b")
    after_b = {n: sess.get_variable(n) for n in names}
    for n in ("w", "w/momentum"):
        np.testing.assert_array_equal(after_b[n], after_a[n], err_msg=n)
    assert not np.array_equal(after_b["v/adam_m"], before["v/adam_m"])


def test_model_state_dict_covers_every_entry_without_optimizer_state(program):
    sess = gc.Session(program, threads=1)
    state = sess.state_dict()
    assert set(state) == {"w", "v"}
    fresh = gc.Session(program, threads=1)
    for step in range(2):
        sess.run(_feeds(sess, "train_a", step), entry="train_a")
        sess.run(_feeds(sess, "train_b", step), entry="train_b")
    report = fresh.load_state_dict(sess.state_dict())
    assert report == {"missing_keys": [], "unexpected_keys": []}
    feeds = _feeds(sess, "infer", 9)
    np.testing.assert_array_equal(fresh.run(feeds, entry="infer")["y" if False else sess.fetch_names("infer")[0]],
                                  sess.run(feeds, entry="infer")[sess.fetch_names("infer")[0]])


def test_checkpoint_restores_every_entry_exactly(program, tmp_path):
    sess = gc.Session(program, threads=1)
    for step, entry in enumerate(SCHEDULE[:6]):
        sess.run(_feeds(sess, entry, step), entry=entry)
    path = tmp_path / "prog.npz"
    sess.save_checkpoint(path)
    other = gc.Session(program, threads=1)
    other.load_checkpoint(path)
    for name in sess.variable_names:
        np.testing.assert_array_equal(other.get_variable(name), sess.get_variable(name), err_msg=name)
    for step, entry in enumerate(SCHEDULE[6:], start=6):
        a = sess.run(_feeds(sess, entry, step), entry=entry)
        b = other.run(_feeds(other, entry, step), entry=entry)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{entry} {name}")


_RESUME = """
import sys
import numpy as np
import graphc as gc
sys.path.insert(0, {tests!r})
from test_program_session import SCHEDULE, _feeds
sess = gc.Session({program!r}, threads=1)
sess.load_checkpoint({ckpt!r})
for step, entry in enumerate(SCHEDULE[{start}:], start={start}):
    sess.run(_feeds(sess, entry, step), entry=entry)
np.savez({out!r}, **{{n: sess.get_variable(n) for n in sess.variable_names}})
"""


def test_resume_in_a_new_process_equals_an_uninterrupted_alternation(program, tmp_path):
    import os
    prog_path = str(tmp_path / "model.program")
    program.save(prog_path)
    sess = gc.Session(prog_path, threads=1)
    start = 4
    for step, entry in enumerate(SCHEDULE[:start]):
        sess.run(_feeds(sess, entry, step), entry=entry)
    ckpt = str(tmp_path / "mid.npz")
    sess.save_checkpoint(ckpt)
    for step, entry in enumerate(SCHEDULE[start:], start=start):
        sess.run(_feeds(sess, entry, step), entry=entry)
    out = str(tmp_path / "resumed.npz")
    code = _RESUME.format(tests=os.path.dirname(os.path.abspath(__file__)), program=prog_path, ckpt=ckpt,
                          start=start, out=out)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as resumed:
        assert sorted(resumed.files) == sess.variable_names
        for name in sess.variable_names:
            np.testing.assert_array_equal(resumed[name], sess.get_variable(name), err_msg=name)


def test_shared_arena_is_the_largest_plans(plans, program):
    sess = gc.Session(program, threads=1)
    report = sess.memory_report()
    by_entry = {name: plan.proto.arena_bytes for name, plan in plans[0].items()}
    assert report["arena_bytes_by_entry"] == by_entry
    assert report["arena_bytes"] == max(by_entry.values()) == program.arena_bytes
    assert max(by_entry.values()) < sum(by_entry.values())   # sharing saves something here
    persistent = sum(np.dtype(np.float32 if v.dtype == pb.FLOAT32 else np.int64).itemsize * int(np.prod(v.dims))
                     for v in program.persistent)
    assert report["persistent_bytes"] == persistent
    assert report["total_bytes"] == report["arena_bytes"] + persistent + report["constants_bytes"]
    execs = [e._exec for e in sess._entries.values()]
    assert all(e.shares_state_with(execs[0]) and e.arena_bytes == report["arena_bytes"] for e in execs)
    # A plain plan's session owns a state of its plan's size.
    plain = gc.Session(plans[0]["infer"], threads=1)
    assert plain.memory_report()["arena_bytes"] == by_entry["infer"]
    assert not plain._exec.shares_state_with(execs[0])


def test_memory_limit_holds_the_whole_program(program):
    total = gc.Session(program, threads=1).memory_report()["total_bytes"]
    gc.Session(program, threads=1, memory_limit=total)
    with pytest.raises(errors.ResourceError, match="the program needs"):
        gc.Session(program, threads=1, memory_limit=total - 1)


def test_entry_is_required_and_checked(plans, program):
    sess = gc.Session(program, threads=1)
    feeds = _feeds(sess, "infer", 0)
    with pytest.raises(EntryError, match=r"4 entries; name one with entry=.*train_a.*hidden") as info:
        sess.run(feeds)
    assert isinstance(info.value, KeyError) and isinstance(info.value, errors.FeedError)
    with pytest.raises(EntryError, match=r"unknown entry 'nope'.*\['train_a', 'train_b', 'infer', 'hidden'\]"):
        sess.run(feeds, entry="nope")
    with pytest.raises(errors.FeedError, match=r"entry 'train_a': .*missing feed"):
        sess.run(feeds, entry="train_a")
    assert sess.feed_names("infer") == ["x"] and sess.feed_names("train_a") == ["x", "t"]
    assert sess.fetch_names("hidden") == [plans[1]["h"].name]
    assert sorted(sess.feed_names) == ["t", "x"]          # every entry's, each once
    assert len(sess.fetch_names) == len(set(sess.fetch_names)) == 4
    with pytest.raises(EntryError):
        sess.feed_names("nope")
    # A plain plan: entry= must be None, or the plan's own entry name when it has one.
    plain = gc.Session(plans[0]["infer"], threads=1)
    assert plain.entries == [] and plain.feed_names == ["x"] and plain.feed_names() == ["x"]
    plain.run(feeds)
    with pytest.raises(EntryError, match="this session runs one plan"):
        plain.run(feeds, entry="infer")
    named = gc.Session(program.plan("infer"), threads=1)   # build_program recorded the entry name
    assert named.entries == ["infer"]
    np.testing.assert_array_equal(named.run(feeds, entry="infer")[named.fetch_names[0]],
                                  named.run(feeds)[named.fetch_names[0]])


def test_single_entry_program_needs_no_entry_name(plans):
    prog = build_program({"only": plans[0]["infer"]})
    sess = gc.Session(prog, threads=1)
    feeds = _feeds(sess, "only", 0)
    np.testing.assert_array_equal(sess.run(feeds)[sess.fetch_names[0]],
                                  sess.run(feeds, entry="only")[sess.fetch_names[0]])


def _corrupt(program, entry, mutate):
    proto = pb.Program()
    proto.CopyFrom(program.proto)
    mutate(proto.entries[program.entries.index(entry)].plan)
    return Program(proto)


def test_attaching_a_different_persistent_list_is_refused(program):
    def rename(plan):
        plan.persistent[1].name = "not_" + plan.persistent[1].name

    bad = _corrupt(program, "train_b", rename)
    second = program.proto.persistent[1].name
    with pytest.raises(errors.ModelFormatError,
                       match=rf"entry 'train_b': invalid plan: cannot attach to the shared state: persistent\[1\] "
                             rf"is 'not_{second}' .* in this plan, '{second}' .* in the shared store"):
        gc.Session(bad, threads=1)

    # A tensor the entry's steps never touch (so its own plan validates): only the attach check sees it.
    hidden = program.entry_proto("hidden")
    used = {v.index for v in hidden.values if v.storage == pb.PERSISTENT}
    k = min(set(range(len(hidden.persistent))) - used)

    def reshape(plan):
        plan.persistent[k].dims.append(2)
        plan.persistent[k].init.dims.append(2)

    with pytest.raises(errors.ModelFormatError, match=rf"entry 'hidden': invalid plan: cannot attach to the shared "
                                                      rf"state: persistent\[{k}\] is .* \[.*, 2\] in this plan"):
        gc.Session(_corrupt(program, "hidden", reshape), threads=1)
    # Caught earlier, by the plan's own validation: a value's dims disagree with its tensor's.
    def grow(plan):
        plan.persistent[0].dims[0] += 1
        plan.persistent[0].init.dims[0] += 1

    with pytest.raises(errors.ModelFormatError, match=r"entry 'infer': invalid plan: value .* persistent tensor"):
        gc.Session(_corrupt(program, "infer", grow), threads=1)

    def drop(plan):
        del plan.persistent[-1]

    with pytest.raises(errors.ModelFormatError, match=r"entry 'hidden'.*lists \d+ persistent tensors, the shared"):
        gc.Session(_corrupt(program, "hidden", drop), threads=1)


def test_runtime_executor_attach_checks(plans, program):
    from graphc import _runtime
    first = _runtime.Executor(program.plan("train_a").proto, 1, arena_bytes=program.arena_bytes)
    assert first.arena_bytes == program.arena_bytes
    second = _runtime.Executor(program.entry_proto("infer"), 1, share=first)
    assert second.shares_state_with(first)
    # An arena smaller than the plan's: refused (the first was made for its own plan only).
    small = _runtime.Executor(program.plan("hidden").proto, 1)
    big = max(program.entries, key=lambda n: program.entry_proto(n).arena_bytes)
    if program.entry_proto(big).arena_bytes > small.arena_bytes:
        with pytest.raises(ValueError, match="cannot attach to the shared state: its arena has"):
            _runtime.Executor(program.entry_proto(big), 1, share=small)
    # A single plan's own persistent list differs from the program's.
    with pytest.raises(ValueError, match="cannot attach to the shared state"):
        _runtime.Executor(plans[0]["infer"].proto, 1, share=first)
    with pytest.raises(TypeError, match="share must be an Executor"):
        _runtime.Executor(program.entry_proto("infer"), 1, share=object())


def test_two_threads_running_different_entries_give_the_serial_results(program):
    steps = 12
    serial = gc.Session(program, threads=1)
    weights = [serial.get_variable("w")]     # w before each training step, and after the last
    want_losses = []
    for s in range(steps):
        want_losses.append(serial.run(_feeds(serial, "train_a", s), entry="train_a"))
        weights.append(serial.get_variable("w"))
    want_state = {n: serial.get_variable(n) for n in serial.variable_names}
    sess = gc.Session(program, threads=2)
    got_losses, infer_outs, failures = [], [], []

    def train():
        try:
            for s in range(steps):
                got_losses.append(sess.run(_feeds(sess, "train_a", s), entry="train_a"))
        except Exception as e:  # reported below
            failures.append(e)

    def infer():
        try:
            for s in range(steps):
                feeds = _feeds(sess, "hidden", 100 + s)
                infer_outs.append((feeds, sess.run(feeds, entry="hidden")))
        except Exception as e:
            failures.append(e)

    threads = [threading.Thread(target=train), threading.Thread(target=infer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures and not any(t.is_alive() for t in threads)
    # Inference never changes the store: the training runs are the serial ones, bit for bit.
    for got, want in zip(got_losses, want_losses):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    for name, value in want_state.items():
        np.testing.assert_array_equal(sess.get_variable(name), value, err_msg=name)
    # Each inference ran whole between two training runs: its h is x @ w for one of the states
    # w went through (the same kernels: the same bits), never a mix.
    assert len(infer_outs) == steps
    probe = gc.Session(program, threads=2)
    name = probe.fetch_names("hidden")[0]
    for feeds, out in infer_outs:
        candidates = []
        for w in weights:
            probe.set_variable("w", w)
            candidates.append(probe.run(feeds, entry="hidden")[name])
        assert any(np.array_equal(out[name], c) for c in candidates)


def test_io_binding_and_profile_of_an_entry(program):
    sess = gc.Session(program, threads=1)
    feeds = _feeds(sess, "infer", 3)
    want = sess.run(feeds, entry="infer")
    b = sess.io_binding(entry="infer")
    x = feeds["x"].copy()
    b.bind_input("x", x)
    out = b.run()
    for name in want:
        np.testing.assert_array_equal(out[name], want[name])
    with pytest.raises(EntryError):
        sess.io_binding()
    prof = sess.profile(_feeds(sess, "train_b", 0), iters=2, warmup=0, entry="train_b")
    assert len(prof) == len(program.entry_proto("train_b").steps)
    assert sess.run_with_binding(b).keys() == want.keys()


def test_session_from_a_program_file_and_message(program, tmp_path):
    path = tmp_path / "p.program"
    program.save(path)
    a = gc.Session(str(path), threads=1)
    b = gc.Session(load_program(path).proto, threads=1)
    assert a.entries == b.entries == program.entries
    feeds = _feeds(a, "infer", 1)
    np.testing.assert_array_equal(a.run(feeds, entry="infer")[a.fetch_names("infer")[0]],
                                  b.run(feeds, entry="infer")[b.fetch_names("infer")[0]])


# -- matmul's packed weights, written by another entry ------------------------------------

HAS_AVX2 = {"avx2", "fma"} <= (cpu_flags() or set())
PM, PK, PN = 32, 96, 128   # on the own GEMM path (N >= 96, M*N*K > 2^18), as tests/test_matmul_shared_pack.py


@pytest.mark.skipif(not HAS_AVX2, reason="CPU lacks AVX2+FMA: no own GEMM kernel to pack for")
def test_a_packed_weight_is_repacked_after_another_entry_trains_it(monkeypatch):
    monkeypatch.setenv("GRAPHC_MATMUL_PATH", "gemm")
    rng = np.random.default_rng(7)
    w0 = (rng.standard_normal((PK, PN)) / np.sqrt(PK)).astype(np.float32)
    with gc.Graph() as g:
        x = gc.placeholder("x", (PM, PK))
        t = gc.placeholder("t", (PM, PN))
        w = gc.variable("w", init=w0)
        y = gc.matmul(x, w)
        d = y - t
        loss = gc.mean(d * d)
    train = gc.compile(g, train={"loss": loss, "optimizer": gc.optim.SGD(lr=0.5), "var_list": [w]})
    infer = gc.compile(g, train=False, fetches=[y])
    prog = build_program({"train": train, "infer": infer})
    sess = gc.Session(prog, threads=1)
    xb = rng.standard_normal((PM, PK)).astype(np.float32)
    tb = rng.standard_normal((PM, PN)).astype(np.float32)
    first = sess.run({"x": xb}, entry="infer")[y.name]
    again = sess.run({"x": xb}, entry="infer")[y.name]   # the packed weight, reused
    np.testing.assert_array_equal(first, again)
    sess.run({"x": xb, "t": tb}, entry="train")
    after = sess.run({"x": xb}, entry="infer")[y.name]
    w1 = sess.get_variable("w")
    assert not np.array_equal(w1, w0)
    # A fresh session with the trained weight: the same kernels, so the same bits.
    fresh = gc.Session(infer, threads=1)
    fresh.set_variable("w", w1)
    np.testing.assert_array_equal(after, fresh.run({"x": xb})[y.name])
    np.testing.assert_allclose(after, xb.astype(np.float64) @ w1.astype(np.float64), rtol=1e-4, atol=1e-4)
    assert not np.allclose(after, first, atol=1e-3)   # a stale pack would have returned `first`


# -- named entries compiled by gc.compile(entries=...) -------------------------------------

def _named_model():
    """Two Adam entries over overlapping variables (both train w; "b_step" also v), and an
    inference entry: the optimizer state of each entry is its own (<entry>/<var>/adam_m)."""
    init = _inits(3)
    with gc.Graph() as g:
        x = gc.placeholder("x", (M, K))
        t = gc.placeholder("t", (M, N))
        w = gc.variable("w", init=init["w"])
        v = gc.variable("v", init=init["v"])
        h = gc.matmul(x, w, name="h")
        y = gc.matmul(h, v, name="y")
        d_a, d_b = h - t, y - t
        gc.optim.Adam(0.05).minimize(gc.mean(d_a * d_a, name="loss_a"), var_list=[w], name="a_step")
        gc.optim.Adam(0.02).minimize(gc.mean(d_b * d_b, name="loss_b"), var_list=[w, v], name="b_step",
                                     fetches=[y])
        g.entry("predict", fetches=[y])
    return g


def test_named_entries_keep_their_own_optimizer_state_over_a_shared_weight():
    g = _named_model()
    prog = gc.compile(g, entries="all")
    assert prog.entries == ["a_step", "b_step", "predict"]
    sess = gc.Session(prog, threads=1)
    names = set(sess.variable_names)
    assert {"a_step/w/adam_m", "b_step/w/adam_m", "b_step/v/adam_m", "a_step/optimizer/step",
            "b_step/optimizer/step"} <= names
    assert "a_step/v/adam_m" not in names
    ref = _Separate({name: prog.plan(name) for name in prog.entries}, prog)
    schedule = ["predict", "a_step", "b_step", "a_step", "predict", "b_step", "b_step", "predict"]
    for step, entry in enumerate(schedule):
        got = sess.run(_feeds(sess, entry, step), entry=entry)
        want = ref.run(entry, _data(step))
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"step {step} ({entry}) {name}")
    for name in sess.variable_names:
        np.testing.assert_array_equal(sess.get_variable(name), ref.state[name], err_msg=name)
    # Both entries trained w, each with its own moments and step count.
    assert int(sess.get_variable("a_step/optimizer/step")) == 2
    assert int(sess.get_variable("b_step/optimizer/step")) == 3
    assert not np.array_equal(sess.get_variable("a_step/w/adam_m"), sess.get_variable("b_step/w/adam_m"))
    # The model's variables only, whatever entry's optimizer wrote the rest.
    assert set(sess.state_dict()) == {"w", "v"}
    assert sess.fetch_names("b_step")[1:] == [sess.fetch_names("predict")[0]]


def test_corrupt_program_files_give_typed_errors(program, tmp_path):
    """Bytes flipped anywhere in a program file: loading it (and running each entry that
    loads) raises a graphc error or works; never another exception, never a crash."""
    data = bytearray(program.to_bytes())
    rng = np.random.default_rng(11)
    path = tmp_path / "bad.program"
    outcomes = {"loaded": 0, "refused": 0}
    for _trial in range(100):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            mutated[int(rng.integers(0, len(mutated)))] = int(rng.integers(0, 256))
        path.write_bytes(bytes(mutated))
        try:
            sess = gc.Session(str(path), threads=1)
        except errors.GraphcError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        for entry in sess.entries:
            try:
                sess.run({n: np.zeros(s, d) for n, d, s in sess._entries[entry]._feed_specs}, entry=entry)
            except errors.GraphcError:
                pass
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_a_variable_declared_unlike_its_initial_value_is_refused(plans, program):
    """The runtime allocates a variable by its initial value, the Session reads it by its
    declaration: a plan where the two differ is a ModelFormatError, not a later ValueError."""
    proto = pb.Plan()
    proto.CopyFrom(plans[0]["infer"].proto)
    proto.persistent[0].dims.append(1)
    with pytest.raises(errors.ModelFormatError, match=r"plan variable 0 \('w'\) is declared .* initial value"):
        gc.Session(proto, threads=1)

    def redeclare(plan):
        plan.persistent[0].dtype = pb.FLOAT64

    with pytest.raises(errors.ModelFormatError, match=r"entry 'hidden': plan variable 0 .* declared dtype"):
        gc.Session(_corrupt(program, "hidden", redeclare), threads=1)


def test_a_program_object_whose_persistent_list_lies_is_refused(program):
    """A Program built from an unchecked message (not through load_program): the entries agree
    with each other, but the program's own list (which the variable table is read from) differs
    -- same bytes, other dims, or a variable no plan has.  Before: get_variable returned the
    program's (wrong) shape, or an untyped ValueError from the runtime."""
    flipped = pb.Program()
    flipped.CopyFrom(program.proto)
    var = flipped.persistent[0]
    dims = list(var.dims)[::-1]
    assert dims != list(var.dims)
    del var.dims[:], var.init.dims[:]
    var.dims.extend(dims)
    var.init.dims.extend(dims)
    with pytest.raises(errors.ModelFormatError, match=rf"entry 'train_a': persistent\[0\] is '{var.name}' .* dims "
                                                      rf"\[{dims[1]}, {dims[0]}\] in its plan, .* in the program"):
        gc.Session(Program(flipped), threads=1)

    extra = pb.Program()
    extra.CopyFrom(program.proto)
    extra.persistent.add().CopyFrom(extra.persistent[0])
    extra.persistent[-1].name = "extra"
    with pytest.raises(errors.ModelFormatError, match=r"entry 'train_a': its plan lists 6 persistent variables, "
                                                      r"the program 7"):
        gc.Session(Program(extra), threads=1)


def test_program_and_plan_files_are_not_taken_for_each_other(program, plans, tmp_path):
    """A Program parses as an empty Plan (and an empty Model): its fields are unknown to them.
    Before: gc.load_plan returned a plan of no steps and gc.load an empty graph."""
    path = tmp_path / "p.program"
    program.save(path)
    with pytest.raises(errors.ModelFormatError, match="is a compiled program .* not a single plan"):
        gc.load_plan(path)
    with pytest.raises(errors.ModelFormatError, match=r"is a compiled program \(load it with gc.load_program\)"):
        gc.load(path)
    plan_path = tmp_path / "p.plan"
    plans[0]["infer"].save(plan_path)
    with pytest.raises(errors.ModelFormatError, match="not a graphc program"):
        load_program(plan_path)
    assert gc.load_plan(plan_path).proto == plans[0]["infer"].proto   # a plan still loads as before


def test_runtime_holds_a_shared_arena_with_the_store_against_the_memory_limit(program):
    """The C++ runtime (the trust boundary) holds a shared arena larger than the plan's own
    together with the persistent store and constants against the memory limit, on create and
    on attach.  Before: only the arena alone was held (a limit between the arena and arena +
    store let the state be made)."""
    from graphc import _runtime
    small = min(program.entries, key=lambda n: program.entry_proto(n).arena_bytes)
    plan = program.plan(small).proto
    arena = program.arena_bytes
    assert arena > plan.arena_bytes
    store = sum(len(v.init.raw_data) for v in program.persistent)
    consts = sum(len(c.raw_data) for c in plan.constants)
    need = arena + store + consts
    assert store > 0
    first = _runtime.Executor(plan, 1, memory_limit=need, arena_bytes=arena)
    with pytest.raises(errors.ResourceError, match=rf"the shared arena of {arena} bytes .* needs {need} bytes, above "
                                                   rf"the memory limit of {need - 1} bytes"):
        _runtime.Executor(plan, 1, memory_limit=need - 1, arena_bytes=arena)
    # Attaching the same small entry under a limit its own plan meets but the shared arena does not.
    own = plan.arena_bytes + store + consts
    assert own < need
    with pytest.raises(errors.ResourceError, match=rf"the shared arena of {arena} bytes"):
        _runtime.Executor(program.entry_proto(small), 1, memory_limit=need - 1, share=first)
    _runtime.Executor(program.entry_proto(small), 1, memory_limit=need, share=first)


def test_io_binding_errors_name_the_entry(program):
    """A program entry's binding words its FeedErrors as run() does, starting with the entry.
    Before: bind_input / bind_output errors did not say which entry's binding refused."""
    sess = gc.Session(program, threads=1)
    b = sess.io_binding(entry="infer")
    with pytest.raises(errors.FeedError, match=r"^entry 'infer': feed 'x' expects shape \(8, 6\), got \(2, 6\)"):
        b.bind_input("x", np.zeros((2, K), np.float32))
    with pytest.raises(errors.FeedError, match=r"^entry 'infer': bind_output\(.*\) expects shape"):
        b.bind_output(sess.fetch_names("infer")[0], np.zeros((1, 1), np.float32))
    with pytest.raises(errors.FeedError, match=r"^entry 'infer': unknown fetch"):
        b.bind_output("nope")
    # A plain plan's binding is worded as before (no entry).
    plain = gc.Session(program.plan("infer"), threads=1).io_binding()
    with pytest.raises(errors.FeedError, match=r"^feed 'x' expects shape"):
        plain.bind_input("x", np.zeros((2, K), np.float32))
