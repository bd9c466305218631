"""The IR's plain-Python names ↔ the enum codes of the protobuf schema (proto/graphc.proto).

The file side (serialize, plan, the compiler's emit, session, cli, viz) converts here, so the
IR (graphc.dtypes, graphc.graph) never imports the generated protobuf module.
"""

from google.protobuf.message import DecodeError

from graphc import dtypes
from graphc._proto import graphc_pb2 as pb

_DTYPE_TO_PROTO = {
    dtypes.float32: pb.FLOAT32,
    dtypes.float64: pb.FLOAT64,
    dtypes.int32: pb.INT32,
    dtypes.int64: pb.INT64,
    dtypes.bool_: pb.BOOL,
}
_DTYPE_FROM_PROTO = {v: k for k, v in _DTYPE_TO_PROTO.items()}


def dtype_to_proto(dtype):
    """A dtype-like (see graphc.dtypes.as_dtype) → its DataType enum code."""
    return _DTYPE_TO_PROTO[dtypes.as_dtype(dtype)]


def dtype_from_proto(code):
    """DataType enum code → dtype name; raises KeyError for an unknown or invalid code."""
    return _DTYPE_FROM_PROTO[code]


def is_program_bytes(data):
    """Whether ``data`` holds a compiled Program (it has entries) rather than a Plan or a Model.
    A Program shares no field with them past the version header (its fields are 16..18,
    proto/graphc.proto), so a well-formed file is never misread; bytes that decode as none of
    them are left to the caller's parser."""
    probe = pb.Program()
    try:
        probe.ParseFromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError):
        return False
    return len(probe.entries) > 0
