"""The graph builder: Graph, Node, Tensor, placeholders, variables, constants.

A :class:`Graph` is a list of placeholders, variables and nodes; values are named,
and every value has exactly one producer.  Building a node runs the op's shape and
dtype inference at once, so a mismatch raises at the user's line, not later.

Example::

    import graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 4))
        w = gc.variable("w", (4, 2), init=gc.init.ones())
        y = gc.relu(x @ w)
    print(y.shape)   # (None, 2)
"""

import contextlib
import dataclasses
import heapq
import os
import re
import sys
import threading

import numpy as np

from graphc import dtypes, registry
from graphc import init as initializers
from graphc.errors import GraphError, where
from graphc.shapes import format_shape, is_static, normalize_shape  # noqa: F401  (graphc.graph.format_shape etc.)

FORWARD, GRADIENT, OPTIMIZER, RECOMPUTE = "forward", "gradient", "optimizer", "recompute"
ROLES = (FORWARD, GRADIENT, OPTIMIZER, RECOMPUTE)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# An entry point's name: the same rule as graphc.program.ENTRY_NAME (this module, the IR,
# does not import the schema; tests/test_entries.py checks the two agree).
ENTRY_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

# Hooks the upper layers install when they are imported, so this module (the IR) never
# imports them: graphc.ops installs the op builders that Tensor operators call
# (``x + y`` → ``graphc.ops.add``), graphc.serialize installs the writer behind Graph.save.
_hooks = {"ops": None, "save": None}


def install_operators(builders):
    """Route Tensor operators to ``builders`` (an object with the graphc.ops builder functions
    as attributes); graphc.ops calls this at import."""
    _hooks["ops"] = builders


def install_saver(save):
    """Make ``Graph.save(path, **kwargs)`` call ``save(graph, path, **kwargs)``; graphc.serialize
    calls this at import."""
    _hooks["save"] = save


def _hook(name, module):
    fn = _hooks[name]
    if fn is None:
        raise GraphError(f"{module} is not imported; import graphc (which imports it) first")
    return fn


_IN_PACKAGE = {}  # code file name → inside the graphc package (os.path.abspath is slow; passes add many nodes)


def user_provenance():
    """(file, line) of the innermost stack frame outside the graphc package; ("", 0) inside
    :func:`compiler_provenance`."""
    if getattr(_state, "in_compiler", 0):
        return ("", 0)
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        inside = _IN_PACKAGE.get(name)
        if inside is None:
            inside = _IN_PACKAGE[name] = os.path.abspath(name).startswith(_PACKAGE_DIR + os.sep)
        if not inside:
            return (name, frame.f_lineno)
        frame = frame.f_back
    return ("", 0)


def kahn_order(succs, indegree):
    """Kahn's algorithm over items 0..n-1; among ready items the lowest index goes first,
    so the order is deterministic and keeps the stored order where it can.

    ``succs[i]``: the items that wait on i (an item listed k times needs indegree k).
    Returns ``(order, stuck)``; ``stuck`` (the items never ready: a cycle) is empty on success.
    """
    indegree = list(indegree)
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in succs[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, j)
    stuck = [i for i, d in enumerate(indegree) if d > 0] if len(order) != len(indegree) else []
    return order, stuck


