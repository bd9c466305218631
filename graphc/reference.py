"""The reference interpreter: pure numpy execution of any graph.

It is the oracle every kernel is judged against: each node runs its op's numpy
reference, in a topological order.

Example::

    import numpy as np, graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.relu(x) * 2
    out = gc.reference.evaluate(g, {"x": np.ones((2, 3), np.float32)})
    out[y.name]   # array of 2.0, shape (2, 3)
"""

import numpy as np

from graphc import registry
from graphc.errors import FeedError, RuntimeExecutionError, where
from graphc.graph import Tensor, format_shape


def _key(k):
    return k.name if isinstance(k, Tensor) else k


def check_feed(placeholder, value):
    """Convert a fed value to the placeholder's dtype-exact ndarray or raise FeedError."""
    arr = np.asarray(value)
    if arr.dtype.name != placeholder.dtype:
        if arr.dtype.kind == placeholder_kind(placeholder.dtype) and np.can_cast(arr.dtype, placeholder.dtype):
            arr = arr.astype(placeholder.dtype)
        else:
            raise FeedError(f"feed {placeholder.name!r}: expected dtype {placeholder.dtype}, got {arr.dtype}")
    if len(arr.shape) != len(placeholder.shape) or any(
            isinstance(d, int) and d != a for d, a in zip(placeholder.shape, arr.shape)):
        raise FeedError(f"feed {placeholder.name!r}: expected shape {format_shape(placeholder.shape)}, "
                        f"got {format_shape(arr.shape)}")
    return arr


def placeholder_kind(dtype):
    return np.dtype(dtype).kind


def evaluate(graph, feeds, fetches=None, state=None, entry=None):
    """Evaluate ``fetches`` (names or Tensors; default: the graph's outputs, else every
    value no node consumes) given ``feeds`` (placeholder name or Tensor → array).
    ``entry``: fetch the named entry's values instead (``graph.entries[entry]``: a training
    entry's loss, then its fetches); to run a training entry's step, evaluate the graph the
    compiler lowers for it, ``gc.compiler.lower_graph(model, entry=name, shapes=...)``, with a
    ``state`` that the entries share.

    Returns a dict keyed like ``fetches`` (by name when fetches is None).  Only the
    nodes the fetches need are run.  Variables take their initial values, or, when a
    ``state`` dict (variable name → array) is given, the values in it; then in-place
    update nodes (optimizer steps) also run and write their results back into
    ``state`` — so calling evaluate repeatedly on a compiled training graph trains it.
    """
    feeds = {_key(k): v for k, v in (feeds or {}).items()}
    if entry is not None:
        if fetches is not None:
            raise ValueError("give fetches= or entry=, not both")
        spec = getattr(graph, "entries", {}).get(entry)
        if spec is None:
            raise KeyError(f"graph has no entry {entry!r}; its entries: {list(getattr(graph, 'entries', {}))}")
        if spec.training is not None and state is not None:
            # the graph as built has no gradient or update nodes: evaluating it would not train
            raise ValueError(f"entry {entry!r} is a training step: evaluate the graph the compiler lowers for it, "
                             f"gc.compiler.lower_graph(model, entry={entry!r}, shapes=...), with state=")
        loss = [spec.training.loss] if spec.training is not None else []
        fetches = list(dict.fromkeys(loss + list(spec.fetches)))
    if fetches is None:
        fetch_keys = graph.default_fetches()
    elif isinstance(fetches, (str, Tensor)):
        fetch_keys = [fetches]
    else:
        fetch_keys = list(fetches)
    names = [_key(k) for k in fetch_keys]
    for n in names:
        if not graph.has_value(n):
            raise KeyError(f"fetch {n!r} is not a value of the graph")

    placeholders = {p.name: p for p in graph.inputs}
    for k in feeds:
        if k not in placeholders:
            raise FeedError(f"unknown feed {k!r}; the graph's placeholders are {sorted(placeholders)}")

    # Only what the fetches need (and, with a state, the in-place updates).
    order = graph.topological_order()
    needed = set(names)
    if state is not None:
        for node in order:
            if registry.get_op(node.op).inplace:
                needed.update(node.outputs)
    for node in reversed(order):
        if any(o in needed for o in node.outputs):
            needed.update(node.inputs)

    env = {}
    for name, p in placeholders.items():
        if name in needed:
            if name not in feeds:
                raise FeedError(f"missing feed for placeholder {name!r} of shape {format_shape(p.shape)}")
            env[name] = check_feed(p, feeds[name])
    for v in graph.variables:
        if v.name in needed:
            if state is not None:
                state.setdefault(v.name, np.array(v.init_value, copy=True))
                env[v.name] = state[v.name]
            else:
                env[v.name] = v.init_value
    writes = []
    for node in order:
        if not any(o in needed for o in node.outputs):
            continue
        opdef = registry.get_op(node.op)
        try:
            outs = opdef.evaluate([env[i] for i in node.inputs], node.attrs)
        except (ValueError, IndexError, FloatingPointError) as e:
            raise RuntimeExecutionError(f"{node.describe()} failed: {e}{where(node.provenance)}") from e
        for o, val in zip(node.outputs, outs):
            env[o] = val
        for out_idx, in_idx in opdef.inplace.items():
            writes.append((node.inputs[in_idx], outs[out_idx]))
    if state is not None:
        for var_name, value in writes:
            state[var_name] = value
    return {k: np.array(env[n], copy=True) for k, n in zip(fetch_keys, names)}
