"""Fused ops: what the compiler's fusion pass (graphc/compiler/fuse.py) makes of several nodes.

Users never build these; the pass does, after autodiff, so they need no gradient.  Each
carries the member ops it replaced as an elementwise *program*, a text attr that the C++
kernels parse once when a plan is loaded (runtime/cpu/fused_program.h) and that drawings and
``graphc info`` print as is::

    program := stmt (";" stmt)*
    stmt    := "r" INT "=" OP [ "[" NAME "=" NUMBER ("," NAME "=" NUMBER)* "]" ] "(" arg ("," arg)* ")"
    arg     := "i" INT   the step's input INT (fused_matmul: INT >= 2; inputs 0, 1 are the operands)
             | "r" INT   an earlier register (r0, r1, ... are defined in order)
             | "p"       fused_matmul only: the matrix product at the same output position

The result is the last register.  NUMBER is Python's ``repr`` of a float, which reads back
exactly.  Every register has the output's shape and dtype; inputs broadcast to it.  OP is a
registry op declared ``fusible=True``: elementwise, one float dtype in and out, float attrs only.
The reference evaluates each member with that op's own reference, so a fused node's
specification is, by construction, the composition of its members'.
"""

import math
import re

import numpy as np

from graphc import dtypes
from graphc.ops._common import Example, broadcast_shapes, build, rand, special
from graphc.ops.reduce import (
    _matmul_cost,
    _matmul_infer,
    _matmul_ref,
    _matmul_workspace,
    _reduce_infer,
    cuda_reduce_workspace,
    normalize_axes,
)
from graphc.registry import AttrSpec, all_ops, get_op, has_op, register_op

_STMT = re.compile(r"r(\d+)=([a-z_][a-z0-9_]*)(?:\[([^\]]*)\])?\(([^()]*)\)\Z")
_ARG = re.compile(r"(?:([ir])(\d+)|(p))\Z")


class Instr:
    """One statement of a program: ``op`` applied to ``args`` (("i", n), ("r", n) or ("p", 0))
    with float ``attrs``."""

    __slots__ = ("op", "attrs", "args")

    def __init__(self, op, args, attrs=None):
        self.op = op
        self.args = tuple(args)
        self.attrs = dict(attrs or {})

    def __eq__(self, other):
        return isinstance(other, Instr) and (self.op, self.args, self.attrs) == (other.op, other.args, other.attrs)

    def __repr__(self):
        return f"Instr({self.op!r}, {self.args!r}, {self.attrs!r})"


def fusible_ops():
    """Names of the registry ops a program may use, sorted."""
    return sorted(op.name for op in all_ops() if op.fusible)


def _fmt_arg(arg):
    kind, n = arg
    return "p" if kind == "p" else f"{kind}{n}"


def _fmt_number(value):
    value = float(value)
    if math.isnan(value):
        return "nan"
    return repr(value)


def format_program(instrs):
    """The text form of a list of :class:`Instr` (register k is instruction k's result)."""
    parts = []
    for k, ins in enumerate(instrs):
        attrs = ""
        if ins.attrs:
            attrs = "[" + ",".join(f"{key}={_fmt_number(ins.attrs[key])}" for key in sorted(ins.attrs)) + "]"
        parts.append(f"r{k}={ins.op}{attrs}(" + ",".join(_fmt_arg(a) for a in ins.args) + ")")
    return ";".join(parts)