class Tensor:
    """A handle to one value of a graph: its name, dtype and (possibly symbolic) shape.

    Supports ``+ - * / @``, unary ``-``, ``**`` with a scalar exponent and the
    comparisons ``== < > <= >=`` (``==`` builds an ``equal`` node, as in numpy, so
    tensors hash by identity).
    """

    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, graph, name, dtype, shape, producer=None):
        self.graph = graph
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.producer = producer  # Node, Placeholder or Variable

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def op(self):
        return getattr(self.producer, "op", type(self.producer).__name__.lower())

    def __repr__(self):
        return f"<gc.Tensor {self.name!r} {format_shape(self.shape)} {self.dtype}>"

    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError("a graphc Tensor has no truth value at build time; use gc.where for conditions")

    # Operators route through the op builders graphc.ops installs (see install_operators).
    def _ops(self):
        return _hook("ops", "graphc.ops")

    def __add__(self, other): return self._ops().add(self, other)
    def __radd__(self, other): return self._ops().add(other, self)
    def __sub__(self, other): return self._ops().sub(self, other)
    def __rsub__(self, other): return self._ops().sub(other, self)
    def __mul__(self, other): return self._ops().mul(self, other)
    def __rmul__(self, other): return self._ops().mul(other, self)
    def __truediv__(self, other): return self._ops().div(self, other)
    def __rtruediv__(self, other): return self._ops().div(other, self)
    def __matmul__(self, other): return self._ops().matmul(self, other)
    def __rmatmul__(self, other): return self._ops().matmul(other, self)
    def __neg__(self): return self._ops().neg(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            return self._ops().power(self, exponent)  # elementwise a^b, broadcasting
        return self._ops().pow(self, exponent=float(exponent))

    def __eq__(self, other): return self._ops().equal(self, other)
    def __ne__(self, other): return self._ops().logical_not(self._ops().equal(self, other))
    def __lt__(self, other): return self._ops().less(self, other)
    def __gt__(self, other): return self._ops().greater(self, other)
    def __le__(self, other): return self._ops().less_equal(self, other)  # NaN <= x is False, as in numpy
    def __ge__(self, other): return self._ops().greater_equal(self, other)

    def __getitem__(self, key):
        return self._ops().getitem(self, key)

    @property
    def T(self):
        return self._ops().transpose(self)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return self._ops().reshape(self, shape=tuple(shape))

    def sum(self, axis=None, keepdims=False):
        return self._ops().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return self._ops().mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return self._ops().max(self, axis=axis, keepdims=keepdims)

    def astype(self, dtype):
        return self._ops().cast(self, to=dtype)


@dataclasses.dataclass
class Entry:
    """A named entry point of a graph: a training step or an inference function.

    ``name``: unique among the graph's entries, of letters, digits, ``_``, ``.`` or ``-``.
    ``fetches``: value names the entry returns (a training entry returns its loss first, then
    these).  ``training``: a :class:`graphc.optim.TrainingSpec` (the entry is one step of that
    optimizer minimizing its loss) or None (an inference function: mode-dependent ops such as
    dropout and batch norm take their inference form).

    Built by ``gc.optim.<Optimizer>.minimize(loss, name=...)`` and :meth:`Graph.entry`; listed,
    in declaration order, in ``graph.entries``.
    """

    name: str
    fetches: list = dataclasses.field(default_factory=list)
    training: object = None

    @property
    def is_training(self):
        return self.training is not None


class Placeholder:
    """A graph input, fed at run time.  A dimension may be None or a symbol."""

    def __init__(self, name, dtype, shape, provenance):
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.provenance = provenance
        self.output = None


class Variable:
    """Persistent state with a concrete shape and an initial value (a numpy array)."""

    def __init__(self, name, dtype, shape, init_value, trainable, provenance):
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.init_value = init_value
        self.trainable = trainable
        self.provenance = provenance
        self.output = None


class Node:
    """One op application: inputs and outputs are value names."""

    def __init__(self, name, op, inputs, outputs, attrs, role=FORWARD, provenance=("", 0), scope=""):
        self.name = name
        self.op = op
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs)
        self.role = role
        self.provenance = provenance
        self.scope = scope
        # the nodes a fused node runs (graphc/compiler/fuse.py), in program order; () otherwise
        self.fused = ()

    def __repr__(self):
        return f"<gc.Node {self.name!r} op={self.op} inputs={self.inputs} outputs={self.outputs}>"

    def describe(self):
        """'op(name=...)' for error messages; a fused node also names its members."""
        if self.fused:
            return f"{self.op}(name={self.name}; fused: {', '.join(m.name for m in self.fused)})"
        return f"{self.op}(name={self.name})"


_state = threading.local()


@contextlib.contextmanager
def compiler_provenance():
    """Inside, a node built without a provenance (by a compiler pass, not under
    ``Graph.building(role, provenance)``) gets none, ``("", 0)``, instead of the innermost
    user frame, which would be the line that called ``gc.compile``: the same model compiled
    from two lines must give the same plan bytes."""
    _state.in_compiler = getattr(_state, "in_compiler", 0) + 1
    try:
        yield
    finally:
        _state.in_compiler -= 1


def _stack():
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


_default_graph = None


def get_default_graph():
    """The innermost ``with Graph()`` on this thread, else a process-wide default graph."""
    stack = _stack()
    if stack:
        return stack[-1]
    global _default_graph
    if _default_graph is None:
        _default_graph = Graph()
    return _default_graph


def reset_default_graph():
    global _default_graph
    _default_graph = None


