"""graphc as an ONNX backend (``onnx.backend.base.Backend``).

ONNX's backend interface: ``GraphcBackend.prepare(model)`` imports the model
(:func:`graphc.onnx.load`) and returns a :class:`GraphcBackendRep`; ``rep.run(inputs)``
compiles the imported graph for the shapes of the arrays it is given (one plan and one
:class:`graphc.Session` per distinct set of input shapes, kept for the next run) and
returns the model's outputs in the ONNX graph's output order.  ``run_model`` and
``run_node`` are the one-off forms; ``supports_device`` answers for the devices this
build of the runtime has.

Example::

    import numpy as np, onnx
    from onnx import helper, TensorProto
    from graphc.onnx.backend import GraphcBackend
    node = helper.make_node("Relu", ["x"], ["y"])
    x = np.array([-1.0, 2.0], np.float32)
    (y,) = GraphcBackend.run_node(node, [x])          # array([0., 2.], dtype=float32)

Values the import needs: graphc's import must know some inputs' values (a Reshape's
target shape, a ReduceSum's axes, a TopK's K, ...); in a model they are initializers or
computed from shapes, but a model may also take them as graph inputs (ONNX's node test
cases do).  Then ``prepare`` keeps the model and ``run`` imports it with those graph
inputs fixed to the values it is given (``graphc.onnx.load(..., values=)``: a new import
and plan per distinct value, the 16 most recent kept; when the needed value is computed
from graph inputs, the integer graph inputs are fixed) — the backend gives ONNX's result for any
input, while ``graphc.onnx.load`` refuses such a model (OnnxUnsupportedError) and asks
for the values to be constants.

ONNX's conformance cases (tools/onnx_conformance.py, tests/test_onnx_backend.py) drive
graphc through this interface.  An import refused with OnnxUnsupportedError propagates
from ``prepare`` (an ONNX backend test runner counts it as a failure of that case; our
runner counts it as unsupported).

Like every module of graphc.onnx, this one imports ``onnx`` only when it is used, so the
backend class is built on first access of ``GraphcBackend``/``GraphcBackendRep``.
"""

import numpy as np

from graphc.compiler import compile as compile_model
from graphc.errors import FeedError, OnnxUnsupportedError
from graphc.onnx import load
from graphc.session import Session

# The CPU runtime is always built; CUDA only where the runtime was compiled with it.
_DEVICE_NAMES = {"CPU": "cpu", "CUDA": "cuda"}


def _device_name(device):
    """ONNX's device text ('CPU', 'CUDA', 'CUDA:0') → graphc's ('cpu', 'cuda')."""
    kind, _, index = str(device).partition(":")
    name = _DEVICE_NAMES.get(kind.upper())
    if name is None or index not in ("", "0"):
        raise OnnxUnsupportedError(f"device {device!r} is not supported: graphc runs on 'CPU' and, when built "
                                   f"with CUDA, 'CUDA' (device 0)")
    return name


_CACHED = 16    # plans (and imports) a BackendRep keeps, most recent first


def _needed_input(exc, input_names):
    """The graph input whose value an import refusal says it needs (``e.input_name``), or None."""
    name = getattr(exc, "input_name", None)
    return name if name in input_names else None


def _load_freezing(feeds, needed, load):
    """Import the model with the graph inputs in ``needed`` fixed to their ``feeds`` values
    (``values=``); when the import needs one more graph input's value, fix it too and import
    again.  Returns (graph, the inputs fixed)."""
    needed = set(needed)
    while True:
        try:
            return load(values={n: feeds[n] for n in needed}), needed
        except OnnxUnsupportedError as e:
            more = _needed_input(e, list(feeds))
            if more is None or more in needed:
                raise
            needed.add(more)


def _remember(cache, key, value):
    cache[key] = value
    while len(cache) > _CACHED:
        del cache[next(iter(cache))]


def _runtime_devices():
    from graphc import _runtime
    return set(_runtime.devices())