def parse_program(text, num_inputs, first_input=0, allow_product=False):
    """Parse and check a program; returns a list of :class:`Instr`.  Raises ValueError naming
    the statement at fault (unknown op, wrong arity or attrs, bad register or input index)."""
    if not isinstance(text, str) or not text:
        raise ValueError("the program is empty")
    instrs = []
    for k, stmt in enumerate(text.split(";")):
        m = _STMT.match(stmt)
        if m is None:
            raise ValueError(f"statement {k} {stmt[:80]!r} is not of the form rK=op(args)")
        reg, op, attr_text, arg_text = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        if reg != k:
            raise ValueError(f"statement {k} defines r{reg}; registers are defined in order (expected r{k})")
        if not has_op(op) or not get_op(op).fusible:
            raise ValueError(f"statement {k}: {op!r} is not a fusible op (fusible: {', '.join(fusible_ops())})")
        opdef = get_op(op)
        attrs = {}
        if attr_text:
            for item in attr_text.split(","):
                key, eq, value = item.partition("=")
                if not eq or key not in opdef.attrs or opdef.attrs[key].kind != "float":
                    raise ValueError(f"statement {k}: {op} has no float attr {key!r}")
                try:
                    attrs[key] = float(value)
                except ValueError:
                    raise ValueError(f"statement {k}: attr {key} = {value!r} is not a number") from None
        missing = [key for key, spec in opdef.attrs.items() if key not in attrs and spec.required]
        if missing:
            raise ValueError(f"statement {k}: {op} needs attrs {missing}")
        args = []
        for a in arg_text.split(","):
            am = _ARG.match(a)
            if am is None:
                raise ValueError(f"statement {k}: bad argument {a[:20]!r} (expected iN, rN or p)")
            if am.group(3):
                if not allow_product:
                    raise ValueError(f"statement {k}: 'p' (the matmul product) is only allowed in fused_matmul")
                args.append(("p", 0))
                continue
            kind, n = am.group(1), int(am.group(2))
            if kind == "r" and n >= k:
                raise ValueError(f"statement {k}: r{n} is not defined yet")
            if kind == "i" and not first_input <= n < num_inputs:
                raise ValueError(f"statement {k}: input i{n} is out of range [{first_input}, {num_inputs})")
            args.append((kind, n))
        if len(args) != opdef.num_inputs:
            raise ValueError(f"statement {k}: {op} takes {opdef.num_inputs} inputs, got {len(args)}")
        instrs.append(Instr(op, args, attrs))
    return instrs


def evaluate_program(instrs, inputs, shape, dtype, product=None):
    """Run a program with the members' numpy references; every register is broadcast to
    ``shape`` and kept in ``dtype`` (as the kernels keep it)."""
    regs = []
    dt = np.dtype(dtype)

    def value(arg):
        kind, n = arg
        if kind == "p":
            return product
        return regs[n] if kind == "r" else inputs[n]

    with np.errstate(all="ignore"):
        for ins in instrs:
            opdef = get_op(ins.op)
            attrs = {key: spec.default for key, spec in opdef.attrs.items() if not spec.required}
            attrs.update(ins.attrs)
            out = opdef.evaluate([np.asarray(value(a)) for a in ins.args], attrs)[0]
            regs.append(np.broadcast_to(np.asarray(out).astype(dt, copy=False), shape))
    return np.ascontiguousarray(regs[-1])


def _ctx_program(ctx, first_input, allow_product):
    try:
        return parse_program(ctx.attrs["program"], len(ctx.inputs), first_input, allow_product)
    except ValueError as e:
        ctx.fail(f"bad program: {e}")


def _composite(first_input, allow_product):
    """The members again, as nodes: the definition of a fused op for a device whose runtime has no
    kernel for it (the fusion pass only fuses for devices that have one)."""
    def expand(ctx):
        instrs = parse_program(ctx.attrs["program"], len(ctx.inputs), first_input, allow_product)
        product = None
        if allow_product:
            product = build("matmul", ctx.inputs[:2], {"transpose_a": ctx.attrs["transpose_a"],
                                                        "transpose_b": ctx.attrs["transpose_b"]})
        regs = []
        for ins in instrs:
            args = [product if kind == "p" else (regs[n] if kind == "r" else ctx.inputs[n]) for kind, n in ins.args]
            regs.append(build(ins.op, args, ins.attrs))
        return regs[-1]
    return expand


# -- fused_elementwise ----------------------------------------------------------------------

def _fe_infer(ctx):
    if not ctx.inputs:
        ctx.fail("expects at least one input")
    _ctx_program(ctx, 0, False)
    return ctx.dtype(0), broadcast_shapes(ctx, *[ctx.shape(i) for i in range(len(ctx.inputs))])


def _fe_ref(inputs, attrs):
    shape = np.broadcast_shapes(*[np.shape(x) for x in inputs])
    instrs = parse_program(attrs["program"], len(inputs))
    return evaluate_program(instrs, inputs, shape, inputs[0].dtype)


