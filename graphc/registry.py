"""The op registry: one declaration per op.

An op is declared once with :func:`register_op`: its input arity, attr schema, shape
and dtype inference, numpy reference (the executable specification), documentation
of its math, and examples that the test suite runs through every check.  The C++
kernels register under the same name.  The registry refuses a duplicate name or a
missing part when the declaration runs (at import).

Inference functions receive an :class:`InferContext` and return a list of
``(dtype, shape)`` pairs (or one pair).  Shapes may hold symbolic dims (str) or None.
Reference functions receive a list of numpy arrays and the attrs dict and return one
array or a tuple of arrays.
"""

import numpy as np

from graphc import dtypes
from graphc.errors import DTypeError, GraphError, RegistryError, ShapeError, quote, where
from graphc.shapes import format_shape

_REQUIRED = object()

ATTR_KINDS = ("int", "float", "str", "bool", "ints", "floats", "dtype", "tensor")


class AttrSpec:
    """One attribute of an op: its kind (one of ATTR_KINDS) and default.

    ``default=REQUIRED`` (the default) makes the attr mandatory.  ``optional=True``
    lets the attr be None (absent from the proto).
    """

    def __init__(self, kind, default=_REQUIRED, optional=False, doc=""):
        if kind not in ATTR_KINDS:
            raise RegistryError(f"unknown attr kind {kind!r}")
        self.kind = kind
        self.default = default
        self.optional = optional
        self.doc = doc

    @property
    def required(self):
        return self.default is _REQUIRED

    def coerce(self, value):
        """Return the canonical Python form of value, or raise TypeError."""
        if value is None:
            if self.optional:
                return None
            raise TypeError("must not be None")
        k = self.kind
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"expected an int, got {value!r}")
            return int(value)
        if k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"expected a float, got {value!r}")
            return float(value)
        if k == "str":
            if not isinstance(value, str):
                raise TypeError(f"expected a str, got {value!r}")
            return value
        if k == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"expected a bool, got {value!r}")
            return bool(value)
        if k == "ints":
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                value = (value,)
            if not isinstance(value, (tuple, list)) or any(
                    isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value):
                raise TypeError(f"expected a list of ints, got {value!r}")
            return tuple(int(v) for v in value)
        if k == "floats":
            if not isinstance(value, (tuple, list)) or any(
                    isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in value):
                raise TypeError(f"expected a list of floats, got {value!r}")
            return tuple(float(v) for v in value)
        if k == "dtype":
            return dtypes.as_dtype(value)
        if k == "tensor":
            arr = np.asarray(value)
            dtypes.as_dtype(arr.dtype)
            return arr
        raise AssertionError(k)


REQUIRED = _REQUIRED


class Example:
    """Inputs (numpy arrays) and attrs for one test case of an op.

    ``grad=False`` excludes the case from numerical gradient checks (e.g. at a kink).
    """

    def __init__(self, inputs, attrs=None, grad=True, note=""):
        self.inputs = list(inputs)
        self.attrs = dict(attrs or {})
        self.grad = grad
        self.note = note

    def __repr__(self):
        shapes = ",".join(format_shape(np.shape(x)) + str(np.asarray(x).dtype) for x in self.inputs)
        return f"Example({shapes} {self.attrs} {self.note})"


class InferContext:
    """What an inference function sees, and how it reports failures."""

    def __init__(self, opdef, node, in_types):
        self.opdef = opdef
        self.node = node
        self.inputs = in_types
        self.attrs = node.attrs

    def dtype(self, i):
        return self.inputs[i][0]

    def shape(self, i):
        return self.inputs[i][1]

    def _msg(self, msg):
        shapes = ", ".join(f"{format_shape(s)} {d}" for d, s in self.inputs)
        return f"{self.node.op}(name={self.node.name}) {msg} [inputs: {shapes}]{where(self.node.provenance)}"

    def fail(self, msg):
        raise ShapeError(self._msg(msg))

    def dtype_fail(self, msg):
        raise DTypeError(self._msg(msg))

    def require_dtype(self, i, allowed):
        if self.dtype(i) not in allowed:
            self.dtype_fail(f"expects input {i} of dtype {'/'.join(allowed)}, got {self.dtype(i)}")

    def require_same_dtype(self, *indices):
        idx = indices or tuple(range(len(self.inputs)))
        first = self.dtype(idx[0])
        for i in idx[1:]:
            if self.dtype(i) != first:
                self.dtype_fail(f"expects inputs {idx} of one dtype, got {first} and {self.dtype(i)} (use gc.cast)")

    def normalize_axis(self, axis, rank, what="axis"):
        if not -rank <= axis < max(rank, 1) or (rank == 0 and axis not in (0, -1)):
            self.fail(f"{what}={axis} is out of range for rank {rank}")
        return axis % rank if rank else 0


