"""Mutation fuzz of .pb models and .plan files: any bytes give a result or a typed error.

Seeds are real files: an MLP training model (as examples/train_digits.py builds it), a
model holding every registry op example (as tests/test_roundtrip_all_ops.py builds it),
and the plans compiled from them (training step and inference).  Each mutant is one
seed changed by byte edits (flips, truncation, insertion, duplicated or deleted chunks)
or by protobuf-aware edits (parse, change an int/enum/string/bytes/repeated/map field —
dims, offsets, indices, nbytes, attrs, op names — and reserialize; some keep a plan's
nbytes consistent with its dims so the mutant reaches the kernels).

Every mutant goes through the public entry points: a .pb through ``gc.load``,
``gc.compile`` and a Session run; a .plan through ``gc.load_plan``, ``gc.Session(path)``
and ``run`` with zero feeds of the declared shapes.  The only acceptable outcomes are
success and a ``graphc.errors.GraphcError``.  Anything else is a finding: another
exception type, a crash (signal), a hang (over ``GRAPHC_FUZZ_TIMEOUT`` seconds for one
mutant) or a memory blowup (the worker runs under a 4 GiB address-space limit).

The loop runs in a worker subprocess (this file run as a script), so a crash fails the
test instead of killing pytest; the parent saves the mutant that crashed, prints its
path and restarts the worker after it.  Mutant i of a run is a pure function of
(seed file, ``GRAPHC_FUZZ_SEED``, i), so every finding replays alone:

    python tests/test_fuzz.py replay tests/fuzz_cases/NAME.plan

Environment: ``GRAPHC_FUZZ_ITERS`` (mutants per seed file; default sized for ~1 min
on 2 cores), ``GRAPHC_FUZZ_SEED`` (default 0), ``GRAPHC_FUZZ_TIMEOUT`` (seconds per
mutant, default 10), ``GRAPHC_FUZZ_OUT`` (folder for findings; default a pytest tmp dir).
Minimal reproducers of the crash classes found so far live in tests/fuzz_cases/ and run
in test_fuzz_case_is_handled (see docs/testing.md).
"""

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = HERE / "fuzz_cases"
MEMORY_LIMIT = 4 << 30          # worker address space; a bigger allocation must be an error
FEED_LIMIT = 64 << 20           # larger feeds are not built (the plan is still loaded)
MESSAGE_LIMIT = 4000            # longer error messages repeat a user's bytes unquoted
DEFAULT_ITERS = 120             # per seed file: 5 seeds * 120 mutants, ~1 min on 2 cores
ITEMSIZE = {1: 4, 2: 8, 3: 4, 4: 8, 5: 1}  # graphc.DataType code -> bytes (proto/graphc.proto)
SEED_NAMES = ("mlp.pb", "ops.pb", "mlp_train.plan", "mlp_infer.plan", "ops_infer.plan")


def _pythonpath():
    """PYTHONPATH for a worker: the folder of the graphc this process imported (an
    installed one, this checkout, or tools/sanitize.sh's copy), then the caller's."""
    import graphc
    return os.pathsep.join([str(Path(graphc.__file__).resolve().parent.parent)]
                           + [p for p in [os.environ.get("PYTHONPATH")] if p])


def _under_asan():
    return "asan" in os.environ.get("LD_PRELOAD", "")


# -- seeds ---------------------------------------------------------------------------

def _mlp_graph():
    import graphc as gc
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 8))
        y = gc.placeholder("y", (None,), dtype="int64")
        with gc.name_scope("fc1"):
            w1 = gc.variable("w", (8, 16), init=gc.init.kaiming_uniform(seed=0))
            b1 = gc.variable("b", (16,))
            h = gc.relu(x @ w1 + b1)
        with gc.name_scope("fc2"):
            w2 = gc.variable("w", (16, 4), init=gc.init.xavier_uniform(seed=1))
            b2 = gc.variable("b", (4,))
            logits = gc.add(h @ w2, b2, name="logits")
        loss = gc.softmax_cross_entropy(logits, y, name="loss")
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    return g, logits


