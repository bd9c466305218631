"""ONNX → graphc: the importer framework (docs/onnx.md).

:func:`load_model` parses a model (a path, bytes or an ``onnx.ModelProto``), converts an
opset below 13 up to 13, inlines model-local functions, loads external data itself (inside
the model's folder only), and builds a :class:`graphc.Graph` node by node: each ONNX node
runs the handler registered for its op_type (``HANDLERS``, filled by the ``_ops_*``
modules through :func:`handler`), which builds graphc registry ops through
:meth:`NodeContext.op`.  Values known at import time (Constant nodes, int initializers,
shapes of static tensors) are folded with the registry's numpy references, so a handler
sees them as numpy arrays (``Value.const``).

The rule every handler keeps: an import either raises :class:`OnnxUnsupportedError` /
:class:`OnnxFormatError` or gives ONNX's exact result.

The ``onnx`` package is imported inside functions only (``import graphc`` never loads it).
"""

import os

import numpy as np
from google.protobuf.message import DecodeError

from graphc import dtypes, registry
from graphc.errors import GraphError, OnnxFormatError, OnnxUnsupportedError, quote
from graphc.graph import FORWARD, Graph, Node, Tensor, kahn_order

HANDLERS = {}          # op_type -> fn(ctx); the default domain ("" / "ai.onnx") only
REQUIRED = object()    # NodeContext.attr's default: the attr must be present

MIN_OPSET = 13
DEFAULT_DOMAINS = ("", "ai.onnx")

# ONNX TensorProto element types graphc holds (anything else is refused, never cast).
_ONNX_DTYPES = {1: "float32", 11: "float64", 6: "int32", 7: "int64", 9: "bool"}
_ONNX_TYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
                    7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
                    14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ",
                    19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"}
GRAPHC_TO_ONNX = {v: k for k, v in _ONNX_DTYPES.items()}

FOLD_LIMIT = 1 << 22   # elements: a larger result of an op on constants is computed at run time, not stored


def _numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


# Elementwise integer ops computed on shape values at import (NodeContext._dims_op).
_DIMS_OPS = ("add", "sub", "mul", "int_div", "div", "maximum", "minimum", "mod")

# Ops never folded at import time even when every input is known (their value is not a
# function of the inputs alone).
_NOT_FOLDABLE_PREFIXES = ("random_", "dropout", "rng_")


def handler(*op_types):
    """Decorator registering ``fn(ctx)`` as the handler of each ONNX op_type (default domain)."""
    def wrap(fn):
        for op_type in op_types:
            if op_type in HANDLERS:
                raise RuntimeError(f"ONNX op {op_type!r} already has a handler ({HANDLERS[op_type].__module__})")
            HANDLERS[op_type] = fn
        return fn
    return wrap


def onnx_type_name(code):
    return _ONNX_TYPE_NAMES.get(int(code), f"type {int(code)}")


def graphc_dtype(code, what):
    """The graphc dtype of an ONNX element type code, or OnnxUnsupportedError naming ``what``."""
    try:
        return _ONNX_DTYPES[int(code)]
    except KeyError:
        raise OnnxUnsupportedError(f"{what} has element type {onnx_type_name(code)}; graphc supports "
                                   f"float32, float64, int32, int64 and bool (no silent cast)") from None


class Value:
    """One ONNX value during import.

    ``name``: the graphc name (for a bound ONNX value: the ONNX name, ':' replaced);
    ``dtype``; ``shape`` (tuple of int | str | None); ``const``: the array when known at import
    time; ``init``: the initial value of a trainable initializer (readable as a static value);
    ``dims``: for a 0-d or 1-D int64 value derived from Shape(x), its elements (int | str), else None.
    """

    def __init__(self, name, dtype, shape, const=None, init=None, dims=None, tensor=None, builder=None,
                 trainable=True):
        self.name = name
        self.dtype = dtype
        self.shape = tuple(shape) if shape is not None else None
        self.const = const
        self.init = init
        self.dims = dims
        self._tensor = tensor
        self._builder = builder      # the _Importer (materializes consts and initializers)
        self._trainable = trainable

    def __repr__(self):
        kind = ("const" if self.const is not None else "init" if self.init is not None
                else "dims" if self.dims is not None else "tensor")
        return f"<onnx Value {self.name!r} {self.dtype} {self.shape} {kind}>"

    @property
    def trainable(self):
        """Whether an initializer Value becomes a trainable variable (False: a non-trainable variable,
        e.g. BatchNormalization's running statistics, which a training plan updates in place).  Set it
        before the Value's first ``tensor()``."""
        return self._trainable

    @trainable.setter
    def trainable(self, flag):
        if self._tensor is not None and self.init is not None:
            raise RuntimeError(f"initializer {self.name!r} is already a variable; set trainable before tensor()")
        self._trainable = bool(flag)

    @property
    def static(self):
        """The value known at import (const, else the initializer's value), or None."""
        return self.const if self.const is not None else self.init

    def tensor(self):
        """The graphc Tensor of this value (a constant / variable is created on first use)."""
        if self._tensor is None:
            self._tensor = self._builder.materialize(self)
        return self._tensor