class IndexRange:
    """Property: the values of an integer input are indices in ``[0, bound)``.

    The bound is ``shape(input)[axis]`` of another input, or the value of an int attr.
    Generic code (random feeds, fuzzers, kernels' documented checks) reads this instead
    of knowing which op takes labels or indices.
    """

    def __init__(self, input=None, axis=-1, attr=None):
        if (input is None) == (attr is None):
            raise RegistryError("IndexRange needs exactly one of input= and attr=")
        self.input = input
        self.axis = axis
        self.attr = attr

    def bound(self, shapes, attrs):
        """The exclusive upper bound given the inputs' shapes and the attrs."""
        if self.attr is not None:
            return int(attrs[self.attr])
        return int(shapes[self.input][self.axis])


class OpDef:
    """One op's declaration.  See :func:`register_op` for the meaning of each field."""

    def __init__(self, name, doc, inputs, type_vars, attrs, infer, reference, examples,
                 gradient=None, elementwise=False, view=False, variadic=False, differentiable=True,
                 inplace=None, constant=False, cost=None, index_inputs=None, workspace=None,
                 composite=None, kernels=("cpu", "cuda"), fusible=False, epilogue_into=None, prologue_into=None,
                 train_form=None, alias=None, contiguous_inputs=False, schedule=None):
        self.name = name
        self.doc = doc
        self.inputs = tuple(inputs)
        self.type_vars = dict(type_vars)
        self.num_inputs = len(self.inputs) - (1 if variadic else 0)
        self.attrs = attrs
        self.infer = infer
        self.reference = reference
        self.examples = examples
        self.gradient = gradient
        self.elementwise = elementwise
        self.view = view
        self.variadic = variadic
        self.differentiable = differentiable
        # output index -> input index whose (persistent) storage the output overwrites
        self.inplace = dict(inplace or {})
        self.constant = constant
        self.cost = cost
        self.index_inputs = dict(index_inputs or {})
        self.workspace = workspace
        self.composite = composite
        self.kernels = tuple(kernels)
        self.fusible = fusible
        self.epilogue_into = epilogue_into
        self.prologue_into = prologue_into
        self.train_form = train_form
        # output index -> input index whose bytes the output views and the step writes in place
        # (a dict), or ALIAS_EACH: output k views input k, for every k (a variadic op)
        self.alias = alias if alias == ALIAS_EACH else dict(alias or {})
        self.contiguous_inputs = contiguous_inputs
        self.schedule = schedule

    def alias_map(self, num_outputs):
        """``{output: input}`` for a node of this op with ``num_outputs`` outputs: the outputs
        that are views of an input's bytes, written in place by the step (empty: none)."""
        if self.alias == ALIAS_EACH:
            return {k: k for k in range(num_outputs)}
        return dict(self.alias)

    def __repr__(self):
        return f"<OpDef {self.name}>"

    def input_spec(self, i):
        """(name, allowed dtypes, type var or None) of input ``i`` (variadic: the last repeats)."""
        name, allowed = self.inputs[min(i, len(self.inputs) - 1)]
        if isinstance(allowed, str):
            return name, tuple(self.type_vars[allowed]), allowed
        return name, tuple(allowed), None

    @property
    def dispatch_dtypes(self):
        """The dtypes kernels are keyed by: input 0's allowed dtypes, or every dtype for an
        op without inputs (its output dtype comes from an attr)."""
        if not self.inputs:
            return tuple(dtypes.ALL)
        return self.input_spec(0)[1]

    def flops(self, in_shapes, out_shapes, attrs):
        """Estimated work of one call: the declared ``cost``, else one unit per element
        read or written (a memory-bound op); 0 for views and constants, which run nothing."""
        if self.view or self.constant:
            return 0
        if self.cost is not None:
            return int(self.cost(in_shapes, out_shapes, attrs))
        total = 0
        for shape in list(in_shapes) + list(out_shapes):
            n = 1
            for d in shape:
                n *= int(d)
            total += n
        return total

    def check_input_dtypes(self, ctx):
        """Refuse input dtypes the declaration does not allow (before ``infer`` runs)."""
        seen = {}
        for i in range(len(ctx.inputs)):
            name, allowed, tv = self.input_spec(i)
            if tv is not None and tv in seen:
                j = seen[tv]
                if ctx.dtype(i) != ctx.dtype(j):
                    ctx.dtype_fail(f"expects inputs {j} and {i} of one dtype, got {ctx.dtype(j)} and "
                                   f"{ctx.dtype(i)} (use gc.cast)")
                continue
            if ctx.dtype(i) not in allowed:
                ctx.dtype_fail(f"expects input {i} ({name}) of dtype {'/'.join(allowed)}, got {ctx.dtype(i)}")
            if tv is not None:
                seen[tv] = i

    def check_attrs(self, attrs, node_name="?", provenance=None):
        """Validate attrs against the schema; fill defaults; returns a new dict."""
        out = {}
        for key in attrs:
            if key not in self.attrs:
                raise GraphError(f"{self.name}(name={node_name}): unknown attr {quote(key)}; "
                                 f"expected {sorted(self.attrs)}{where(provenance)}")
        for key, spec in self.attrs.items():
            if key in attrs:
                try:
                    out[key] = spec.coerce(attrs[key])
                except TypeError as e:
                    raise GraphError(f"{self.name}(name={node_name}): attr {key!r} {e}{where(provenance)}") from None
            elif spec.required:
                raise GraphError(f"{self.name}(name={node_name}): missing required attr {key!r}{where(provenance)}")
            else:
                out[key] = spec.default
        return out

    def check_arity(self, n, node_name="?", provenance=None):
        if self.variadic:
            if n < self.num_inputs:
                raise GraphError(f"{self.name}(name={node_name}) expects at least {self.num_inputs} inputs, "
                                 f"got {n}{where(provenance)}")
        elif n != self.num_inputs:
            raise GraphError(f"{self.name}(name={node_name}) expects {self.num_inputs} inputs, got {n}"
                             f"{where(provenance)}")

    def infer_node(self, node, in_types):
        """Run inference for a node; returns a list of (dtype, shape)."""
        self.check_arity(len(in_types), node.name, node.provenance)
        ctx = InferContext(self, node, list(in_types))
        self.check_input_dtypes(ctx)
        out = self.infer(ctx)
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], str):
            out = [out]
        return [(d, tuple(s)) for d, s in out]

    def evaluate(self, inputs, attrs):
        """Run the numpy reference; always returns a list of arrays.  IEEE results on special
        values (inf from overflow, NaN from 0/0) are the specification, not warnings."""
        with np.errstate(all="ignore"):
            out = self.reference(list(inputs), attrs)
        if isinstance(out, (tuple, list)):
            return [np.asarray(o) for o in out]
        return [np.asarray(out)]


