"""Reverse-mode automatic differentiation as a graph transformation.

:func:`gradients` appends gradient nodes (role ``gradient``) to the graph and returns
them.  Gradients are ordinary nodes built from registry ops, so the gradient of a
gradient works (Hessian-vector products, second derivatives).

Example::

    import graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3, 1), init=gc.init.ones())
        loss = gc.mean(gc.tanh(x @ w))
        (dw,) = gc.gradients(loss, [w])
"""

import numpy as np

from graphc import dtypes, ops, registry
from graphc.errors import GraphError, where
from graphc.graph import GRADIENT, Tensor
from graphc.ops._common import ones_like, zeros_like


def _as_list(x):
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _sum_all(terms):
    total = terms[0]
    for t in terms[1:]:
        total = ops.add(total, t)
    return total


def _total(contributions, name, products=None):
    """The summed gradient of a value (summed once, then reused).  ``products[name]``: terms
    aᵀb (matmul nodes with transpose_a) kept apart, summed here by one matmul of the stacked
    operands."""
    pending = products.pop(name, None) if products else None
    if pending:
        if len(pending) == 1:
            term = pending[0][0]
        else:
            # Σ_k a_kᵀ b_k = [a_1; …; a_n]ᵀ [b_1; …; b_n]: a weight read at every step of an
            # unrolled loop gets its gradient from one GEMM over all steps (inner dim n·B)
            # instead of n thin GEMMs of inner dim B and n adds of the weight's size.
            a = ops.concat([ab[0] for _, ab in pending], axis=0)
            b = ops.concat([ab[1] for _, ab in pending], axis=0)
            term = ops.matmul(a, b, transpose_a=True)
        terms = contributions.setdefault(name, [])
        terms[:] = [term] if not terms else [ops.add(_sum_all(terms), term)]
    terms = contributions.get(name)
    if not terms:
        return None
    if len(terms) > 1:
        contributions[name] = [_sum_all(terms)]
    return contributions[name][0]


def _outer_product(gx):
    """(a, b) when ``gx`` is made by a matmul aᵀb of two matrices (a weight gradient), else None."""
    node = gx.producer
    if getattr(node, "op", None) != "matmul" or not node.attrs.get("transpose_a") or node.attrs.get("transpose_b"):
        return None
    a, b = (gx.graph.tensor(i) for i in node.inputs)
    if len(a.shape) != 2 or len(b.shape) != 2:
        return None
    return a, b


