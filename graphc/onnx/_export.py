"""graphc Graph → ONNX ModelProto (docs/onnx_export.md).

``save_model(model, path, opset=None, fetches=None)`` writes a graphc graph as an ONNX
model that ONNX Runtime runs with graphc's results:

* placeholders → graph inputs (a symbolic dim → ``dim_param``, None → an unnamed dim);
  only the placeholders the outputs depend on are inputs;
* variables → initializers (trainable or not); every other tensor (graphc constants,
  the axes/shape values the exporters need) → ``Constant`` nodes, so an importer can tell
  weights from constants;
* outputs → the graph's outputs: ``fetches`` (names or Tensors), else the declared
  outputs, else the default fetches (node outputs no node reads); only the nodes they
  need are exported;
* each graphc node → one or a few ONNX nodes of the default domain, by
  ``graphc.onnx._export_ops.EXPORTERS``; an op in ``REFUSED`` (or an attr/dtype case ONNX
  cannot express) raises :class:`graphc.errors.OnnxExportError` naming the node, the op
  and the user's file:line.

Value names are graphc's names (ONNX allows any string; ``"n:0"`` stays ``"n:0"``); the
few values an exporter adds are named ``<node>::<k>``, which no graphc name can be.

Tensors go to ``<file name>.data`` beside the model (ONNX external data) when their total
is over ``external_threshold`` bytes (2 GiB by default: protobuf's limit).  Both files
are written atomically (temp file + rename).

The ``onnx`` package is imported inside the functions only (``import graphc`` never
imports it).
"""

import os

import numpy as np

from graphc import dtypes, registry
from graphc.errors import OnnxExportError, where
from graphc.fileio import atomic_write

MIN_OPSET = 13
# When onnxruntime is not installed, the default opset is capped here (the newest opset
# the exporters are tested with at this writing: onnxruntime 1.32 runs opset 28 models).
FALLBACK_MAX_OPSET = 21
EXTERNAL_THRESHOLD = 2**31 - 1024 * 1024  # bytes of tensor data kept inside the .onnx file
EXTERNAL_MIN_TENSOR = 1024               # tensors smaller than this stay inline even then
EXTERNAL_ALIGN = 4096

_ONNX_DTYPE = {"float32": 1, "int32": 6, "int64": 7, "bool": 9, "float64": 11}  # onnx.TensorProto enum

_opset_cache = {}


def onnx_dtype(dtype):
    return _ONNX_DTYPE[dtypes.as_dtype(dtype)]


def _ort_max_opset(limit):
    """The newest default-domain opset (<= limit) onnxruntime loads a model of, or None when
    onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from onnx import helper
    for v in range(limit, MIN_OPSET - 1, -1):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", 1, [1])],
                                  [helper.make_tensor_value_info("y", 1, [1])])
        model = _make_model(graph, v)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return v
        except Exception:  # noqa: BLE001 -- any refusal means this opset is too new for it
            continue
    return MIN_OPSET


def default_opset():
    """The newest default-domain opset both the installed onnx and onnxruntime support
    (at least 13); without onnxruntime, min(onnx's newest, FALLBACK_MAX_OPSET)."""
    if "default" not in _opset_cache:
        import onnx
        newest = onnx.defs.onnx_opset_version()
        ort = _ort_max_opset(newest)
        _opset_cache["default"] = max(MIN_OPSET, min(newest, ort if ort is not None else FALLBACK_MAX_OPSET))
    return _opset_cache["default"]


def _make_model(graph, opset):
    from onnx import helper
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="graphc")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def _shape_proto(shape):
    """An ONNX shape from a graphc shape: int dims, str → dim_param, None → unnamed."""
    out = []
    for d in shape:
        out.append(None if d is None else (d if isinstance(d, str) else int(d)))
    return out


def _value_info(name, dtype, shape):
    from onnx import helper
    return helper.make_tensor_value_info(name, onnx_dtype(dtype), _shape_proto(shape))


def _tensor_proto(array, name):
    from onnx import numpy_helper
    array = np.array(array, order="C", copy=True)  # (ascontiguousarray would make a scalar 1-D)
    dtypes.as_dtype(array.dtype)
    return numpy_helper.from_array(array, name)


class ExportState:
    """What is being built for one model: ONNX nodes, initializers, the opset, a counter
    for the value names exporters add."""

    def __init__(self, opset):
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.counter = 0

    def fresh(self, base):
        self.counter += 1
        return f"{base}::{self.counter}"


