"""Independent implementations (Python loops and the math module, no numpy ufuncs) of the ops of
graphc/ops/tensor_extra.py, min/argmin and instance_norm; tests/test_ops_reference.py merges them
into its INDEPENDENT table and checks every op's numpy reference against them."""

import itertools
import math

import numpy as np


def _indices(shape):
    return itertools.product(*[range(d) for d in shape])


def _identity(inputs, attrs):
    x = inputs[0]
    out = np.empty(x.shape, x.dtype)
    for idx in _indices(x.shape):
        out[idx] = x[idx]
    return out


def _tile(inputs, attrs):
    x, reps = inputs[0], attrs["repeats"]
    shape = tuple(d * r for d, r in zip(x.shape, reps))
    out = np.empty(shape, x.dtype)
    for idx in _indices(shape):
        out[idx] = x[tuple(i % d for i, d in zip(idx, x.shape))]
    return out


def _reduce_lines(x, axes):
    """{kept index: [values]} over the reduced ``axes``, values as exact Python numbers."""
    keep = [i for i in range(x.ndim) if i not in axes]
    lines = {}
    for idx in _indices(x.shape):
        lines.setdefault(tuple(idx[k] for k in keep), []).append(x[idx].item())
    return keep, lines


def _min(inputs, attrs):
    x = inputs[0]
    axes = list(range(x.ndim)) if attrs["axes"] is None else sorted(a % x.ndim for a in attrs["axes"])
    keep, lines = _reduce_lines(x, axes)
    out_shape = tuple(x.shape[k] for k in keep)
    out = np.empty(out_shape, x.dtype)
    for oidx in _indices(out_shape):
        vals = lines[oidx]
        best = vals[0]
        for v in vals[1:]:
            if best != best:
                break
            if v != v or v < best:
                best = v
        out[oidx] = best
    if attrs["keepdims"]:
        out = out.reshape(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return out


def _argmin(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        return np.zeros((), np.int64)
    axis = attrs["axis"] % x.ndim
    keep, lines = _reduce_lines(x, [axis])
    out_shape = tuple(x.shape[k] for k in keep)
    out = np.zeros(out_shape, np.int64)
    for oidx in _indices(out_shape):
        vals = lines[oidx]
        best = 0
        for k, v in enumerate(vals):
            b = vals[best]
            if not math.isnan(b) and (math.isnan(v) or v < b):
                best = k
        out[oidx] = best
    if attrs["keepdims"]:
        out = out.reshape(tuple(1 if i == axis else d for i, d in enumerate(x.shape)))
    return out


def _instance_norm(inputs, attrs):
    x, scale, bias = inputs
    out = np.empty(x.shape, x.dtype)
    n_sp = math.prod(x.shape[2:])
    for n, c in _indices(x.shape[:2]):
        vals = [x[(n, c) + sp].item() for sp in _indices(x.shape[2:])]
        if not n_sp or not all(math.isfinite(v) for v in vals):  # NaN or inf anywhere: the slice is NaN
            mean = var = math.nan
        else:
            mean = math.fsum(vals) / n_sp
            var = math.fsum((v - mean) ** 2 for v in vals) / n_sp
        for sp in _indices(x.shape[2:]):
            v = x[(n, c) + sp].item()
            if math.isnan(var):
                y = math.nan
            else:
                y = (v - mean) / math.sqrt(var + attrs["eps"]) * scale[c].item() + bias[c].item()
            out[(n, c) + sp] = y
    return out


def _einsum(inputs, attrs):
    from graphc.ops.tensor_extra import parse_einsum
    terms, out = parse_einsum(attrs["equation"], [x.ndim for x in inputs])
    size = {}
    for t, x in zip(terms, inputs):
        for c, d in zip(t, x.shape):
            if size.get(c, 1) == 1:
                size[c] = d
    summed = sorted({c for t in terms for c in t} - set(out))
    res = np.empty(tuple(size[c] for c in out), np.float64)
    for oidx in _indices(res.shape):
        val = dict(zip(out, oidx))
        terms_sum = []
        for sidx in _indices(tuple(size[c] for c in summed)):
            val.update(zip(summed, sidx))
            p = 1.0
            for t, x in zip(terms, inputs):
                p *= x[tuple(0 if x.shape[k] == 1 else val[c] for k, c in enumerate(t))].item()
            terms_sum.append(p)
        # exact sum of finite terms; with ±inf or NaN among them, IEEE's answer
        res[oidx] = math.fsum(terms_sum) if all(math.isfinite(t) for t in terms_sum) else sum(terms_sum)
    return res.astype(inputs[0].dtype)


INDEPENDENT_TENSOR_EXTRA = {
    "identity": _identity,
    "tile": _tile,
    "min": _min,
    "argmin": _argmin,
    "instance_norm": _instance_norm,
    "einsum": _einsum,
}


# -- resize: ONNX's coordinate formulas written out per output item, no shared code with the op ---------

def _coord(j, n_in, n_out, scale, ctm):
    ow = scale * n_in
    if ctm == "align_corners":
        return 0.0 if ow == 1 else j * (n_in - 1) / (ow - 1)
    if ctm == "asymmetric":
        return j / scale
    if ctm == "pytorch_half_pixel":
        return -0.5 if ow == 1 else (j + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        return (n_in / 2) * (1 - n_out / ow) + (j + 0.5) / scale - 0.5
    if ctm == "tf_half_pixel_for_nn":
        return (j + 0.5) / scale
    return (j + 0.5) / scale - 0.5


def _taps(j, n_in, n_out, scale, attrs):
    """[(index, weight)] of output index j along one axis, or None when the axis is unchanged."""
    if n_out == n_in and math.isclose(scale, 1.0, rel_tol=1e-9):
        return None
    x = _coord(j, n_in, n_out, scale, attrs["coordinate_transformation_mode"])
    lo = math.floor(x)
    if x == lo:  # an exact coordinate: ONNX takes the pair (x - 1, x) with weights (0, 1)
        pair, ratio = (lo - 1, lo), 1.0
    else:
        pair, ratio = (lo, lo + 1), x - lo
    if attrs["mode"] == "linear":
        w = [1.0 - ratio, ratio]
    elif ratio == 1.0:
        w = [0.0, 1.0]
    else:
        nm = attrs["nearest_mode"]
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5, "floor": False, "ceil": True}[nm]
        w = [0.0, 1.0] if up else [1.0, 0.0]
    if attrs["exclude_outside"]:
        w = [v if 0 <= i < n_in else 0.0 for i, v in zip(pair, w)]
        s = w[0] + w[1] or 1.0
        w = [v / s for v in w]
    return [(min(max(i, 0), n_in - 1), v) for i, v in zip(pair, w) if v != 0]


def _axis_tables(x_shape, attrs):
    sizes, scales = attrs["sizes"], attrs["scales"]
    out_shape = tuple(d if n == -1 else n for d, n in zip(x_shape, sizes))
    tables = []
    for a, (n_in, n_out) in enumerate(zip(x_shape, out_shape)):
        if sizes[a] == -1 or n_out == 0:
            tables.append(None)
            continue
        scale = scales[a] if scales is not None else n_out / n_in
        t = [_taps(j, n_in, n_out, scale, attrs) for j in range(n_out)]
        tables.append(None if t[0] is None else t)
    return out_shape, tables


def _resize(inputs, attrs):
    x = inputs[0]
    out_shape, tables = _axis_tables(x.shape, attrs)
    out = np.zeros(out_shape, x.dtype)
    for oidx in _indices(out_shape):
        per_axis = [[(j, 1.0)] if t is None else t[j] for j, t in zip(oidx, tables)]
        if attrs["mode"] == "nearest":
            if all(per_axis):
                out[oidx] = x[tuple(p[0][0] for p in per_axis)]
            continue
        acc = 0.0
        for combo in itertools.product(*per_axis):
            w = 1.0
            for _, v in combo:
                w *= v
            acc += w * x[tuple(i for i, _ in combo)].item()
        out[oidx] = acc
    return out


def _resize_grad(inputs, attrs):
    dy, x = inputs
    _, tables = _axis_tables(x.shape, attrs)
    dx = np.zeros(x.shape, np.float64)
    for oidx in _indices(dy.shape):
        per_axis = [[(j, 1.0)] if t is None else t[j] for j, t in zip(oidx, tables)]
        for combo in itertools.product(*per_axis):
            w = 1.0
            for _, v in combo:
                w *= v
            idx = tuple(i for i, _ in combo)
            dx[idx] = dx[idx] + w * dy[oidx].item()
    return dx.astype(x.dtype)


INDEPENDENT_TENSOR_EXTRA.update({"resize": _resize, "resize_grad": _resize_grad})
