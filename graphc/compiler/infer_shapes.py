"""Pass 3: infer_shapes — recompute every value's dtype and shape on concrete inputs.

Needs: a Graph whose placeholders and variables have concrete shapes (after bind_shapes).
Guarantees: a new Graph, nodes in the same stored order, in which every value has a
concrete shape and a dtype, computed by each op's registry inference in topological
order.  An op that rejects its now-concrete inputs raises its ShapeError / DTypeError
(naming the node, its op, the shapes and the user's file:line); an inference that
still leaves a dim unknown is a CompileError naming the node.
"""

from graphc import dtypes, registry
from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, set_outputs_kept
from graphc.errors import CompileError, where
from graphc.graph import format_shape, is_static

# No plan may describe more bytes than int64 offsets can address (with room for the
# planner's sums): a larger value or total is a CompileError, not an overflow later.
MAX_PLAN_BYTES = 1 << 62


class _Sizes:
    def __init__(self):
        self.total = 0

    def add(self, what, dtype, shape, provenance):
        n = dtypes.itemsize(dtype)
        for d in shape:
            n *= max(int(d), 1)  # numpy sizes arrays by their nonzero dims, as the runtime does
        self.total += n
        if n > MAX_PLAN_BYTES or self.total > MAX_PLAN_BYTES:
            raise CompileError(f"{what} of shape {format_shape(shape)} {dtype} takes the plan past "
                               f"{MAX_PLAN_BYTES} bytes{where(provenance)}")


def infer_shapes(graph):
    types = {}
    sizes = _Sizes()
    for ph in graph.inputs:
        if not is_static(ph.shape):
            raise CompileError(f"placeholder {ph.name!r} has shape {format_shape(ph.shape)}; "
                               f"run bind_shapes first{where(ph.provenance)}")
        sizes.add(f"placeholder {ph.name!r}", ph.dtype, ph.shape, ph.provenance)
        types[ph.name] = (ph.dtype, ph.shape)
    for var in graph.variables:
        sizes.add(f"variable {var.name!r}", var.dtype, var.shape, var.provenance)
        types[var.name] = (var.dtype, var.shape)
    node_types = {}
    for node in graph.topological_order():
        out_types = registry.get_op(node.op).infer_node(node, [types[i] for i in node.inputs])
        if len(out_types) != len(node.outputs):
            raise CompileError(f"{node.describe()} has {len(node.outputs)} outputs but its op infers "
                               f"{len(out_types)}{where(node.provenance)}")
        for o, (dtype, shape) in zip(node.outputs, out_types):
            if not is_static(shape):
                raise CompileError(f"{node.describe()}: the shape of {o!r} is still {format_shape(shape)} after "
                                   f"binding every placeholder{where(node.provenance)}")
            types[o] = (dtype, tuple(int(d) for d in shape))
            sizes.add(f"{node.describe()} output {o!r}", dtype, types[o][1], node.provenance)
        node_types[node.name] = [types[o] for o in node.outputs]

    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        copy_variable(out, var)
    for node in graph.nodes:
        copy_node(out, node, node_types[node.name])
    set_outputs_kept(out, graph.outputs)
    return out
