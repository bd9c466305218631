"""The feed-forward and convolutional layers of gc.nn, and the sequence-model building blocks
(Embedding, LayerNorm, activations)."""

import math
import weakref

import numpy as np

from graphc import init as initializers
from graphc import ops
from graphc.errors import GraphError, ShapeError
from graphc.graph import Tensor, get_default_graph
from graphc.nn.module import (
    Module,
    Sequential,
    _check_dim,
    _check_rank,
    _constant,
    _name_seed,
    _pair,
    _param_dtype,
    _positive_int,
    _require,
    _uniform,
)


class Linear(Module):
    """y = x Wᵀ + b over the last axis, ``weight`` of shape (out_features, in_features) as
    in ``torch.nn.Linear``; ``bias`` (out_features,) unless ``bias=False``."""

    def __init__(self, in_features, out_features, bias=True, name=None):
        super().__init__(name)
        self.in_features = _positive_int("Linear", "in_features", in_features)
        self.out_features = _positive_int("Linear", "out_features", out_features)
        self.use_bias = bool(bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.use_bias}"

    def forward(self, x):
        layer = f"Linear({self.extra_repr()})"
        if not isinstance(x, Tensor) or len(x.shape) < 1:
            raise ShapeError(f"{layer} expects a Tensor of rank >= 1, got {getattr(x, 'shape', type(x).__name__)}")
        _check_dim(layer, x, -1, self.in_features, "a last dim of")
        bound = 1.0 / math.sqrt(self.in_features)
        dt = _param_dtype(x)
        w = self.variable("weight", (self.out_features, self.in_features), _uniform(bound), dtype=dt)
        y = ops.matmul(x, w, transpose_b=True)
        if self.use_bias:
            y = ops.add(y, self.variable("bias", (self.out_features,), _uniform(bound), dtype=dt))
        return y


_PADDING_MODES = ("zeros", "reflect", "replicate")


def _conv_repr(layer, after_padding):
    """torch's repr of a Conv2d / ConvTranspose2d: the arguments that differ from the defaults."""
    s = (f"{layer.in_channels}, {layer.out_channels}, kernel_size={layer.kernel_size}, stride={layer.stride}, "
         f"padding={layer.padding!r}{after_padding}")
    if layer.dilation != (1, 1):
        s += f", dilation={layer.dilation}"
    if layer.groups != 1:
        s += f", groups={layer.groups}"
    if not layer.use_bias:
        s += ", bias=False"
    return s


