"""The IR's plain-Python names ↔ the enum codes of the protobuf schema (proto/graphc.proto).

The file side (serialize, plan, the compiler's emit, session, cli, viz) converts here, so the
IR (graphc.dtypes, graphc.graph) never imports the generated protobuf module.
"""

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