class Graph:
    """A static computation graph.  Use as a context manager to make it the default.

    Attributes: ``inputs`` (placeholders), ``variables``, ``nodes``, ``outputs``
    (declared output names), ``training`` (a :class:`graphc.optim.TrainingSpec` or None:
    the default entry, recorded by an unnamed ``minimize(loss)``), ``entries`` (named entry
    points, an ordered ``{name: Entry}``, see :meth:`entry`), ``metadata`` (str → str).
    """

    def __init__(self):
        self.inputs = []
        self.variables = []
        self.nodes = []
        self.outputs = []
        self.training = None
        self.entries = {}
        self.metadata = {}
        self._values = {}       # value name → Tensor
        self._producers = {}    # node/placeholder/variable name → object
        self._scope = []
        self._counters = {}
        self._role_stack = []   # (role, provenance) overrides for nodes built by passes

    # -- context -----------------------------------------------------------------
    def __enter__(self):
        _stack().append(self)
        return self

    def __exit__(self, *exc):
        _stack().pop()
        return False

    @contextlib.contextmanager
    def name_scope(self, name):
        if not name or "/" in name or ":" in name:
            raise GraphError(f"bad name scope {name!r}: it must be non-empty without '/' or ':'")
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    @contextlib.contextmanager
    def building(self, role, provenance=None):
        """Nodes added inside get ``role`` and, when given, ``provenance`` (passes use this so
        gradient nodes carry the file:line of the forward node they differentiate)."""
        if role not in ROLES:
            raise GraphError(f"unknown role {role!r}")
        self._role_stack.append((role, provenance))
        try:
            yield
        finally:
            self._role_stack.pop()

    @property
    def scope(self):
        return "/".join(self._scope)

    # -- names -------------------------------------------------------------------
    def unique_name(self, base):
        prefix = self.scope + "/" if self._scope else ""
        name = prefix + base
        if name not in self._producers and name not in self._values:
            return name
        n = self._counters.get(name, 0)
        while True:
            n += 1
            candidate = f"{name}_{n}"
            if candidate not in self._producers and candidate not in self._values:
                self._counters[name] = n
                return candidate

    def _claim(self, name, obj, what):
        if not isinstance(name, str) or not name:
            raise GraphError(f"{what} name must be a non-empty string, got {name!r}")
        if ":" in name:
            raise GraphError(f"{what} name {name!r} must not contain ':' (reserved for output indices)")
        if name in self._producers or name in self._values:
            raise GraphError(f"duplicate name {name!r}: a {what} cannot reuse it")
        self._producers[name] = obj

    # -- lookup ------------------------------------------------------------------
    def tensor(self, name):
        """The Tensor handle for a value name."""
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"graph has no value named {name!r}") from None

    def has_value(self, name):
        return name in self._values

    @property
    def values(self):
        return dict(self._values)

    def node(self, name):
        obj = self._producers.get(name)
        if not isinstance(obj, Node):
            raise KeyError(f"graph has no node named {name!r}")
        return obj

    def producer(self, value_name):
        return self._values[value_name].producer

    def consumers(self):
        """value name → list of nodes reading it."""
        out = {name: [] for name in self._values}
        for node in self.nodes:
            for i in node.inputs:
                out.setdefault(i, []).append(node)
        return out

    def default_fetches(self):
        """The declared outputs, or else every node output that no node consumes
        (in node order).  Constants are never default fetches."""
        if self.outputs:
            return list(self.outputs)
        consumed = {i for node in self.nodes for i in node.inputs}
        return [o for node in self.nodes if not registry.get_op(node.op).constant
                for o in node.outputs if o not in consumed]

    def topological_order(self):
        """Nodes in a deterministic topological order (stored order among ready nodes).
        Raises GraphError on a cycle or a dangling input."""
        produced = {p.name for p in self.inputs} | {v.name for v in self.variables}
        if self._stored_order_is_topological(set(produced)):
            # Kahn's algorithm below takes the lowest ready index first, so it would return the
            # stored order unchanged; one pass over the inputs says so more cheaply (the passes
            # call this on large graphs that are almost always stored in topological order).
            return list(self.nodes)
        out_of = {}
        for node in self.nodes:
            for o in node.outputs:
                out_of[o] = node
        index = {id(node): idx for idx, node in enumerate(self.nodes)}
        succs = [[] for _ in self.nodes]
        indegree = [0] * len(self.nodes)
        for idx, node in enumerate(self.nodes):
            deps = set()
            for i in node.inputs:
                if i in produced:
                    continue
                if i not in out_of:
                    raise GraphError(f"{node.describe()} reads {i!r}, which nothing produces{where(node.provenance)}")
                deps.add(index[id(out_of[i])])
            indegree[idx] = len(deps)
            for d in deps:
                succs[d].append(idx)
        positions, stuck = kahn_order(succs, indegree)
        order = [self.nodes[i] for i in positions]
        if stuck:
            stuck = [self.nodes[i].name for i in stuck]
            raise GraphError(f"graph has a cycle through nodes {stuck[:5]}")
        return order

    def _stored_order_is_topological(self, produced):
        """Whether every node reads only placeholders, variables and outputs of earlier nodes,
        and no value is produced twice (``produced``: the placeholder and variable names; filled in)."""
        for node in self.nodes:
            for i in node.inputs:
                if i not in produced:
                    return False
            for o in node.outputs:
                if o in produced:
                    return False
                produced.add(o)
        return True

    # -- building ----------------------------------------------------------------
    def add_placeholder(self, name, shape, dtype="float32", provenance=None):
        name = self.scope + "/" + name if self._scope else name
        ph = Placeholder(name, dtypes.as_dtype(dtype), normalize_shape(shape), provenance or ("", 0))
        self._claim(name, ph, "placeholder")
        ph.output = Tensor(self, name, ph.dtype, ph.shape, ph)
        self._values[name] = ph.output
        self.inputs.append(ph)
        return ph.output

    def add_variable(self, name, init_value, trainable=True, provenance=None):
        name = self.scope + "/" + name if self._scope else name
        value = np.asarray(init_value, order="C")  # passes share the (read-only) init arrays
        dtype = dtypes.as_dtype(value.dtype)
        var = Variable(name, dtype, tuple(int(d) for d in value.shape), value, bool(trainable), provenance or ("", 0))
        self._claim(name, var, "variable")
        var.output = Tensor(self, name, dtype, var.shape, var)
        self._values[name] = var.output
        self.variables.append(var)
        return var.output

    def add_node(self, op, inputs, attrs=None, name=None, role=FORWARD, provenance=None, num_outputs=None):
        """Append a node after checking it with the op's inference; returns its output Tensors.

        ``inputs`` are Tensors of this graph or value names.  Raises ShapeError /
        DTypeError (naming the node and the user's file:line) when inference fails.
        """
        opdef = registry.get_op(op)
        if self._role_stack:
            role, forced = self._role_stack[-1]
            provenance = forced or provenance
        provenance = provenance or user_provenance()
        in_tensors = []
        for x in inputs:
            if isinstance(x, Tensor):
                if x.graph is not self:
                    raise GraphError(f"{op}: input {x.name!r} belongs to another graph{where(provenance)}")
                in_tensors.append(x)
            elif isinstance(x, str):
                in_tensors.append(self.tensor(x))
            else:
                raise GraphError(f"{op}: input {x!r} is not a Tensor{where(provenance)}")
        if name is None:
            name = self.unique_name(op)
        elif self._scope and "/" not in name:
            name = self.scope + "/" + name
        attrs = opdef.check_attrs(attrs or {}, name, provenance)
        node = Node(name, op, [t.name for t in in_tensors], [], attrs, role, provenance, self.scope)
        out_types = opdef.infer_node(node, [(t.dtype, t.shape) for t in in_tensors])
        self._claim(name, node, "node")
        outs = [name] if len(out_types) == 1 else [f"{name}:{i}" for i in range(len(out_types))]
        for o in outs:
            if o in self._values:
                raise GraphError(f"duplicate value name {o!r}")
        node.outputs = outs
        tensors = []
        for o, (dt, shp) in zip(outs, out_types):
            t = Tensor(self, o, dt, shp, node)
            self._values[o] = t
            tensors.append(t)
        self.nodes.append(node)
        return tensors

    def insert_node(self, node, out_types):
        """Append a fully formed Node (used by the loader and passes); no inference."""
        self._claim(node.name, node, "node")
        for o, (dt, shp) in zip(node.outputs, out_types):
            if o in self._values or (o in self._producers and o != node.name):
                raise GraphError(f"duplicate value name {o!r}")
            self._values[o] = Tensor(self, o, dt, shp, node)
        self.nodes.append(node)

    def set_outputs(self, outputs):
        """Declare the graph's outputs (Tensors or names)."""
        names = [o.name if isinstance(o, Tensor) else o for o in outputs]
        for n in names:
            self.tensor(n)
        self.outputs = names

    # -- entry points ----------------------------------------------------------------
    def entry(self, name, fetches):
        """Declare the inference entry point ``name`` returning ``fetches`` (Tensors of this
        graph or value names, at least one).  Returns the :class:`Entry`.

        ``gc.compile(model, entry=name)`` compiles it into a plan with train=False semantics;
        ``gc.compile(model, entries=[...])`` joins it with other entries (training steps
        recorded by ``minimize(loss, name=...)``) into one program over the same variables.

        Example::

            g.entry("sample", fetches=[fake_images])

        Raises GraphError (at the caller's line) for a bad or duplicate name, or a fetch that
        is not a value of this graph.
        """
        provenance = user_provenance()
        self.check_entry_name(name, provenance)
        names = self.entry_fetch_names(name, fetches, provenance)
        if not names:
            raise GraphError(f"entry {name!r}: give at least one fetch{where(provenance)}")
        return self.add_entry(Entry(name, names, None), provenance)

    def entry_fetch_names(self, entry_name, fetches, provenance=None):
        """``fetches`` (Tensors of this graph or value names) as a list of unique value names;
        GraphError naming the entry for anything else."""
        if fetches is None:
            return []
        if isinstance(fetches, (str, Tensor)):
            fetches = [fetches]
        names = []
        for f in fetches:
            if isinstance(f, Tensor):
                if f.graph is not self:
                    raise GraphError(f"entry {entry_name!r}: fetch {f.name!r} is a Tensor of another graph"
                                     f"{where(provenance)}")
                name = f.name
            elif isinstance(f, str):
                if f not in self._values:
                    raise GraphError(f"entry {entry_name!r}: fetch {f!r} is not a value of the graph"
                                     f"{where(provenance)}")
                name = f
            else:
                raise GraphError(f"entry {entry_name!r}: a fetch must be a Tensor or a value name, got "
                                 f"{type(f).__name__}{where(provenance)}")
            names.append(name)
        return list(dict.fromkeys(names))

    def check_entry_name(self, name, provenance=None):
        """GraphError unless ``name`` is a valid entry name not yet taken."""
        if not isinstance(name, str) or not ENTRY_NAME.fullmatch(name):
            raise GraphError(f"entry name {name!r} must be a non-empty string of letters, digits, '_', '.' or '-'"
                             f"{where(provenance)}")
        if name in self.entries:
            kind = "training" if self.entries[name].training is not None else "inference"
            raise GraphError(f"duplicate entry name {name!r}: the graph already has a {kind} entry of that name"
                             f"{where(provenance)}")

    def add_entry(self, entry, provenance=None):
        """Record ``entry`` (an :class:`Entry` whose fetches were checked) after checking its
        name; the optimizers and :meth:`entry` call this."""
        self.check_entry_name(entry.name, provenance)
        self.entries[entry.name] = entry
        return entry

    # -- persistence ---------------------------------------------------------------
    def save(self, path, external_threshold=None):
        """Write the graph as a Model protobuf; large weights go to ``<path>.weights``."""
        kwargs = {} if external_threshold is None else {"external_threshold": external_threshold}
        _hook("save", "graphc.serialize")(self, path, **kwargs)

    def __repr__(self):
        return (f"<gc.Graph inputs={len(self.inputs)} variables={len(self.variables)} "
                f"nodes={len(self.nodes)}>")


