"""Saving and loading models: Graph ⇄ ``graphc_pb2.Model`` ⇄ ``.pb`` file.

``save`` writes a deterministic, atomic ``.pb`` (same graph → same bytes; a loaded
model re-saves to identical bytes).  Tensors larger than ``external_threshold`` go to
one weights file ``<basename>.weights`` beside the ``.pb``, each 4096-byte aligned
(so the runtime can memory-map them), with offset, length and SHA-256 recorded.

``load`` treats the file as untrusted: every claim (lengths, shapes, names, paths,
offsets, attrs) is checked before it is acted on, and any inconsistency raises
:class:`graphc.errors.ModelFormatError` naming the node or tensor.  No buffer is
sized from a claim before that claim has been checked against the real data.

Example::

    import graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 4))
        w = gc.variable("w", (4, 2), init=gc.init.ones())
        gc.relu(x @ w)
    g.save("model.pb")
    g2 = gc.load("model.pb")
"""

import hashlib
import os

import numpy as np
from google.protobuf.message import DecodeError

from graphc import dtypes, optim, registry
from graphc._proto import graphc_pb2 as pb
from graphc._version import __version__
from graphc.errors import GraphcError, ModelFormatError, quote
from graphc.fileio import atomic_write
from graphc.graph import (
    ENTRY_NAME,
    FORWARD,
    GRADIENT,
    OPTIMIZER,
    RECOMPUTE,
    Entry,
    Graph,
    Node,
    install_saver,
    kahn_order,
)
from graphc.proto_enums import dtype_from_proto, dtype_to_proto, is_program_bytes

FORMAT_VERSION = 1
MIN_CONSUMER_VERSION = 1
PRODUCER_NAME = "graphc"
WEIGHTS_SUFFIX = ".weights"
ALIGNMENT = 4096
DEFAULT_EXTERNAL_THRESHOLD = 1024 * 1024

# protobuf refuses messages of 2 GiB or more.  Inline tensor bytes are capped well below
# that so names, attrs and framing always fit: a tensor that would push the running
# total of inline bytes past this budget goes to the weights file, whatever its size.
PROTOBUF_LIMIT = 2**31 - 1
INLINE_BUDGET = 1 << 30

# Claims larger than this are refused before anything is allocated.
MAX_TENSOR_BYTES = 1 << 62
MAX_RANK = 32
_READ_CHUNK = 64 << 20

_ROLE_TO_PROTO = {FORWARD: pb.FORWARD, GRADIENT: pb.GRADIENT, OPTIMIZER: pb.OPTIMIZER, RECOMPUTE: pb.RECOMPUTE}
_ROLE_FROM_PROTO = {v: k for k, v in _ROLE_TO_PROTO.items()}

# Attr kind (registry.ATTR_KINDS) → the member of the Attr oneof that holds it.
_ATTR_FIELD = {"int": "i", "float": "f", "str": "s", "bool": "b", "ints": "ints", "floats": "floats",
               "dtype": "dtype", "tensor": "tensor"}


def _producer_version():
    return __version__


def training_to_proto(spec):
    """The TrainingSpec message of a graphc.optim.TrainingSpec (a TrainingSpec message is copied)."""
    msg = pb.TrainingSpec()
    if isinstance(spec, pb.TrainingSpec):
        msg.CopyFrom(spec)
        return msg
    if not isinstance(spec, optim.TrainingSpec):
        raise ModelFormatError(f"graph.training must be a graphc.optim.TrainingSpec, got {type(spec).__name__}")
    opt = spec.optimizer
    try:
        msg.loss = spec.loss
        msg.var_list.extend(spec.var_list)
        msg.optimizer.kind = opt.kind
        for k in sorted(opt.hyperparameters):
            msg.optimizer.hyperparameters[k] = float(opt.hyperparameters[k])
        msg.optimizer.clip_global_norm = float(opt.clip_global_norm)
    except (TypeError, ValueError, AttributeError) as e:
        raise ModelFormatError(f"graph.training: {e}") from None
    return msg


