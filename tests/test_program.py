"""graphc.program: joining entry plans into one Program over a shared persistent store, its
file format and its validation (the Session side is in test_program_session.py)."""

import numpy as np
import pytest

import graphc as gc
from graphc._proto import graphc_pb2 as pb
from graphc.errors import CompileError, ModelFormatError
from graphc.program import build_program, load_plan_or_program, load_program, program_from_bytes


def _model():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3, 2), init=gc.init.ones())
        b = gc.variable("b", (2,), init=gc.init.constant(0.5))
        y = gc.sum((x @ w + b) ** 2, name="y")
    return g, y


def _plans():
    g, y = _model()
    train = gc.compile(g, shapes={"x": (4, 3)}, train=gc.optim.Adam(0.1).to_spec(y.name))
    infer = gc.compile(g, shapes={"x": (5, 3)}, fetches=[y], train=False)
    return train, infer


def test_persistent_listed_once_and_renumbered():
    train, infer = _plans()
    prog = build_program({"train": train, "infer": infer})
    names = [v.name for v in prog.persistent]
    assert sorted(names) == sorted(v.name for v in train.proto.persistent)  # infer's w, b are train's
    assert len(names) == len(set(names))
    for name in prog.entries:
        plan = prog.entry_proto(name)
        assert [v.name for v in plan.persistent] == names
        assert all(v.init.raw_data == b"" for v in plan.persistent)
        # every PERSISTENT value points at the program's variable of its own name
        own = {v.name: v for v in (train if name == "train" else infer).proto.values}
        src = (train if name == "train" else infer).proto
        for v in plan.values:
            if v.storage == pb.PERSISTENT:
                assert names[v.index] == src.persistent[own[v.name].index].name
    assert prog.arena_bytes == max(train.arena_bytes, infer.arena_bytes)
    report = prog.memory_report()
    assert report["separate_arenas_bytes"] == train.arena_bytes + infer.arena_bytes
    assert report["persistent_bytes"] == sum(len(v.init.raw_data) for v in train.proto.persistent)


def test_standalone_entry_plan_runs_like_the_original():
    train, infer = _plans()
    prog = build_program([("train", train), ("infer", infer)])
    x = np.arange(15, dtype=np.float32).reshape(5, 3) / 7
    want = gc.Session(infer).run({"x": x})
    got = gc.Session(prog.plan("infer")).run({"x": x})
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_save_load_round_trip_and_kind_detection(tmp_path):
    train, infer = _plans()
    prog = build_program({"train": train, "infer": infer})
    path = tmp_path / "m.program"
    prog.save(path)
    assert load_program(path) == prog
    assert isinstance(load_plan_or_program(path), gc.Program)
    train.save(tmp_path / "t.plan")
    assert isinstance(load_plan_or_program(tmp_path / "t.plan"), gc.Plan)
    with pytest.raises(ModelFormatError, match="not a graphc program"):
        load_program(tmp_path / "t.plan")
    with pytest.raises(ModelFormatError, match="cannot read"):
        load_program(tmp_path / "missing.program")


def test_bad_entry_names_and_conflicting_variables():
    train, infer = _plans()
    with pytest.raises(CompileError, match="listed twice"):
        build_program([("a", train), ("a", infer)])
    with pytest.raises(CompileError, match="must be letters"):
        build_program({"a b": train})
    with pytest.raises(CompileError, match="at least one"):
        build_program({})
    with gc.Graph() as g2:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3, 3), init=gc.init.ones())
        gc.sum(x @ w, name="y")
    other = gc.compile(g2, shapes={"x": (2, 3)}, train=False)
    with pytest.raises(CompileError, match="variable 'w' is float32 \\[3, 3\\]"):
        build_program({"train": train, "other": other})


@pytest.mark.parametrize("damage", ["version", "no_entries", "dup_entry", "persistent_len", "persistent_name",
                                    "init_in_plan", "bad_init", "dup_var", "bad_step"])
def test_corrupt_programs_are_refused(damage):
    train, infer = _plans()
    proto = pb.Program()
    proto.CopyFrom(build_program({"train": train, "infer": infer}).proto)
    e0 = proto.entries[0].plan
    if damage == "version":
        proto.min_consumer_version = 99
    elif damage == "no_entries":
        del proto.entries[:]
    elif damage == "dup_entry":
        proto.entries[1].name = proto.entries[0].name
    elif damage == "persistent_len":
        del e0.persistent[-1]
    elif damage == "persistent_name":
        e0.persistent[0].name = "zz"
    elif damage == "init_in_plan":
        e0.persistent[0].init.raw_data = proto.persistent[0].init.raw_data
    elif damage == "bad_init":
        proto.persistent[0].init.raw_data = b"\0"
    elif damage == "dup_var":
        proto.persistent[1].name = proto.persistent[0].name
    elif damage == "bad_step":
        e0.steps[0].inputs.append(10 ** 6)
    with pytest.raises(ModelFormatError):
        program_from_bytes(proto.SerializeToString())
    with pytest.raises(ModelFormatError):
        program_from_bytes(b"\xff\xff\xff")