# -- module-level builder functions -----------------------------------------------------

def placeholder(name, shape, dtype="float32"):
    """A graph input.  ``None`` or a string in ``shape`` is bound at compile time."""
    return get_default_graph().add_placeholder(name, shape, dtype, user_provenance())


def variable(name, shape=None, dtype=None, init=None, trainable=True):
    """A persistent, trainable value.  ``init`` is an initializer from ``gc.init``
    (default zeros) or an array.  dtype defaults to float32 for an initializer and to
    the array's dtype for an array."""
    provenance = user_provenance()
    if init is None:
        init = initializers.zeros()
    if callable(init):
        dtype = "float32" if dtype is None else dtype
        if shape is None:
            raise GraphError(f"variable {name!r} needs a shape when init is an initializer{where(provenance)}")
        shape = normalize_shape(shape)
        if not is_static(shape):
            raise GraphError(f"variable {name!r} needs a concrete shape, got {format_shape(shape)}{where(provenance)}")
        value = np.asarray(init(shape, dtypes.as_dtype(dtype)), dtype=dtypes.as_dtype(dtype))
    else:
        value = np.array(init)  # a copy: later changes to the caller's array do not leak in
        if dtype is not None and value.dtype.name != dtypes.as_dtype(dtype):
            value = value.astype(dtypes.as_dtype(dtype))
        if shape is not None and tuple(value.shape) != normalize_shape(shape):
            raise GraphError(f"variable {name!r}: init has shape {value.shape}, expected {tuple(shape)}"
                             f"{where(provenance)}")
    return get_default_graph().add_variable(name, value, trainable, provenance)


def name_scope(name):
    """``with gc.name_scope("layer1"):`` prefixes node names with ``layer1/``."""
    return get_default_graph().name_scope(name)