class Conv2d(Module):
    """2-D convolution of NCHW input as ``torch.nn.Conv2d``: ``weight`` of shape
    (out_channels, in_channels / groups, kh, kw), ``bias`` (out_channels,) unless
    ``bias=False``.  ``padding``: int, pair, ``"same"`` or ``"valid"``; ``padding_mode``
    ``"zeros"`` (in the conv), ``"reflect"`` or ``"replicate"`` (a ``gc.pad`` before it)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", name=None):
        super().__init__(name)
        self.in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = _pair("Conv2d", "kernel_size", kernel_size)
        self.stride = _pair("Conv2d", "stride", stride)
        self.dilation = _pair("Conv2d", "dilation", dilation)
        self.groups = _positive_int("Conv2d", "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise GraphError(f"Conv2d: in_channels={in_channels} and out_channels={out_channels} must both be "
                             f"divisible by groups={groups}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise GraphError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise GraphError(f"Conv2d: padding='same' needs stride 1 (as in PyTorch), got stride={stride!r}")
            self.padding = padding if padding == "same" else (0, 0)
        else:
            self.padding = _pair("Conv2d", "padding", padding)
            if min(self.padding) < 0:
                raise GraphError(f"Conv2d: padding must be >= 0, got {padding!r}")
        if padding_mode not in _PADDING_MODES:
            raise GraphError(f"Conv2d: padding_mode must be one of {', '.join(map(repr, _PADDING_MODES))}, "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.use_bias = bool(bias)

    def extra_repr(self):
        s = _conv_repr(self, "")
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s

    def _explicit_pads(self):
        """(before, after) per spatial axis; "same" puts the odd extra on the end, as PyTorch."""
        if self.padding == "same":
            out = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out
        return [(p, p) for p in self.padding]

    def forward(self, x):
        layer = f"Conv2d({self.extra_repr()})"
        _check_rank(layer, x, 4, "NCHW input")
        _check_dim(layer, x, 1, self.in_channels, "input channels")
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        dt = _param_dtype(x)
        w = self.variable("weight", (self.out_channels, self.in_channels // self.groups, kh, kw), _uniform(bound),
                          dtype=dt)
        b = self.variable("bias", (self.out_channels,), _uniform(bound), dtype=dt) if self.use_bias else None
        conv2d = _require("conv2d")
        padding = self.padding
        if self.padding_mode != "zeros":
            pads = self._explicit_pads()
            if any(p for pair in pads for p in pair):
                x = ops.pad(x, [(0, 0), (0, 0)] + pads, mode=self.padding_mode)
            padding = 0
        return conv2d(x, w, bias=b, stride=self.stride, padding=padding, dilation=self.dilation,
                      groups=self.groups)


class BatchNorm2d(Module):
    """Batch normalisation over the channels of NCHW input, as ``torch.nn.BatchNorm2d``:
    ``weight`` (γ, ones) and ``bias`` (β, zeros) when ``affine``; ``running_mean`` (zeros) and
    ``running_var`` (ones) as non-trainable variables when ``track_running_stats``.

    In a training plan the batch statistics normalise and the running statistics move by
    ``momentum`` (PyTorch's rule, unbiased variance); an inference plan uses the running
    statistics.  With ``track_running_stats=False`` both plans use batch statistics.
    ``momentum=None`` is PyTorch's cumulative average: the training plan then counts the steps in
    the int64 variable ``num_batches_tracked`` (created by the compile).  With a float momentum
    the counter is not kept (it changes nothing); :meth:`graphc.Session.load_state_dict` skips
    PyTorch's ``num_batches_tracked`` then.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, name=None):
        super().__init__(name)
        self.num_features = _positive_int("BatchNorm2d", "num_features", num_features)
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise GraphError(f"BatchNorm2d: eps must be > 0, got {eps!r}")
        if momentum is not None and not (isinstance(momentum, (int, float)) and not isinstance(momentum, bool)
                                         and 0.0 <= momentum <= 1.0):
            raise GraphError(f"BatchNorm2d: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def forward(self, x):
        layer = f"BatchNorm2d({self.extra_repr()})"
        _check_rank(layer, x, 4, "NCHW input")
        _check_dim(layer, x, 1, self.num_features, "channels")
        c = self.num_features
        dt = _param_dtype(x)
        weight = self.variable("weight", (c,), _constant(1.0), dtype=dt) if self.affine else None
        bias = self.variable("bias", (c,), _constant(0.0), dtype=dt) if self.affine else None
        if not self.track_running_stats:
            return self._batch_stats(x, weight, bias)
        mean = self.variable("running_mean", (c,), _constant(0.0), trainable=False, dtype=dt)
        var = self.variable("running_var", (c,), _constant(1.0), trainable=False, dtype=dt)
        return _require("batch_norm")(x, mean, var, weight=weight, bias=bias, momentum=self.momentum, eps=self.eps)

    def _batch_stats(self, x, weight, bias):
        """Normalisation by the batch's own statistics, from elementwise ops and means."""
        mean = ops.mean(x, axis=(0, 2, 3), keepdims=True)
        centred = ops.sub(x, mean)
        var = ops.mean(ops.mul(centred, centred), axis=(0, 2, 3), keepdims=True)
        y = ops.div(centred, ops.sqrt(ops.add(var, ops.constant(self.eps, dtype=x.dtype))))
        if weight is not None:
            y = ops.add(ops.mul(y, ops.reshape(weight, (1, -1, 1, 1))), ops.reshape(bias, (1, -1, 1, 1)))
        return y


class Dropout(Module):
    """Zeroes each element with probability ``p`` and scales the rest by 1/(1-p) in a training
    plan; the identity in an inference plan (``torch.nn.Dropout``).  The mask's seed comes from
    the layer's scope name, the call's number (a layer applied twice draws two masks) and
    :func:`manual_seed`, so it is the same on every run."""

    def __init__(self, p=0.5, inplace=False, name=None):
        super().__init__(name)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise GraphError(f"Dropout: p must be a drop probability in [0, 1), got {p!r}")
        self.p = float(p)

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        graph = x.graph if isinstance(x, Tensor) else get_default_graph()
        # A layer applied k times draws k independent masks: the k-th call's seed also hashes k.
        calls = self.__dict__.setdefault("_calls", weakref.WeakKeyDictionary())
        k = calls[graph] = calls.get(graph, 0) + 1
        seed = _name_seed((graph.scope or "dropout") + ("" if k == 1 else f"#{k}"))
        # one int64-safe seed: the global seed mixed with the scope's hash
        seed = (seed[1] ^ (seed[0] * 0x9E3779B97F4A7C15)) & 0x7FFFFFFFFFFFFFFF
        return _require("dropout")(x, p=self.p, seed=seed)


class ReLU(Module):
    """y = max(x, 0)."""

    def __init__(self, inplace=False, name=None):
        super().__init__(name)

    def forward(self, x):
        return ops.relu(x)


class MaxPool2d(Module):
    """``torch.nn.MaxPool2d`` over NCHW input (dilation 1, no indices, floor mode)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False,
                 name=None):
        super().__init__(name)
        if _pair("MaxPool2d", "dilation", dilation) != (1, 1):
            raise GraphError(f"MaxPool2d: dilation={dilation!r} is not supported (only 1)")
        if return_indices:
            raise GraphError("MaxPool2d: return_indices=True is not supported")
        if ceil_mode:
            raise GraphError("MaxPool2d: ceil_mode=True is not supported")
        self.kernel_size = _pair("MaxPool2d", "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _pair("MaxPool2d", "stride", stride)
        self.padding = _pair("MaxPool2d", "padding", padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        return ops.max_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding)


class AvgPool2d(Module):
    """``torch.nn.AvgPool2d`` over NCHW input (floor mode, no divisor override)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, name=None):
        super().__init__(name)
        if ceil_mode:
            raise GraphError("AvgPool2d: ceil_mode=True is not supported")
        if divisor_override is not None:
            raise GraphError("AvgPool2d: divisor_override is not supported")
        self.kernel_size = _pair("AvgPool2d", "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _pair("AvgPool2d", "stride", stride)
        self.padding = _pair("AvgPool2d", "padding", padding)
        self.count_include_pad = bool(count_include_pad)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"count_include_pad={self.count_include_pad}")

    def forward(self, x):
        return ops.avg_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding,
                              count_include_pad=self.count_include_pad)


