"""The compiler pipeline: a model in, a Plan out.

The graph passes run in this order, each a function Graph → Graph in its own file:

    validate_graph   names unique, inputs produced, acyclic, ops known
    prune_inputs     (prune_graph) drop what neither the fetches nor the training loss need
    bind_shapes      placeholders get concrete shapes (``shapes=``)
    infer_shapes     every value gets a concrete shape and dtype
    select_mode      training: dropout, batch_norm take their training form; any mode: one rng/step increment
    expand_composites  composite ops the target has no kernel for become their definition
    append_gradients the training loss's gradient nodes (training models only)
    append_optimizer in-place update nodes and optimizer state (training models only)
    expand_gradient_composites  the same, for composites the gradients brought in
    recompute_for_budget  drop and recompute forward values to fit ``memory_budget``
    prune_graph      keep what the fetches need (``fetches=``)
    fuse             elementwise chains and matmul epilogues become fused steps (``fuse=``)
    schedule_nodes   a deterministic topological order

then the scheduled graph is lowered:

    assign_buffers   every value gets a storage, offset and size
    emit_plan        the graphc_pb2.Plan message
"""

import functools
import gc as _pygc  # the garbage collector (``gc`` is graphc's usual alias in user code)
import os

from graphc import optim, serialize
from graphc._proto import graphc_pb2 as pb
from graphc.compiler._rebuild import clone_graph
from graphc.compiler.append_gradients import append_gradients
from graphc.compiler.append_optimizer import append_optimizer
from graphc.compiler.assign_buffers import assign_buffers
from graphc.compiler.bind_shapes import bind_shapes
from graphc.compiler.emit_plan import emit_plan
from graphc.compiler.expand_composites import expand_composites
from graphc.compiler.fuse import fuse as fuse_pass
from graphc.compiler.infer_shapes import infer_shapes
from graphc.compiler.prune_graph import prune_graph
from graphc.compiler.recompute import parse_bytes, recompute_for_budget
from graphc.compiler.schedule_nodes import schedule_nodes
from graphc.compiler.select_mode import select_mode
from graphc.compiler.validate_graph import validate_graph
from graphc.errors import CompileError, GraphError
from graphc.graph import Graph
from graphc.plan import Plan

TARGETS = ("cpu", "cuda")


def graph_passes(shapes=None, fetches=None, memory_budget=None, model_inputs=(), target="cpu", fuse=True):
    """The Graph → Graph passes, in order, as (name, function) pairs.  ``model_inputs``:
    the placeholder names of the model as loaded (shapes for those pruned early are fine);
    ``target``: the device whose kernels decide which composite ops are expanded and which
    fused ops exist; ``fuse``: run the fusion pass."""
    expand = functools.partial(expand_composites, target=target)
    return [
        ("validate_graph", validate_graph),
        # early prune: placeholders the fetches do not need need no shapes
        ("prune_inputs", functools.partial(prune_graph, fetches=fetches)),
        ("bind_shapes", functools.partial(bind_shapes, shapes=shapes, pruned=model_inputs)),
        ("infer_shapes", infer_shapes),
        ("select_mode", select_mode),
        ("expand_composites", expand),
        ("append_gradients", functools.partial(append_gradients, stack_outer_products=memory_budget is None)),
        ("append_optimizer", append_optimizer),
        ("expand_gradient_composites", expand),
        ("recompute_for_budget", functools.partial(recompute_for_budget, memory_budget=memory_budget)),
        ("prune_graph", functools.partial(prune_graph, fetches=fetches)),
        ("fuse", functools.partial(fuse_pass, target=target, enabled=fuse)),
        ("schedule_nodes", schedule_nodes),
    ]


def load_model(model):
    """A Graph, or a path to a .pb model (loaded with graphc.serialize.load)."""
    if isinstance(model, Graph):
        return model
    if isinstance(model, (str, os.PathLike)):
        return serialize.load(model)
    raise CompileError(f"compile() takes a Graph or a path to a .pb model, got {type(model).__name__}")