_OPS = {}

# ``alias=ALIAS_EACH``: output k of a node is a view of input k's bytes, for every k.
ALIAS_EACH = "each"
SCHEDULES = (None, "asap", "alap")


def _parse_inputs(name, inputs, type_vars):
    out = []
    for spec in inputs:
        if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)):
            raise RegistryError(f"op {name!r}: each input is (name, dtypes or type var), got {spec!r}")
        iname, allowed = spec
        if isinstance(allowed, str):
            if allowed not in type_vars:
                raise RegistryError(f"op {name!r}: input {iname!r} uses undeclared type var {allowed!r}")
        else:
            allowed = tuple(allowed)
            bad = [d for d in allowed if d not in dtypes.ALL]
            if bad or not allowed:
                raise RegistryError(f"op {name!r}: input {iname!r} allows unknown dtypes {bad}")
        out.append((iname, allowed))
    for tv, allowed in type_vars.items():
        bad = [d for d in allowed if d not in dtypes.ALL]
        if bad or not allowed:
            raise RegistryError(f"op {name!r}: type var {tv!r} allows unknown dtypes {bad}")
    return out


def register_op(name, *, doc, inputs, infer, reference, examples, attrs=None, type_vars=None, gradient=None,
                elementwise=False, view=False, variadic=False, differentiable=True, inplace=None,
                constant=False, cost=None, index_inputs=None, workspace=None, composite=None,
                kernels=("cpu", "cuda"), fusible=False, epilogue_into=None, prologue_into=None, train_form=None,
                alias=None, contiguous_inputs=False, schedule=None):
    """Declare an op.  Refuses a duplicate name or a missing part.

    inputs: ``[(name, dtypes), ...]`` where dtypes is a tuple of dtype names or the name
        of a type var in ``type_vars`` (inputs sharing a type var must share one dtype).
        With ``variadic=True`` the last entry repeats (one or more times).
    attrs: ``{name: AttrSpec}``: kind, default, doc.
    infer(ctx): output ``(dtype, shape)`` pairs; input dtypes are checked before it runs.
    reference(inputs, attrs): the numpy executable specification.
    examples(rng): test cases, which must include size 0, size 1, odd sizes and special values.
    Properties generic passes read instead of op names:
        elementwise: output i may take over the bytes of a dying input of its size/dtype;
        view: the output aliases input 0's bytes (no kernel call);
        inplace: ``{output: input}`` whose persistent storage the output overwrites;
        constant: the op's value is fixed at build time (stored as read-only data);
        cost(in_shapes, attrs) -> estimated flops (recompute, scheduling);
        index_inputs: ``{input: IndexRange}`` for integer inputs holding indices;
        workspace(ctx) -> ``[(dtype, dims), ...]``: scratch tensors the kernel needs, planned in the
            arena and live at the node's step only (``ctx`` is a :class:`WorkspaceContext`: the
            node's concrete input and output types and its attrs); the kernel gets them in order
            (``KernelArgs::ws``);
        composite(ctx) -> output Tensors built from other registry ops; the compiler expands
            the node for a target without a kernel for it (and autodiff differentiates the
            expansion when the op declares no gradient of its own);
        kernels: the devices with a kernel for this op (a test checks this against the runtime);
        fusible: an elementwise op with one float dtype in and out and float attrs only, which the
            fusion pass may put in a fused program (graphc/ops/fused.py); every device's fused-program
            interpreter must implement it (a test checks this against the runtime);
        epilogue_into: the fused op that runs this op and then an elementwise program on its
            output (``p``): its inputs are this op's then the program's, its attrs this op's
            plus ``program`` (matmul → fused_matmul);
        prologue_into: the fused op that runs an elementwise program and this op on the
            program's value: its attrs are this op's plus ``program`` and ``reduce`` (this op's
            name) (sum/mean/max → fused_reduce).  The fusion pass fuses only where the fused
            op's inference accepts the result and the target has its kernel.
        train_form(ctx) -> output Tensors: what the node becomes in a training plan (the op as
            declared is its inference form); the select_mode pass builds it from the node's
            inputs like a composite (graphc/compiler/select_mode.py: batch_norm, dropout).
        alias: ``{output: input}``, or ``ALIAS_EACH`` (output k of input k, for every k): output o is a
            VIEW of input i's bytes and the step writes them in place (unlike ``view``, the node is a
            kernel call; unlike ``inplace``, the input may be any planned value): the plan's output has
            storage VIEW with alias_of the input (collectives: allreduce_start/allreduce_wait);
        contiguous_inputs: the roots of the node's inputs are laid out back to back in one arena
            range, in input order, each at a 64-byte aligned offset, so the kernel may treat
            ``[ptr(in0), ptr(in_last) + nbytes(in_last))`` as one buffer (a gradient bucket);
        schedule: ``"asap"`` (the scheduler places the node right after its last dependency) or
            ``"alap"`` (right before its first consumer); None: the scheduler's own order.
    """
    if name in _OPS:
        raise RegistryError(f"op {name!r} is already registered")
    missing = [part for part, value in (("doc", doc), ("infer", infer), ("reference", reference),
                                        ("examples", examples)) if not value]
    if missing:
        raise RegistryError(f"op {name!r} is missing {', '.join(missing)}")
    type_vars = {k: tuple(v) for k, v in (type_vars or {}).items()}
    parsed = _parse_inputs(name, inputs, type_vars)
    if variadic and not parsed:
        raise RegistryError(f"op {name!r}: a variadic op declares at least one input")
    if not kernels and composite is None and not constant:
        raise RegistryError(f"op {name!r} has neither a kernel nor a composite definition")
    if schedule not in SCHEDULES:
        raise RegistryError(f"op {name!r}: schedule={schedule!r}; expected one of {SCHEDULES}")
    if alias is not None and alias != ALIAS_EACH:
        if not isinstance(alias, dict) or any(
                isinstance(k, bool) or isinstance(v, bool) or not isinstance(k, int) or not isinstance(v, int)
                or k < 0 or v < 0 for k, v in alias.items()):
            raise RegistryError(f"op {name!r}: alias is {{output: input}} with int indices or ALIAS_EACH, "
                                f"got {alias!r}")
        if not variadic and any(v >= len(parsed) for v in alias.values()):
            raise RegistryError(f"op {name!r}: alias names an input beyond its {len(parsed)} inputs: {alias!r}")
    if alias == ALIAS_EACH and not variadic:
        raise RegistryError(f"op {name!r}: alias=ALIAS_EACH is for variadic ops (declare {{output: input}})")
    if alias and (view or constant or elementwise):
        raise RegistryError(f"op {name!r}: alias excludes view, constant and elementwise")
    if alias and inplace:
        overlap = set(inplace) & set(alias if alias != ALIAS_EACH else inplace)
        if overlap:
            raise RegistryError(f"op {name!r}: outputs {sorted(overlap)} are both inplace and alias")
    if contiguous_inputs and (view or constant or not parsed):
        raise RegistryError(f"op {name!r}: contiguous_inputs needs a kernel op with inputs")
    opdef = OpDef(name, doc.strip(), parsed, type_vars, dict(attrs or {}), infer, reference, examples,
                  gradient, elementwise, view, variadic, differentiable, inplace, constant, cost,
                  index_inputs, workspace, composite, kernels, fusible, epilogue_into, prologue_into, train_form,
                  alias, contiguous_inputs, schedule)
    if fusible and not (elementwise and all(k == "float" for k in (spec.kind for spec in opdef.attrs.values()))):
        raise RegistryError(f"op {name!r}: a fusible op is elementwise with float attrs only")
    _OPS[name] = opdef
    return opdef