def const_value(arr, name=None, builder=None):
    arr = np.asarray(arr)
    dt = dtypes.as_dtype(arr.dtype)
    return Value(name, dt, arr.shape, const=np.array(arr, dtype=dt, order="C"), builder=builder)


class NodeContext:
    """What a handler sees: one ONNX node, its input Values and the way to build graphc ops."""

    def __init__(self, importer, node, name, opset, inputs):
        self._imp = importer
        self.node = node
        self.op_type = node.op_type
        self.name = name
        self.opset = opset
        self.inputs = inputs
        n = len(node.output)
        while n and not node.output[n - 1]:
            n -= 1
        self.num_outputs = n   # outputs up to the last non-empty name (an empty name: not requested)
        self._attrs = {a.name: a for a in node.attribute}
        self.created = []       # graphc nodes this handler built

    # -- errors ----------------------------------------------------------------------------
    def where(self):
        return f"node {self.name!r} ({self.op_type}, opset {self.opset})"

    def unsupported(self, msg):
        e = OnnxUnsupportedError(f"{self.where()}: {msg}")
        e.op_type = self.op_type
        raise e

    def format_error(self, msg):
        raise OnnxFormatError(f"{self.where()}: {msg}")

    # -- attributes and inputs -------------------------------------------------------------
    def has_attr(self, name):
        return name in self._attrs

    def attr(self, name, default=REQUIRED):
        """The attribute as a Python value: int, float, str, tuple of ints/floats/strs, a numpy
        array (TENSOR), or the GraphProto (GRAPH); ``default`` when absent (REQUIRED: an error)."""
        a = self._attrs.get(name)
        if a is None:
            if default is REQUIRED:
                self.format_error(f"missing required attribute {name!r}")
            return default
        t = a.type
        if t == 1:
            return float(a.f)
        if t == 2:
            return int(a.i)
        if t == 3:
            return a.s.decode("utf-8", errors="replace")
        if t == 4:
            return self._imp.tensor_array(a.t, f"{self.where()} attribute {name!r}")
        if t == 5:
            return a.g
        if t == 6:
            return tuple(float(v) for v in a.floats)
        if t == 7:
            return tuple(int(v) for v in a.ints)
        if t == 8:
            return tuple(s.decode("utf-8", errors="replace") for s in a.strings)
        self.unsupported(f"attribute {name!r} of ONNX attribute type {t} is not supported")

    def input(self, i):
        """Input i, or None when absent (omitted optional input or past the end)."""
        return self.inputs[i] if i < len(self.inputs) else None

    def const_input(self, i, what):
        """The numpy value of input i, known at import time (a constant or an initializer)."""
        v = self.input(i)
        if v is None:
            self.unsupported(f"input {i} ({what}) is missing")
        if v.static is None:
            onnx_input = getattr(v, "onnx_input", None)
            if onnx_input is not None:
                try:
                    self.unsupported(f"needs input {i} ({what}) known at import; it is the graph input "
                                     f"{onnx_input!r}, fed at run time (gc.onnx.load(..., values={{{onnx_input!r}: "
                                     "array}) makes it a constant)")
                except OnnxUnsupportedError as e:
                    e.input_name = onnx_input   # the graph input whose value the import needs
                    raise
            self.unsupported(f"needs input {i} ({what}) known at import; it is computed at run time "
                             f"(value {v.name!r})")
        return v.static

    def shape_input(self, i, what):
        """A shape-valued input (1-D int64): a list of int | str (str: a symbolic dim)."""
        v = self.input(i)
        if v is None:
            self.unsupported(f"input {i} ({what}) is missing")
        if v.dims is not None:
            return list(v.dims)
        arr = self.const_input(i, what)
        if arr.dtype.kind not in "iu":
            self.format_error(f"input {i} ({what}) must be an integer tensor, got {arr.dtype}")
        return [int(d) for d in np.asarray(arr).reshape(-1)]

    def onnx_dtype(self, code, what):
        """graphc dtype of an ONNX element-type code (attr ``to``, ``dtype``...), or refuse."""
        try:
            return graphc_dtype(code, what)
        except OnnxUnsupportedError as e:
            self.unsupported(str(e))

    # -- building --------------------------------------------------------------------------
    def const(self, arr):
        """A const Value holding ``arr``."""
        return const_value(arr, builder=self._imp)

    def tensor(self, x, like=None):
        """A graphc Tensor for a Value, numpy array or Python scalar (scalars take ``like``'s dtype)."""
        if isinstance(x, Value):
            return x.tensor()
        if isinstance(x, Tensor):
            return x
        return self._imp.materialize(self._as_const(x, like))

    def _as_const(self, x, like):
        if isinstance(x, (bool, np.bool_)):
            return const_value(np.asarray(x, dtype=np.bool_), builder=self._imp)
        if isinstance(x, (int, float)) and like is not None:
            return const_value(np.asarray(x, dtype=like), builder=self._imp)
        arr = np.asarray(x)
        if arr.dtype.name not in dtypes.ALL:
            self.unsupported(f"internal constant of dtype {arr.dtype} is not a graphc dtype")
        return const_value(arr, builder=self._imp)

    def op(self, op_name, inputs, attrs=None):
        """Build graphc registry op ``op_name`` on ``inputs`` (Values, numpy arrays, Python scalars:
        scalars take the first Value's dtype).  When every input is known at import and the op is
        deterministic, the op is folded with its numpy reference (a const Value, no node).
        Returns one Value, or a tuple of Values for a multi-output op."""
        opdef = registry.get_op(op_name)
        like = next((x.dtype for x in inputs if isinstance(x, (Value, Tensor))), None)
        vals = []
        for x in inputs:
            if isinstance(x, (Value, Tensor)):
                vals.append(x)
            else:
                vals.append(self._as_const(x, like))
        attrs = dict(attrs or {})
        if op_name in _DIMS_OPS and any(isinstance(v, Value) and v.dims is not None for v in vals):
            out = self._dims_op(opdef, vals, attrs)
            if out is not None:
                return out
        try:
            if (vals or opdef.constant) and all(isinstance(v, Value) and v.const is not None for v in vals) \
                    and not op_name.startswith(_NOT_FOLDABLE_PREFIXES) and not opdef.inplace:
                folded = self._fold(opdef, vals, attrs)
                if folded is not None:
                    return folded
            g = self._imp.graph
            tensors = [v.tensor() if isinstance(v, Value) else v for v in vals]
            name = self._imp.fresh_name(f"{self.name}/{op_name}")
            before = len(g.nodes)
            outs = g.add_node(op_name, tensors, attrs, name=name)
            self.created.extend(g.nodes[before:])
        except (GraphError, TypeError) as e:
            self.unsupported(f"graphc {op_name} refuses it: {e}")
        res = tuple(Value(t.name, t.dtype, t.shape, tensor=t, builder=self._imp) for t in outs)
        return res[0] if len(res) == 1 else res

    def _dims_op(self, opdef, vals, attrs):
        """Elementwise integer arithmetic on shape values (``dims``) and small int constants, at
        import: int results where every operand is known, None (unknown at import) elsewhere,
        ``x * 1`` / ``x + 0`` keep the symbol.  None when an operand is something else."""
        lists = []
        for v in vals:
            if not isinstance(v, Value):
                return None
            if v.dims is not None:
                lists.append((list(v.dims), v.shape))
            elif v.const is not None and v.const.dtype.kind in "iu" and v.const.ndim <= 1:
                lists.append(([int(d) for d in v.const.reshape(-1)], v.const.shape))
            else:
                return None
        n = max(len(d) for d, _ in lists)
        if any(len(d) not in (1, n) for d, _ in lists):
            return None
        rows = [d * n if len(d) == 1 else d for d, _ in lists]
        out = []
        for items in zip(*rows):
            if all(isinstance(d, int) for d in items):
                r = opdef.evaluate([np.asarray(d, np.int64) for d in items], opdef.check_attrs(attrs, self.name))
                out.append(int(r[0]))
            elif opdef.name == "mul" and len(items) == 2 and 1 in items:
                out.append(items[0] if items[1] == 1 else items[1])
            elif opdef.name in ("add", "sub") and len(items) == 2 and items[1] == 0:
                out.append(items[0])
            elif opdef.name == "add" and len(items) == 2 and items[0] == 0:
                out.append(items[1])
            else:
                out.append(None)
        shape = max((s for _, s in lists), key=len)
        dt = next(v.dtype for v in vals if v.dims is not None)
        if all(isinstance(d, int) for d in out):
            return const_value(np.asarray(out, dtype=dt).reshape(shape), builder=self._imp)
        return Value(None, dt, shape, dims=out, builder=self._imp)

    def _fold(self, opdef, vals, attrs):
        attrs = opdef.check_attrs(attrs, self.name, None)
        node = Node(f"{self.name}/{opdef.name}", opdef.name, [], [], attrs)
        types = opdef.infer_node(node, [(v.dtype, v.shape) for v in vals])
        if sum(_numel(shape) for _, shape in types) > FOLD_LIMIT:
            return None   # a large result stays a node (the import does not allocate it)
        outs = opdef.evaluate([v.const for v in vals], attrs)
        res = []
        for arr, (dt, shape) in zip(outs, types):
            arr = np.asarray(arr)
            if arr.shape != tuple(shape):
                raise AssertionError(f"folding {opdef.name}: reference shape {arr.shape} != inferred {shape}")
            res.append(const_value(arr.astype(dt, copy=False), builder=self._imp))
        return res[0] if len(res) == 1 else tuple(res)

    def builder(self, fn, *args, **kwargs):
        """Call a graphc builder function (e.g. ``graphc.take``) inside this node's context;
        its GraphErrors become OnnxUnsupportedError naming the node.  Returns Values."""
        g = self._imp.graph
        before = len(g.nodes)
        try:
            out = fn(*args, **kwargs)
        except (GraphError, TypeError) as e:
            self.unsupported(f"graphc refuses it: {e}")
        self.created.extend(g.nodes[before:])
        if isinstance(out, (list, tuple)):
            return tuple(Value(t.name, t.dtype, t.shape, tensor=t, builder=self._imp) for t in out)
        return Value(out.name, out.dtype, out.shape, tensor=out, builder=self._imp)


