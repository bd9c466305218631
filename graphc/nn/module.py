"""The base of gc.nn: :class:`Module` (naming, variable creation, weight sharing), the seeded
initialisation and the argument checks every layer shares."""

import contextlib
import hashlib
import weakref
from collections import OrderedDict

import numpy as np

from graphc import init as initializers
from graphc import ops
from graphc.errors import GraphError, ShapeError
from graphc.graph import Tensor, get_default_graph, user_provenance

_seed = [0]


def manual_seed(seed):
    """Set the seed every layer's initial values are drawn from (default 0).  Each variable
    draws from ``numpy.random.default_rng([seed, hash(variable name)])``: the values depend on
    the seed and the name only, not on the order layers are built in."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise GraphError(f"gc.nn.manual_seed expects an int >= 0, got {seed!r}")
    _seed[0] = int(seed)


def _name_seed(name):
    """The seed of the variable (or dropout node) called ``name``: the global seed and a
    stable 64-bit hash of the name (Python's hash() changes from run to run)."""
    return [_seed[0], int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")]


def _uniform(bound):
    return lambda seed: initializers.uniform(-bound, bound, seed=seed)


def _constant(value):
    return lambda seed: initializers.constant(value)


def _pair(layer, what, v):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    try:
        t = tuple(v)
    except TypeError:
        t = None
    if t is None or len(t) != 2 or any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in t):
        raise GraphError(f"{layer}: {what} must be an int or a pair of ints, got {v!r}")
    return (int(t[0]), int(t[1]))


def _positive_int(layer, what, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise GraphError(f"{layer}: {what} must be an int >= 1, got {v!r}")
    return int(v)


def _check_name(name, what):
    if not isinstance(name, str) or not name or "/" in name or ":" in name:
        raise GraphError(f"{what} must be a non-empty string without '/' or ':', got {name!r}")
    return name


class Module:
    """Base class of the layers: children, name scopes and variables.

    A subclass sets its sub-layers as attributes (or with :meth:`add_module`) and implements
    :meth:`forward`.  A child's scope is its attribute name; the outermost module's scope is
    ``name`` (None: no scope of its own).  Inside ``forward``, :meth:`variable` creates a
    variable under the module's scope the first time and returns the same Tensor afterwards.
    Example::

        class Net(gc.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = gc.nn.Linear(64, 32)
                self.fc2 = gc.nn.Linear(32, 10)

            def forward(self, x):
                return self.fc2(gc.relu(self.fc1(x)))   # variables fc1/weight, ..., fc2/bias
    """

    def __init__(self, name=None):
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_scope_name", None if name is None else _check_name(name, "a layer's name"))
        object.__setattr__(self, "_parent_named", False)
        # graph → {local variable name: Tensor}; weak, so a finished graph is not kept alive
        object.__setattr__(self, "_vars", weakref.WeakKeyDictionary())

    # -- children ---------------------------------------------------------------------
    def __setattr__(self, key, value):
        if isinstance(value, Module):
            self.add_module(key, value)
        elif key in self.__dict__.get("_modules", ()):
            del self._modules[key]          # a child replaced by a plain value (e.g. None) is no child
        object.__setattr__(self, key, value)

    def add_module(self, name, module):
        """Register ``module`` as the child ``name`` (its scope inside this module's scope).
        A module registered in two places keeps the name it got first."""
        if "_modules" not in self.__dict__:
            raise GraphError(f"{type(self).__name__}.__init__ must call super().__init__() before setting layers")
        if not isinstance(module, Module):
            raise GraphError(f"{type(self).__name__}.add_module({name!r}, ...) expects a gc.nn layer, got "
                             f"{type(module).__name__}")
        _check_name(name, "a child layer's name")
        self._modules[name] = module
        if not module._parent_named:
            object.__setattr__(module, "_scope_name", name)
            object.__setattr__(module, "_parent_named", True)
        object.__setattr__(self, name, module)

    def named_children(self):
        """(name, module) of the direct children, in registration order."""
        return list(self._modules.items())

    def children(self):
        return list(self._modules.values())

    # -- calling ----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        graph = None
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, Tensor):
                graph = a.graph
                break
        if graph is None:
            graph = get_default_graph()
        with self._enter(graph):
            return self.forward(*args, **kwargs)

    @contextlib.contextmanager
    def _enter(self, graph):
        with contextlib.ExitStack() as stack:
            if self._scope_name is not None:
                stack.enter_context(graph.name_scope(self._scope_name))
            object.__setattr__(self, "_graph", graph)
            yield

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def variable(self, name, shape, init, trainable=True, dtype="float32"):
        """The variable ``name`` of this module in the graph being built: created under the
        current scope on the first call (``init(seed)`` gives a gc.init initializer; the seed
        comes from the variable's full name), the same Tensor on later calls."""
        graph = self.__dict__.get("_graph") or get_default_graph()
        table = self._vars.setdefault(graph, {})
        if name in table:
            return table[name]
        full = f"{graph.scope}/{name}" if graph.scope else name
        value = np.asarray(init(_name_seed(full))(tuple(shape), np.dtype(dtype)), dtype=dtype)
        try:
            t = graph.add_variable(name, value, trainable, user_provenance())
        except GraphError as e:
            if "duplicate name" not in str(e):
                raise
            raise GraphError(f"{type(self).__name__}: cannot create variable {full!r}: {e}.  Two layers called "
                             f"at the same scope need different names: put them in a gc.nn.Sequential or a "
                             f"Module, give one name=..., or call it inside gc.name_scope(...)") from None
        table[name] = t
        return t

    def variables(self, graph=None):
        """{full variable name: Tensor} of this module and its children in ``graph`` (default:
        the graph it was last called in), in creation order of the modules."""
        graph = graph or self.__dict__.get("_graph") or get_default_graph()
        out = {t.name: t for t in self._vars.get(graph, {}).values()}
        for child in self._modules.values():
            out.update(child.variables(graph))
        return out

    # -- printing ---------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            lines.append("  (" + name + "): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


def _require(op):
    fn = getattr(ops, op, None)
    if fn is None:
        raise GraphError(f"gc.{op} is not available in this build of graphc")
    return fn


def _param_dtype(x):
    """A layer's variables take the dtype of its (float) input on the first call: float32
    models by default, float64 ones (gradient checks) when fed float64."""
    return "float64" if getattr(x, "dtype", None) == "float64" else "float32"


def _check_rank(layer, x, rank, what):
    if not isinstance(x, Tensor):
        raise GraphError(f"{layer} expects a gc.Tensor, got {type(x).__name__}")
    if len(x.shape) != rank:
        raise ShapeError(f"{layer} expects {what} (rank {rank}), got shape {x.shape}")


def _check_dim(layer, x, axis, expected, what):
    d = x.shape[axis]
    if isinstance(d, int) and d != expected:
        raise ShapeError(f"{layer} expects {what} {expected}, got input of shape {x.shape}")


class Identity(Module):
    """y = x."""

    def __init__(self, *args, name=None, **kwargs):
        super().__init__(name)

    def forward(self, x):
        return x


class Sequential(Module):
    """Layers applied in order; children are named ``"0"``, ``"1"``, ... as in PyTorch, or by
    the keys of an OrderedDict.  Indexable (``seq[0]``, ``seq[-1]``, ``seq[1:]`` is a new
    Sequential of the same layer objects), iterable, ``len()``, :meth:`append`."""

    def __init__(self, *layers, name=None):
        super().__init__(name)
        if len(layers) == 1 and isinstance(layers[0], (dict, OrderedDict)):
            for key, layer in layers[0].items():
                self.add_module(str(key), layer)
        else:
            for i, layer in enumerate(layers):
                self.add_module(str(i), layer)

    def append(self, layer):
        self.add_module(str(len(self._modules)), layer)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            out = Sequential()
            for key, layer in list(self._modules.items())[index]:
                out._modules[key] = layer   # same objects, same scope names: no re-registration
            return out
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"Sequential indices are ints or slices, got {type(index).__name__}")
        if not -len(layers) <= index < len(layers):
            raise IndexError(f"Sequential index {index} out of range for {len(layers)} layers")
        return layers[index]

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x