def _fe_cost(in_shapes, out_shapes, attrs):
    """One unit per element read or written, once per member: the unfused members' work."""
    n = 1
    for d in out_shapes[0]:
        n *= int(d)
    return n * (1 + len(attrs["program"].split(";")))


_FE_PROGRAMS = [
    # (program, number of inputs, input shapes relative to the output) — a bias-relu, a
    # broadcasting chain with every binary member, and every unary member, in turn.
    ("r0=add(i0,i1);r1=relu(r0)", 2),
    ("r0=mul(i0,i1);r1=sub(r0,i2);r2=div(r1,i1);r3=maximum(r2,i0);r4=minimum(r3,i2)", 3),
    ("r0=abs(i0);r1=neg(r0);r2=exp(r1);r3=log(r2);r4=sqrt(r2);r5=add(r3,r4)", 1),
    ("r0=sigmoid(i0);r1=tanh(i0);r2=mul(r0,r1);r3=relu_grad(r2,i0)", 1),
    ("r0=pow[exponent=2.0](i0);r1=pow[exponent=0.5](r0);r2=sub(r1,i1)", 2),
]


def _fe_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for program, n in _FE_PROGRAMS:
            for shapes in [[(5, 3)] * n, [(1,)] * n, [(0, 3)] * n, [(73, 5)] + [(5,)] * (n - 1),
                           [(7, 1, 3)] + [(4, 1)] * (n - 1)]:
                if program.startswith("r0=sigmoid") and len(set(shapes)) > 1:
                    continue  # relu_grad takes equal shapes
                xs = [rand(rng, s, dt, 0.1, 2.0) for s in shapes]
                out.append(Example(xs, {"program": program}, grad=False, note=dt))
            out.append(Example([special(rng, (6, 7), dt) for _ in range(n)], {"program": program}, grad=False,
                               note=f"{dt} special values"))
    return out


register_op(
    "fused_elementwise",
    doc="A chain of fusible elementwise ops as one step (made by the fusion pass): the `program` attr "
        "lists the members (module docstring of graphc/ops/fused.py); inputs broadcast to the output, "
        "which has their broadcast shape and their one float dtype.  Reads each input once and writes "
        "one output; intermediates never reach memory.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    variadic=True,
    attrs={"program": AttrSpec("str", doc="the member ops (see graphc/ops/fused.py)")},
    infer=_fe_infer,
    reference=_fe_ref,
    examples=_fe_examples,
    cost=_fe_cost,
    elementwise=True,
    differentiable=False,
    composite=_composite(0, False),
    kernels=("cpu", "cuda"),
)


# -- fused_matmul -----------------------------------------------------------------------------

def _fm_infer(ctx):
    _ctx_program(ctx, 2, True)
    dtype, shape = _matmul_infer(ctx)
    for i in range(2, len(ctx.inputs)):
        lead = len(shape) - len(ctx.shape(i))
        if lead < 0 or any(isinstance(d, int) and isinstance(shape[lead + j], int) and d not in (1, shape[lead + j])
                           for j, d in enumerate(ctx.shape(i))):
            ctx.fail(f"epilogue input {i} of shape {ctx.shape(i)} does not broadcast to the product's {shape}")
    return dtype, shape


def _fm_ref(inputs, attrs):
    product = np.asarray(_matmul_ref(inputs[:2], attrs))
    instrs = parse_program(attrs["program"], len(inputs), 2, True)
    return evaluate_program(instrs, inputs, product.shape, product.dtype, product=product)


def _fm_cost(in_shapes, out_shapes, attrs):
    n = 1
    for d in out_shapes[0]:
        n *= int(d)
    return _matmul_cost(in_shapes, out_shapes, attrs) + n * len(attrs["program"].split(";"))


