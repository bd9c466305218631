"""ONNX control flow → graphc: ``If`` (docs/onnx.md).

graphc graphs are static, so an ``If`` whose condition is known at import imports only the
taken branch; with a run-time condition it imports BOTH branches into the enclosing graph
and selects each output with ``where(cond, then_out, else_out)``.  That is exact when both
branches only compute (ONNX subgraphs have no side effects; graphc refuses random and in-place
ops, and ops whose run-time index checks could fail in the branch ONNX would not run), and the
two outputs have the same dtype and the same shape (static or the same symbols); anything else
is refused with OnnxUnsupportedError.  A branch reads values of the enclosing graph(s) by name.
"""

import numpy as np

from graphc import registry
from graphc.errors import OnnxFormatError, OnnxUnsupportedError
from graphc.onnx._import import _NOT_FOLDABLE_PREFIXES, Value, const_value, graphc_dtype, handler, onnx_type_name

BRANCHES = ("then_branch", "else_branch")


def _branch_graph(ctx, which):
    """The GraphProto of attribute ``which`` (a GRAPH attribute, no inputs, one output per If output)."""
    import onnx

    g = ctx.attr(which)
    if not isinstance(g, onnx.GraphProto):
        ctx.format_error(f"attribute {which!r} must be a graph")
    if len(g.input):
        ctx.format_error(f"{which} declares {len(g.input)} inputs; an If branch takes none")
    if len(g.output) != len(ctx.node.output):
        ctx.format_error(f"{which} has {len(g.output)} outputs, the If node {len(ctx.node.output)}")
    if len(g.sparse_initializer):
        ctx.unsupported(f"{which} has sparse initializers; graphc does not support them")
    return g


def _reraise(ctx, which, e):
    """``e`` (raised while importing branch ``which``) naming the If node and the branch."""
    label = f"{ctx.name}/{which}"
    if label in str(e):     # the failing node's name already says it (run_node prefixes branch nodes)
        raise e
    new = type(e)(f"{ctx.where()}, {which}: {e}")
    new.__dict__.update(e.__dict__)
    if getattr(new, "op_type", None) is None and isinstance(new, OnnxUnsupportedError):
        new.op_type = ctx.op_type
    raise new from e


def _import_branch(ctx, which, runtime_cond):
    """Import branch ``which`` into the enclosing graph; its output Values.  The branch sees the
    enclosing scope's values; its own names do not leak out."""
    g = _branch_graph(ctx, which)
    imp = ctx._imp
    label = f"{ctx.name}/{which}"
    saved = imp.values
    scope = dict(saved)
    imp.values = scope
    graph = imp.graph
    before = len(graph.nodes)
    try:
        for t in g.initializer:
            arr = imp.tensor_array(t, f"{ctx.where()} {which} initializer")
            if imp.trainable and arr.dtype.kind == "f":
                scope[t.name] = Value(t.name, arr.dtype.name, arr.shape, init=arr, builder=imp, trainable=True)
            else:
                scope[t.name] = const_value(arr, t.name, imp)
        for idx, node in enumerate(imp.ordered_nodes(g)):
            imp.run_node(node, idx, ctx.opset, prefix=label, where_idx=ctx.index)
        outs = []
        for vi in g.output:
            if vi.name not in scope:
                raise OnnxFormatError(f"output {vi.name!r} is produced by no node of the branch nor the enclosing "
                                      "graph")
            v = scope[vi.name]
            kind = vi.type.WhichOneof("value")
            if kind not in (None, "tensor_type"):
                raise OnnxUnsupportedError(f"output {vi.name!r} is of ONNX type {kind}; graphc supports tensors only")
            code = vi.type.tensor_type.elem_type if kind else 0
            if code and graphc_dtype(code, f"output {vi.name!r}") != v.dtype:
                raise OnnxFormatError(f"output {vi.name!r} is declared {onnx_type_name(code)} but computes {v.dtype}")
            outs.append(v)
    except (OnnxUnsupportedError, OnnxFormatError) as e:
        _reraise(ctx, which, e)
    finally:
        imp.values = saved
    if runtime_cond:
        _check_pure(ctx, which, graph.nodes[before:])
    return outs


