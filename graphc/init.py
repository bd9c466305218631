"""Seeded initializers for ``gc.variable(..., init=...)``.

Each initializer is a callable ``(shape, dtype) -> numpy array``; the same seed gives
the same array on every machine (numpy's PCG64 generator).  Fan-in / fan-out follow
PyTorch: for a 2-D weight (fan_in, fan_out) = (shape[0], shape[1]); for higher ranks
the trailing dims are the receptive field, (shape[1] * rf, shape[0] * rf).
"""

import math

import numpy as np

SQRT2 = math.sqrt(2.0)


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    rf = int(np.prod(shape[2:]))
    return shape[1] * rf, shape[0] * rf


def _rng(seed):
    return np.random.default_rng(seed)


def zeros():
    return lambda shape, dtype: np.zeros(shape, dtype)


def ones():
    return lambda shape, dtype: np.ones(shape, dtype)


def constant(value):
    return lambda shape, dtype: np.full(shape, value, dtype)


def uniform(low=-0.05, high=0.05, seed=None):
    return lambda shape, dtype: _rng(seed).uniform(low, high, shape).astype(dtype)


def normal(mean=0.0, std=0.05, seed=None):
    return lambda shape, dtype: _rng(seed).normal(mean, std, shape).astype(dtype)


def xavier_uniform(gain=1.0, seed=None):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    def init(shape, dtype):
        fan_in, fan_out = _fans(shape)
        a = gain * math.sqrt(6.0 / max(fan_in + fan_out, 1))
        return _rng(seed).uniform(-a, a, shape).astype(dtype)
    return init


def xavier_normal(gain=1.0, seed=None):
    """N(0, std²) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    def init(shape, dtype):
        fan_in, fan_out = _fans(shape)
        std = gain * math.sqrt(2.0 / max(fan_in + fan_out, 1))
        return _rng(seed).normal(0.0, std, shape).astype(dtype)
    return init


def kaiming_uniform(gain=SQRT2, mode="fan_in", seed=None):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al. 2015); gain √2 suits relu."""
    def init(shape, dtype):
        fan = _fans(shape)[0 if mode == "fan_in" else 1]
        b = gain * math.sqrt(3.0 / max(fan, 1))
        return _rng(seed).uniform(-b, b, shape).astype(dtype)
    return init


def kaiming_normal(gain=SQRT2, mode="fan_in", seed=None):
    """N(0, std²) with std = gain / sqrt(fan)."""
    def init(shape, dtype):
        fan = _fans(shape)[0 if mode == "fan_in" else 1]
        std = gain / math.sqrt(max(fan, 1))
        return _rng(seed).normal(0.0, std, shape).astype(dtype)
    return init


glorot_uniform = xavier_uniform
glorot_normal = xavier_normal
he_uniform = kaiming_uniform
he_normal = kaiming_normal