def _outer_reads(gp):
    """Names a subgraph (and the subgraphs inside it) reads from enclosing scopes."""
    own = {vi.name for vi in gp.input} | {t.name for t in gp.initializer}
    reads = set()
    for n in gp.node:
        reads.update(x for x in n.input if x)
        for a in n.attribute:
            if a.type in (5, 10):
                for sub in ([a.g] if a.type == 5 else a.graphs):
                    reads |= _outer_reads(sub)
        own.update(n.output)
    return reads - own


def _bind_function_graph(g, name_of, attrs, defaults):
    """A subgraph (an If branch, ...) inside a function body bound to the call, in place: every value
    name through ``name_of`` (formals → the node's names, the body's own → prefixed), attribute
    references → the node's attrs or the schema defaults; nested subgraphs likewise."""
    import onnx

    for vi in list(g.input) + list(g.output) + list(g.value_info):
        vi.name = name_of(vi.name)
    for t in g.initializer:
        t.name = name_of(t.name)
    for n in g.node:
        n.input[:] = [name_of(x) for x in n.input]
        n.output[:] = [name_of(x) for x in n.output]
        keep = []
        for a in n.attribute:
            b = onnx.AttributeProto()
            if a.ref_attr_name:
                src = attrs.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                if src is None:
                    continue
                b.CopyFrom(src)
                b.name = a.name
            else:
                b.CopyFrom(a)
                for sub in ([b.g] if a.type == 5 else b.graphs if a.type == 10 else []):
                    _bind_function_graph(sub, name_of, attrs, defaults)
            keep.append(b)
        del n.attribute[:]
        n.attribute.extend(keep)