class AdaptiveAvgPool2d(Module):
    """Global average pooling, ``torch.nn.AdaptiveAvgPool2d(1)``: NCHW → NC11 (output size 1 only)."""

    def __init__(self, output_size=1, name=None):
        super().__init__(name)
        if _pair("AdaptiveAvgPool2d", "output_size", output_size) != (1, 1):
            raise GraphError(f"AdaptiveAvgPool2d: only output_size 1 (global average pooling) is supported, "
                             f"got {output_size!r}")

    def extra_repr(self):
        return "output_size=(1, 1)"

    def forward(self, x):
        _check_rank("AdaptiveAvgPool2d", x, 4, "NCHW input")
        return ops.mean(x, axis=(2, 3), keepdims=True)


class Flatten(Module):
    """``torch.nn.Flatten(start_dim=1, end_dim=-1)``: the axes start_dim..end_dim merged."""

    def __init__(self, start_dim=1, end_dim=-1, name=None):
        super().__init__(name)
        self.start_dim, self.end_dim = start_dim, end_dim

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        return ops.flatten(x, self.start_dim, self.end_dim)


class ResidualBlock(Module):
    """torchvision's ``BasicBlock``: conv3×3(stride)-bn-relu-conv3×3-bn, plus the input (or,
    when the stride or the channel count changes, a 1×1 conv(stride)-bn of it), then relu.
    Children ``conv1``, ``bn1``, ``conv2``, ``bn2`` and ``downsample`` (``downsample.0`` the
    conv, ``downsample.1`` the bn), so torchvision ResNet keys such as
    ``layer2.0.downsample.1.running_var`` load unchanged."""

    def __init__(self, in_channels, out_channels, stride=1, name=None):
        super().__init__(name)
        self.in_channels = _positive_int("ResidualBlock", "in_channels", in_channels)
        self.out_channels = _positive_int("ResidualBlock", "out_channels", out_channels)
        self.stride = _positive_int("ResidualBlock", "stride", stride)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                         BatchNorm2d(out_channels))
        else:
            self.downsample = None

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"

    def forward(self, x):
        out = ops.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return ops.relu(ops.add(out, identity))


