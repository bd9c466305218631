"""Helpers shared by the memory passes (schedule_nodes, assign_buffers, recompute):
where each value's bytes live, and for how long.

Storage rules (the contract the plan encodes):

- placeholder → ARENA (the runtime copies feeds in before step 0);
- variable → PERSISTENT;
- output of a constant op (``OpDef.constant``) → CONSTANT;
- output of a VIEW op → aliases the root of its input (views of views followed);
- output ``o`` of an op with ``opdef.inplace = {o: i}`` → PERSISTENT, the same storage
  as its input ``i`` (which must itself be persistent: a variable or an earlier in-place
  output).  Such a node runs after every other reader of input ``i`` (and of its views):
  :func:`inplace_control_deps`;
- output ``o`` of an op with ``alias`` (``opdef.alias_map(n)[o] = i``: a collective that
  writes a gradient bucket in place) → a view of the root of input ``i``, which must be
  an ARENA value a step computes (not a feed); the root's bytes live through the whole
  chain of aliases.  The node starts a new *generation* of that root: it runs after every
  other reader of the generation it overwrites (input ``i`` and the plain views of it),
  and readers of its output read the new generation (:func:`inplace_control_deps`);
- any other node output → ARENA.

Liveness (over a schedule): an ARENA root is live from the step that writes it (step 0
for placeholders) to the last step that reads it or one of its views; a fetched root
(or the root of a fetched view) lives to the last step.
"""

from graphc import dtypes, registry
from graphc.errors import CompileError, where

ARENA, PERSISTENT, CONSTANT, VIEW = "ARENA", "PERSISTENT", "CONSTANT", "VIEW"


_ITEMSIZE = {}  # dtype → bytes per element (dtypes.itemsize builds a numpy dtype per call)


def value_nbytes(dtype, dims):
    numel = 1
    for d in dims:
        numel *= int(d)
    size = _ITEMSIZE.get(dtype)
    if size is None:
        size = _ITEMSIZE[dtype] = dtypes.itemsize(dtype)
    return numel * size


def alias_map(opdef, node):
    """``{output: input}`` of the outputs of ``node`` that are views of an input's bytes which
    its step writes in place (the registry's ``alias`` property); empty for other ops."""
    fn = getattr(opdef, "alias_map", None)
    return fn(len(node.outputs)) if fn is not None else {}


def emits_step(node):
    """Whether a node becomes a PlanStep (constants and views do not)."""
    opdef = registry.get_op(node.op)
    return not (opdef.constant or opdef.view)


class MemoryModel:
    """Per value of a graph with concrete shapes: ``nbytes``, ``root`` (views followed),
    ``storage`` of the root (ARENA, PERSISTENT or CONSTANT) and, for PERSISTENT roots,
    ``variable`` (the variable whose storage it is).  ``aliased``: the outputs written in place
    through an op's ``alias`` (views of their root, with the root's storage); ``has_alias``:
    whether there is any."""

    def __init__(self, graph, order=None):
        self.nbytes, self.root, self.storage, self.variable = {}, {}, {}, {}
        self.aliased = set()
        placeholders = {ph.name for ph in graph.inputs}
        for ph in graph.inputs:
            self._add(ph.name, graph, ARENA)
        for var in graph.variables:
            self._add(var.name, graph, PERSISTENT)
            self.variable[var.name] = var.name
        for node in order if order is not None else graph.topological_order():
            opdef = registry.get_op(node.op)
            aliases = alias_map(opdef, node)
            for k, o in enumerate(node.outputs):
                if k in aliases:
                    i = aliases[k]
                    src = self.root[node.inputs[i]] if i < len(node.inputs) else None
                    if src is None or self.storage[src] != ARENA or src in placeholders:
                        what = ("no such input" if src is None else "a fed placeholder" if src in placeholders
                                else f"a {self.storage[src].lower()} value")
                        raise CompileError(
                            f"{node.describe()} writes its output {k} in place into input {i}"
                            f"{f' ({node.inputs[i]!r})' if src is not None else ''}, which must be a value a step "
                            f"computes in the arena, not {what}{where(node.provenance)}")
                    self.nbytes[o] = self._size(o, graph)
                    self.root[o] = src
                    self.storage[o] = ARENA
                    self.aliased.add(o)
                elif opdef.constant:
                    self._add(o, graph, CONSTANT)
                elif opdef.view:
                    self.nbytes[o] = self._size(o, graph)
                    self.root[o] = self.root[node.inputs[0]]
                elif k in opdef.inplace:
                    src = self.root[node.inputs[opdef.inplace[k]]]
                    if self.storage[src] != PERSISTENT:
                        raise CompileError(
                            f"{node.describe()} writes its output {k} into input {opdef.inplace[k]} "
                            f"({node.inputs[opdef.inplace[k]]!r}), which must be a variable or optimizer state "
                            f"in persistent storage, not a {self.storage[src].lower()} value{where(node.provenance)}")
                    self._add(o, graph, PERSISTENT)
                    self.variable[o] = self.variable[src]
                else:
                    self._add(o, graph, ARENA)

    def _size(self, name, graph):
        t = graph.tensor(name)
        return value_nbytes(t.dtype, t.shape)

    def attach(self, graph):
        """Remember this model as ``graph``'s (a graph with the same values, nodes and views,
        in any topological order: what schedule_nodes returns), for :func:`model_of`."""
        graph._memory_model = (self, _size_key(graph))
        return graph

    def _add(self, name, graph, storage):
        self.nbytes[name] = self._size(name, graph)
        self.root[name] = name
        self.storage[name] = storage

    def arena_roots_read(self, node):
        """The ARENA roots a node reads (directly or through views), each once, in input order."""
        seen = []
        for i in node.inputs:
            r = self.root[i]
            if self.storage[r] == ARENA and r not in seen:
                seen.append(r)
        return seen