def with_training(graph, train):
    """``graph`` with its training spec added or replaced by ``train``: a graphc.optim.TrainingSpec
    (or the schema's TrainingSpec message), an Optimizer (the model's loss is kept),
    ``(loss, optimizer)`` or a dict with keys loss, optimizer (an Optimizer or 'sgd:lr=0.1'-style
    text) and var_list; ``False`` drops the model's spec (an inference plan of a training model)."""
    if train is None:
        return graph
    if train is False:  # inference: ignore the model's training spec
        out = clone_graph(graph)
        out.training = None
        return out
    if isinstance(train, optim.TrainingSpec):
        spec = train
    elif isinstance(train, pb.TrainingSpec):
        spec = serialize.training_from_proto(train)
    else:
        if isinstance(train, optim.Optimizer):
            train = {"optimizer": train}
        elif isinstance(train, tuple):
            train = dict(zip(("loss", "optimizer", "var_list"), train))
        elif not isinstance(train, dict):
            raise CompileError(f"train= takes a TrainingSpec, an Optimizer, (loss, optimizer) or a dict, "
                               f"got {type(train).__name__}")
        loss = train.get("loss")
        if loss is None and graph.training is not None and graph.training.loss:
            loss = graph.training.loss
        if loss is None:
            raise CompileError("train=: no loss given and the model has no training spec")
        opt = train.get("optimizer")
        try:
            if isinstance(opt, str):
                opt = optim.parse(opt)
            if opt is None:
                if graph.training is None:
                    raise CompileError("train=: no optimizer given and the model has no training spec")
                opt = optim.from_spec(graph.training.optimizer)
        except GraphError as e:
            raise CompileError(f"train=: {e}") from None
        loss_name = loss if isinstance(loss, str) else loss.name
        var_list = [v if isinstance(v, str) else v.name for v in train.get("var_list") or ()]
        spec = opt.to_spec(loss_name, var_list)
    out = clone_graph(graph)
    out.training = spec
    return out


def lower_graph(model, shapes=None, fetches=None, on_pass=None, train=None, memory_budget=None, target="cpu",
                fuse=True):
    """Run the graph passes; returns the scheduled Graph.

    ``on_pass(name, graph)`` is called after each pass (tests check every stage; viz draws them).
    """
    graph = with_training(load_model(model), train)
    model_inputs = [ph.name for ph in graph.inputs]
    for name, run_pass in graph_passes(shapes, fetches, memory_budget, model_inputs, target, fuse):
        graph = run_pass(graph)
        if on_pass is not None:
            on_pass(name, graph)
    return graph


def compile(model, shapes=None, fetches=None, target="cpu", train=None, memory_budget=None, on_pass=None,  # noqa: A001 — the public name users expect
            fuse=True):
    """Compile a model into a :class:`graphc.plan.Plan`.

    ``model``: a Graph or a path to a .pb file.  ``shapes``: placeholder name → concrete
    shape, binding None and symbolic dims.  ``fetches``: value names or Tensors the plan
    returns (default: the graph's outputs, else its unconsumed node outputs).
    ``target``: "cpu" or "cuda" (the same plan runs on both; recorded for the runtime).
    ``memory_budget``: arena bytes (int or "64MB"-style text) the plan must fit; forward
    values are dropped and recomputed in the backward pass to get there.
    ``on_pass(name, graph)``: called after each graph pass (for ``graphc compile -v``).
    ``fuse``: run the fusion pass (graphc/compiler/fuse.py): elementwise chains and matmul
    epilogues become single steps; False keeps one step per node (results agree bit for bit).
    ``train``: add or override the training spec (see :func:`with_training`).  A model
    with a training spec compiles into one training step: forward, gradients, in-place
    optimizer updates; it fetches the loss by default.

    Example::

        import graphc as gc
        with gc.Graph() as g:
            x = gc.placeholder("x", ("batch", 4))
            y = gc.relu(x)
        plan = gc.compile(g, shapes={"x": (8, 4)})
        plan.save("relu.plan")

    Raises CompileError (bad shapes, fetches, target or graph) or the ShapeError /
    DTypeError of the node whose inference fails on the bound shapes.
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    # The passes allocate hundreds of thousands of small objects (nodes, tensors, dicts) and
    # free almost none: Python's cyclic collector would rescan the growing heap over and over
    # (a third of the time of a large compile).  Collection resumes afterwards as before.
    was_enabled = _pygc.isenabled()
    _pygc.disable()
    try:
        graph = lower_graph(model, shapes, fetches, on_pass=on_pass, train=train, memory_budget=memory_budget,
                            target=target, fuse=fuse)
        buffers = assign_buffers(graph)
        if fuse and memory_budget is not None and buffers.arena_bytes > parse_bytes(memory_budget):
            # The recompute pass met the budget before fusion; a fused step keeps its inputs
            # live until it runs, which can (rarely) raise the peak past it: keep the unfused
            # plan, which fits.
            graph = lower_graph(model, shapes, fetches, train=train, memory_budget=memory_budget, target=target,
                                fuse=False)
            buffers = assign_buffers(graph)
        return Plan(emit_plan(graph, buffers, target=target))
    finally:
        if was_enabled:
            _pygc.enable()