def training_from_proto(msg):
    """The graphc.optim.TrainingSpec of a TrainingSpec message."""
    hyper = msg.optimizer.hyperparameters
    opt = optim.OptimizerSpec(msg.optimizer.kind, {k: hyper[k] for k in sorted(hyper)}, msg.optimizer.clip_global_norm)
    return optim.TrainingSpec(loss=msg.loss, optimizer=opt, var_list=list(msg.var_list))


# ----------------------------------------------------------------------------------
# Graph → Model


class _Writer:
    """Encodes tensors, placing large ones in the weights file layout."""

    def __init__(self, external_threshold, location):
        self.threshold = external_threshold
        self.location = location      # None: everything inline (no weights file)
        self.inline_bytes = 0
        self.chunks = []              # (offset, contiguous little-endian array)
        self.end = 0                  # bytes used in the weights file

    def tensor(self, proto, array, what):
        arr = np.asarray(array)
        try:
            dtype = dtypes.as_dtype(arr.dtype)
        except TypeError as e:
            raise ModelFormatError(f"{what}: {_bounded(e)}") from None
        arr = np.asarray(arr, dtype=np.dtype(dtype).newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d
        proto.dtype = dtype_to_proto(dtype)
        proto.dims.extend(int(d) for d in arr.shape)
        nbytes = arr.nbytes
        external = self.location is not None and (
            nbytes > self.threshold or self.inline_bytes + nbytes > INLINE_BUDGET)
        if not external:
            if self.inline_bytes + nbytes > INLINE_BUDGET:
                raise ModelFormatError(
                    f"{what}: inline tensors would exceed {INLINE_BUDGET} bytes, over protobuf's 2 GiB "
                    f"message limit; use graphc.serialize.save, which moves large tensors to a weights file")
            self.inline_bytes += nbytes
            proto.raw_data = arr.tobytes()
            return
        offset = -(-self.end // ALIGNMENT) * ALIGNMENT
        view = memoryview(arr.reshape(-1).view(np.uint8)) if nbytes else b""
        ext = proto.external
        ext.location = self.location
        ext.offset = offset
        ext.length = nbytes
        ext.sha256 = hashlib.sha256(view).hexdigest()
        self.chunks.append((offset, arr))
        self.end = offset + nbytes


def _set_provenance(proto_parent, provenance):
    file, line = provenance if provenance else ("", 0)
    if file or line:
        proto_parent.provenance.file = file
        proto_parent.provenance.line = int(line)


def _encode_attr(proto, kind, value, writer, what):
    if kind == "int":
        proto.i = int(value)
    elif kind == "float":
        proto.f = float(value)
    elif kind == "str":
        proto.s = value
    elif kind == "bool":
        proto.b = bool(value)
    elif kind == "ints":
        proto.ints.SetInParent()
        proto.ints.values.extend(int(v) for v in value)
    elif kind == "floats":
        proto.floats.SetInParent()
        proto.floats.values.extend(float(v) for v in value)
    elif kind == "dtype":
        proto.dtype = dtype_to_proto(value)
    elif kind == "tensor":
        writer.tensor(proto.tensor, value, what)
    else:
        raise ModelFormatError(f"{what}: unknown attr kind {quote(kind)}")


def _build_model(graph, writer):
    model = pb.Model(format_version=FORMAT_VERSION, min_consumer_version=MIN_CONSUMER_VERSION,
                     producer_name=PRODUCER_NAME, producer_version=_producer_version())
    for key, value in graph.metadata.items():
        model.metadata[str(key)] = str(value)
    g = model.graph
    for ph in graph.inputs:
        p = g.inputs.add(name=ph.name, dtype=dtype_to_proto(ph.dtype))
        p.shape.SetInParent()
        for d in ph.shape:
            if d is None:
                p.shape.dims.add(symbol="")
            elif isinstance(d, str):
                p.shape.dims.add(symbol=d)
            else:
                p.shape.dims.add(size=int(d))
        _set_provenance(p, ph.provenance)
    for var in graph.variables:
        v = g.variables.add(name=var.name, dtype=dtype_to_proto(var.dtype), trainable=bool(var.trainable))
        v.dims.extend(int(d) for d in var.shape)
        writer.tensor(v.init, var.init_value, f"variable {quote(var.name)}")
        _set_provenance(v, var.provenance)
    for node in graph.nodes:
        opdef = registry.get_op(node.op)
        n = g.nodes.add(name=node.name, op=node.op, scope=node.scope or "")
        n.inputs.extend(node.inputs)
        n.outputs.extend(node.outputs)
        if node.role not in _ROLE_TO_PROTO:
            raise ModelFormatError(f"{_describe(node)}: unknown role {quote(node.role)}; expected one of "
                                   f"{sorted(_ROLE_TO_PROTO)}")
        n.role = _ROLE_TO_PROTO[node.role]
        for key in sorted(node.attrs):
            value = node.attrs[key]
            if value is None:
                continue  # an absent optional attr
            spec = opdef.attrs.get(key)
            if spec is None:
                raise ModelFormatError(f"{_describe(node)}: attr {quote(key)} is not in the op's schema")
            _encode_attr(n.attrs[key], spec.kind, value, writer, f"{_describe(node)} attr {quote(key)}")
        _set_provenance(n, node.provenance)
    g.outputs.extend(graph.outputs)
    if graph.training is not None:
        model.training.CopyFrom(training_to_proto(graph.training))
    for name, entry in getattr(graph, "entries", {}).items():
        e = model.entries.add(name=name)
        e.fetches.extend(entry.fetches)
        if entry.training is not None:
            e.training.CopyFrom(training_to_proto(entry.training))
    return model


def model_to_proto(graph):
    """The Model message of a graph, every tensor inline (no weights file).

    Raises ModelFormatError when the inline tensors would not fit in one protobuf
    message; :func:`save` handles such models by writing a weights file.
    """
    return _build_model(graph, _Writer(None, None))


def _serialize(model):
    data = model.SerializeToString(deterministic=True)
    if len(data) > PROTOBUF_LIMIT:
        raise ModelFormatError(f"model message is {len(data)} bytes, over protobuf's 2 GiB limit")
    return data


def _atomic_write(path, write):
    atomic_write(path, write)


def _write_chunks(f, chunks):
    pos = 0
    for offset, arr in chunks:
        if offset > pos:
            f.write(b"\0" * (offset - pos))
        if arr.nbytes:
            f.write(memoryview(arr.reshape(-1).view(np.uint8)))
        pos = offset + arr.nbytes


def save(graph, path, external_threshold=DEFAULT_EXTERNAL_THRESHOLD):
    """Write ``graph`` to ``path`` as a Model protobuf.

    Tensors of more than ``external_threshold`` bytes (and any tensor that would take
    the inline total near protobuf's 2 GiB limit) go to ``<basename>.weights`` beside
    the ``.pb``.  Both files are written atomically, the weights file first.  The same
    graph always gives the same bytes.

    Example::

        gc.serialize.save(g, "model.pb", external_threshold=1 << 20)
    """
    path = os.fspath(path)
    if external_threshold is None:
        external_threshold = DEFAULT_EXTERNAL_THRESHOLD
    location = os.path.basename(path) + WEIGHTS_SUFFIX
    writer = _Writer(int(external_threshold), location)
    model = _build_model(graph, writer)
    data = _serialize(model)
    if writer.chunks:
        weights_path = os.path.join(os.path.dirname(path), location)
        _atomic_write(weights_path, lambda f: _write_chunks(f, writer.chunks))
    _atomic_write(path, lambda f: f.write(data))


# ----------------------------------------------------------------------------------
# Model → Graph


class _Reader:
    """Decodes tensors, checking every claim before allocating; opens external files once."""

    def __init__(self, base_dir):
        self.base_dir = base_dir
        self.files = {}

    def close(self):
        for f, _ in self.files.values():
            f.close()
        self.files.clear()

    def _open(self, location, what):
        if self.base_dir is None:
            raise ModelFormatError(f"{what}: data is in external file {quote(location)} but no folder was given")
        if not location:
            raise ModelFormatError(f"{what}: external data has an empty location")
        if os.path.isabs(location) or "\0" in location:
            raise ModelFormatError(f"{what}: external location {quote(location)} must be a relative path")
        parts = location.replace("\\", "/").split("/")
        if ".." in parts:
            raise ModelFormatError(f"{what}: external location {quote(location)} must not contain '..'")
        root = os.path.realpath(self.base_dir)
        real = os.path.realpath(os.path.join(root, location))
        if os.path.commonpath([root, real]) != root or real == root:
            raise ModelFormatError(f"{what}: external location {quote(location)} resolves outside the model's folder")
        if real in self.files:
            return self.files[real]
        if not os.path.isfile(real):
            raise ModelFormatError(f"{what}: external weights file {quote(location)} is missing "
                                   f"(looked in {self.base_dir})")
        try:
            f = open(real, "rb")
        except OSError as e:
            raise ModelFormatError(f"{what}: cannot open external weights file {quote(location)}: "
                                   f"{_bounded(e)}") from None
        entry = (f, os.fstat(f.fileno()).st_size)
        self.files[real] = entry
        return entry

    def tensor(self, proto, what):
        """A numpy array from a Tensor message, after checking dtype, dims and length."""
        try:
            dtype = dtype_from_proto(proto.dtype)
        except KeyError:
            raise ModelFormatError(f"{what}: invalid dtype code {proto.dtype}") from None
        dims = _check_dims(proto.dims, what)
        itemsize = dtypes.itemsize(dtype)
        numel = 1
        for d in dims:
            numel *= d
        nbytes = numel * itemsize
        if nbytes > MAX_TENSOR_BYTES:
            raise ModelFormatError(f"{what}: shape {dims} of {dtype} claims {nbytes} bytes, too large")
        le = np.dtype(dtype).newbyteorder("<")
        if proto.HasField("external"):
            if proto.raw_data:
                raise ModelFormatError(f"{what}: has both inline raw_data and external data")
            arr = self._read_external(proto.external, nbytes, le, what)
        else:
            if len(proto.raw_data) != nbytes:
                raise ModelFormatError(f"{what}: raw_data has {len(proto.raw_data)} bytes, shape {dims} of "
                                       f"{dtype} needs {nbytes}")
            arr = np.frombuffer(proto.raw_data, dtype=le).copy()
        if dtype == dtypes.bool_ and numel and arr.view(np.uint8).max() > 1:
            raise ModelFormatError(f"{what}: bool data holds bytes other than 0 and 1")
        return arr.astype(np.dtype(dtype), copy=False).reshape(dims)

    def _read_external(self, ext, nbytes, le, what):
        f, size = self._open(ext.location, what)
        if ext.length != nbytes:
            raise ModelFormatError(f"{what}: external length {ext.length} does not match the {nbytes} bytes "
                                   f"its shape and dtype need")
        if ext.offset > size or ext.length > size - ext.offset:
            raise ModelFormatError(f"{what}: external data [{ext.offset}, {ext.offset + ext.length}) lies beyond "
                                   f"the end of {quote(ext.location)} ({size} bytes)")
        arr = np.empty(nbytes // le.itemsize, dtype=le)   # checked against the real file size above
        buf = memoryview(arr.view(np.uint8))
        digest = hashlib.sha256()
        f.seek(ext.offset)
        pos = 0
        while pos < nbytes:
            n = f.readinto(buf[pos:pos + min(_READ_CHUNK, nbytes - pos)])
            if not n:
                raise ModelFormatError(f"{what}: external file {quote(ext.location)} ended early")
            digest.update(buf[pos:pos + n])
            pos += n
        if digest.hexdigest() != ext.sha256:
            raise ModelFormatError(f"{what}: SHA-256 of the external data is {digest.hexdigest()}, "
                                   f"the file records {quote(ext.sha256)}")
        return arr


def _check_dims(dims, what):
    if len(dims) > MAX_RANK:
        raise ModelFormatError(f"{what}: rank {len(dims)} exceeds {MAX_RANK}")
    out = tuple(int(d) for d in dims)
    for d in out:
        if d < 0:
            raise ModelFormatError(f"{what}: negative dimension {d} in {out}")
        if d > MAX_TENSOR_BYTES:
            raise ModelFormatError(f"{what}: dimension {d} in {out} is too large")
    # numpy (and the runtime) size an array by the product of its nonzero dims, even when
    # another dim is 0: that product times an itemsize of up to 8 must fit in int64.
    nonzero = 1
    for d in out:
        nonzero *= max(d, 1)
    if nonzero > MAX_TENSOR_BYTES // 8:
        raise ModelFormatError(f"{what}: dims {out} are too large (the product of the nonzero dims, "
                               f"{nonzero}, exceeds {MAX_TENSOR_BYTES // 8})")
    return out


def _provenance(proto):
    if proto.HasField("provenance"):
        return (proto.provenance.file, int(proto.provenance.line))
    return ("", 0)


def _dtype(code, what):
    try:
        return dtype_from_proto(code)
    except KeyError:
        raise ModelFormatError(f"{what}: invalid dtype code {code}") from None


def _check_name(name, what, taken):
    if not name:
        raise ModelFormatError(f"{what}: empty name")
    if ":" in name and not what.startswith("output"):
        raise ModelFormatError(f"{what}: name {quote(name)} must not contain ':'")
    if name in taken:
        raise ModelFormatError(f"duplicate name {quote(name)}: {what} reuses the name of {taken[name]}")


def _decode_attrs(n, opdef, reader, what):
    attrs = {}
    for key in sorted(n.attrs):
        spec = opdef.attrs.get(key)
        if spec is None:
            raise ModelFormatError(f"{what}: unknown attr {quote(key)}; the op's schema has {sorted(opdef.attrs)}")
        a = n.attrs[key]
        field = a.WhichOneof("value")
        expected = _ATTR_FIELD[spec.kind]
        if field != expected:
            raise ModelFormatError(f"{what}: attr {quote(key)} must be of kind {spec.kind} ('{expected}'), "
                                   f"the file holds {field or 'no value'!r}")
        if field == "ints":
            value = tuple(int(v) for v in a.ints.values)
        elif field == "floats":
            value = tuple(float(v) for v in a.floats.values)
        elif field == "dtype":
            value = _dtype(a.dtype, f"{what} attr {quote(key)}")
        elif field == "tensor":
            value = reader.tensor(a.tensor, f"{what} attr {quote(key)}")
        else:
            value = getattr(a, field)
        attrs[key] = value
    try:
        return opdef.check_attrs(attrs, _name(n.name))
    except GraphcError as e:
        raise ModelFormatError(_bounded(e)) from None    # already names the op and node
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"{what}: {_bounded(e)}") from None


def graph_from_proto(model, base_dir=None):
    """Validate a Model message and build the Graph it describes.

    ``base_dir`` is the folder external weights are resolved in (the ``.pb``'s folder);
    None refuses external data.  Nodes are checked in a topological order (stored order
    is kept in ``graph.nodes``), each through its op's shape and dtype inference.
    Raises ModelFormatError naming the offending node or tensor.
    """
    if model.format_version < 1:
        raise ModelFormatError(f"not a graphc model: format_version is {model.format_version}")
    if model.min_consumer_version > FORMAT_VERSION:
        raise ModelFormatError(f"unsupported format: the model needs a reader of version "
                               f"{model.min_consumer_version}, this graphc reads version {FORMAT_VERSION}")
    reader = _Reader(base_dir)
    try:
        return _graph_from_proto(model, reader)
    finally:
        reader.close()


def _graph_from_proto(model, reader):
    g = model.graph
    graph = Graph()
    graph.metadata = dict(sorted(model.metadata.items()))
    taken = {}          # every name (producer or value) → what claimed it
    types = {}          # value name → (dtype, shape)

    for ph in g.inputs:
        what = f"placeholder {quote(ph.name)}"
        _check_name(ph.name, what, taken)
        dtype = _dtype(ph.dtype, what)
        if len(ph.shape.dims) > MAX_RANK:
            raise ModelFormatError(f"{what}: rank {len(ph.shape.dims)} exceeds {MAX_RANK}")
        shape = []
        for d in ph.shape.dims:
            kind = d.WhichOneof("value")
            if kind == "size":
                if d.size < 0 or d.size > MAX_TENSOR_BYTES:
                    raise ModelFormatError(f"{what}: invalid dimension {d.size}")
                shape.append(int(d.size))
            elif kind == "symbol":
                shape.append(d.symbol or None)
            else:
                raise ModelFormatError(f"{what}: a dimension has neither a size nor a symbol")
        taken[ph.name] = what
        try:
            graph.add_placeholder(ph.name, tuple(shape), dtype, _provenance(ph))
        except GraphcError as e:
            raise ModelFormatError(f"{what}: {_bounded(e)}") from None
        types[ph.name] = (dtype, tuple(shape))

    for v in g.variables:
        what = f"variable {quote(v.name)}"
        _check_name(v.name, what, taken)
        dtype = _dtype(v.dtype, what)
        dims = _check_dims(v.dims, what)
        if not v.HasField("init"):
            raise ModelFormatError(f"{what}: has no initial value")
        if v.init.dtype != v.dtype or tuple(v.init.dims) != dims:
            raise ModelFormatError(f"{what}: initial value has dtype code {v.init.dtype} and dims "
                                   f"{tuple(v.init.dims)}, the variable declares {dtype} {dims}")
        value = reader.tensor(v.init, f"{what} init")
        taken[v.name] = what
        try:
            graph.add_variable(v.name, value, v.trainable, _provenance(v))
        except GraphcError as e:
            raise ModelFormatError(f"{what}: {_bounded(e)}") from None
        types[v.name] = (dtype, dims)

    # Structure: names, ops, arity, attrs and producers of every node.
    nodes = []
    producer_index = {}     # value name → index of the producing node
    for idx, n in enumerate(g.nodes):
        what = f"{_name(n.op)}(name={_name(n.name)})" if n.name else f"node #{idx} ({_name(n.op)})"
        _check_name(n.name, f"node {what}", taken)
        taken[n.name] = f"node {what}"
        if not registry.has_op(n.op):
            raise ModelFormatError(f"{what}: unknown op {quote(n.op)}")
        opdef = registry.get_op(n.op)
        if n.role not in _ROLE_FROM_PROTO:
            raise ModelFormatError(f"{what}: invalid role code {n.role}")
        prov = _provenance(n)
        try:
            opdef.check_arity(len(n.inputs), _name(n.name), prov)
        except GraphcError as e:
            raise ModelFormatError(_bounded(e)) from None
        if not n.outputs:
            raise ModelFormatError(f"{what}: has no outputs")
        expected = [n.name] if len(n.outputs) == 1 else [f"{n.name}:{i}" for i in range(len(n.outputs))]
        if list(n.outputs) != expected:
            raise ModelFormatError(f"{what}: outputs {_bounded(list(n.outputs))} are inconsistent; expected "
                                   f"{_bounded(expected)}")
        for o in n.outputs:
            if o != n.name:
                _check_name(o, f"output of node {what}", taken)
                taken[o] = f"output of node {what}"
            producer_index[o] = idx
        attrs = _decode_attrs(n, opdef, reader, what)
        node = Node(n.name, n.op, list(n.inputs), list(n.outputs), attrs, _ROLE_FROM_PROTO[n.role], prov, n.scope)
        nodes.append((node, opdef))

    # Producers of inputs, then Kahn's algorithm (ties broken by stored order).
    consumers = [[] for _ in nodes]
    indegree = [0] * len(nodes)
    for idx, (node, _) in enumerate(nodes):
        for i, name in enumerate(node.inputs):
            if name in producer_index:
                consumers[producer_index[name]].append(idx)
                indegree[idx] += 1
            elif name not in types:
                raise ModelFormatError(f"{_describe(node)}: input {i} {quote(name)} has no producer (dangling input)"
                                       f"{_where(node)}")
    order, stuck_idx = kahn_order(consumers, indegree)
    if stuck_idx:
        stuck = [nodes[i][0].name for i in stuck_idx]
        shown = ", ".join(_name(s) for s in stuck[:8]) + (", ..." if len(stuck) > 8 else "")
        raise ModelFormatError(f"the graph has a cycle: {len(stuck)} node(s) on or after it never become ready: "
                               f"{shown}")

    # Shape and dtype inference in topological order.
    out_types = [None] * len(nodes)
    for idx in order:
        node, opdef = nodes[idx]
        try:
            result = opdef.infer_node(node, [types[name] for name in node.inputs])
        except GraphcError as e:
            prefix = "" if str(e).startswith(node.describe()) else _describe(node) + ": "
            raise ModelFormatError(f"inference failed: {prefix}{_bounded(e)}") from None
        except Exception as e:  # noqa: BLE001 — untrusted attrs may trip an inference function
            raise ModelFormatError(f"{_describe(node)}: inference failed: {type(e).__name__}: {_bounded(e)}"
                                   f"{_where(node)}") from None
        if len(result) != len(node.outputs):
            raise ModelFormatError(f"{_describe(node)}: the file names {len(node.outputs)} output(s), "
                                   f"the op produces {len(result)}{_where(node)}")
        out_types[idx] = result
        for name, t in zip(node.outputs, result):
            types[name] = t

    for idx, (node, _) in enumerate(nodes):
        try:
            graph.insert_node(node, out_types[idx])
        except GraphcError as e:
            raise ModelFormatError(f"{_describe(node)}: {_bounded(e)}") from None

    for name in g.outputs:
        if name not in types:
            raise ModelFormatError(f"graph output {quote(name)} has no producer")
    graph.outputs = list(g.outputs)

    if model.HasField("training"):
        t = model.training
        if t.loss and t.loss not in types:
            raise ModelFormatError(f"training spec: loss {quote(t.loss)} is not a value of the graph")
        var_names = {v.name for v in graph.variables}
        for name in t.var_list:
            if name not in var_names:
                raise ModelFormatError(f"training spec: var_list names {quote(name)}, which is not a variable")
        graph.training = training_from_proto(t)
    for k, e in enumerate(model.entries):
        entry = _entry_from_proto(e, k, graph, types)
        graph.entries[entry.name] = entry
    return graph


def _entry_from_proto(e, k, graph, types):
    """The Entry of the k-th Model.entries message, after checking every claim: a valid
    unique name, fetches that are values, and for a training entry a float scalar loss, a
    known optimizer and a var_list of trainable variables."""
    what = f"entry {k} ({_name(quote(e.name))})"
    if not ENTRY_NAME.fullmatch(e.name):
        raise ModelFormatError(f"{what}: entry names are letters, digits, '_', '.' or '-'")
    if e.name in graph.entries:
        raise ModelFormatError(f"{what}: duplicate entry name")
    what = f"entry {_name(quote(e.name))}"
    for name in e.fetches:
        if name not in types:
            raise ModelFormatError(f"{what}: fetch {_name(quote(name))} is not a value of the graph")
    if len(set(e.fetches)) != len(e.fetches):
        raise ModelFormatError(f"{what}: a fetch is listed twice")
    training = None
    if e.HasField("training"):
        t = e.training
        if not t.loss:
            raise ModelFormatError(f"{what}: its training spec names no loss")
        if t.loss not in types:
            raise ModelFormatError(f"{what}: loss {_name(quote(t.loss))} is not a value of the graph")
        dtype, shape = types[t.loss]
        if shape != () or dtype not in ("float32", "float64"):
            raise ModelFormatError(f"{what}: loss {_name(quote(t.loss))} must be a float scalar, got "
                                   f"{_bounded(shape)} {dtype}")
        variables = {v.name: v for v in graph.variables}
        for name in t.var_list:
            var = variables.get(name)
            if var is None:
                raise ModelFormatError(f"{what}: var_list names {_name(quote(name))}, which is not a variable")
            if not var.trainable:
                raise ModelFormatError(f"{what}: var_list names {_name(quote(name))}, which is not trainable")
        if len(set(t.var_list)) != len(t.var_list):
            raise ModelFormatError(f"{what}: var_list names a variable twice")
        try:
            optim.from_spec(t.optimizer)
        except GraphcError as e:
            raise ModelFormatError(f"{what}: {_bounded(e)}") from None
        training = training_from_proto(t)
    elif not e.fetches:
        raise ModelFormatError(f"{what}: an inference entry with no fetches")
    return Entry(e.name, list(e.fetches), training)


def _where(node):
    file, line = node.provenance
    return f" — built at {_name(file)}:{line}" if file else ""


# Messages repeat names, attrs and paths read from an untrusted file: a huge one is cut
# (graphc.errors.quote) so a 100 MB node name cannot make a 100 MB message.
def _name(text):
    """A name as the messages show it, ``matmul(name=fc1)``; quoted and cut when huge."""
    text = str(text)
    return text if len(text) <= 100 else quote(text, 100)


def _describe(node):
    return f"{_name(node.op)}(name={_name(node.name)})"


MESSAGE_LIMIT = 1000


def _bounded(e):
    """Text relayed from another error (or a list), cut to about MESSAGE_LIMIT characters.

    The middle goes: the head names the op and node, the tail says what was wrong and
    where the node was built."""
    text = str(e)
    if len(text) <= MESSAGE_LIMIT:
        return text
    half = MESSAGE_LIMIT // 2
    return f"{text[:half]} … [{len(text) - 2 * half} characters cut] … {text[-half:]}"


def load(path):
    """Read and validate a ``.pb`` model; returns a :class:`graphc.graph.Graph`.

    Raises ModelFormatError for a missing, truncated, corrupt, unsupported or
    inconsistent file.

    Example::

        g = gc.load("model.pb")
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > PROTOBUF_LIMIT:
                raise ModelFormatError(f"{path}: {size} bytes is over protobuf's 2 GiB message limit")
            data = f.read(size + 1)
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{path}: is a directory, not a model file") from None
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot read: {e}") from None
    if not data:
        raise ModelFormatError(f"{path}: empty file")
    if len(data) > PROTOBUF_LIMIT:
        raise ModelFormatError(f"{path}: over protobuf's 2 GiB message limit")
    model = pb.Model()
    try:
        model.ParseFromString(data)
    except DecodeError as e:
        raise ModelFormatError(f"{path}: not a graphc model (truncated or not protobuf): {_bounded(e)}") from None
    if not model.HasField("graph") and is_program_bytes(data):
        # A compiled Program's fields (16..18) are unknown to Model: it would load as an empty graph.
        raise ModelFormatError(f"{path}: is a compiled program (load it with gc.load_program), not a model")
    try:
        return graph_from_proto(model, os.path.dirname(os.path.abspath(path)))
    except ModelFormatError as e:
        raise ModelFormatError(f"{path}: {e}") from None



# Graph.save (in the IR, which never imports protobuf) writes through this module.
install_saver(save)