def defgrad(name):
    """Decorator declaring the gradient of op ``name``, next to the op's declaration.

    The function receives a :class:`GradContext` and returns one gradient Tensor (or None)
    per input.  Gradients are built from registry ops, so they can be differentiated again.
    """
    def wrap(fn):
        opdef = get_op(name)
        if opdef.gradient is not None:
            raise RegistryError(f"op {name!r} already has a gradient")
        opdef.gradient = fn
        return fn
    return wrap


class WorkspaceContext:
    """What a ``workspace`` function sees: a node's concrete input and output types and its attrs
    (the compiler calls it once shapes are known, from ``assign_buffers``)."""

    def __init__(self, node, in_types, out_types, target="cpu"):
        self.node = node
        self.inputs = list(in_types)
        self.outputs = list(out_types)
        self.attrs = node.attrs
        self.target = target  # "cpu" or "cuda": whose kernel the workspaces are for

    def dtype(self, i):
        return self.inputs[i][0]

    def shape(self, i):
        return tuple(self.inputs[i][1])

    def out_shape(self, i):
        return tuple(self.outputs[i][1])


class CompositeContext:
    """What a composite definition sees: the node's input Tensors (in the graph being
    built) and its attrs.  The definition returns the output Tensor(s), built from other
    registry ops in that graph."""

    def __init__(self, node, inputs):
        self.node = node
        self.inputs = list(inputs)
        self.attrs = node.attrs

    @property
    def x(self):
        return self.inputs[0]


