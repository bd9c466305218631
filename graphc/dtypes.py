"""Element types.  A dtype is named by its numpy name: 'float32', 'float64', 'int32',
'int64', 'bool'.  Anything numpy accepts as one of those is accepted.

Plain Python, like the rest of the IR: the enum codes of the file formats live with
the protobuf, in :mod:`graphc.proto_enums`."""

import numpy as np

float32 = "float32"
float64 = "float64"
int32 = "int32"
int64 = "int64"
bool_ = "bool"

ALL = (float32, float64, int32, int64, bool_)
FLOATS = (float32, float64)
INTS = (int32, int64)
NUMERIC = FLOATS + INTS


def as_dtype(value):
    """Normalize a dtype-like (str, numpy dtype or type) to its canonical name."""
    if isinstance(value, str) and value in ALL:
        return value
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in ALL:
        raise TypeError(f"unsupported dtype {value!r}; expected one of {', '.join(ALL)}")
    return name


def itemsize(dtype):
    return np.dtype(as_dtype(dtype)).itemsize


def is_float(dtype):
    return as_dtype(dtype) in FLOATS