def _ops_graph(runnable=False):
    """Every registry op, every example (as test_roundtrip_all_ops builds it).

    runnable: only ops that compile into an inference plan fed by placeholders
    (no in-place update ops, whose first input must be a variable).
    """
    import numpy as np
    from single_op import completion

    import graphc as gc
    from graphc import registry
    g = gc.Graph()
    rng = np.random.default_rng(0)
    with g:
        for op in registry.all_ops():
            if runnable and op.inplace:
                continue
            for k, ex in enumerate(op.examples(rng)[:4]):
                ins = []
                aliased = set(op.alias_map(len(ex.inputs)).values()) if runnable else set()
                for i, x in enumerate(ex.inputs):
                    ins.append(gc.placeholder(f"{op.name}_{k}_in{i}", x.shape, x.dtype.name))
                    if i in aliased:  # written in place (collectives): a computed value, never a feed
                        ins[-1] = g.add_node("broadcast_to", [ins[-1]], {"shape": tuple(x.shape)},
                                             name=f"{op.name}_{k}_copy{i}")[0]
                outs = g.add_node(op.name, ins, ex.attrs, name=f"{op.name}_{k}")
                done = completion(op) if runnable else None
                if done is not None:  # a started collective needs its completing step in a valid plan
                    g.add_node(done.name, list(outs), ex.attrs, name=f"{op.name}_{k}_{done.name}")
    return g


def make_seeds(folder):
    """Write the seed files of SEED_NAMES into folder (deterministic bytes)."""
    import graphc as gc
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g, logits = _mlp_graph()
    g.save(folder / "mlp.pb")
    model = gc.load(folder / "mlp.pb")
    gc.compile(model, shapes={"x": (4, 8), "y": (4,)}).save(folder / "mlp_train.plan")
    gc.compile(model, shapes={"x": (4, 8)}, fetches=[logits.name], train=False).save(folder / "mlp_infer.plan")
    # Every op but the in-place updates (those run in the MLP's training plan), so the
    # .pb compiles; every output is fetched, so nothing is pruned.
    runnable = _ops_graph(runnable=True)
    runnable.save(folder / "ops.pb")
    fetches = [out for n in runnable.nodes for out in n.outputs]
    gc.compile(runnable, fetches=fetches, train=False).save(folder / "ops_infer.plan")
    return [folder / n for n in SEED_NAMES]


# -- mutations -----------------------------------------------------------------------

INTS = [0, 1, -1, 2, 3, 7, 63, 64, 65, 4096, 2**31 - 1, -2**31, 2**32, 2**40, 2**62, 2**63 - 1, -2**63]
UINTS = [0, 1, 63, 64, 4096, 2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
FLOATS = [0.0, -0.0, 1.0, -1.0, 1e-300, 1e300, float("inf"), float("-inf"), float("nan")]
HUGE_DIMS = [[2**40, 0], [0, 2**40], [2**62, 0, 2**62], [2**31, 2**31, 0], [1, 0, 2**50]]


def _byte_mutation(rng, data):
    data = bytearray(data)
    kind = rng.choice(["flip", "set", "truncate", "insert", "duplicate", "delete"])
    n = len(data)
    if n == 0:
        return bytes(rng.randbytes(rng.randint(1, 16))), "insert"
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == "set":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(n)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF])
    elif kind == "truncate":
        del data[rng.randrange(n):]
    elif kind == "insert":
        at = rng.randrange(n + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 32))
    elif kind == "duplicate":
        a = rng.randrange(n)
        b = min(n, a + rng.randint(1, 256))
        at = rng.randrange(n + 1)
        data[at:at] = data[a:b]
    else:
        a = rng.randrange(n)
        del data[a:min(n, a + rng.randint(1, 64))]
    return bytes(data), "byte-" + kind


def _fields(msg, path=()):
    """Every (message, field descriptor, path) reachable from msg, set or not for scalars."""
    from google.protobuf.descriptor import FieldDescriptor as FD
    out = []
    for fd in msg.DESCRIPTOR.fields:
        out.append((msg, fd, path + (fd.name,)))
        if fd.type != FD.TYPE_MESSAGE:
            continue
        if fd.is_repeated:
            container = getattr(msg, fd.name)
            if fd.message_type.GetOptions().map_entry:
                value_fd = fd.message_type.fields_by_name["value"]
                if value_fd.type == FD.TYPE_MESSAGE:
                    for key in list(container):
                        out.extend(_fields(container[key], path + (f"{fd.name}[{key!r}]",)))
            else:
                for i, sub in enumerate(container):
                    out.extend(_fields(sub, path + (f"{fd.name}[{i}]",)))
        elif msg.HasField(fd.name):
            out.extend(_fields(getattr(msg, fd.name), path + (fd.name,)))
    return out


