"""Element types.  A dtype is named by its numpy name: 'float32', 'float64', 'int32',
'int64', 'bool'.  Anything numpy accepts as one of those is accepted."""

import numpy as np

from graphc._proto import graphc_pb2 as pb

float32 = "float32"
float64 = "float64"
int32 = "int32"
int64 = "int64"
bool_ = "bool"

ALL = (float32, float64, int32, int64, bool_)
FLOATS = (float32, float64)
INTS = (int32, int64)
NUMERIC = FLOATS + INTS

_TO_PROTO = {
    float32: pb.FLOAT32,
    float64: pb.FLOAT64,
    int32: pb.INT32,
    int64: pb.INT64,
    bool_: pb.BOOL,
}
_FROM_PROTO = {v: k for k, v in _TO_PROTO.items()}


def as_dtype(value):
    """Normalize a dtype-like (str, numpy dtype or type) to its canonical name."""
    if isinstance(value, str) and value in _TO_PROTO:
        return value
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in _TO_PROTO:
        raise TypeError(f"unsupported dtype {value!r}; expected one of {', '.join(ALL)}")
    return name


def to_proto(dtype):
    return _TO_PROTO[as_dtype(dtype)]


def from_proto(code):
    """Proto enum → name; raises KeyError for an unknown or invalid code."""
    return _FROM_PROTO[code]


def itemsize(dtype):
    return np.dtype(as_dtype(dtype)).itemsize


def is_float(dtype):
    return as_dtype(dtype) in FLOATS