def _check_pure(ctx, which, nodes):
    """Refuse graphc nodes a run-time-selected branch may not hold: random or in-place ops, ops
    whose training form has side effects (batch_norm updates running statistics, dropout drops:
    a training plan would run them in the branch not taken too), and ops with run-time indices
    (graphc checks them and fails the run even where ONNX would not run the branch)."""
    consts = {n.outputs[0] for n in nodes if n.op == "constant"}
    for n in nodes:
        opdef = registry.get_op(n.op)
        if n.op.startswith(_NOT_FOLDABLE_PREFIXES) or opdef.inplace or opdef.train_form is not None:
            ctx.unsupported(f"{which} computes {n.op} (random, in place or with a training form that updates "
                            "state), which graphc cannot run in a branch selected at run time (it imports both "
                            "branches; a condition known at import avoids this)")
        for i in opdef.index_inputs:
            src = n.inputs[i] if i < len(n.inputs) else None
            producer = ctx._imp.graph._producers.get(src)
            if src is not None and src not in consts and not (producer is not None and producer.op == "constant"):
                ctx.unsupported(f"{which} computes {n.op} with run-time indices; graphc imports both branches of an "
                                "If with a run-time condition and checks indices even in the branch ONNX would not "
                                "run (a condition known at import avoids this)")


def _same_shape(a, b):
    return (a is not None and b is not None and len(a) == len(b)
            and all(x is not None and x == y for x, y in zip(a, b)))


def _select(ctx, cond, k, a, b):
    """Output k: where(cond, a, b), or a itself when both branches give the same known value."""
    if a is b:
        return a
    if a.dtype != b.dtype:
        ctx.unsupported(f"output {k}: then_branch gives {a.dtype}, else_branch {b.dtype}; graphc selects at run "
                        "time between outputs of one dtype only")
    if not _same_shape(a.shape, b.shape):
        ctx.unsupported(f"output {k}: then_branch gives shape {a.shape}, else_branch {b.shape}; graphc selects at "
                        "run time between outputs of one static (or the same symbolic) shape only (pin the input "
                        "shapes with shapes= / --shape, or make the condition known at import with values=)")
    if a.const is not None and b.const is not None and a.const.tobytes() == b.const.tobytes():
        return a
    if a.dims is not None and b.dims is not None and a._tensor is None and b._tensor is None and a.dims == b.dims:
        return a
    return ctx.op("where", [cond, a, b])


@handler("If")
def _if(ctx):
    """cond known at import: the taken branch only; else both branches, output k = where(cond, then_k, else_k).

    The run-time form needs each output pair of one dtype and one shape, and no random,
    in-place or run-time-index op in the branches (else OnnxUnsupportedError)."""
    cond = ctx.input(0)
    if cond is None:
        ctx.format_error("input 0 (cond) is missing")
    if cond.dtype != "bool":
        ctx.format_error(f"cond must be bool, got {cond.dtype}")
    static = cond.static
    if static is not None:
        if static.size != 1:
            ctx.format_error(f"cond must hold one element, has shape {static.shape}")
        which = BRANCHES[0] if bool(np.asarray(static).reshape(-1)[0]) else BRANCHES[1]
        return _import_branch(ctx, which, runtime_cond=False)
    if cond.shape is None or any(not isinstance(d, int) for d in cond.shape):
        ctx.unsupported(f"cond of shape {cond.shape}: graphc needs it static (one element)")
    if int(np.prod(cond.shape, dtype=np.int64)) != 1:
        ctx.format_error(f"cond must hold one element, has shape {cond.shape}")
    then_out = _import_branch(ctx, BRANCHES[0], runtime_cond=True)
    else_out = _import_branch(ctx, BRANCHES[1], runtime_cond=True)
    c = cond if cond.shape == () else ctx.op("reshape", [cond], {"shape": ()})
    return [_select(ctx, c, k, a, b) for k, (a, b) in enumerate(zip(then_out, else_out))]
