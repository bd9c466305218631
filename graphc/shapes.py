"""Shapes of the IR: a tuple whose dims are an int >= 0, a symbol name (str) or None.

The lowest layer with the dtypes and the errors: the registry and the graph builder
both use these helpers, so they sit below both."""

import numpy as np

from graphc.errors import GraphError


def normalize_shape(shape):
    """A shape as a tuple whose dims are int >= 0, a symbol name (str) or None."""
    if shape is None:
        raise GraphError("a shape is required")
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    out = []
    for d in shape:
        if d is None or isinstance(d, str):
            out.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool):
            if d < 0:
                raise GraphError(f"dimension {d} in shape {tuple(shape)} is negative")
            out.append(int(d))
        else:
            raise GraphError(f"dimension {d!r} in shape {tuple(shape)} is not an int, str or None")
    return tuple(out)


def is_static(shape):
    return all(isinstance(d, int) for d in shape)


def format_shape(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