def expand_node(opdef, node, inputs):
    """Build ``node``'s composite definition from ``inputs`` (Tensors of the current
    default graph); returns its output Tensors, one per node output."""
    out = opdef.composite(CompositeContext(node, inputs))
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    if len(out) != len(node.outputs):
        raise RegistryError(f"composite of {opdef.name} returned {len(out)} outputs for a node with "
                            f"{len(node.outputs)}")
    return out


class GradContext:
    """What a gradient function sees: the forward node, its input and output Tensors,
    the upstream gradient of each output (zeros filled in where an output has none)."""

    def __init__(self, node, inputs, outputs, grads):
        self.node = node
        self.inputs = inputs
        self.outputs = outputs
        self.grads = grads
        self.attrs = node.attrs

    @property
    def g(self):
        return self.grads[0]

    @property
    def x(self):
        return self.inputs[0]

    @property
    def y(self):
        return self.outputs[0]


def check_complete():
    """Refuse an incomplete registry: every differentiable op declares its gradient."""
    missing = [op.name for op in _OPS.values()
               if op.differentiable and op.gradient is None and op.composite is None]
    if missing:
        raise RegistryError(f"ops without a gradient (declare one or mark differentiable=False): {missing}")
    dangling = [f"{op.name}.{kind} = {target!r}" for op in _OPS.values()
                for kind, target in (("epilogue_into", op.epilogue_into), ("prologue_into", op.prologue_into))
                if target is not None and target not in _OPS]
    if dangling:
        raise RegistryError(f"fusion targets that are not registered ops: {dangling}")


def get_op(name):
    try:
        return _OPS[name]
    except KeyError:
        raise GraphError(f"unknown op {name!r}") from None


def has_op(name):
    return name in _OPS


def all_ops():
    """Every registered op, sorted by name."""
    return [_OPS[k] for k in sorted(_OPS)]