def _fm_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for sa, sb, ta, tb in [((3, 5), (5, 4), False, False), ((1, 7), (7, 9), False, False),
                               ((0, 5), (5, 3), False, False), ((4, 0), (0, 3), False, False),
                               ((5, 3), (4, 5), True, True), ((2, 3, 5), (5, 4), False, False),
                               ((37, 19), (21, 19), False, True), ((1, 1), (1, 1), False, False)]:
            a, b = rand(rng, sa, dt), rand(rng, sb, dt)
            y = _matmul_ref([a, b], {"transpose_a": ta, "transpose_b": tb})
            bias = rand(rng, y.shape[-1:], dt)
            res = rand(rng, y.shape, dt)
            attrs = {"transpose_a": ta, "transpose_b": tb}
            out.append(Example([a, b, bias], dict(attrs, program="r0=add(p,i2);r1=relu(r0)"), grad=False, note=dt))
            out.append(Example([a, b, bias, res], dict(attrs, program="r0=add(p,i2);r1=tanh(r0);r2=add(r1,i3)"),
                               grad=False, note=f"{dt} residual"))
            out.append(Example([a, b], dict(attrs, program="r0=sigmoid(p)"), grad=False, note=f"{dt} no extra"))
        # Special values in the epilogue's inputs: a product with inf/NaN operands sums them in an
        # order BLAS does not fix (matmul's own examples cover that).
        a = rand(rng, (4, 3), dt)
        b = rand(rng, (3, 5), dt)
        out.append(Example([a, b, special(rng, (5,), dt)],
                           {"transpose_a": False, "transpose_b": False, "program": "r0=add(p,i2);r1=relu(r0)"},
                           grad=False, note=f"{dt} special values"))
    return out


register_op(
    "fused_matmul",
    doc="matmul with an elementwise epilogue (made by the fusion pass): p = op(a) @ op(b) exactly as "
        "`matmul`, then the `program` attr (graphc/ops/fused.py) maps p and the extra inputs, broadcast "
        "to the product's shape, to the output — a bias add, an activation, a residual add — while the "
        "product's block is still in cache.",
    inputs=[("a", "T"), ("b", "T"), ("extra", "T")],
    type_vars={"T": dtypes.FLOATS},
    variadic=True,
    attrs={"transpose_a": AttrSpec("bool", default=False, doc="use a's last two axes swapped"),
           "transpose_b": AttrSpec("bool", default=False, doc="use b's last two axes swapped"),
           "program": AttrSpec("str", doc="the epilogue (see graphc/ops/fused.py)")},
    infer=_fm_infer,
    reference=_fm_ref,
    examples=_fm_examples,
    cost=_fm_cost,
    workspace=_matmul_workspace,  # the product's (CUDA: cuBLASLt's); the epilogue needs none
    differentiable=False,
    composite=_composite(2, True),
    kernels=("cpu", "cuda"),
)


# -- fused_reduce -------------------------------------------------------------------------------

REDUCTIONS = ("sum", "mean", "max")


class _ReduceCtx:
    """What _reduce_infer needs of an InferContext, for the program's (broadcast) value."""

    def __init__(self, ctx, shape):
        self._ctx = ctx
        self._shape = shape
        self.attrs = ctx.attrs
        self.node = ctx.node

    def shape(self, i):
        return self._shape

    def dtype(self, i):
        return self._ctx.dtype(0)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def reduced_axes_are_trailing(shape, axes):
    """Whether reducing ``axes`` of ``shape`` leaves each output's items one contiguous run
    (the axes are the trailing ones, ignoring size-1 dims): the layout fused_reduce runs."""
    rank = len(shape)
    axes = set(range(rank)) if axes is None else {a % rank for a in axes} if rank else set()
    seen_reduced = False
    for i in range(rank):
        if shape[i] == 1:
            continue
        if i in axes:
            seen_reduced = True
        elif seen_reduced:
            return False
    return True


def _fr_infer(ctx):
    if not ctx.inputs:
        ctx.fail("expects at least one input")
    if ctx.attrs["reduce"] not in REDUCTIONS:
        ctx.fail(f"reduce must be one of {', '.join(REDUCTIONS)}, got {ctx.attrs['reduce']!r}")
    _ctx_program(ctx, 0, False)
    shape = broadcast_shapes(ctx, *[ctx.shape(i) for i in range(len(ctx.inputs))])
    if all(isinstance(d, int) for d in shape):
        axes = normalize_axes(ctx, ctx.attrs["axes"], len(shape))
        if not reduced_axes_are_trailing(shape, axes):
            ctx.fail(f"reduces axes {list(axes)} of shape {shape}: only trailing axes are supported")
    return _reduce_infer(ctx.attrs["reduce"] != "max")(_ReduceCtx(ctx, shape))