class NodeExport:
    """What an exporter sees for one graphc node, and how it adds ONNX nodes.

    ``x(i)``: the ONNX name of input i; ``dtype(i)``, ``shape(i)``: its graphc type;
    ``out_dtype(i)``, ``out_shape(i)``: the node's outputs'; ``attrs``; ``opset``.
    ``add(op_type, inputs, **attrs)`` appends an ONNX node and returns its output name
    (``n_out=k``: a list of k names); ``const(array)`` a Constant; the exporter returns one
    value name per graphc output (the framework names them).
    """

    def __init__(self, state, graph, node, names, root=None):
        self.state = state
        self.graph = graph
        self.node = node
        self.root = root or node           # the user's node (for errors) when exporting a composite
        self.opdef = registry.get_op(node.op)
        self.attrs = node.attrs
        self.names = names                 # graphc value name → ONNX value name
        self.opset = state.opset
        self.first = len(state.nodes)      # index of this node's first ONNX node

    # -- types ---------------------------------------------------------------------
    @property
    def num_inputs(self):
        return len(self.node.inputs)

    def x(self, i):
        return self.names[self.node.inputs[i]]

    def _type(self, name):
        t = self.graph.tensor(name)
        return t.dtype, tuple(t.shape)

    def dtype(self, i):
        return self._type(self.node.inputs[i])[0]

    def shape(self, i):
        return self._type(self.node.inputs[i])[1]

    def out_dtype(self, i=0):
        return self._type(self.node.outputs[i])[0]

    def out_shape(self, i=0):
        return self._type(self.node.outputs[i])[1]

    def static(self, shape, what):
        """``shape`` as ints, or an export error saying that ``what`` needs static dims."""
        if any(not isinstance(d, (int, np.integer)) for d in shape):
            self.fail(f"{what} needs static dims, got {tuple(shape)}; compile-time dims can be "
                      "bound by building the graph with concrete placeholder shapes")
        return tuple(int(d) for d in shape)

    # -- building ------------------------------------------------------------------
    def fail(self, msg):
        root = self.root
        raise OnnxExportError(f"node {root.name!r} ({root.op}): {msg} (ONNX opset {self.opset})"
                              f"{where(root.provenance)}")

    def add(self, op_type, inputs, n_out=1, **attrs):
        from onnx import helper
        outs = [self.state.fresh(self.node.name) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.state.nodes.append(helper.make_node(op_type, [i if i is not None else "" for i in inputs],
                                                 outs, name=self.state.fresh(self.node.name), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=None):
        """A Constant node holding ``value`` (dtype: its numpy dtype unless given)."""
        from onnx import helper
        arr = np.asarray(value, dtype=dtype)
        name = self.state.fresh(self.node.name)
        self.state.nodes.append(helper.make_node("Constant", [], [name], name=name,
                                                 value=_tensor_proto(arr, name)))
        return name

    def scalar(self, value, dtype):
        """A rank-0 Constant of graphc dtype ``dtype``."""
        return self.const(np.asarray(value).astype(dtypes.as_dtype(dtype)))

    def ints(self, values):
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def branch(self, build):
        """Run ``build()`` with the ONNX nodes it adds collected apart (for an If branch);
        returns (nodes, output name)."""
        saved, self.state.nodes = self.state.nodes, []
        try:
            out = build()
            return self.state.nodes, out
        finally:
            self.state.nodes = saved

    def subgraph(self, branch, dtype):
        """A GraphProto of a :meth:`branch` whose one output has graphc dtype ``dtype``."""
        from onnx import helper
        nodes, out = branch
        return helper.make_graph(nodes, self.state.fresh(self.node.name), [],
                                 [helper.make_tensor_value_info(out, onnx_dtype(dtype), None)])

    # -- opset-dependent forms ---------------------------------------------------------
    def reduce(self, op_type, x, axes, keepdims):
        """``op_type`` (ReduceSum, ReduceMean, ReduceMax, ReduceMin, ...) over ``axes``
        (None: every axis; (): none)."""
        attrs = {"keepdims": int(bool(keepdims))}
        if axes is not None and len(axes) == 0:
            return self.add("Identity", [x])  # reducing no axis is the identity
        takes_input = op_type == "ReduceSum" or self.opset >= 18
        if axes is None:
            return self.add(op_type, [x], **attrs)
        if takes_input:
            return self.add(op_type, [x, self.ints(axes)], **attrs)
        return self.add(op_type, [x], axes=list(axes), **attrs)

    def unsqueeze(self, x, axes):
        return self.add("Unsqueeze", [x, self.ints(axes)])

    def squeeze(self, x, axes):
        if not axes:
            return self.add("Identity", [x])
        return self.add("Squeeze", [x, self.ints(axes)])

    def reshape(self, x, shape):
        """x reshaped to ``shape`` (graphc rules: ints, one -1 allowed, 0 is a zero dim)."""
        shape = [int(d) for d in shape]
        if 0 in shape:
            if self.opset >= 14 and -1 not in shape:
                return self.add("Reshape", [x, self.ints(shape)], allowzero=1)
            # zero elements: the result does not depend on x's (absent) values
            if -1 in shape:
                self.fail(f"reshape to {tuple(shape)} (a zero dim and -1) has no ONNX form")
            return self.zeros(shape, self.dtype_of(x))
        return self.add("Reshape", [x, self.ints(shape)])

    def dtype_of(self, onnx_name):
        for graphc_name, name in self.names.items():
            if name == onnx_name:
                return self.graph.tensor(graphc_name).dtype
        raise KeyError(onnx_name)

    def zeros(self, shape, dtype):
        from onnx import helper
        value = helper.make_tensor("value", onnx_dtype(dtype), [1], [0] if dtype != "bool" else [False])
        return self.add("ConstantOfShape", [self.ints(shape)], value=value)

    def zeros_like_shape(self, shape_name, dtype):
        from onnx import helper
        value = helper.make_tensor("value", onnx_dtype(dtype), [1], [0] if dtype != "bool" else [False])
        return self.add("ConstantOfShape", [shape_name], value=value)

    def shape_of(self, x):
        return self.add("Shape", [x])


def _export_nodes(state, graph, nodes, names, root=None):
    """Append the ONNX form of ``nodes`` (graphc nodes of ``graph``, in order) to ``state``;
    ``names`` maps graphc value names to ONNX names and is extended with the outputs."""
    from graphc.onnx._export_ops import EXPORTERS, REFUSED
    for node in nodes:
        e = NodeExport(state, graph, node, names, root)
        fn = EXPORTERS.get(node.op)
        if fn is None:
            reason = REFUSED.get(node.op, "no exporter is written for it")
            e.fail(f"graphc op {node.op!r} has no ONNX form: {reason}")
        outs = fn(e)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        if len(outs) != len(node.outputs):
            raise AssertionError(f"exporter of {node.op} returned {len(outs)} values for {len(node.outputs)}")
        for gname, oname in zip(node.outputs, outs):
            names[gname] = oname


def export_composite(e):
    """Export a node through its registry composite definition (built in a scratch graph
    from placeholders of the node's input types, then exported node by node)."""
    from graphc.graph import Graph, compiler_provenance
    scratch = Graph()
    inner = {}
    with scratch, compiler_provenance():
        ins = []
        for i in range(e.num_inputs):
            t = scratch.add_placeholder(f"in{i}", e.shape(i), e.dtype(i))
            ins.append(t)
            inner[t.name] = e.x(i)
        outs = registry.expand_node(e.opdef, e.node, ins)
    prefix = e.state.fresh(e.node.name)
    for node in scratch.nodes:  # keep the expansion's value names unique in the whole model
        node.name = f"{prefix}/{node.name}"
    _export_nodes(e.state, scratch, scratch.nodes, inner, root=e.root)
    return [inner[t.name] for t in outs]


def _rename_outputs(state, first, renames):
    """Give the values an exporter returned the graphc names: rename in place when the value
    was made by this node's ONNX nodes, else (an input passed through) add an Identity."""
    from onnx import helper
    made = {}
    for k in range(first, len(state.nodes)):
        for j, o in enumerate(state.nodes[k].output):
            made[o] = (k, j)
    for old, new in renames:
        if old == new:
            continue
        if old in made and sum(1 for o, _ in renames if o == old) == 1:
            k, j = made[old]
            state.nodes[k].output[j] = new
            for m in range(k + 1, len(state.nodes)):
                nd = state.nodes[m]
                for i, name in enumerate(nd.input):
                    if name == old:
                        nd.input[i] = new
        else:
            state.nodes.append(helper.make_node("Identity", [old], [new], name=state.fresh(new)))


def _needed_nodes(graph, fetches):
    """The nodes the fetches depend on, in topological order."""
    order = graph.topological_order()
    producer = {o: n for n in order for o in n.outputs}
    need, stack = set(), list(fetches)
    while stack:
        v = stack.pop()
        n = producer.get(v)
        if n is None or id(n) in need:
            continue
        need.add(id(n))
        stack.extend(n.inputs)
    return [n for n in order if id(n) in need]


def _fetch_names(graph, fetches):
    from graphc.graph import Tensor
    if fetches is None:
        names = graph.default_fetches()
    elif isinstance(fetches, str) and not graph.has_value(fetches) and fetches in graph.entries:
        names = list(graph.entries[fetches].fetches)  # an entry point's name: its fetches
    else:
        if isinstance(fetches, (str, Tensor)):
            fetches = [fetches]
        names = [f.name if isinstance(f, Tensor) else f for f in fetches]
    if not names:
        raise OnnxExportError("the graph has no outputs to export: give fetches= or declare outputs")
    for n in names:
        if not isinstance(n, str) or not graph.has_value(n):
            raise OnnxExportError(f"fetch {n!r} is not a value of the graph")
    return list(dict.fromkeys(names))


def build_model(graph, opset=None, fetches=None):
    """The ONNX ModelProto of ``graph`` (tensors inline); see :func:`save_model`."""
    import onnx
    from onnx import helper
    if opset is None:
        opset = default_opset()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"opset {opset!r} is not supported: graphc exports opsets {MIN_OPSET}..{newest} "
                              "(the installed onnx package's newest)")
    opset = int(opset)
    names_out = _fetch_names(graph, fetches)
    nodes = _needed_nodes(graph, names_out)
    used = {i for n in nodes for i in n.inputs} | set(names_out)
    state = ExportState(opset)
    names = {}
    inputs = []
    for ph in graph.inputs:
        if ph.name in used:
            names[ph.name] = ph.name
            inputs.append(_value_info(ph.name, ph.dtype, ph.shape))
    for var in graph.variables:
        if var.name in used:
            names[var.name] = var.name
            state.initializers.append(_tensor_proto(np.asarray(var.init_value, dtype=var.dtype), var.name))
    for node in nodes:
        first = len(state.nodes)
        _export_nodes(state, graph, [node], names)
        renames = [(names[o], o) for o in node.outputs]
        _rename_outputs(state, first, renames)
        for o in node.outputs:
            names[o] = o
    outputs = []
    for n in names_out:
        t = graph.tensor(n)
        outputs.append(_value_info(n, t.dtype, t.shape))
    g = helper.make_graph(state.nodes, "graphc", inputs, outputs, initializer=state.initializers)
    model = _make_model(g, opset)
    model.doc_string = "exported by graphc"
    return model


def _externalize(model, data_name, min_tensor):
    """Move tensor bytes (initializers and Constant values) of ``min_tensor`` bytes or more to
    one buffer; the tensors then point at ``data_name`` (offset, length).  Returns the bytes."""
    from onnx import TensorProto
    chunks, offset = [], 0

    def move(t):
        nonlocal offset
        if t.data_location == TensorProto.EXTERNAL or not t.raw_data or len(t.raw_data) < min_tensor:
            return
        pad = (-offset) % EXTERNAL_ALIGN
        if pad:
            chunks.append(b"\0" * pad)
            offset += pad
        raw = t.raw_data
        chunks.append(raw)
        del t.external_data[:]
        for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        offset += len(raw)

    for t in model.graph.initializer:
        move(t)
    for n in model.graph.node:
        for a in n.attribute:
            if a.name == "value" and a.HasField("t"):
                move(a.t)
    return b"".join(chunks)


def _tensor_bytes(model):
    total = sum(len(t.raw_data) for t in model.graph.initializer)
    for n in model.graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                total += len(a.t.raw_data)
    return total


def save_model(model, path, opset=None, fetches=None, external_threshold=None):
    """Export ``model`` (a :class:`graphc.Graph` or the path of a graphc ``.pb``) as ONNX.

    Writes ``path`` atomically and returns the ``onnx.ModelProto``.  ``opset``: the
    default-domain opset (13 .. onnx's newest; default :func:`default_opset`).
    ``fetches``: the outputs (value names or Tensors, or the name of an entry point of the
    graph; default: the declared outputs, else the default fetches).  When the tensors total
    more than ``external_threshold`` bytes (default about 2 GiB), tensors of 1 KiB or more
    go to ``<file name>.data`` beside the model (ONNX external data; the returned proto then
    refers to it).

    Example::

        import graphc as gc
        with gc.Graph() as g:
            x = gc.placeholder("x", ("N", 4))
            w = gc.variable("w", (4, 2), init=gc.init.ones())
            y = gc.relu(x @ w)
        gc.onnx.save(g, "model.onnx")

    Raises OnnxExportError for an op or attr value with no ONNX form (naming the node and
    the user's file:line), GraphcError subclasses for a bad .pb.
    """
    from graphc.graph import Graph
    if not isinstance(model, Graph):
        if isinstance(model, (str, os.PathLike)):
            from graphc.serialize import load
            model = load(model)
        else:
            raise OnnxExportError(f"save_model expects a graphc Graph or a .pb path, got {type(model).__name__}")
    proto = build_model(model, opset=opset, fetches=fetches)
    threshold = EXTERNAL_THRESHOLD if external_threshold is None else int(external_threshold)
    path = os.fspath(path)
    if _tensor_bytes(proto) > threshold:
        data_name = os.path.basename(path) + ".data"
        data = _externalize(proto, data_name, EXTERNAL_MIN_TENSOR if external_threshold is None
                            else min(EXTERNAL_MIN_TENSOR, max(threshold, 1)))
        atomic_write(os.path.join(os.path.dirname(os.path.abspath(path)), data_name), data)
    atomic_write(path, proto.SerializeToString())
    return proto
