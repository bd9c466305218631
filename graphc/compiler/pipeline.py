"""The compiler pipeline: a model in, a Plan out.

The graph passes run in this order, each a function Graph → Graph in its own file:

    validate_graph   names unique, inputs produced, acyclic, ops known
    prune_inputs     (prune_graph) drop what neither the fetches nor the training loss need
    bind_shapes      placeholders get concrete shapes (``shapes=``)
    infer_shapes     every value gets a concrete shape and dtype
    select_mode      training graphs only: mode-dependent ops (batch_norm, dropout) take their training form
    append_rng_increment  any mode: one rng/step increment when a node draws random numbers
    expand_composites  composite ops the target has no kernel for become their definition
    append_gradients the training loss's gradient nodes (training models only)
    data_parallel    (with ``data_parallel=`` only) gradients in buckets, each summed across ranks in place
    append_optimizer in-place update nodes and optimizer state (training models only)
    expand_gradient_composites  the same, for composites the gradients brought in
    recompute_for_budget  drop and recompute forward values to fit ``memory_budget``
    prune_graph      keep what the fetches need (``fetches=``)
    fuse             elementwise chains and matmul epilogues become fused steps (``fuse=``)
    schedule_nodes   a deterministic topological order

then the scheduled graph is lowered:

    assign_buffers   every value gets a storage, offset and size
    emit_plan        the graphc_pb2.Plan message

Entry points (``graph.entries``, docs/entries.md): ``compile(model, entry=NAME)`` runs the
same pipeline on the model with that entry's training spec (or none: an inference entry)
and fetches, and names its optimizer state after the entry; ``compile(model, entries=[...])``
compiles each so and joins the plans into a :class:`graphc.program.Program`
(graphc.program.build_program): one persistent store that every entry's plan indexes.
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
from graphc.compiler.data_parallel import META_BUCKETS
from graphc.compiler.data_parallel import data_parallel as data_parallel_pass
from graphc.compiler.data_parallel import resolve as resolve_data_parallel
from graphc.compiler.emit_plan import emit_plan
from graphc.compiler.expand_composites import expand_composites
from graphc.compiler.fuse import fuse as fuse_pass
from graphc.compiler.infer_shapes import infer_shapes
from graphc.compiler.prune_graph import prune_graph
from graphc.compiler.recompute import parse_bytes, recompute_for_budget
from graphc.compiler.rng_step import append_rng_increment
from graphc.compiler.schedule_nodes import schedule_nodes
from graphc.compiler.select_mode import select_mode
from graphc.compiler.validate_graph import validate_graph
from graphc.errors import CompileError, GraphcError, GraphError
from graphc.graph import Graph, compiler_provenance
from graphc.plan import Plan
from graphc.program import build_program

TARGETS = ("cpu", "cuda")


def graph_passes(shapes=None, fetches=None, memory_budget=None, model_inputs=(), target="cpu", fuse=True,
                 state_prefix="", model_variables=(), data_parallel=None, first_bucket_slot=0):
    """The Graph → Graph passes, in order, as (name, function) pairs.  ``model_inputs``:
    the placeholder names of the model as loaded (shapes for those pruned early are fine);
    ``target``: the device whose kernels decide which composite ops are expanded and which
    fused ops exist; ``fuse``: run the fusion pass; ``state_prefix``: the training entry whose
    optimizer state this is ("" for the default training spec); ``model_variables``: the
    variable names of the model as loaded (a var_list naming one the loss does not reach, which
    the early prune drops, trains the others); ``data_parallel``: a resolved
    graphc.compiler.data_parallel.DataParallel (or None), whose buckets are numbered from
    ``first_bucket_slot``."""
    expand = functools.partial(expand_composites, target=target)
    parallel = [("data_parallel", functools.partial(data_parallel_pass, config=data_parallel,
                                                    first_slot=first_bucket_slot))] if data_parallel else []
    return [
        ("validate_graph", validate_graph),
        # early prune: placeholders the fetches do not need need no shapes
        ("prune_inputs", functools.partial(prune_graph, fetches=fetches)),
        ("bind_shapes", functools.partial(bind_shapes, shapes=shapes, pruned=model_inputs)),
        ("infer_shapes", infer_shapes),
        ("select_mode", select_mode),
        ("append_rng_increment", append_rng_increment),
        ("expand_composites", expand),
        ("append_gradients", functools.partial(append_gradients, stack_outer_products=memory_budget is None,
                                               model_variables=model_variables)),
        *parallel,
        ("append_optimizer", functools.partial(append_optimizer, state_prefix=state_prefix,
                                               model_variables=model_variables)),
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


def entry_graph(graph, name):
    """``graph`` prepared for compiling its entry ``name``: a copy whose training spec is the
    entry's (None for an inference entry) and whose metadata records ``entry``; returns
    ``(graph, fetches, state_prefix)``: the entry's fetches (a training entry's loss first) and
    the name its optimizer state is prefixed with ("" for an inference entry)."""
    entries = getattr(graph, "entries", {})
    entry = entries.get(name) if isinstance(name, str) else None
    if entry is None:
        listed = ", ".join(repr(n) for n in entries) or "none (name one with minimize(loss, name=...) or g.entry())"
        raise CompileError(f"the model has no entry {name!r}; its entries: {listed}")
    out = clone_graph(graph)
    out.training = entry.training
    out.metadata["entry"] = name
    if entry.training is not None:
        fetches = list(dict.fromkeys([entry.training.loss, *entry.fetches]))
        return out, fetches, name
    return out, list(entry.fetches), ""


def entry_shapes(graph, shapes, entry=None):
    """The flat placeholder → shape dict for compiling ``entry`` (None: the default entry).

    ``shapes`` may mix placeholder shapes (for every entry) with per-entry dicts keyed by entry
    name that add or override them for that entry: ``{"x": (64, 8), "sample": {"z": (500, 32)}}``.
    A key naming both a placeholder and an entry, or a dict under a key that is no entry, is a
    CompileError."""
    if shapes is None:
        return None
    if not isinstance(shapes, dict):
        raise CompileError(f"shapes= takes a dict of placeholder name → shape, got {type(shapes).__name__}")
    entries = getattr(graph, "entries", {})
    if not entries:
        return shapes
    placeholders = {ph.name for ph in graph.inputs}
    flat, per_entry = {}, {}
    for key, value in shapes.items():
        if key in entries:
            if key in placeholders:
                raise CompileError(f"shapes key {key!r} names both a placeholder and an entry; rename one")
            if not isinstance(value, dict):
                raise CompileError(f"shapes[{key!r}]: {key!r} is an entry, so its value must be a dict of "
                                   f"placeholder shapes for that entry, got {value!r}")
            per_entry[key] = value
        elif isinstance(value, dict):
            raise CompileError(f"shapes[{key!r}] is a dict but {key!r} is not an entry of the model; its entries: "
                               f"{', '.join(repr(n) for n in entries)}")
        else:
            flat[key] = value
    if entry is not None:
        flat.update(per_entry.get(entry, {}))
    return flat


def lower_graph(model, shapes=None, fetches=None, on_pass=None, train=None, memory_budget=None, target="cpu",
                fuse=True, entry=None, data_parallel=None, first_bucket_slot=0):
    """Run the graph passes; returns the scheduled Graph.

    ``on_pass(name, graph)`` is called after each pass (tests check every stage; viz draws them).
    ``entry``: lower the model's entry of that name (its training spec and fetches; ``fetches``
    and ``train`` must then be None).  ``data_parallel``: as :func:`compile`'s (resolved here
    when it is not a DataParallel with a world size); ``first_bucket_slot``: the number of its
    first bucket.
    """
    data_parallel = resolve_data_parallel(data_parallel)
    graph = load_model(model)
    state_prefix = ""
    if entry is not None:
        if fetches is not None or train is not None:
            raise CompileError(f"entry {entry!r}: fetches= and train= come from the entry; give neither with entry=")
        shapes = entry_shapes(graph, shapes, entry)
        graph, fetches, state_prefix = entry_graph(graph, entry)
    else:
        shapes = entry_shapes(graph, shapes)
        graph = with_training(graph, train)
    model_inputs = [ph.name for ph in graph.inputs]
    model_variables = [v.name for v in graph.variables]
    for name, run_pass in graph_passes(shapes, fetches, memory_budget, model_inputs, target, fuse, state_prefix,
                                       model_variables, data_parallel, first_bucket_slot):
        with compiler_provenance():
            graph = run_pass(graph)
        if on_pass is not None:
            on_pass(name, graph)
    return graph


def compile(model, shapes=None, fetches=None, target="cpu", train=None, memory_budget=None, on_pass=None,  # noqa: A001 — the public name users expect
            fuse=True, entry=None, entries=None, data_parallel=None):
    """Compile a model into a :class:`graphc.plan.Plan`, or several of its entry points into a
    :class:`graphc.program.Program`.

    ``model``: a Graph or a path to a .pb file.  ``shapes``: placeholder name → concrete
    shape, binding None and symbolic dims.  ``fetches``: value names or Tensors the plan
    returns (default: the graph's outputs, else its unconsumed node outputs).
    ``target``: "cpu" or "cuda" (the same plan runs on both; recorded for the runtime).
    ``memory_budget``: arena bytes (int or "64MB"-style text) the plan must fit; forward
    values are dropped and recomputed in the backward pass to get there.
    ``on_pass(name, graph)``: called after each graph pass (for ``graphc compile -v``; with
    ``entries=``, for each entry in turn).
    ``fuse``: run the fusion pass (graphc/compiler/fuse.py): elementwise chains and matmul
    epilogues become single steps; False keeps one step per node (results agree bit for bit).
    ``train``: add or override the training spec (see :func:`with_training`).  A model
    with a training spec compiles into one training step: forward, gradients, in-place
    optimizer updates; it fetches the loss by default.

    Entry points (docs/entries.md): ``entry="train_d"`` compiles that entry of the model into
    a Plan (a training entry: one step of its optimizer over its var_list, fetching its loss
    then its extra fetches; an inference entry: its fetches, with dropout and batch norm in
    their inference form).  ``entries=["train_d", "sample"]`` (or ``"all"``: every named entry,
    in declaration order) compiles each and returns a Program whose plans share one
    persistent store.  ``shapes`` then may also hold per-entry dicts that add or override
    shapes for one entry: ``{"x": (64, 784), "sample": {"z": (500, 32)}}``.  ``fetches`` and
    ``train`` cannot be combined with either.  Without ``entry``/``entries`` a model compiles
    as it always has (its default training spec, from an unnamed ``minimize(loss)``, if any),
    except that a model with named entries and neither a default spec nor declared outputs
    needs ``fetches=`` (else CompileError: its loose values are not a sensible plan).

    Data-parallel training (docs/data_parallel.md): ``data_parallel=True`` compiles the training
    step for the world of processes ``mpirun`` started (``N``: for N ranks; or a
    :class:`graphc.DataParallel` with the world size and the bucket caps).  ``shapes`` are one
    rank's; the plan sums every gradient over the ranks (buckets of ``allreduce_start`` /
    ``allreduce_wait`` steps), folds 1/N into the updates and records N
    (``plan.proto.metadata["data_parallel.world_size"]``); a Session joins the MPI world to run
    it.  An inference plan cannot be data-parallel (in a program its inference entries record N
    and reduce nothing).

    Example::

        import graphc as gc
        with gc.Graph() as g:
            x = gc.placeholder("x", ("batch", 4))
            y = gc.relu(x)
        plan = gc.compile(g, shapes={"x": (8, 4)})
        plan.save("relu.plan")

    Raises CompileError (bad shapes, fetches, target, entry, data_parallel or graph) or the ShapeError /
    DTypeError of the node whose inference fails on the bound shapes; an error while
    compiling an entry names it.
    """
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if entry is not None and entries is not None:
        raise CompileError("give entry= (one plan) or entries= (a program), not both")
    if entries is not None or entry is not None:
        if fetches is not None or train is not None:
            which = "entry=" if entry is not None else "entries="
            raise CompileError(f"fetches= and train= cannot be combined with {which}: each entry brings its own "
                               f"fetches and training spec")
    graph = load_model(model)
    data_parallel = resolve_data_parallel(data_parallel)
    if entries is not None:
        names = _entry_list(graph, entries)
        if data_parallel is not None and not any(graph.entries[n].training is not None for n in names):
            raise CompileError(f"data_parallel=: the entries {names} are all inference entries; data-parallel "
                               f"compiles training steps (run inference on each rank with a plain plan)")
        plans, slot = [], 0
        for name in names:
            plan = _compile_entry(graph, shapes, target, memory_budget, on_pass, fuse, name, data_parallel, slot)
            # the entries of a program share one communicator: each takes its own bucket numbers
            slot += int(plan.proto.metadata.get(META_BUCKETS, "0"))
            plans.append((name, plan))
        return build_program(plans)
    if entry is not None:
        if data_parallel is not None and graph.entries.get(entry) is not None and graph.entries[entry].training is None:
            raise CompileError(f"data_parallel=: entry {entry!r} is an inference entry; data-parallel compiles "
                               f"training steps (compile it without data_parallel= and run it on each rank)")
        return _compile_entry(graph, shapes, target, memory_budget, on_pass, fuse, entry, data_parallel)
    if (getattr(graph, "entries", None) and graph.training is None and fetches is None and not graph.outputs
            and (train is None or train is False)):
        # Nothing sensible to compile: the default would be every loose value of the model
        # (a GAN's two losses and its samples, say) in one inference plan.
        listed = ", ".join(repr(n) for n in graph.entries)
        raise CompileError(f"the model has named entries ({listed}) and no default training spec or declared "
                           f"outputs: pass entry=NAME for one plan, entries=[...] or entries='all' for a program, "
                           f"or fetches= for an inference plan of any values")
    if data_parallel is not None and (train is False or (train is None and graph.training is None)):
        raise CompileError("data_parallel=: the model has no training spec, so this is an inference plan; "
                           "data-parallel compiles training steps (record one with optimizer.minimize(loss) or "
                           "pass train=)")
    return _compile(graph, shapes, fetches, target, train, memory_budget, on_pass, fuse, None, data_parallel)


def _entry_list(graph, entries):
    """``entries`` ("all" or a list of names) checked against the model's entries."""
    known = getattr(graph, "entries", {})
    listed = ", ".join(repr(n) for n in known) or "none"
    if isinstance(entries, str):
        if entries != "all":
            raise CompileError(f"entries= takes a list of entry names or 'all', got {entries!r} (compile one entry "
                               f"into a plan with entry={entries!r})")
        names = list(known)
        if not names:
            raise CompileError("entries='all': the model has no named entries (record them with "
                               "minimize(loss, name=...) and g.entry(name, fetches))")
        return names
    try:
        names = list(entries)
    except TypeError:
        raise CompileError(f"entries= takes a list of entry names or 'all', got {type(entries).__name__}") from None
    if not names:
        raise CompileError("entries= is empty; name at least one entry")
    for n in names:
        if not isinstance(n, str) or n not in known:
            raise CompileError(f"entries=: the model has no entry {n!r}; its entries: {listed}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CompileError(f"entries= lists {dup} more than once")
    return names


def _compile_entry(graph, shapes, target, memory_budget, on_pass, fuse, name, data_parallel=None, first_slot=0):
    try:
        return _compile(graph, shapes, None, target, None, memory_budget, on_pass, fuse, name, data_parallel,
                        first_slot)
    except GraphcError as e:
        if str(e).startswith(f"entry {name!r}"):
            raise
        try:
            wrapped = type(e)(f"entry {name!r}: {e}")
        except Exception:  # noqa: BLE001 — an error type whose constructor takes more than a message
            raise e from None
        raise wrapped from None


def _compile(graph, shapes, fetches, target, train, memory_budget, on_pass, fuse, entry, data_parallel=None,
             first_slot=0):
    # The passes allocate hundreds of thousands of small objects (nodes, tensors, dicts) and
    # free almost none: Python's cyclic collector would rescan the growing heap over and over
    # (a third of the time of a large compile).  Collection resumes afterwards as before.
    was_enabled = _pygc.isenabled()
    _pygc.disable()
    try:
        lowered = lower_graph(graph, shapes, fetches, on_pass=on_pass, train=train, memory_budget=memory_budget,
                              target=target, fuse=fuse, entry=entry, data_parallel=data_parallel,
                              first_bucket_slot=first_slot)
        buffers = assign_buffers(lowered, target)
        if fuse and memory_budget is not None and buffers.arena_bytes > parse_bytes(memory_budget):
            # The recompute pass met the budget before fusion; a fused step keeps its inputs
            # live until it runs, which can (rarely) raise the peak past it: keep the unfused
            # plan, which fits.
            lowered = lower_graph(graph, shapes, fetches, train=train, memory_budget=memory_budget, target=target,
                                  fuse=False, entry=entry, data_parallel=data_parallel, first_bucket_slot=first_slot)
            buffers = assign_buffers(lowered, target)
        return Plan(emit_plan(lowered, buffers, target=target))
    finally:
        if was_enabled:
            _pygc.enable()