def _size_key(graph):
    return len(graph.nodes), len(graph.inputs), len(graph.variables)


def model_of(graph, order=None):
    """``graph``'s MemoryModel: the one attached by :meth:`MemoryModel.attach` while the graph
    still has as many nodes, placeholders and variables as then (nothing was added), else a new one."""
    cached = getattr(graph, "_memory_model", None)
    if cached is not None and cached[1] == _size_key(graph):
        return cached[0]
    return MemoryModel(graph, order)


def inplace_control_deps(graph, model=None):
    """node name → names of the nodes it must run after because it overwrites storage they
    read: for an ``inplace`` (persistent) output, every other reader of the overwritten input
    or of a view of it; for an ``alias`` output, every other reader of the generation of the
    root it overwrites (its input, the plain views of it)."""
    model = model or MemoryModel(graph)
    deps = _alias_control_deps(graph, model) if model.aliased else {}
    readers = {}
    for node in graph.nodes:
        if registry.get_op(node.op).view:
            continue
        for i in node.inputs:
            readers.setdefault(model.root[i], []).append(node)
    for node in graph.nodes:
        opdef = registry.get_op(node.op)
        for in_idx in opdef.inplace.values():
            src = model.root[node.inputs[in_idx]]
            names = deps.setdefault(node.name, [])
            # a set beside the list: a variable read by many nodes would make `in names` quadratic
            seen = set(names)
            for r in readers.get(src, []):
                if r is not node and r.name not in seen:
                    seen.add(r.name)
                    names.append(r.name)
    return deps


def _alias_control_deps(graph, model):
    """The control dependencies of the ``alias`` writers.  A generation of an ARENA root is
    a value that is not a plain view (the root itself, or an alias output); a plain view
    belongs to its input's generation."""
    generation = {}
    for ph in graph.inputs:
        generation[ph.name] = ph.name
    for var in graph.variables:
        generation[var.name] = var.name
    for node in graph.topological_order():
        opdef = registry.get_op(node.op)
        for o in node.outputs:
            generation[o] = generation[node.inputs[0]] if opdef.view else o
    readers = {}
    for node in graph.nodes:
        if registry.get_op(node.op).view:
            continue
        seen = set()
        for i in node.inputs:
            gen = generation[i]
            if gen not in seen:
                seen.add(gen)
                readers.setdefault(gen, []).append(node.name)
    deps = {}
    for node in graph.nodes:
        aliases = alias_map(registry.get_op(node.op), node)
        if not aliases:
            continue
        names = deps.setdefault(node.name, [])
        seen = set()
        for in_idx in sorted(set(aliases.values())):
            for r in readers.get(generation[node.inputs[in_idx]], []):
                if r != node.name and r not in seen:
                    seen.add(r)
                    names.append(r)
    return deps


def fetched_roots(graph, model):
    return {model.root[o] for o in graph.outputs if model.storage[model.root[o]] == ARENA}


def live_intervals(graph, model, order):
    """For a scheduled node list: (steps, {ARENA root: [start, end]}) in step indices."""
    steps = [n for n in order if emits_step(n)]
    last = max(len(steps) - 1, 0)
    interval = {}
    for ph in graph.inputs:
        interval[ph.name] = [0, 0]
    for s, node in enumerate(steps):
        for r in model.arena_roots_read(node):
            interval[r][1] = s
        for o in node.outputs:
            if model.storage[o] == ARENA and model.root[o] == o:
                interval[o] = [s, s]
    for r in fetched_roots(graph, model):
        interval[r][1] = last
    return steps, interval


def peak_live_bytes(graph, model, order):
    """The most ARENA bytes live at one step of the schedule ``order``."""
    steps, interval = live_intervals(graph, model, order)
    delta = [0] * (len(steps) + 2)
    for r, (a, b) in interval.items():
        delta[a] += model.nbytes[r]
        delta[b + 1] -= model.nbytes[r]
    peak = running = 0
    for s in range(max(len(steps), 1)):
        running += delta[s]
        peak = max(peak, running)
    return peak
