"""The CUDA kernel factories on machines without a GPU: a *dry prepare*
(``graphc._runtime.prepare_only(plan, "cuda")``: every step's factory runs with fake
addresses and no device, validating and precomputing as it would before a real run; I16.md)
must accept every registry example of every op, compiled for target "cuda" and for "cpu",
and the training plans of the example models (MLP, CNN, GPT, LSTM).  A factory that refuses
a step the CPU runs fails here, before any GPU sees it.  The prepare tests skip only in a build
without CUDA."""

import os
import sys

import numpy as np
import pytest
from single_op import single_op_graph

import graphc as gc
from graphc import _runtime, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_cuda_build = pytest.mark.skipif(not _runtime.cuda_built(),
                                reason="graphc was built without CUDA (no nvcc at build time, or GRAPHC_CUDA=0): "
                                       "there is no CUDA registry to prepare against")

OPS = registry.all_ops()
TARGETS = ("cuda", "cpu")


def prepare(plan, device="cuda"):
    fn = getattr(_runtime, "prepare_only", None)
    assert fn is not None, "graphc._runtime.prepare_only is missing: this build has no dry prepare"
    fn(plan.proto, device)


@needs_cuda_build
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_every_example_prepares_on_cuda(op):
    failures = []
    for ex in op.examples(np.random.default_rng(0)):
        g, _, outs, shapes, _ = single_op_graph(op, ex)
        for target in TARGETS:
            plan = gc.compile(g, shapes=shapes, fetches=[t.name for t in outs], target=target)
            try:
                prepare(plan)
            except Exception as e:  # collect every refused example of the op, then fail once
                failures.append(f"target {target}, {ex!r}: {type(e).__name__}: {e}")
    assert not failures, f"{op.name}: {len(failures)} example(s) refused by the CUDA dry prepare:\n" + \
        "\n".join(failures[:8])


@needs_cuda_build
def test_dry_prepare_runs_the_factory():
    """A step the factory must refuse (softmax over axis 5 of a matrix) is refused, naming the
    step: the dry prepare validates, it does not just look kernels up."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        y = gc.softmax(x, axis=1, name="the_softmax")
    plan = gc.compile(g, fetches=[y.name], target="cuda")
    prepare(plan)
    plan.proto.steps[0].attrs["axis"].i = 5
    with pytest.raises(Exception, match="the_softmax") as info:
        prepare(plan)
    assert "axis" in str(info.value), info.value
    with pytest.raises(Exception, match="the_softmax"):  # the CPU's factory agrees
        prepare(plan, "cpu")


# --- training plans of the example models (tools/bench_*.py define them) ------------------------

def _bench(name):
    tools = os.path.join(ROOT, "tools")
    if not os.path.exists(os.path.join(tools, name + ".py")):
        pytest.skip(f"tools/{name}.py is not in this checkout")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    return __import__(name)


def _mlp():
    bt, bu = _bench("bench_train"), _bench("_bench_util")
    g, x, h, _ = bu.graphc_mlp(gc, bt.make_weights(), bt.SIZES[0])
    with g:
        labels = gc.placeholder("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(h, labels, name="loss")
        gc.optim.SGD(lr=bt.LR, momentum=bt.MOMENTUM).minimize(loss)
    return g, {x.name: (16, bt.SIZES[0]), "y": (16,)}


def _cnn():
    bc = _bench("bench_cnn")
    g, _ = bc.graphc_model(gc, 4)
    return g, {"x": (4, bc.CHANNELS, bc.SIZE, bc.SIZE), "y": (4,)}


def _gpt():
    bg = _bench("bench_gpt")
    with gc.Graph() as g:
        ids = gc.placeholder("ids", (None, bg.CONTEXT), dtype="int64")
        labels = gc.placeholder("labels", (None, bg.CONTEXT), dtype="int64")
        logits = bg.graphc_model(gc)(ids)
        loss = gc.softmax_cross_entropy(logits, labels, name="loss")
        gc.optim.AdamW(lr=bg.LR, weight_decay=bg.WEIGHT_DECAY).minimize(loss)
    return g, {"ids": (2, bg.CONTEXT), "labels": (2, bg.CONTEXT)}


def _lstm():
    g, _ = _bench("bench_lstm")._graphc_model(gc)
    return g, {}


MODELS = {"mlp": _mlp, "cnn": _cnn, "gpt": _gpt, "lstm": _lstm}


@needs_cuda_build
@pytest.mark.parametrize("model", sorted(MODELS))
def test_training_plans_prepare_on_cuda(model):
    g, shapes = MODELS[model]()
    plan = gc.compile(g, shapes=shapes, target="cuda")
    assert any(s.op.endswith("_update") for s in plan.steps), "not a training plan"
    prepare(plan)


def test_examples_include_size_0_and_size_1():
    """The dry prepare here and tests/test_cuda_parity.py on a GPU cover empty tensors and
    size-1 dimensions through the registry's examples: every op with inputs has an example with
    an empty input (or, for the generators, an empty output) and one with a dimension of 1 (or a
one-element input)."""
    missing = []
    for op in OPS:
        examples = list(op.examples(np.random.default_rng(0)))
        if not any(ex.inputs for ex in examples):
            continue  # constant, random_normal, random_uniform: attributes only
        if not any(np.size(x) == 0 for ex in examples for x in ex.inputs) and not any(
                np.size(y) == 0 for ex in examples for y in op.evaluate(ex.inputs, ex.attrs)):
            missing.append(f"{op.name}: no empty input or output")
        if not any(np.size(x) == 1 or 1 in np.shape(x) for ex in examples for x in ex.inputs):
            missing.append(f"{op.name}: no size-1 dimension")
    assert not missing, missing