# -- layers for sequence models ------------------------------------------------------------------

class Embedding(Module):
    """A lookup table, ``torch.nn.Embedding(num_embeddings, embedding_dim)``: int32/int64 ids of
    any shape → rows of ``weight`` (num_embeddings, embedding_dim), initialised N(0, 1); the
    result has shape ``ids.shape + (embedding_dim,)``.  An id outside [0, num_embeddings) is a
    :class:`graphc.errors.RuntimeExecutionError` when the plan runs.  ``padding_idx`` (negative:
    counted from the end) starts that row at zeros and gives it no gradient, as PyTorch (the ids
    equal to it take their rows through a ``stop_gradient``).  ``max_norm``,
    ``scale_grad_by_freq``, ``sparse`` and ``_weight`` are refused (a GraphError): graphc has no
    renormalisation or sparse gradients."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, name=None):
        super().__init__(name)
        self.num_embeddings = _positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) or \
                    not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise GraphError(f"Embedding: padding_idx must be an int in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}) (num_embeddings={self.num_embeddings}), got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        refused = [("max_norm", max_norm, None),
                   ("scale_grad_by_freq", scale_grad_by_freq, False), ("sparse", sparse, False),
                   ("_weight", _weight, None), ("_freeze", _freeze, False)]
        for what, value, default in refused:
            if (value is not None) if default is None else bool(value):
                hint = "; load a table with Session.load_state_dict instead" if what == "_weight" else ""
                raise GraphError(f"Embedding: {what}={value!r} is not supported (only the default {default!r}){hint}")
        if norm_type != 2.0:
            raise GraphError(f"Embedding: norm_type={norm_type!r} is not supported (it only matters with max_norm)")

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"

    def _init(self, seed):
        normal = initializers.normal(0.0, 1.0, seed=seed)

        def init(shape, dtype):
            w = normal(shape, dtype)
            if self.padding_idx is not None:
                w[self.padding_idx] = 0
            return w
        return init

    def forward(self, ids):
        layer = f"Embedding({self.extra_repr()})"
        if not isinstance(ids, Tensor):
            raise GraphError(f"{layer} expects a gc.Tensor of int32/int64 ids, got {type(ids).__name__}")
        if ids.dtype not in ("int32", "int64"):
            raise GraphError(f"{layer} expects int32 or int64 ids, got dtype {ids.dtype}")
        w = self.variable("weight", (self.num_embeddings, self.embedding_dim), self._init)
        y = _require("embedding")(ids, w)
        if self.padding_idx is not None:
            # the padding row gets no gradient: its uses read it through a stop_gradient
            pad = ops.expand_dims(ops.equal(ids, ops.constant(self.padding_idx, dtype=ids.dtype, graph=ids.graph)), -1)
            y = ops.where(pad, ops.stop_gradient(y), y)
        return y


def _normalized_shape(v):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        t = (int(v),)
    else:
        try:
            t = tuple(v)
        except TypeError:
            t = None
        if t is not None and any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in t):
            t = None
    if not t or any(e < 1 for e in t):
        raise GraphError(f"LayerNorm: normalized_shape must be an int >= 1 or a non-empty tuple of them, got {v!r}")
    return tuple(int(e) for e in t)


class LayerNorm(Module):
    """``torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)``:
    normalises over the trailing ``len(normalized_shape)`` axes, which must equal
    ``normalized_shape``; ``weight`` (ones) and ``bias`` (zeros) of that shape when
    ``elementwise_affine`` (``bias=False``: the weight only).  One ``gc.layer_norm`` node."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, name=None):
        super().__init__(name)
        self.normalized_shape = _normalized_shape(normalized_shape)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 or not math.isfinite(eps):
            raise GraphError(f"LayerNorm: eps must be a finite number > 0, got {eps!r}")
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.use_bias = bool(bias)

    def extra_repr(self):
        s = f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        return s if self.use_bias else s + ", bias=False"

    def forward(self, x):
        layer = f"LayerNorm({self.extra_repr()})"
        n = len(self.normalized_shape)
        if not isinstance(x, Tensor):
            raise GraphError(f"{layer} expects a gc.Tensor, got {type(x).__name__}")
        if len(x.shape) < n:
            raise ShapeError(f"{layer} expects an input of rank >= {n}, got shape {x.shape}")
        tail = tuple(x.shape[len(x.shape) - n:])
        if any(isinstance(d, int) and d != e for d, e in zip(tail, self.normalized_shape)):
            raise ShapeError(f"{layer} expects the last {n} dims to be {self.normalized_shape}, got input of "
                             f"shape {x.shape}")
        dt = _param_dtype(x)
        weight = bias = None
        if self.elementwise_affine:
            weight = self.variable("weight", self.normalized_shape, _constant(1.0), dtype=dt)
            if self.use_bias:
                bias = self.variable("bias", self.normalized_shape, _constant(0.0), dtype=dt)
        if bias is None:
            # the op fills a missing weight/bias only for a static tail; the tail is normalized_shape here
            bias = ops.constant(np.zeros(self.normalized_shape, dt), graph=x.graph)
        if weight is None:
            weight = ops.constant(np.ones(self.normalized_shape, dt), graph=x.graph)
        return _require("layer_norm")(x, axis=-n, weight=weight, bias=bias, eps=self.eps)