def _make_classes():
    import onnx.backend.base as base

    class GraphcBackendRep(base.BackendRep):
        """An imported ONNX model, compiled on demand for the shapes it is run with.

        ``run(inputs)``: ``inputs`` is a list of arrays in the order of the model's graph
        inputs (initializers that older models also list as inputs are not fed), or a
        dict {ONNX input name: array}; returns a tuple of arrays, one per graph output,
        also indexable by output name.

        ``freeze``: graph inputs whose values the import needs (a Reshape's shape, a
        ReduceSum's axes, ... fed as graph inputs).  The model is then imported at run time,
        once per distinct value of those inputs, with them as constants (see the module
        docstring); ``graph`` is None until then.
        """

        def __init__(self, model, graph, load, device="cpu", threads=None, freeze=()):
            self.model = model
            self.graph = graph
            self.device = device
            self.threads = threads
            self.freeze = set(freeze)
            self._load = load
            inits = {t.name for t in model.graph.initializer}
            self.input_names = [i.name for i in model.graph.input if i.name not in inits]
            self.output_names = [o.name for o in model.graph.output]
            self._graphs = {}       # frozen inputs' values → imported graph
            self._sessions = {}     # (frozen values, feed shapes) → (Session, graph)
            self._outputs_type = base.namedtupledict("Outputs", self.output_names)

        def feeds(self, inputs):
            """``inputs`` (as for :meth:`run`) as {ONNX input name: array}."""
            if isinstance(inputs, dict):
                unknown = sorted(set(inputs) - set(self.input_names))
                if unknown:
                    raise FeedError(f"the model has no input(s) {unknown}; its inputs: {self.input_names}")
                items = inputs.items()
            else:
                inputs = list(inputs)
                if len(inputs) > len(self.input_names):
                    raise FeedError(f"{len(inputs)} inputs given, the model has {len(self.input_names)}: "
                                    f"{self.input_names}")
                items = zip(self.input_names, inputs)
            return {n: np.asarray(a) for n, a in items}

        def _frozen_key(self, feeds):
            missing = sorted(self.freeze - set(feeds))
            if missing:
                raise FeedError(f"missing input(s) {missing}; the model's inputs: {self.input_names}")
            return tuple((n, feeds[n].dtype.str, feeds[n].shape, feeds[n].tobytes()) for n in sorted(self.freeze))

        def _graph_for(self, feeds):
            if not self.freeze:
                return (), self.graph
            key = self._frozen_key(feeds)
            graph = self._graphs.get(key)
            if graph is None:
                graph, needed = _load_freezing(feeds, self.freeze, self._load)
                if needed != self.freeze:
                    self.freeze = needed
                    self._graphs.clear()
                    self._sessions.clear()
                    key = self._frozen_key(feeds)
                _remember(self._graphs, key, graph)
            return key, graph

        def session(self, feeds):
            """(Session, graph) for ``feeds`` ({ONNX input name: array}): the model imported (for
            the frozen inputs' values) and compiled for the feeds' shapes, made once."""
            key, graph = self._graph_for(feeds)
            names = getattr(graph, "onnx_names", {})
            placeholders = {p.name for p in graph.inputs}
            shapes = {names.get(n, n): a.shape for n, a in feeds.items() if names.get(n, n) in placeholders}
            skey = (key, tuple(sorted(shapes.items())))
            hit = self._sessions.get(skey)
            if hit is None:
                plan = compile_model(graph, shapes=shapes, target=self.device)
                hit = (Session(plan, device=self.device, threads=self.threads), graph)
                _remember(self._sessions, skey, hit)
            return hit

        def run(self, inputs, **kwargs):
            feeds = self.feeds(inputs)
            sess, graph = self.session(feeds)
            names = getattr(graph, "onnx_names", {})
            by_graphc = {names.get(n, n): a for n, a in feeds.items()}
            wanted = set(sess.feed_names)
            missing = sorted(wanted - set(by_graphc))
            if missing:
                raise FeedError(f"missing input(s) {missing}; the model's inputs: {self.input_names}")
            got = sess.run({n: a for n, a in by_graphc.items() if n in wanted})
            return self._outputs_type(*(got[names.get(n, n)] for n in self.output_names))

    class GraphcBackend(base.Backend):
        """graphc behind ONNX's backend interface (see the module docstring)."""

        @classmethod
        def is_compatible(cls, model, device="CPU", **kwargs):
            return cls.supports_device(device)

        @classmethod
        def prepare(cls, model, device="CPU", **kwargs):
            """Import ``model`` (a ModelProto, bytes or a path) and return a GraphcBackendRep.
            kwargs: ``trainable`` (default False: an inference backend keeps initializers as
            constants), ``shapes`` (as for :func:`graphc.onnx.load`), ``threads``."""
            import onnx
            name = _device_name(device)
            # load() gives the typed errors for a malformed file; the input/output names are
            # then read from the (now known good) ModelProto.
            source = model

            def load_it(values=None):
                return load(source, trainable=kwargs.get("trainable", False), shapes=kwargs.get("shapes"),
                            values=values)

            freeze, refusal = (), None
            try:
                graph = load_it()
            except OnnxUnsupportedError as e:
                graph, refusal = None, e
            if isinstance(model, bytes):
                model = onnx.load_model_from_string(model)
            elif not isinstance(model, onnx.ModelProto):
                model = onnx.load(model, load_external_data=False)
            if refusal is not None:
                needed = getattr(refusal, "input_name", None)
                if needed is not None:
                    freeze = (needed,)
                elif "known at import" in str(refusal):
                    # a value computed from graph inputs (a window length from a scalar size input):
                    # fix the integer graph inputs, the float data stays fed at run time
                    ints = (onnx.TensorProto.INT32, onnx.TensorProto.INT64)
                    inits = {t.name for t in model.graph.initializer}
                    freeze = tuple(i.name for i in model.graph.input if i.name not in inits
                                   and i.type.tensor_type.elem_type in ints)
                if not freeze:
                    raise refusal
            return GraphcBackendRep(model, graph, load_it, device=name, threads=kwargs.get("threads"),
                                    freeze=freeze)

        @classmethod
        def run_model(cls, model, inputs, device="CPU", **kwargs):
            return cls.prepare(model, device, **kwargs).run(inputs)

        @classmethod
        def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
            """Run one NodeProto on ``inputs`` (arrays, in the node's input order; an omitted
            optional input is '' in node.input and absent from ``inputs``).  ``opset_version``
            (kwarg) picks the default-domain opset, else the newest the installed onnx knows."""
            import onnx
            from onnx import defs, helper
            present = [n for n in node.input if n]
            inputs = [np.asarray(a) for a in inputs]
            if len(inputs) != len(present):
                raise FeedError(f"node {node.op_type} names {len(present)} inputs, {len(inputs)} arrays given")
            graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                            for n, a in zip(present, inputs)]
            graph_outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
            graph = helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs)
            opset = kwargs.pop("opset_version", None) or defs.onnx_opset_version()
            model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid(node.domain or "", opset)])
            # The outputs' types come from ONNX's shape inference (where it can tell them).
            inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.output}
            for out in model.graph.output:
                if out.name in inferred and inferred[out.name].type.tensor_type.elem_type:
                    out.CopyFrom(inferred[out.name])
            return cls.prepare(model, device, **kwargs).run(inputs)

        @classmethod
        def supports_device(cls, device):
            try:
                return _device_name(device) in _runtime_devices()
            except OnnxUnsupportedError:
                return False

    return GraphcBackendRep, GraphcBackend


_CLASSES = {}


def __getattr__(name):
    # The classes derive from onnx's, so they are made when first asked for (``import
    # graphc`` never imports onnx).
    if name in ("GraphcBackend", "GraphcBackendRep"):
        if not _CLASSES:
            rep, backend = _make_classes()
            _CLASSES.update(GraphcBackendRep=rep, GraphcBackend=backend)
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def prepare(model, device="CPU", **kwargs):
    """ONNX's module-level backend API: ``graphc.onnx.backend.prepare(model).run(inputs)``."""
    return __getattr__("GraphcBackend").prepare(model, device, **kwargs)


def run_model(model, inputs, device="CPU", **kwargs):
    return __getattr__("GraphcBackend").run_model(model, inputs, device, **kwargs)


def run_node(node, inputs, device="CPU", outputs_info=None, **kwargs):
    return __getattr__("GraphcBackend").run_node(node, inputs, device, outputs_info, **kwargs)


def supports_device(device):
    return __getattr__("GraphcBackend").supports_device(device)