def _zero(fd):
    """The default of one element of a (possibly repeated) scalar field."""
    from google.protobuf.descriptor import FieldDescriptor as FD
    return {FD.TYPE_STRING: "", FD.TYPE_BYTES: b"", FD.TYPE_BOOL: False,
            FD.TYPE_DOUBLE: 0.0, FD.TYPE_FLOAT: 0.0}.get(fd.type, 0)


def _scalar(rng, fd, old, words):
    from google.protobuf.descriptor import FieldDescriptor as FD
    t = fd.type
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return rng.choice(INTS + [old + rng.randint(-3, 3), old * 2, -old])
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        v = rng.choice(INTS + [old + rng.randint(-3, 3), old * 2, -old])
        return max(-2**31, min(2**31 - 1, v))
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        v = rng.choice(UINTS + [old + 64, old - 64, old * 2, old + 1])
        return v % 2**64
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return rng.choice(UINTS + [old + 1]) % 2**32
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return rng.choice(FLOATS + [old * 2, -old])
    if t == FD.TYPE_BOOL:
        return not old
    if t == FD.TYPE_ENUM:
        return rng.choice(list(range(-1, len(fd.enum_type.values) + 2)) + [2**31 - 1])
    if t == FD.TYPE_STRING:
        return rng.choice(["", "x", "\u00e9\u2603", "a" * 5000, old + old, old[:len(old) // 2]] + words)
    if t == FD.TYPE_BYTES:
        return rng.choice([b"", old[:len(old) // 2], old + old, old[:-1], old + b"\0" * 8, rng.randbytes(16)])
    raise AssertionError(t)


def _proto_mutation(rng, msg, words):
    """Change one field of msg in place; returns a label of what changed."""
    from google.protobuf.descriptor import FieldDescriptor as FD
    # A field kind first (message type, field name), then one of its instances: the
    # thousands of provenance fields of a big graph do not crowd out the rare ones.
    kinds = {}
    for f in _fields(msg):
        kinds.setdefault((f[0].DESCRIPTOR.full_name, f[1].name), []).append(f)
    parent, fd, path = rng.choice(kinds[rng.choice(sorted(kinds))])
    where = ".".join(path)
    if fd.is_repeated:
        container = getattr(parent, fd.name)
        if fd.type == FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry:
            keys = list(container)
            if keys and rng.random() < 0.5:
                del container[rng.choice(keys)]
                return f"map-del {where}"
            key_fd = fd.message_type.fields_by_name["key"]
            key = rng.choice(words or ["k"]) if key_fd.type == FD.TYPE_STRING else rng.choice(INTS)
            value_fd = fd.message_type.fields_by_name["value"]
            if value_fd.type == FD.TYPE_MESSAGE:
                entry = container[key]
                if keys:
                    entry.CopyFrom(container[rng.choice(keys)])
                sub = [f for f in _fields(entry) if f[1].type != FD.TYPE_MESSAGE]
                if sub:
                    p2, f2, _ = rng.choice(sub)
                    if not f2.is_repeated:
                        setattr(p2, f2.name, _scalar(rng, f2, getattr(p2, f2.name), words))
            else:
                container[key] = _scalar(rng, value_fd, value_fd.default_value, words)
            return f"map-set {where}[{key!r}]"
        n = len(container)
        op = rng.choice(["append", "delete", "swap", "clear", "set", "set", "set"])
        if fd.type == FD.TYPE_MESSAGE:
            if op in ("append", "set") and n:
                container.add().CopyFrom(container[rng.randrange(n)])
            elif op == "append":
                container.add()
            elif op == "delete" and n:
                del container[rng.randrange(n)]
            elif op == "swap" and n > 1:
                i, j = rng.randrange(n), rng.randrange(n)
                a, b = type(container[i])(), type(container[j])()
                a.CopyFrom(container[i])
                b.CopyFrom(container[j])
                container[i].CopyFrom(b)
                container[j].CopyFrom(a)
            elif op == "clear":
                del container[:]
            return f"repeated-{op} {where}"
        if op == "append" or (op == "set" and n == 0):
            container.append(_scalar(rng, fd, container[rng.randrange(n)] if n else _zero(fd), words))
        elif op == "delete" and n:
            del container[rng.randrange(n)]
        elif op == "swap" and n > 1:
            i, j = rng.randrange(n), rng.randrange(n)
            container[i], container[j] = container[j], container[i]
        elif op == "clear":
            del container[:]
        elif n:
            i = rng.randrange(n)
            container[i] = _scalar(rng, fd, container[i], words)
        return f"repeated-{op} {where}"
    if fd.type == FD.TYPE_MESSAGE:
        if parent.HasField(fd.name) and rng.random() < 0.5:
            parent.ClearField(fd.name)
            return f"clear {where}"
        getattr(parent, fd.name).SetInParent()
        return f"set-empty {where}"
    setattr(parent, fd.name, _scalar(rng, fd, getattr(parent, fd.name), words))
    return f"set {where}"


def _plan_mutation(rng, plan, words):
    """Plan edits that keep nbytes == numel * itemsize, so the validator lets them through."""
    from graphc._proto import graphc_pb2 as pb
    values = plan.values
    if not values:
        return "plan-none"
    kind = rng.choice(["redim", "redim", "overlap", "rewire", "retype", "op", "attr", "arena"])
    i = rng.randrange(len(values))
    v = values[i]
    if kind == "redim":
        if rng.random() < 0.5:
            dims = rng.choice(HUGE_DIMS)
        else:
            dims = [rng.choice([0, 1, 2, 3, 5, 8, 16, 64]) for _ in range(rng.randint(0, 4))]
        del v.dims[:]
        v.dims.extend(dims)
        n = 1
        for d in dims:
            n *= d
        v.nbytes = n * ITEMSIZE.get(v.dtype, 1)
        if v.storage == pb.ARENA and v.offset + v.nbytes > plan.arena_bytes and v.nbytes < FEED_LIMIT:
            plan.arena_bytes = v.offset + v.nbytes
        return f"plan-redim values[{i}] -> {dims}"
    if kind == "overlap":
        arena = [k for k, w in enumerate(values) if w.storage == pb.ARENA]
        if len(arena) > 1:
            a, b = rng.sample(arena, 2)
            values[a].offset = values[b].offset
            if values[a].offset + values[a].nbytes > plan.arena_bytes:
                plan.arena_bytes = values[a].offset + values[a].nbytes
            return f"plan-overlap values[{a}] onto values[{b}]"
        return "plan-overlap none"
    steps = plan.steps
    if not steps:
        return "plan-nosteps"
    s = rng.randrange(len(steps))
    step = steps[s]
    if kind == "rewire":
        target = step.inputs if (step.inputs and rng.random() < 0.6) else step.outputs
        if target:
            target[rng.randrange(len(target))] = rng.randrange(len(values))
        return f"plan-rewire steps[{s}]"
    if kind == "retype":
        v.dtype = rng.choice([1, 2, 3, 4, 5])
        v.nbytes = 1
        for d in v.dims:
            v.nbytes *= d
        v.nbytes *= ITEMSIZE[v.dtype]
        if v.storage == pb.ARENA and v.offset + v.nbytes > plan.arena_bytes:
            plan.arena_bytes = min(v.offset + v.nbytes, 2**64 - 1)  # a uint64 field
        return f"plan-retype values[{i}]"
    if kind == "op":
        step.op = rng.choice(words) if words else "add"
        return f"plan-op steps[{s}] -> {step.op}"
    if kind == "attr":
        return f"plan-{_attr_mutation(rng, step)} steps[{s}]"
    plan.arena_bytes = rng.choice([0, 64, plan.arena_bytes // 2, min(plan.arena_bytes + 64, 2**64 - 1), 2**40, 2**63,
                                   2**64 - 64])
    return f"plan-arena {plan.arena_bytes}"


def _relayout(plan):
    """Give every ARENA value its own 64-byte aligned range (nbytes from dims), so a plan
    whose dims changed passes the offset checks; arena_bytes is their sum."""
    from graphc._proto import graphc_pb2 as pb
    offset = 0
    for v in plan.values:
        n = 1
        for d in v.dims:
            n *= d
        v.nbytes = min(n * ITEMSIZE.get(v.dtype, 1), 2**64 - 1)
        if v.storage == pb.ARENA:
            v.offset = min(offset, 2**64 - 1)
            offset += (v.nbytes + 63) // 64 * 64
    plan.arena_bytes = min(offset, 2**64 - 1)


def _isolate_step(plan, s):
    """Cut plan down to step s alone: its inputs become arena feeds, its outputs fetches."""
    from graphc._proto import graphc_pb2 as pb
    step = pb.PlanStep()
    step.CopyFrom(plan.steps[s])
    old = list(dict.fromkeys(list(step.inputs) + list(step.outputs)))
    values = []
    for i in old:
        v = pb.PlanValue()
        v.CopyFrom(plan.values[i])
        v.storage, v.index, v.alias_of = pb.ARENA, 0, 0
        values.append(v)
    remap = {i: k for k, i in enumerate(old)}
    for field in (step.inputs, step.outputs):
        field[:] = [remap[i] for i in field]
    del step.frees[:]
    del step.workspaces[:]
    for name in ("values", "steps", "feeds", "fetches", "persistent", "constants"):
        plan.ClearField(name)
    plan.ClearField("memory")
    plan.ClearField("training")
    plan.values.extend(values)
    plan.steps.append(step)
    plan.feeds.extend(dict.fromkeys(step.inputs))
    plan.fetches.extend(dict.fromkeys(step.outputs))


def _substitute(plan, old, new):
    for v in plan.values:
        v.dims[:] = [new if d == old else d for d in v.dims]
    return f"dim {old}->{new}"


def _attr_mutation(rng, step):
    """Change one attr of step to an edge value of its kind (ints: huge, negative...)."""
    if not step.attrs:
        return "attr none"
    key = rng.choice(sorted(step.attrs))
    a = step.attrs[key]
    which = a.WhichOneof("value")
    if which == "i":
        a.i = rng.choice(INTS)
    elif which == "ints":
        vals = list(a.ints.values) or [0]
        for _ in range(rng.randint(1, 2)):
            vals[rng.randrange(len(vals))] = rng.choice(INTS)
        if rng.random() < 0.2:
            vals.append(rng.choice(INTS))
        a.ints.values[:] = vals
    elif which in ("f", "floats"):
        if which == "f":
            a.f = rng.choice(FLOATS)
        elif a.floats.values:
            a.floats.values[rng.randrange(len(a.floats.values))] = rng.choice(FLOATS)
    elif which == "dtype":
        a.dtype = rng.choice([0, 1, 2, 3, 4, 5, 6])
    elif which == "b":
        a.b = not a.b
    else:
        del step.attrs[key]
    return f"attr {key}"


def _step_mutation(rng, plan, words):
    """One step alone, then edits that keep its values' shapes consistent with each other:
    a dim size replaced everywhere (zero-size dims next to huge ones, huge sizes), an attr
    set to an edge value; so the kernel factory's checks and the kernel loops are reached."""
    if not plan.steps:
        return "step-none"
    # An op first, then one of its steps: ops with many examples are not favoured.
    op = rng.choice(sorted({st.op for st in plan.steps}))
    s = rng.choice([k for k, st in enumerate(plan.steps) if st.op == op])
    label = f"step-isolate steps[{s}] ({op})"
    _isolate_step(plan, s)
    sizes = sorted({d for v in plan.values for d in v.dims if d > 0})
    for _ in range(rng.choice([1, 1, 2])):
        r = rng.random()
        if sizes and r < 0.2:
            # one size huge, every other size zero: loops must not walk the huge dim
            huge = rng.choice(sizes)
            for d in sizes:
                _substitute(plan, d, 0 if d != huge else -1)
            label += "; " + _substitute(plan, -1, rng.choice([2**31, 2**40, 2**50, 2**55, 2**62])) + ", others->0"
            sizes = []
        elif sizes and r < 0.4:
            zero, huge = rng.choice(sizes), rng.choice(sizes)
            label += "; " + _substitute(plan, zero, 0)
            if huge != zero:
                label += "; " + _substitute(plan, huge, rng.choice([2**31, 2**40, 2**50, 2**55, 2**62]))
        elif sizes and r < 0.6:
            label += "; " + _substitute(plan, rng.choice(sizes), rng.choice([0, 1, 2**31, 2**40, 2**55]))
        elif r < 0.9:
            label += "; " + _attr_mutation(rng, plan.steps[0])
        else:
            label += "; " + _plan_mutation(rng, plan, words)
    _relayout(plan)
    if rng.random() < 0.2:
        label += "; " + _plan_mutation(rng, plan, words)
    return label


def _words():
    from graphc import registry
    return sorted(op.name for op in registry.all_ops())


def mutate(data, is_plan, rng, words):
    """One mutant of data; returns (bytes, label)."""
    from graphc._proto import graphc_pb2 as pb
    r = rng.random()
    if r < 0.3:
        return _byte_mutation(rng, data)
    msg = pb.Plan() if is_plan else pb.Model()
    msg.ParseFromString(data)
    labels = []
    if is_plan and rng.random() < 0.4:
        return msg.SerializeToString(), _step_mutation(rng, msg, words)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if is_plan and rng.random() < 0.5:
            labels.append(_plan_mutation(rng, msg, words))
        else:
            labels.append(_proto_mutation(rng, msg, words))
    return msg.SerializeToString(), "; ".join(labels)


# -- running one file ----------------------------------------------------------------

def _zero_feeds(proto):
    import numpy as np
    dtypes = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.int64, 5: np.bool_}  # DataType codes
    feeds = {}
    for idx in proto.feeds:
        if not 0 <= idx < len(proto.values):
            return None
        v = proto.values[idx]
        if v.dtype not in dtypes:
            return None
        n = 1
        for d in v.dims:
            n *= max(int(d), 0)
        if n * ITEMSIZE[v.dtype] > FEED_LIMIT:
            return None
        feeds[v.name] = np.zeros(tuple(int(d) for d in v.dims), dtypes[v.dtype])
    return feeds


def _placeholder_shapes(graph):
    shapes = {}
    for ph in graph.inputs:
        shapes[ph.name] = tuple(d if isinstance(d, int) and d >= 0 else 2 for d in ph.shape)
    return shapes


class LongMessage(Exception):
    """A GraphcError whose message is longer than MESSAGE_LIMIT: it repeats user bytes
    that graphc.errors.quote() should have cut."""


def exercise(path, stats=None, strict=False):
    """Run one .pb or .plan through every public entry point; GraphcError is fine.

    stats: a dict counting how far mutants get ("load", "compile", "session", "run").
    strict: the file is valid, so every entry point must succeed (a GraphcError raises).
    """
    import graphc as gc
    from graphc import errors
    from graphc._proto import graphc_pb2 as pb

    def attempt(fn, stage):
        try:
            result = fn()
        except errors.GraphcError as e:
            if strict:
                raise
            if len(str(e)) > MESSAGE_LIMIT:
                raise LongMessage(f"{type(e).__name__} message of {len(str(e))} characters: "
                                  f"{str(e)[:300]}") from e
            return None
        if stats is not None:
            stats[stage] = stats.get(stage, 0) + 1
        return result if result is not None else True

    path = str(path)
    if path.endswith(".pb"):
        graph = attempt(lambda: gc.load(path), "load")
        if graph is None:
            return
        plan = attempt(lambda: gc.compile(graph, shapes=_placeholder_shapes(graph)), "compile")
        if plan is None:
            return
        sess = attempt(lambda: gc.Session(plan, threads=2), "session")
        feeds = _zero_feeds(plan.proto)
        if sess is not None and feeds is not None:
            attempt(lambda: sess.run(feeds), "run")
        return
    attempt(lambda: gc.load_plan(path), "load")
    sess = attempt(lambda: gc.Session(path, threads=2), "session")
    if sess is None:
        return
    proto = pb.Plan()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    feeds = _zero_feeds(proto)
    if feeds is not None:
        attempt(lambda: sess.run(feeds), "run")
    elif strict:
        raise AssertionError(f"{path}: no zero feeds could be built")


def _limit_worker():
    """Bound the worker: address space (not under ASan, whose shadow needs terabytes)."""
    if not _under_asan():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _finding_key(exc):
    """(type, innermost graphc frame): one entry per distinct escape site."""
    tb = traceback.extract_tb((exc.__cause__ if isinstance(exc, LongMessage) else exc).__traceback__)
    frames = [f for f in tb if "graphc" in f.filename and "test_fuzz" not in f.filename]
    frame = frames[-1] if frames else (tb[-1] if tb else None)
    loc = f"{os.path.relpath(frame.filename, ROOT)}:{frame.lineno}" if frame else "?"
    first = re.sub(r"'[^']*'", "'…'", re.sub(r"\d+", "N", str(exc).split("\n")[0]))[:100]
    return f"{type(exc).__name__} at {loc}: {first}"


def worker(seeds_dir, out_dir, start, stop, base_seed, timeout):
    """Fuzz every seed file for mutants [start, stop); write findings to out_dir.

    Before each mutant the worker writes it to out_dir/current.{pb,plan} and its
    coordinates to out_dir/current.json, so the parent can save it after a crash.
    A SIGALRM (default action: terminate) bounds each mutant, even inside C++.
    """
    _limit_worker()
    out = Path(out_dir)
    words = _words()
    seeds = [Path(seeds_dir) / n for n in SEED_NAMES]
    datas = [p.read_bytes() for p in seeds]
    findings = {}
    stats = {}
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    for it in range(start, stop):
        for seed_path, data in zip(seeds, datas):
            suffix = seed_path.suffix
            rng = random.Random(f"{base_seed}:{seed_path.name}:{it}")
            try:
                mutant, label = mutate(data, suffix == ".plan", rng, words)
            except Exception as e:  # noqa: BLE001 — a mutator bug must not stop the fuzz
                mutant, label = _byte_mutation(rng, data)
                label += f" (proto mutation failed: {type(e).__name__})"
            cur = out / f"current{suffix}"
            cur.write_bytes(mutant)
            (out / "current.json").write_text(json.dumps({"iter": it, "seed": seed_path.name, "label": label}))
            signal.alarm(timeout)
            try:
                exercise(cur, stats.setdefault(seed_path.name, {}))
            except Exception as e:  # noqa: BLE001 — every untyped exception is a finding
                key = _finding_key(e)
                if key not in findings:
                    digest = hashlib.sha1(mutant).hexdigest()[:10]
                    saved = out / f"untyped-{seed_path.stem}-{it}-{digest}{suffix}"
                    saved.write_bytes(mutant)
                    findings[key] = {"file": str(saved), "label": label, "iter": it, "seed": seed_path.name,
                                     "traceback": traceback.format_exc()[-3000:]}
                    (out / f"findings-{os.getpid()}.json").write_text(json.dumps(findings, indent=1))
            finally:
                signal.alarm(0)
    (out / "done.json").write_text(json.dumps({"stop": stop, "stats": stats}))


def replay(path, timeout):
    """Run one saved mutant; exit 0 when every entry point succeeds or raises GraphcError.

    A file named ``*_valid.pb`` / ``*_valid.plan`` is a valid file that a bug refused or
    broke: every entry point must succeed.  ``*_invalid.*``: every one must refuse it.
    """
    _limit_worker()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(timeout)
    stem = Path(path).stem
    if stem.endswith("_invalid"):
        _expect_refused(path)
    else:
        exercise(path, strict=stem.endswith("_valid"))
    signal.alarm(0)


def _expect_refused(path):
    """A ``*_invalid`` file that a bug accepts (e.g. overlapping live values, which give a
    silently wrong answer): every entry point must raise a GraphcError."""
    import graphc as gc
    from graphc import errors
    path = str(path)
    entry = [("gc.load", gc.load)] if path.endswith(".pb") else [
        ("gc.load_plan", gc.load_plan), ("gc.Session(path)", lambda p: gc.Session(p, threads=2))]
    for name, fn in entry:
        try:
            fn(path)
        except errors.GraphcError:
            continue
        raise AssertionError(f"{name}({path!r}) accepted a file that must be refused")


def run_fuzz(seeds_dir, out_dir, iters, base_seed, timeout):
    """Parent loop: run workers until mutants [0, iters) are done; returns the findings."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=_pythonpath())
    env.setdefault("OPENBLAS_NUM_THREADS", "2")
    crashes, start = [], 0
    while start < iters:
        for stale in ("current.json", "done.json"):
            (out / stale).unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "worker", str(seeds_dir), str(out),
               str(start), str(iters), str(base_seed), str(timeout)]
        # The per-mutant alarm bounds a hang; this bounds a worker that ignores it.
        budget = timeout * 2 + 60 + (iters - start) * len(SEED_NAMES) * 5
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=budget)
            rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
        except subprocess.TimeoutExpired as e:
            rc, tail = "timeout", str(e.stderr or "")[-4000:]
        if rc == 0 and (out / "done.json").exists():
            print(f"fuzz: mutants {start}..{iters - 1}: how far they got: "
                  f"{json.loads((out / 'done.json').read_text())['stats']}", flush=True)
            break
        if not (out / "current.json").exists():
            raise AssertionError(f"fuzz worker failed before its first mutant (rc {rc}):\n{tail}")
        cur = json.loads((out / "current.json").read_text())
        suffix = Path(cur["seed"]).suffix
        what = {-signal.SIGALRM: "hang", -signal.SIGSEGV: "segfault", -signal.SIGABRT: "abort",
                -signal.SIGKILL: "killed", -signal.SIGBUS: "bus-error", -signal.SIGFPE: "fpe"}.get(rc, f"rc-{rc}")
        saved = out / f"{what}-{Path(cur['seed']).stem}-{cur['iter']}{suffix}"
        shutil.copyfile(out / f"current{suffix}", saved)
        crashes.append({"kind": what, "file": str(saved), **cur, "output": tail[-1500:]})
        print(f"fuzz: {what} on mutant {cur['iter']} of {cur['seed']} ({cur['label']}); saved {saved}", flush=True)
        start = cur["iter"] + 1
    untyped = {}
    for f in sorted(out.glob("findings-*.json")):
        for key, info in json.loads(f.read_text()).items():
            untyped.setdefault(key, info)
    return crashes, untyped


def _report(crashes, untyped):
    lines = []
    for c in crashes:
        lines.append(f"{c['kind']}: {c['file']} (mutant {c['iter']} of {c['seed']}: {c['label']})\n{c['output']}")
    for key, info in untyped.items():
        lines.append(f"untyped {key}: {info['file']} ({info['label']})\n{info['traceback']}")
    return "\n\n".join(lines)


# -- tests ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return make_seeds(tmp_path_factory.mktemp("seeds"))


def test_mutated_models_and_plans_give_typed_errors(seeds, tmp_path):
    for p in seeds:
        exercise(p, strict=True)  # each seed itself is a working file
    out = Path(os.environ.get("GRAPHC_FUZZ_OUT") or tmp_path / "fuzz")
    iters = int(os.environ.get("GRAPHC_FUZZ_ITERS", DEFAULT_ITERS))
    base_seed = int(os.environ.get("GRAPHC_FUZZ_SEED", 0))
    timeout = int(os.environ.get("GRAPHC_FUZZ_TIMEOUT", 10))
    crashes, untyped = run_fuzz(seeds[0].parent, out, iters, base_seed, timeout)
    print(f"fuzz: {iters} mutants of each of {len(seeds)} seeds; findings in {out}")
    assert not crashes and not untyped, "fuzz findings (replay: python tests/test_fuzz.py replay FILE):\n" + \
        _report(crashes, untyped)


def test_mutator_changes_bytes_and_is_deterministic(seeds):
    words = _words()
    for p in seeds:
        data = p.read_bytes()
        a = [mutate(data, p.suffix == ".plan", random.Random(f"0:{p.name}:{i}"), words) for i in range(20)]
        b = [mutate(data, p.suffix == ".plan", random.Random(f"0:{p.name}:{i}"), words) for i in range(20)]
        assert a == b
        assert sum(m != data for m, _ in a) >= 10, p.name


def test_seeds_are_deterministic(seeds, tmp_path):
    again = make_seeds(tmp_path)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in seeds]


def _cases():
    return sorted(p for p in CASES.glob("*") if p.suffix in (".pb", ".plan")) if CASES.is_dir() else []


def _case_id(p):
    return p.name


def pytest_generate_tests(metafunc):
    if "fuzz_case" in metafunc.fixturenames:
        metafunc.parametrize("fuzz_case", _cases(), ids=_case_id)


def test_fuzz_case_is_handled(fuzz_case):
    """A minimal reproducer of one crash class found by this fuzz: handled, in a subprocess."""
    env = dict(os.environ, PYTHONPATH=_pythonpath())
    env.setdefault("OPENBLAS_NUM_THREADS", "2")
    timeout = int(os.environ.get("GRAPHC_FUZZ_TIMEOUT", 10))
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "replay", str(fuzz_case), str(timeout)],
                              env=env, capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{fuzz_case.name}: hang (no exit in {timeout + 60} s)") from None
    how = f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else "exit"
    assert proc.returncode == 0, (f"{fuzz_case.name}: rc {proc.returncode} ({how})"
                                  f"\n{(proc.stdout + proc.stderr)[-3000:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="graphc mutation fuzz (worker, replay, standalone run)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    for name in ("seeds", "out"):
        w.add_argument(name)
    for name in ("start", "stop", "seed", "timeout"):
        w.add_argument(name, type=int)
    r = sub.add_parser("replay")
    r.add_argument("file")
    r.add_argument("timeout", type=int, nargs="?", default=10)
    f = sub.add_parser("run", help="standalone: make seeds, fuzz, print findings")
    f.add_argument("out")
    f.add_argument("--iters", type=int, default=DEFAULT_ITERS)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--timeout", type=int, default=10)
    args = parser.parse_args(argv)
    if args.cmd == "worker":
        worker(args.seeds, args.out, args.start, args.stop, args.seed, args.timeout)
    elif args.cmd == "replay":
        replay(args.file, args.timeout)
    else:
        out = Path(args.out)
        make_seeds(out / "seeds")
        crashes, untyped = run_fuzz(out / "seeds", out, args.iters, args.seed, args.timeout)
        print(_report(crashes, untyped) or "no findings")
        return 1 if crashes or untyped else 0
    return 0


if __name__ == "__main__":
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a sanitizer build placed there wins
    sys.exit(main())
