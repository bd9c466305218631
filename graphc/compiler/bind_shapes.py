"""Pass 2: bind_shapes — give every placeholder a concrete shape.

Needs: a validated Graph, and ``shapes``: placeholder name → tuple of ints (None = {}).
Guarantees: a new Graph whose placeholders have concrete shapes.  A given shape must
have the placeholder's rank and match its fixed dims; a symbolic dim (a name such as
"batch") gets the same size everywhere it appears; an anonymous dim (None) is free
each time.  A symbol that appears in a placeholder with no shape given is bound from
another placeholder if possible, else it is a CompileError naming the placeholder.
Node value types keep their declared (possibly symbolic) shapes, with bound symbols
substituted; ``infer_shapes`` then recomputes them all.

Errors (CompileError): a shape for an unknown placeholder (lists the placeholders),
wrong rank, wrong fixed dim, a symbol bound to two sizes, an unbound dim.
"""

import numpy as np

from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, set_outputs_kept
from graphc.errors import CompileError, where
from graphc.graph import format_shape, is_static


def _as_concrete(name, shape):
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise CompileError(f"shape for placeholder {name!r} must be a tuple of ints, got {shape!r}") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise CompileError(f"shape for placeholder {name!r} must be a tuple of ints >= 0, got {shape!r}")
    return tuple(int(d) for d in dims)


def bind_shapes(graph, shapes=None, pruned=()):
    """``pruned``: placeholder names of the model before an early prune; shapes given for
    those no longer in ``graph`` are accepted and ignored."""
    by_name = {ph.name: ph for ph in graph.inputs}
    pruned = set(pruned)
    shapes = {k: v for k, v in (shapes or {}).items() if k in by_name or k not in pruned}
    unknown = sorted(set(shapes) - set(by_name))
    if unknown:
        listed = ", ".join(f"{ph.name} {format_shape(ph.shape)}" for ph in graph.inputs) or "none"
        raise CompileError(f"shapes given for unknown placeholder(s) {unknown}; the graph's placeholders are: {listed}")

    symbols = {}  # symbol → (size, placeholder name that bound it)
    concrete = {}
    # Placeholders with a given shape bind symbols first (in placeholder order), so a
    # placeholder without one can take its symbols from them.
    for ph in graph.inputs:
        if ph.name not in shapes:
            continue
        got = _as_concrete(ph.name, shapes[ph.name])
        decl = ph.shape
        if len(got) != len(decl):
            raise CompileError(f"placeholder {ph.name!r} has rank {len(decl)} {format_shape(decl)}, "
                               f"got a shape of rank {len(got)} {format_shape(got)}{where(ph.provenance)}")
        for axis, (d, g) in enumerate(zip(decl, got)):
            if isinstance(d, int) and d != g:
                raise CompileError(f"placeholder {ph.name!r} has fixed dim {d} at axis {axis} "
                                   f"{format_shape(decl)}, got {g} in {format_shape(got)}{where(ph.provenance)}")
            if isinstance(d, str):
                if d in symbols and symbols[d][0] != g:
                    size, first = symbols[d]
                    raise CompileError(f"symbol {d!r} is bound to {size} by placeholder {first!r} but to {g} "
                                       f"by placeholder {ph.name!r} (axis {axis}){where(ph.provenance)}")
                symbols.setdefault(d, (g, ph.name))
        concrete[ph.name] = got
    for ph in graph.inputs:
        if ph.name in concrete:
            continue
        dims = []
        for axis, d in enumerate(ph.shape):
            if isinstance(d, str) and d in symbols:
                dims.append(symbols[d][0])
            elif isinstance(d, int):
                dims.append(d)
            else:
                what = "anonymous dim" if d is None else f"symbol {d!r}"
                raise CompileError(f"placeholder {ph.name!r} {format_shape(ph.shape)} has an unbound {what} at "
                                   f"axis {axis}; pass shapes={{{ph.name!r}: (...)}}{where(ph.provenance)}")
        concrete[ph.name] = tuple(dims)

    sizes = {s: size for s, (size, _) in symbols.items()}
    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph, concrete[ph.name])
    for var in graph.variables:
        copy_variable(out, var)
    for node in graph.nodes:
        types = []
        for o in node.outputs:
            t = graph.tensor(o)
            shape = t.shape if is_static(t.shape) else tuple(sizes.get(d, d) if isinstance(d, str) else d
                                                             for d in t.shape)
            types.append((t.dtype, shape))
        copy_node(out, node, types)
    set_outputs_kept(out, graph.outputs)
    return out
