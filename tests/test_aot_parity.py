"""AOT artifacts (``gc.emit_c``, ``graphc compile --emit c``) compute what the Session computes,
byte for byte.

For a set of models that together use every registry op (views included) and every optimizer
(SGD, momentum, Adam, AdamW with gradient clipping), in plain plans and multi-entry programs:
emit the artifact, build it with its own Makefile, run a sequence of entry calls through a
generated C++ driver (tests/aot_harness.py) and through ``gc.Session`` with the same thread
count, and compare every fetch of every call and every persistent tensor at the end with
``tobytes()`` equality, at threads 1 and 2.  The driver also counts heap allocations made inside
the entry calls: none (I14.md: no allocation inside an entry call).

``GRAPHC_AOT_SANITIZE=1`` (tools/sanitize.sh) adds the same parity runs with the artifact and the
driver built under AddressSanitizer and UndefinedBehaviorSanitizer (``-k sanitize``); without it
they are skipped.
"""

import os

import aot_harness as h
import numpy as np
import pytest

from graphc import registry
from graphc._proto import graphc_pb2 as pb
from graphc.aot.emit import COLLECTIVE_OPS
from graphc.session import _load_runtime

needs_toolchain = pytest.mark.skipif(not h.have_toolchain(), reason="no C++ compiler or make")

KEYS = list(h.MODELS)
SANITIZE = os.environ.get("GRAPHC_AOT_SANITIZE", "0") not in ("", "0")


def _entry_plans(m):
    return [m.source.proto] if isinstance(m.source, h.Plan) else [e.plan for e in m.source.proto.entries]


def test_the_models_cover_every_registry_op_and_every_plan_op():
    models = [h.model(k) for k in KEYS]
    graph_ops = set()
    for m in models:
        graph_ops |= {n.op for n in m.graph.nodes}
    # every op but the collectives, which an artifact refuses (test_collective_ops.py)
    all_ops = {op.name for op in registry.all_ops()} - set(COLLECTIVE_OPS)
    assert graph_ops == all_ops, sorted(all_ops ^ graph_ops)

    # A plan holds a step for every node except views (aliases of their root) and constants
    # (constant memory); ops without a CPU kernel are composites the compiler expands.  So the
    # steps of the models' plans must cover every CPU kernel op that is not a view.
    views = {op.name for op in registry.all_ops() if op.view}
    kernel_ops = set(_load_runtime().kernel_ops()) - set(COLLECTIVE_OPS)
    step_ops = set()
    for m in models:
        for p in _entry_plans(m):
            step_ops |= {s.op for s in p.steps}
    assert step_ops == kernel_ops - views, sorted(step_ops ^ (kernel_ops - views))

    # Views included: the every-op plan fetches each view op's output as a VIEW value.
    every = h.model("every_op")
    plan = every.source.proto
    storage = {v.name: v.storage for v in plan.values}
    for op in sorted(views):
        outs = [o for n in every.graph.nodes if n.op == op for o in n.outputs]
        assert outs, f"no {op} node in the every-op graph"
        assert any(storage.get(o) == pb.VIEW for o in outs), f"{op}: no output is a VIEW value of the plan"
    # and every kind of state memory: variables, optimizer state (moments, momentum), constants
    def names(key):
        return [v.name for v in h.model(key).source.proto.persistent]
    assert any(n.endswith("/adam_m") for n in names("gpt_adamw_clip")), names("gpt_adamw_clip")
    assert any(n.endswith("/adam_m") for n in names("lstm_adam_clip")), names("lstm_adam_clip")
    assert any(n.endswith("/momentum") for n in names("cnn_momentum")), names("cnn_momentum")
    assert len(plan.constants) > 0 and len(plan.persistent) > 0


@needs_toolchain
@pytest.mark.parametrize("key", KEYS)
def test_artifact_equals_session_bit_for_bit(key, tmp_path):
    m = h.model(key)
    art = h.artifact(key)
    for threads in (1, 2):
        got = h.run_driver(art, m.calls, threads, str(tmp_path / f"threads{threads}"))
        want = h.run_session(m.source, m.calls, threads)
        h.assert_identical(got, want, m.calls, f"{key}, threads={threads}")
        # No allocation inside an entry call (OpenBLAS's own buffers are not counted: a
        # shared library outside graphc; see tests/aot_harness.py).
        assert got.allocs_rest == 0, f"{key}, threads={threads}: {got.allocs_rest} allocations in calls 2..n"
        assert got.allocs_first == 0, f"{key}, threads={threads}: {got.allocs_first} allocations in call 1"
    # Something happened: the training entries changed the variables, and the fetches are
    # not the driver's 0xAB fill.
    assert any(c[0] != "eval" for c in m.calls)
    assert all(f != b"\xab" * len(f) or len(f) == 0 for call in got.fetches for f in call)


@needs_toolchain
def test_the_allocation_counter_counts():
    """The driver's counter is live: it sees the driver's own malloc/new/aligned_alloc and the
    allocations the static library makes while creating a context (so 0 inside calls is real)."""
    own, created = h.alloc_selftest(h.artifact("mlp_sgd"))
    assert own == 3
    assert created > 0


@needs_toolchain
def test_weights_from_memory_give_the_same_bits(tmp_path):
    m = h.model("mlp_sgd")
    art = h.artifact("mlp_sgd")
    a = h.run_driver(art, m.calls, 1, str(tmp_path / "file"))
    b = h.run_driver(art, m.calls, 1, str(tmp_path / "memory"), weights="@memory:" + art.weights)
    h.assert_identical(b, a, m.calls, "load_weights_from_memory vs load_weights")


@needs_toolchain
def test_the_initial_variables_are_the_plans(tmp_path):
    """No call: the variables the artifact loads from its weights are the plan's initial values."""
    m = h.model("cnn_momentum")
    art = h.artifact("cnn_momentum")
    got = h.run_driver(art, [], 1, str(tmp_path / "none"))
    want = {v.name: v.init.raw_data for v in m.source.proto.persistent}
    assert sorted(got.variables) == sorted(want)
    for name, data in want.items():
        arr = np.frombuffer(got.variables[name], np.uint8)
        assert arr.tobytes() == data, name


@needs_toolchain
@pytest.mark.skipif(not SANITIZE, reason="set GRAPHC_AOT_SANITIZE=1 (tools/sanitize.sh does) to build the "
                                         "artifacts under ASan+UBSan")
@pytest.mark.parametrize("key", ["every_op", "cnn_momentum", "gpt_adamw_clip", "lstm_adam_clip", "two_optimizers"])
def test_sanitize_artifact_parity(key, tmp_path):
    ok, why = h.sanitizer_works()
    if not ok:
        pytest.skip(why)
    m = h.model(key)
    art = h.artifact(key, kind="sanitize")
    for threads in (1, 2):
        got = h.run_driver(art, m.calls, threads, str(tmp_path / f"threads{threads}"), sanitize=True)
        want = h.run_session(m.source, m.calls, threads)
        h.assert_identical(got, want, m.calls, f"{key} under ASan+UBSan, threads={threads}")