def _sanitize(name):
    return name.replace(":", "_")


class _Importer:
    def __init__(self, model, path, trainable, shapes, values=None):
        self.model = model
        self.given = dict(values or {})
        self.path = path
        self.base_dir = os.path.dirname(os.path.abspath(path)) if path else None
        self.trainable = trainable
        self.shapes = dict(shapes or {})
        self.graph = Graph()
        self.values = {}          # ONNX name -> Value
        self.onnx_names = {}      # ONNX name of a graph input/output -> graphc name
        self._node_names = set()
        self._bound = set()       # ids of tensors renamed to an ONNX output name
        self._anon = 0

    # -- names -----------------------------------------------------------------------------
    def taken(self, name):
        g = self.graph
        return name in g._producers or name in g._values

    def fresh_name(self, base):
        base = _sanitize(base) or "onnx"
        if not self.taken(base):
            return base
        n = 1
        while self.taken(f"{base}_{n}"):
            n += 1
        return f"{base}_{n}"

    # -- tensors ---------------------------------------------------------------------------
    def tensor_array(self, t, what):
        """A TensorProto as a numpy array (dtype checked, data length checked)."""
        from onnx import numpy_helper

        if t.data_type == 8:
            raise OnnxUnsupportedError(f"{what}: tensor {t.name!r} holds strings; graphc supports "
                                       "float32, float64, int32, int64 and bool")
        dt = graphc_dtype(t.data_type, f"{what}: tensor {quote(t.name)}")
        dims = tuple(int(d) for d in t.dims)
        if any(d < 0 for d in dims):
            raise OnnxFormatError(f"{what}: tensor {quote(t.name)} has a negative dim {dims}")
        n = _numel(dims)
        if t.data_location == 1:   # EXTERNAL
            self.load_external(t, what, n * np.dtype(dt).itemsize)
        if t.HasField("raw_data"):
            expect = n * np.dtype(dt).itemsize
            if len(t.raw_data) != expect:
                raise OnnxFormatError(f"{what}: tensor {quote(t.name)} of dims {list(dims)} ({dt}) needs "
                                      f"{expect} bytes of data, has {len(t.raw_data)}")
        else:
            field = {"float32": t.float_data, "float64": t.double_data, "int32": t.int32_data,
                     "int64": t.int64_data, "bool": t.int32_data}[dt]
            if len(field) != n:
                raise OnnxFormatError(f"{what}: tensor {quote(t.name)} of dims {list(dims)} needs {n} "
                                      f"elements, has {len(field)}")
        try:
            arr = numpy_helper.to_array(t)
        except Exception as e:  # onnx raises several types for inconsistent tensors
            raise OnnxFormatError(f"{what}: tensor {quote(t.name)} cannot be read: {e}") from None
        return np.array(arr, dtype=dt, order="C").reshape(dims)

    def load_external(self, t, what, nbytes):
        """Read an external-data tensor into t.raw_data, with graphc's rules: the location is
        relative and resolves (symlinks followed) inside the model's folder; offset and length lie
        within the file; the length is dims x itemsize."""
        info = {e.key: e.value for e in t.external_data}
        name = quote(t.name)
        if self.base_dir is None:
            raise OnnxFormatError(f"{what}: tensor {name} has external data, which needs the model loaded "
                                  "from a path (its folder holds the data)")
        loc = info.get("location")
        if not loc:
            raise OnnxFormatError(f"{what}: tensor {name} has external data without a location")
        if "\x00" in loc:
            raise OnnxFormatError(f"{what}: tensor {name}: external data location {loc!r} holds a NUL byte")
        if os.path.isabs(loc) or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
            raise OnnxFormatError(f"{what}: tensor {name}: external data location {quote(loc)} is absolute; "
                                  "it must be relative to the model's folder")
        base = os.path.realpath(self.base_dir)
        full = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([base, full]) != base:
            raise OnnxFormatError(f"{what}: tensor {name}: external data location {quote(loc)} resolves to "
                                  f"{quote(full)}, outside the model's folder {quote(base)}")
        if not os.path.isfile(full):
            raise OnnxFormatError(f"{what}: tensor {name}: external data file {quote(loc)} does not exist")
        try:
            offset = int(info.get("offset", "0"))
            length = int(info["length"]) if "length" in info else nbytes
        except ValueError:
            raise OnnxFormatError(f"{what}: tensor {name}: bad external data offset/length {info}") from None
        size = os.path.getsize(full)
        if offset < 0 or length < 0 or offset + length > size:
            raise OnnxFormatError(f"{what}: tensor {name}: external data offset {offset} + length {length} "
                                  f"is outside the file {quote(loc)} ({size} bytes)")
        if length != nbytes:
            raise OnnxFormatError(f"{what}: tensor {name}: external data length {length} != {nbytes} bytes "
                                  "(dims x itemsize)")
        with open(full, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:
            raise OnnxFormatError(f"{what}: tensor {name}: external data file {quote(loc)} is short")
        t.raw_data = data
        t.data_location = 0
        del t.external_data[:]

    def materialize(self, v):
        """Create the graphc tensor of a const or initializer Value."""
        g = self.graph
        name = self.fresh_name(v.name) if v.name else None
        if v.init is not None:
            return g.add_variable(name, v.init, trainable=v._trainable, provenance=(self.where_file, 0))
        if v.const is not None:
            return g.add_node("constant", [], {"value": v.const}, name=name or self.fresh_name("constant"),
                              provenance=(self.where_file, 0))[0]
        if v.dims is not None:
            raise OnnxUnsupportedError(
                f"value {v.name!r} is a shape holding symbolic dims {v.dims} and is needed at run time; "
                "graphc computes shapes at import: pin the input shapes (gc.onnx.load(..., shapes=...) or "
                "graphc import --shape name=d0,d1,...)")
        raise AssertionError(f"value {v.name!r} has no tensor")

    @property
    def where_file(self):
        return self.path or "<onnx>"

    # -- types -----------------------------------------------------------------------------
    def value_type(self, vi, what):
        """(dtype, shape) of a ValueInfoProto; refuses non-tensor and unsupported types."""
        tp = vi.type
        if not tp.HasField("tensor_type"):
            kind = tp.WhichOneof("value")
            raise OnnxUnsupportedError(f"{what} {vi.name!r} is of ONNX type {kind}; graphc supports tensors only")
        tt = tp.tensor_type
        dt = graphc_dtype(tt.elem_type, f"{what} {vi.name!r}")
        if not tt.HasField("shape"):
            return dt, None
        shape = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                if d.dim_value < 0:
                    raise OnnxFormatError(f"{what} {vi.name!r} has a negative dim {int(d.dim_value)}")
                shape.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                shape.append(d.dim_param)
            else:
                shape.append(None)
        return dt, tuple(shape)

    # -- the graph -------------------------------------------------------------------------
    def run(self):
        m = self.model
        gp = m.graph
        g = self.graph
        inits = {t.name for t in gp.initializer}
        if len(gp.sparse_initializer):
            raise OnnxUnsupportedError("the model has sparse initializers; graphc does not support them")
        for vi in gp.value_info:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type != 0:   # 0: type not given
                graphc_dtype(vi.type.tensor_type.elem_type, f"value {vi.name!r}")
        unknown = (set(self.shapes) | set(self.given)) - {vi.name for vi in gp.input if vi.name not in inits}
        if unknown:
            names = [vi.name for vi in gp.input if vi.name not in inits]
            raise OnnxUnsupportedError(f"shapes=/values= name {sorted(unknown)}, which are not graph inputs of the "
                                       f"model (inputs: {names})")
        # graph inputs (an input that is also an initializer takes the initializer's value)
        for vi in gp.input:
            if vi.name in inits:
                continue
            if not vi.name:
                raise OnnxFormatError("a graph input has an empty name")
            dt, shape = self.value_type(vi, "graph input")
            if vi.name in self.given:
                arr = np.asarray(self.given[vi.name])
                if arr.dtype.name != dt or (shape is not None and (len(shape) != arr.ndim or any(
                        isinstance(a, int) and a != b for a, b in zip(shape, arr.shape)))):
                    raise OnnxUnsupportedError(f"values=: input {vi.name!r} is {dt} of shape {shape}, got "
                                               f"{arr.dtype} of shape {arr.shape}")
                self.values[vi.name] = const_value(arr, vi.name, self)
                continue
            if vi.name in self.shapes:
                pinned = tuple(int(d) for d in self.shapes[vi.name])
                if any(d < 0 for d in pinned):
                    raise OnnxUnsupportedError(f"shapes=: input {vi.name!r} pinned to {pinned}, "
                                               "which has a negative dim")
                if shape is not None and (len(shape) != len(pinned) or any(
                        isinstance(a, int) and a != b for a, b in zip(shape, pinned))):
                    raise OnnxUnsupportedError(f"shapes=: input {vi.name!r} has shape {shape}, cannot pin it "
                                               f"to {pinned}")
                shape = pinned
            if shape is None:
                raise OnnxUnsupportedError(f"graph input {vi.name!r} has no shape (not even its rank); graphc "
                                           "needs the rank: pass shapes=")
            name = self.fresh_name(vi.name)
            t = g.add_placeholder(name, shape, dt, provenance=(self.where_file, 0))
            self.values[vi.name] = Value(t.name, dt, t.shape, tensor=t, builder=self)
            self.values[vi.name].onnx_input = vi.name
            self.onnx_names[vi.name] = t.name
        for t in gp.initializer:
            arr = self.tensor_array(t, "initializer")
            trainable = self.trainable and arr.dtype.kind == "f"
            if trainable:
                self.values[t.name] = Value(t.name, arr.dtype.name, arr.shape, init=arr, builder=self,
                                            trainable=True)
            else:
                self.values[t.name] = const_value(arr, t.name, self)
        opset = self.opset
        for idx, node in enumerate(self.ordered_nodes()):
            self.run_node(node, idx, opset)
        outs = []
        for vi in gp.output:
            if vi.name not in self.values:
                raise OnnxFormatError(f"graph output {vi.name!r} is produced by no node, input or initializer")
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type != 0:   # 0: inferred
                graphc_dtype(vi.type.tensor_type.elem_type, f"graph output {vi.name!r}")
            t = self.bind_output(vi.name, self.values[vi.name], force_name=True)
            outs.append(t.name)
            self.onnx_names[vi.name] = t.name
        g.set_outputs(outs)
        g.onnx_names = dict(self.onnx_names)
        return g

    def ordered_nodes(self, gp=None):
        """The nodes of ``gp`` (default: the model's graph; an If branch: names of ``self.values`` are
        known) in a topological order (ONNX requires one; a model that lists a consumer before its
        producer is reordered).  A node input nothing produces: OnnxFormatError."""
        gp = self.model.graph if gp is None else gp
        nodes = list(gp.node)
        known = set(self.values)
        producer = {}
        for i, n in enumerate(nodes):
            for o in n.output:
                if o:
                    if o in producer or o in known:
                        raise OnnxFormatError(f"value {o!r} is produced twice (node {self.node_label(n, i)})")
                    producer[o] = i
        deps = []
        for i, n in enumerate(nodes):
            d = set()
            for inp in n.input:
                if not inp or inp in known:
                    continue
                if inp not in producer:
                    raise OnnxFormatError(f"node {self.node_label(n, i)} ({n.op_type}) reads input {inp!r}, "
                                          "which no node, graph input or initializer produces")
                d.add(producer[inp])
            for a in n.attribute:
                if a.type in (5, 10):   # GRAPH / GRAPHS: the subgraphs' reads of this graph's values order it too
                    for sub in ([a.g] if a.type == 5 else a.graphs):
                        d.update(producer[x] for x in _outer_reads(sub) if x in producer)
            deps.append(d)
        succs = [[] for _ in nodes]
        for i, d in enumerate(deps):
            for j in d:
                succs[j].append(i)
        order, stuck = kahn_order(succs, [len(d) for d in deps])
        if stuck:
            labels = [self.node_label(nodes[i], i) for i in stuck[:5]]
            raise OnnxFormatError(f"the graph has a cycle through nodes {labels}")
        return [nodes[i] for i in order]

    @staticmethod
    def node_label(node, idx):
        return node.name or f"{node.op_type}_{idx}"

    @property
    def opset(self):
        for o in self.model.opset_import:
            if o.domain in DEFAULT_DOMAINS:
                return int(o.version)
        for i, node in enumerate(self.model.graph.node):
            if node.domain not in DEFAULT_DOMAINS:
                self.other_domain(node, self.node_label(node, i))
        if len(self.model.graph.node):
            raise OnnxFormatError("the model imports no default-domain (ai.onnx) opset but has default-domain nodes")
        return MIN_OPSET

    def other_domain(self, node, name):
        version = next((int(o.version) for o in self.model.opset_import if o.domain == node.domain), None)
        e = OnnxUnsupportedError(f"node {name!r} ({node.op_type}, opset {version}) of domain {node.domain!r}: graphc "
                                 "imports the default ONNX domain (ai.onnx) only")
        e.op_type = node.op_type
        raise e

    def run_node(self, node, idx, opset, prefix="", where_idx=None):
        label = self.node_label(node, idx)
        if prefix:
            label = f"{prefix}/{label}"
        name = label
        if name in self._node_names:
            n = 1
            while f"{label}_{n}" in self._node_names:
                n += 1
            name = f"{label}_{n}"
        self._node_names.add(name)
        if node.domain not in DEFAULT_DOMAINS:
            self.other_domain(node, name)
        inputs = []
        for inp in node.input:
            if not inp:
                inputs.append(None)
            elif inp in self.values:
                inputs.append(self.values[inp])
            else:
                raise OnnxFormatError(f"node {name!r} ({node.op_type}) reads input {inp!r}, which nothing produces")
        fn = HANDLERS.get(node.op_type)
        ctx = NodeContext(self, node, name, opset, inputs)
        ctx.index = idx if where_idx is None else where_idx   # the top-level node's index (provenance)
        if fn is None:
            body, body_opset = self.function_body(ctx)
            if body is None:
                e = OnnxUnsupportedError(f"{ctx.where()}: graphc has no handler for ONNX op {node.op_type!r}")
                e.op_type = node.op_type
                raise e
            # the body's nodes, read at the body's own opset (an ONNX function names the opset it is written in)
            for k, sub in enumerate(body.node):
                self.run_node(sub, k, body_opset, prefix=name, where_idx=idx if where_idx is None else where_idx)
            return
        try:
            with self.graph.building(FORWARD, (self.where_file, idx if where_idx is None else where_idx)):
                out = fn(ctx)
        except OnnxUnsupportedError as e:
            if getattr(e, "op_type", None) is None:
                e.op_type = node.op_type   # the op refused (conformance tools group refusals by it)
            raise
        if not isinstance(out, (list, tuple)):
            out = [out]
        out = list(out)
        if len(out) < ctx.num_outputs:
            raise AssertionError(f"handler of {node.op_type} returned {len(out)} outputs for {ctx.num_outputs}")
        for oname, v in zip(node.output[:ctx.num_outputs], out):
            if not oname:
                continue
            if not isinstance(v, Value):
                v = const_value(v, builder=self)
            self.values[oname] = self.bind(oname, v, ctx)

    def bind(self, oname, v, ctx):
        """The Value named ``oname`` for handler result ``v``: a const stays a const (materialized
        under this name on first use); a tensor built by this node takes the name when it is
        still free; otherwise an ``identity`` node of that name."""
        if v.const is not None or (v.dims is not None and v._tensor is None):
            return Value(oname, v.dtype, v.shape, const=v.const, dims=v.dims, builder=self)
        t = v.tensor()
        shape = t.shape
        if v.shape is not None and len(v.shape) == len(t.shape):   # a handler's symbolic dims fill graphc's unknowns
            shape = tuple(a if isinstance(a, int) or b is None else b for a, b in zip(t.shape, v.shape))
        target = _sanitize(oname)
        if t.name == target:
            return Value(t.name, t.dtype, shape, tensor=t, builder=self)
        node = t.producer
        if (node in ctx.created and len(node.outputs) == 1 and not self.taken(target) and id(t) not in self._bound
                and not any(t.name in n.inputs for n in ctx.created)):
            self._rename(node, t, target)
            self._bound.add(id(t))
            return Value(t.name, t.dtype, shape, tensor=t, builder=self)
        t2 = self.identity(t, self.fresh_name(oname), ctx)
        return Value(t2.name, t2.dtype, shape, tensor=t2, builder=self)

    def _rename(self, node, t, target):
        g = self.graph
        old = node.name
        del g._producers[old]
        del g._values[old]
        node.name = target
        node.outputs = [target]
        t.name = target
        g._producers[target] = node
        g._values[target] = t

    def identity(self, t, name, ctx=None):
        """A named alias of ``t`` (the registry's ``identity`` view: free)."""
        return self.graph.add_node("identity", [t], {}, name=name)[0]

    def bind_output(self, oname, v, force_name=False):
        """The graphc tensor of graph output ``oname`` (materialized; a second output bound to
        the same tensor gets an identity of its own name)."""
        t = v.tensor()
        if t.name in self._output_tensors:
            t = self.identity(t, self.fresh_name(oname))
        self._output_tensors.add(t.name)
        return t

    _output_tensors = None

    def function_body(self, ctx):
        """(FunctionProto, its default-domain opset) expanding a standard op without a handler
        through the ONNX function of its schema (context-dependent ones built for the node's input
        types), names bound to the node's (formal inputs/outputs → actual names, internal values
        prefixed, attribute references → the node's attrs or the schema defaults); (None, None)
        when the op has no function."""
        import onnx
        from onnx import defs

        node, opset = ctx.node, ctx.opset
        try:
            schema = defs.get_schema(node.op_type, opset, "")
        except Exception:   # onnx raises SchemaError for an unknown op
            return None, None
        fn = None
        try:
            if schema.has_function:
                fn = schema.get_function_with_opset_version(opset)
            elif schema.has_context_dependent_function:
                types = []
                for v in ctx.inputs:
                    tp = onnx.TypeProto()
                    if v is not None:
                        tp.tensor_type.elem_type = GRAPHC_TO_ONNX[v.dtype]
                        if v.shape is not None:
                            shape = tp.tensor_type.shape
                            for d in v.shape:
                                dim = shape.dim.add()
                                if isinstance(d, int):
                                    dim.dim_value = d
                                elif isinstance(d, str):
                                    dim.dim_param = d
                    types.append(tp.SerializeToString())
                fn = schema.get_context_dependent_function_with_opset_version(opset, node.SerializeToString(), types)
        except Exception as e:   # onnx's builders raise several types
            ctx.unsupported(f"graphc has no handler for ONNX op {node.op_type!r} and onnx could not build its "
                            f"function body: {e}")
        if isinstance(fn, bytes):
            fp = onnx.FunctionProto()
            fp.ParseFromString(fn)
            fn = fp
        if fn is None or not len(fn.node):
            return None, None
        body_opset = next((int(i.version) for i in fn.opset_import if i.domain in DEFAULT_DOMAINS), opset)
        rename = {}
        for i, formal in enumerate(fn.input):
            rename[formal] = node.input[i] if i < len(node.input) else ""
        for i, formal in enumerate(fn.output):
            rename[formal] = node.output[i] if i < len(node.output) else ""
        self._anon += 1
        tag = f"__fn{self._anon}_"
        attrs = {a.name: a for a in node.attribute}
        defaults = {k: v.default_value for k, v in schema.attributes.items()
                    if v.default_value is not None and v.default_value.type != 0}
        out = onnx.FunctionProto()
        for sub in fn.node:
            new = out.node.add()
            new.CopyFrom(sub)
            del new.input[:]
            del new.output[:]
            for x in sub.input:
                new.input.append(rename[x] if x in rename else (tag + x if x else ""))
            for x in sub.output:
                new.output.append(rename[x] if x in rename else (tag + x if x else ""))
            del new.attribute[:]
            for a in sub.attribute:
                if a.ref_attr_name:
                    src = attrs.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                    if src is None:
                        continue
                    b = new.attribute.add()
                    b.CopyFrom(src)
                    b.name = a.name
                else:
                    b = new.attribute.add()
                    b.CopyFrom(a)
                    for g in ([b.g] if a.type == 5 else b.graphs if a.type == 10 else []):
                        _bind_function_graph(g, lambda x: rename[x] if x in rename else (tag + x if x else ""),
                                             attrs, defaults)
        return out, body_opset


def _parse(model):
    """(ModelProto, path or None) from a path, bytes or ModelProto; OnnxFormatError for garbage."""
    import onnx

    path = None
    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        return m, None
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        what = "ONNX model bytes"
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        what = f"ONNX file {quote(path)}"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise OnnxFormatError(f"cannot read {what}: {e.strerror or e}") from None
    else:
        raise TypeError(f"gc.onnx.load expects a path, bytes or an onnx.ModelProto, got {type(model).__name__}")
    m = onnx.ModelProto()
    try:
        m.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OnnxFormatError(f"{what} is not an ONNX model (protobuf parse failed: {e})") from None
    if not m.HasField("graph") or (not len(m.graph.node) and not len(m.graph.output)):
        raise OnnxFormatError(f"{what} is not an ONNX model (no graph)")
    return m, path


def load_model(model, trainable=True, shapes=None, values=None):
    """An ONNX model (path, bytes or ModelProto) as a :class:`graphc.Graph` (see gc.onnx.load).
    ``values``: ``{graph input name: array}`` fixing those inputs at import (they become constants)."""
    import onnx

    m, path = _parse(model)
    imp = _Importer(m, path, trainable, shapes, values)
    imp._output_tensors = set()
    # external data first (graphc's rules), so no onnx tool reads files itself
    for t in m.graph.initializer:
        if t.data_location == 1:
            imp.tensor_array(t, "initializer")
    opset = imp.opset
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise OnnxUnsupportedError(f"the model's default-domain opset {opset} is newer than the installed onnx "
                                   f"package knows ({newest})")
    if len(m.functions):
        try:
            from onnx import inliner

            m = inliner.inline_local_functions(m)
        except Exception as e:
            raise OnnxUnsupportedError(f"cannot inline the model's local functions: {e}") from None
        imp.model = m
    if opset < MIN_OPSET:
        try:
            from onnx import version_converter

            m = version_converter.convert_version(m, MIN_OPSET)
        except Exception as e:
            raise OnnxUnsupportedError(f"the model's opset {opset} is below {MIN_OPSET} and onnx's version "
                                       f"converter failed to convert it: {e}") from None
        imp.model = m
    return imp.run()


# -- the handler table of docs/onnx.md -------------------------------------------------------

TABLE_BEGIN = "<!-- onnx-handlers:begin (generated: python tools/onnx_handler_table.py --write) -->"
TABLE_END = "<!-- onnx-handlers:end -->"
_MODULE_KIND = {"_ops_tensor": "tensor", "_ops_math": "math", "_ops_nn": "nn", "_ops_control": "control"}


def handler_table():
    """The markdown table of every ONNX op with a handler: op, kind (the handler module), and the
    first line of the handler's docstring (what it maps to, its limits)."""
    lines = ["| ONNX op | kind | graphc |", "|---|---|---|"]
    for op in sorted(HANDLERS):
        fn = HANDLERS[op]
        kind = _MODULE_KIND.get(fn.__module__.rpartition(".")[2], fn.__module__)
        doc = (fn.__doc__ or "").strip().splitlines()
        text = doc[0].strip() if doc else ""
        lines.append(f"| {op} | {kind} | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def replace_handler_table(text):
    """``text`` (docs/onnx.md) with the block between the markers replaced by :func:`handler_table`."""
    a = text.index(TABLE_BEGIN) + len(TABLE_BEGIN)
    b = text.index(TABLE_END)
    return text[:a] + "\n" + handler_table() + text[b:]
