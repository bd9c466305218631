"""Typed exceptions raised by graphc.

Every error a user can cause derives from :class:`GraphcError`, so a caller (or the
CLI) can catch one type.  Messages name the op, the node, the argument, what was
expected and what was got, and the user's file:line where the node was built.
"""


class GraphcError(Exception):
    """Base class of every graphc error."""


class GraphError(GraphcError, ValueError):
    """A graph is malformed as built (bad name, bad attr, unknown value...)."""


class ShapeError(GraphError):
    """Shapes of an op's inputs or attrs do not fit together."""


class DTypeError(GraphError, TypeError):
    """Dtypes of an op's inputs or attrs do not fit together."""


class RegistryError(GraphcError):
    """An op declaration is incomplete or duplicated."""


class ModelFormatError(GraphcError, ValueError):
    """A .pb or .plan file is corrupt, unsupported or inconsistent."""


class CompileError(GraphcError, ValueError):
    """The compiler could not turn a model into a plan."""


class FeedError(GraphcError, ValueError):
    """Run-time inputs do not match the plan (missing, unknown, wrong shape/dtype)."""


class RuntimeExecutionError(GraphcError, RuntimeError):
    """A kernel failed while running a plan."""


class CheckpointError(GraphcError, ValueError):
    """A checkpoint file is corrupt or does not match the plan."""


class ImageError(GraphcError, ValueError):
    """An array cannot be written as an image (graphc.images): bad shape, dtype or values."""


class DeviceError(GraphcError, RuntimeError):
    """A device cannot be used: its runtime is not built, its driver is missing, or the
    machine has no such device.  The message says which."""


class CommError(GraphcError, RuntimeError):
    """Data-parallel training cannot go on: the ranks' plans differ, a collective failed or
    timed out (a peer rank died or hangs), the MPI or NCCL library is missing or does not
    match.  The message names this rank and the cause; the Session refuses further runs."""


class AotError(GraphcError, ValueError):
    """An AOT artifact (graphc compile --emit c) cannot be made: an op without a CPU kernel
    file, missing runtime sources, a bad artifact name or option."""


class OnnxError(GraphcError, ValueError):
    """Base of the ONNX import/export errors (graphc.onnx)."""


class OnnxFormatError(OnnxError, ModelFormatError):
    """An ONNX file is malformed: truncated or not a ModelProto, a node input nothing
    produces, a tensor whose data is shorter than its dims say, an external-data path
    outside the model's folder.  The message names the file and the node or tensor."""


class OnnxUnsupportedError(OnnxError):
    """An ONNX model uses something graphc does not support: an op, an attribute value, a
    dtype, an opset, a value that must be known when the model is imported.  The message
    names the node, its op_type and the opset (never a wrong result instead)."""


class OnnxExportError(OnnxError):
    """A graphc graph cannot be written as ONNX: an op with no ONNX form (the message
    names the node, the op and the user's file:line), an opset out of range."""


class ResourceError(GraphcError, MemoryError):
    """A plan needs more memory than is available or allowed (arena, persistent
    storage, workspace), or an allocation failed."""


QUOTE_LIMIT = 200


def quote(text, limit=QUOTE_LIMIT):
    """repr() of a user-supplied string or bytes, cut to about ``limit`` characters.

    Error messages quote users' bytes (names, attrs, paths) through this, so a 100 MB
    name yields a short message: ``'abc…' (104857600 characters)``.
    """
    r = repr(text)
    if len(r) <= limit:
        return r
    try:
        n = len(text)
    except TypeError:
        n = None
    size = f" ({n} {'bytes' if isinstance(text, (bytes, bytearray)) else 'characters'})" if n is not None else ""
    return r[:limit] + "…" + size


def where(provenance):
    """Format a provenance (file, line) pair as ' — built at file:line' or ''."""
    if provenance is None:
        return ""
    file, line = provenance
    if not file:
        return ""
    return f" — built at {file}:{line}"