def gradients(ys, xs, grad_ys=None, _only_new_since=None, stack_outer_products=True):
    """d(Σ ys · grad_ys)/d xs as new graph nodes; returns one Tensor per x (None where
    no differentiable path connects it to ys).

    - ys, xs: Tensors (or lists of them) of one graph; grad_ys defaults to ones.
    - Contributions to a value used several times are summed, as they arrive; with
      ``stack_outer_products``, terms aᵀb of matrices (a weight read at every step of an
      unrolled loop) are summed instead by one matmul of the stacked a's and b's: faster,
      but every a and b stays live until it runs (the compiler turns it off under a memory
      budget).
    - stop_gradient blocks; integer and bool values get no gradient.
    - An op on the path without a declared gradient raises GraphError naming the op,
      the node and the user's file:line.
    - New nodes carry role "gradient" and the provenance of the forward node they
      differentiate.
    """
    ys, xs = _as_list(ys), _as_list(xs)
    if not ys:
        raise GraphError("gradients() needs at least one y")
    graph = ys[0].graph
    for t in ys + xs:
        if not isinstance(t, Tensor) or t.graph is not graph:
            raise GraphError(f"gradients(): {t!r} is not a Tensor of the same graph as ys")
    if grad_ys is None:
        grad_ys = [None] * len(ys)
    grad_ys = _as_list(grad_ys)
    if len(grad_ys) != len(ys):
        raise GraphError(f"gradients(): {len(ys)} ys but {len(grad_ys)} grad_ys")

    order = graph.topological_order()
    x_names = {x.name for x in xs}
    # forward-reachable from xs
    reach = set(x_names)
    for node in order:
        if any(i in reach for i in node.inputs):
            reach.update(node.outputs)
    # backward-reachable from ys
    needed = {y.name for y in ys}
    for node in reversed(order):
        if any(o in needed for o in node.outputs):
            needed.update(node.inputs)
    on_path = [n for n in order if any(o in reach for o in n.outputs) and any(o in needed for o in n.outputs)]
    if _only_new_since is not None:  # a composite's expansion: its inputs are independent leaves
        on_path = [n for n in on_path if n.name not in _only_new_since]

    contributions = {}
    products = {}   # value name → [(term, (a, b))] for terms aᵀb, summed by _total in one matmul
    with graph.building(GRADIENT):
        for y, gy in zip(ys, grad_ys):
            if not dtypes.is_float(y.dtype):
                raise GraphError(f"gradients(): y {y.name!r} has dtype {y.dtype}; only float values have gradients")
            if gy is None:
                with graph.building(GRADIENT, _provenance(y)):
                    gy = ones_like(y)
            elif not isinstance(gy, Tensor):
                gy = ops.constant(np.asarray(gy, y.dtype), graph=graph)
            contributions.setdefault(y.name, []).append(gy)

    for node in reversed(on_path):
        # a value's terms are in contributions, or (outer products aᵀb awaiting their one stacked matmul) in products
        if not any(o in contributions or o in products for o in node.outputs):
            continue
        opdef = registry.get_op(node.op)
        if not opdef.differentiable:
            continue
        if opdef.gradient is None and opdef.composite is None:
            raise GraphError(f"{node.describe()}: op {node.op!r} has no gradient{where(node.provenance)}")
        inputs = [graph.tensor(i) for i in node.inputs]
        outputs = [graph.tensor(o) for o in node.outputs]
        with graph.building(GRADIENT, node.provenance):
            grads = []
            for o in outputs:
                total = _total(contributions, o.name, products)
                if total is not None:
                    grads.append(total)
                else:
                    grads.append(zeros_like(o))
            ctx = registry.GradContext(node, inputs, outputs, grads)
            in_grads = opdef.gradient(ctx) if opdef.gradient is not None else _composite_gradient(opdef, ctx)
        if len(in_grads) != len(inputs):
            raise GraphError(f"gradient of {node.op} returned {len(in_grads)} values for {len(inputs)} inputs")
        for x, gx in zip(inputs, in_grads):
            if gx is None or not dtypes.is_float(x.dtype) or x.name not in reach:
                continue
            if gx.shape != x.shape and all(isinstance(d, int) for d in x.shape + gx.shape):
                raise GraphError(f"internal: gradient of {node.describe()} for {x.name} has shape {gx.shape}, "
                                 f"expected {x.shape}")
            ab = _outer_product(gx) if stack_outer_products else None
            if ab is not None:
                products.setdefault(x.name, []).append((gx, ab))
                continue
            terms = contributions.setdefault(x.name, [])
            if terms:
                # Sum as the contributions arrive (the same left-to-right order as summing them
                # at the end, so the same bits): a variable read at every step of an unrolled
                # loop then keeps one running total live instead of one term per step.
                with graph.building(GRADIENT, node.provenance):
                    terms[0] = ops.add(terms[0], gx)
            else:
                terms.append(gx)

    out = []
    with graph.building(GRADIENT):
        for x in xs:
            out.append(_total(contributions, x.name, products))
    return out


def _composite_gradient(opdef, ctx):
    """The gradient of a composite op that declares none: build its definition from the
    node's inputs and differentiate that (its forward nodes become gradient nodes)."""
    # Only the expansion's nodes are differentiated: an input computed from another input
    # (batch_norm_train_grad's mean from x) must not be differentiated through here too, or the
    # caller, which sends the input's gradient on through its producer, counts that path twice.
    before = {n.name for n in ctx.inputs[0].graph.nodes} if ctx.inputs else None
    outs = registry.expand_node(opdef, ctx.node, ctx.inputs)
    return gradients(outs, ctx.inputs, grad_ys=ctx.grads, _only_new_since=before)


def _provenance(t):
    p = t.producer
    return getattr(p, "provenance", None)