class GELU(Module):
    """``torch.nn.GELU(approximate="none")``: x·Φ(x) (erf form), or the tanh form with
    ``approximate="tanh"``."""

    def __init__(self, approximate="none", name=None):
        super().__init__(name)
        if approximate not in ("none", "tanh"):
            raise GraphError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def extra_repr(self):
        return f"approximate={self.approximate!r}"

    def forward(self, x):
        return _require("gelu")(x, approximate=self.approximate)


class SiLU(Module):
    """``torch.nn.SiLU()``: x·sigmoid(x)."""

    def __init__(self, inplace=False, name=None):
        super().__init__(name)

    def forward(self, x):
        return _require("silu")(x)


class Softplus(Module):
    """``torch.nn.Softplus(beta=1, threshold=20)``: log(1 + e^(beta·x)) / beta, and x where
    beta·x > threshold."""

    def __init__(self, beta=1.0, threshold=20.0, name=None):
        super().__init__(name)
        for what, v in (("beta", beta), ("threshold", threshold)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or math.isnan(v):
                raise GraphError(f"Softplus: {what} must be a number, got {v!r}")
        if beta == 0 or not math.isfinite(beta):
            raise GraphError(f"Softplus: beta must be finite and nonzero, got {beta!r}")
        self.beta, self.threshold = float(beta), float(threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"

    def forward(self, x):
        return _require("softplus")(x, beta=self.beta, threshold=self.threshold)


class ConvTranspose2d(Module):
    """Transposed 2-D convolution of NCHW input as ``torch.nn.ConvTranspose2d``: ``weight`` of
    shape (in_channels, out_channels / groups, kh, kw), ``bias`` (out_channels,) unless
    ``bias=False``.  Output rows (H - 1)·stride - 2·padding + dilation·(k - 1) + output_padding + 1.
    Initialised as PyTorch: U(-b, b) with b = 1/√fan_in, fan_in = out_channels / groups · kh · kw
    (the weight's dim 1 times the kernel, as torch computes it)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", name=None):
        super().__init__(name)
        self.in_channels = _positive_int("ConvTranspose2d", "in_channels", in_channels)
        self.out_channels = _positive_int("ConvTranspose2d", "out_channels", out_channels)
        self.kernel_size = _pair("ConvTranspose2d", "kernel_size", kernel_size)
        self.stride = _pair("ConvTranspose2d", "stride", stride)
        self.padding = _pair("ConvTranspose2d", "padding", padding)
        self.output_padding = _pair("ConvTranspose2d", "output_padding", output_padding)
        self.dilation = _pair("ConvTranspose2d", "dilation", dilation)
        self.groups = _positive_int("ConvTranspose2d", "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise GraphError(f"ConvTranspose2d: in_channels={in_channels} and out_channels={out_channels} must both "
                             f"be divisible by groups={groups}")
        if min(self.padding) < 0 or min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1:
            raise GraphError(f"ConvTranspose2d: kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
                             f"kernel_size={kernel_size!r}, stride={stride!r}, padding={padding!r}, "
                             f"dilation={dilation!r}")
        for p, s, d in zip(self.output_padding, self.stride, self.dilation):
            if p < 0 or not (p < s or p < d):
                raise GraphError(f"ConvTranspose2d: output_padding={output_padding!r} must be >= 0 and smaller than "
                                 f"the stride or the dilation (stride={stride!r}, dilation={dilation!r})")
        if padding_mode != "zeros":
            raise GraphError(f"ConvTranspose2d: only padding_mode='zeros' is supported (as PyTorch), "
                             f"got {padding_mode!r}")
        self.use_bias = bool(bias)

    def extra_repr(self):
        return _conv_repr(self, f", output_padding={self.output_padding}" if self.output_padding != (0, 0) else "")

    def forward(self, x):
        layer = f"ConvTranspose2d({self.extra_repr()})"
        _check_rank(layer, x, 4, "NCHW input")
        _check_dim(layer, x, 1, self.in_channels, "input channels")
        kh, kw = self.kernel_size
        fan_in = self.out_channels // self.groups * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        dt = _param_dtype(x)
        w = self.variable("weight", (self.in_channels, self.out_channels // self.groups, kh, kw), _uniform(bound),
                          dtype=dt)
        b = self.variable("bias", (self.out_channels,), _uniform(bound), dtype=dt) if self.use_bias else None
        return _require("conv_transpose2d")(x, w, bias=b, stride=self.stride, padding=self.padding,
                                            output_padding=self.output_padding, groups=self.groups,
                                            dilation=self.dilation)


class Upsample(Module):
    """``torch.nn.Upsample(scale_factor=..., mode="nearest")`` over NCHW input, integer factors
    (an int or an (h, w) pair): each pixel becomes an s_h x s_w block."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", name=None):
        super().__init__(name)
        if size is not None:
            raise GraphError("Upsample: size= is not supported; give an integer scale_factor")
        if scale_factor is None:
            raise GraphError("Upsample: scale_factor is required (an int or a pair of ints)")
        if mode != "nearest":
            raise GraphError(f"Upsample: mode={mode!r} is not supported (only 'nearest')")
        self.scale_factor, self.mode = scale_factor, mode

    def extra_repr(self):
        return f"scale_factor={self.scale_factor!r}, mode={self.mode!r}"

    def forward(self, x):
        return _require("upsample")(x, scale_factor=self.scale_factor, mode=self.mode)


class LeakyReLU(Module):
    """``torch.nn.LeakyReLU(negative_slope=0.01)``: x where x > 0, else x · negative_slope."""

    def __init__(self, negative_slope=0.01, inplace=False, name=None):
        super().__init__(name)
        v = negative_slope
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise GraphError(f"LeakyReLU: negative_slope must be a finite number, got {v!r}")
        self.negative_slope = float(v)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def forward(self, x):
        return _require("leaky_relu")(x, negative_slope=self.negative_slope)
