"""The error type of the AOT artifact emitter (``graphc compile --emit c``, ``gc.emit_c``)."""

from graphc.errors import GraphcError


class AotError(GraphcError, ValueError):
    """A plan or program cannot be emitted as a native artifact: a bad artifact name, a
    target other than the CPU, an op no shipped kernel file registers, a missing runtime
    source, or an output folder that cannot be written."""