def _fr_ref(inputs, attrs):
    shape = np.broadcast_shapes(*[np.shape(x) for x in inputs])
    instrs = parse_program(attrs["program"], len(inputs))
    value = evaluate_program(instrs, inputs, shape, inputs[0].dtype)
    return get_op(attrs["reduce"]).evaluate([value], {"axes": attrs["axes"], "keepdims": attrs["keepdims"]})[0]


def _fr_cost(in_shapes, out_shapes, attrs):
    n = 1
    for d in np.broadcast_shapes(*[tuple(int(x) for x in s) for s in in_shapes]):
        n *= int(d)
    return n * (1 + len(attrs["program"].split(";")))


def _fr_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for program, n in [("r0=mul(i0,i0)", 1), ("r0=sub(i0,i1);r1=mul(r0,r0)", 2), ("r0=exp(i0);r1=mul(r0,i1)", 2)]:
            for reduce in REDUCTIONS:
                for shape, other, axes, keepdims in [((5, 3), (5, 3), None, False), ((5, 3), (3,), (1,), True),
                                                     ((7, 1, 9), (9,), (-1,), False), ((1,), (1,), None, True),
                                                     ((0, 4), (4,), (1,), False), ((4, 0), (0,), (1,), True),
                                                     ((3, 5000), (5000,), (1,), False)]:
                    if reduce == "max" and 0 in shape:
                        continue
                    xs = [rand(rng, shape, dt, -1.5, 1.5)] + [rand(rng, other, dt, -1.5, 1.5)][: n - 1]
                    attrs = {"program": program, "reduce": reduce, "axes": axes, "keepdims": keepdims}
                    out.append(Example(xs, attrs, grad=False, note=dt))
            xs = [special(rng, (4, 9), dt) for _ in range(n)]
            for reduce in REDUCTIONS:
                out.append(Example(xs, {"program": program, "reduce": reduce, "axes": (1,), "keepdims": False},
                                   grad=False, note=f"{dt} special values"))
    return out


def _fr_workspace(ctx):
    """CUDA only: the two-pass split's partials (runtime/cuda/fused_reduce.cu, reduce.cu's rule)."""
    if ctx.target != "cuda":
        return []
    shape = np.broadcast_shapes(*[tuple(int(d) for d in ctx.shape(i)) for i in range(len(ctx.inputs))])
    rank = len(shape)
    axes = ctx.attrs["axes"]
    flagged = set(range(rank)) if axes is None else ({int(a) % rank for a in axes} if rank else set())
    return cuda_reduce_workspace(shape, [i in flagged for i in range(rank)])


def _reduce_composite(ctx):
    value = _composite(0, False)(ctx)
    return build(ctx.attrs["reduce"], [value], {"axes": ctx.attrs["axes"], "keepdims": ctx.attrs["keepdims"]})


register_op(
    "fused_reduce",
    doc="A reduction with an elementwise prologue (made by the fusion pass): the `program` attr "
        "(graphc/ops/fused.py) computes a value of the inputs' broadcast shape that is reduced "
        "(`reduce`: sum, mean or max, as those ops) over `axes` — trailing axes only — without "
        "the value ever reaching memory.",
    inputs=[("x", "T")],
    type_vars={"T": dtypes.FLOATS},
    variadic=True,
    attrs={"program": AttrSpec("str", doc="the prologue (see graphc/ops/fused.py)"),
           "reduce": AttrSpec("str", doc="sum, mean or max"),
           "axes": AttrSpec("ints", default=None, optional=True, doc="reduced axes; None: all"),
           "keepdims": AttrSpec("bool", default=False, doc="keep reduced axes as size 1")},
    infer=_fr_infer,
    reference=_fr_ref,
    examples=_fr_examples,
    cost=_fr_cost,
    workspace=_fr_workspace,
    differentiable=False,
    composite=_reduce_composite,
    kernels=("cpu", "cuda"),
)
