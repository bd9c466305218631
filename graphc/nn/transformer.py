"""Attention layers of gc.nn: :class:`MultiheadAttention`, :class:`TransformerEncoderLayer` and
:class:`TransformerEncoder`, with PyTorch's constructor arguments, parameter names and default
initialisation, so ``Session.load_state_dict(torch_model.state_dict())`` loads a torch model.

All attention goes through :func:`_attention`, which calls the fused
``gc.scaled_dot_product_attention`` op where this build has it, and otherwise builds the
composite softmax(q kᵀ · scale + mask) v from matmul, where/add and softmax."""

import copy
import math
import weakref

import numpy as np

from graphc import ops
from graphc.errors import GraphError, ShapeError
from graphc.graph import Tensor
from graphc.nn.layers import GELU, Dropout, LayerNorm, Linear, ReLU
from graphc.nn.module import Module, Sequential, _constant, _param_dtype, _positive_int, _uniform


def _causal_keep(graph, length, source_length):
    """The (L, S) bool mask of PyTorch's ``is_causal``: position i sees keys j <= i."""
    if not isinstance(length, int) or not isinstance(source_length, int):
        raise ShapeError(f"a causal mask needs static sequence lengths, got L={length}, S={source_length}")
    return ops.constant(np.tril(np.ones((length, source_length), dtype=bool)), graph=graph)


def _and(a, b):
    return ops.where(a, b, ops.constant(False, dtype="bool", graph=a.graph))


def _as_additive(keep_or_add, dtype):
    """A mask as the float added to the scores: a bool keep-mask becomes 0 / -inf."""
    if keep_or_add.dtype == "bool":
        g = keep_or_add.graph
        return ops.where(keep_or_add, ops.constant(0.0, dtype=dtype, graph=g),
                         ops.constant(-np.inf, dtype=dtype, graph=g))
    return keep_or_add


def _merge(a, b, dtype):
    """Two masks in sdpa's convention (bool: True = keep; float: added) as one."""
    if a is None:
        return b
    if b is None:
        return a
    if a.dtype == "bool" and b.dtype == "bool":
        return _and(a, b)
    return ops.add(_as_additive(a, dtype), _as_additive(b, dtype))


def _attention(q, k, v, mask, causal, scale, dropout=None, need_weights=False):
    """softmax(q kᵀ · scale + mask) v over q (..., L, E), k (..., S, E), v (..., S, Ev), with
    ``torch.nn.functional.scaled_dot_product_attention``'s conventions: a bool ``mask`` keeps
    the True entries, a float one is added; ``causal`` keeps j <= i.  Returns (out, weights),
    weights None unless ``need_weights``.

    Uses the fused ``gc.scaled_dot_product_attention`` (no (L, S) matrix stored) when neither
    the weights nor attention dropout are asked for and the mask is None or bool (the fused op
    has no dropout, returns no weights and takes bool masks); otherwise the composite below.  A causal
    mask together with an explicit one is folded into the explicit mask first (PyTorch's sdpa
    refuses both at once)."""
    if causal and mask is not None:
        mask = _merge(_causal_keep(q.graph, q.shape[-2], k.shape[-2]), mask, q.dtype)
        causal = False
    if dropout is None and not need_weights and (mask is None or mask.dtype == "bool"):
        return ops.scaled_dot_product_attention(q, k, v, mask=mask, causal=causal, scale=scale), None
    if causal:
        length, source = q.shape[-2], k.shape[-2]
        _causal_keep(q.graph, length, source)       # the static-length check
        mask = ops.constant(np.triu(np.full((length, source), -np.inf, dtype=q.dtype), 1), graph=q.graph)
    # scaling q (L·E numbers) is cheaper than scaling the scores (L·S), and is what PyTorch does
    q = ops.mul(q, ops.constant(scale, dtype=q.dtype, graph=q.graph))
    scores = ops.matmul(q, k, transpose_b=True)
    if mask is not None:
        # always an added 0 / -inf: the scores' gradient passes an add unchanged (a where would
        # need a select in the backward too), and the add can fuse into the matmul
        scores = ops.add(scores, _as_additive(mask, scores.dtype))
    weights = ops.softmax(scores, axis=-1)
    if dropout is not None:
        weights = dropout(weights)
    return ops.matmul(weights, v), (weights if need_weights else None)


def _project(x, w, b=None):
    """x Wᵀ + b over the last axis, with the leading axes merged into one for the matmul: the
    weight's gradient is then one GEMM over all N·L rows, not N batched ones and a sum."""
    lead = tuple(x.shape[:-1])
    flat = len(lead) > 1 and sum(not isinstance(d, int) for d in lead) <= 1
    y = ops.matmul(ops.reshape(x, (-1, x.shape[-1])) if flat else x, w, transpose_b=True)
    if b is not None:
        y = ops.add(y, b)       # next to its matmul, where the bias add fuses into the GEMM
    return ops.reshape(y, tuple(_dim(d) for d in lead) + (w.shape[0],)) if flat else y


class _Linear(Linear):
    """``torch.nn.Linear`` (same variables and initialisation) projecting through
    :func:`_project`."""

    def _bias_init(self):
        return _uniform(1.0 / math.sqrt(self.in_features))

    def forward(self, x):
        layer = f"Linear({self.extra_repr()})"
        if not isinstance(x, Tensor) or len(x.shape) < 1:
            raise ShapeError(f"{layer} expects a Tensor of rank >= 1, got {getattr(x, 'shape', type(x).__name__)}")
        if isinstance(x.shape[-1], int) and x.shape[-1] != self.in_features:
            raise ShapeError(f"{layer} expects a last dim of {self.in_features}, got input of shape {x.shape}")
        dt = _param_dtype(x)
        w = self.variable("weight", (self.out_features, self.in_features),
                          _uniform(1.0 / math.sqrt(self.in_features)), dtype=dt)
        b = self.variable("bias", (self.out_features,), self._bias_init(), dtype=dt) if self.use_bias else None
        return _project(x, w, b)


class _OutProj(_Linear):
    """PyTorch's ``out_proj`` of MultiheadAttention: a Linear whose bias starts at zero."""

    def _bias_init(self):
        return _constant(0.0)


def _dim(d):
    """A dim for reshape: a static size, or -1 for one bound at compile time."""
    return d if isinstance(d, int) else -1


def _drop(layer, x):
    """``layer(x)``, or x itself when p is 0 (no dropout node at all)."""
    return x if layer.p == 0 else layer(x)


def _xavier(fan_in, fan_out):
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)))


def _check_mask(layer, what, m, allowed_shapes):
    if not isinstance(m, Tensor):
        raise GraphError(f"{layer}: {what} must be a gc.Tensor or None, got {type(m).__name__}")
    if m.dtype != "bool" and m.dtype not in ("float32", "float64"):
        raise GraphError(f"{layer}: {what} must be bool or float, got dtype {m.dtype}")
    shape = tuple(m.shape)
    for want in allowed_shapes:
        if len(want) == len(shape) and all(not isinstance(a, int) or not isinstance(b, int) or a == b
                                           for a, b in zip(shape, want)):
            return
    raise ShapeError(f"{layer}: {what} must have shape " + " or ".join(str(s) for s in allowed_shapes) +
                     f", got {shape}")


class MultiheadAttention(Module):
    """``torch.nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True,
    add_bias_kv=False, add_zero_attn=False, kdim=None, vdim=None, batch_first=False)``.

    Parameters as PyTorch's: ``in_proj_weight`` (3E, E) (xavier uniform) when kdim = vdim = E,
    else ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim);
    ``in_proj_bias`` (3E, zeros) and ``out_proj.weight`` (E, E), ``out_proj.bias`` (E, zeros).
    ``add_bias_kv`` and ``add_zero_attn`` are refused.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights)`` as
    PyTorch: inputs (L, N, E) or, with ``batch_first``, (N, L, E), or unbatched (L, E).
    Masks follow PyTorch's MultiheadAttention (the opposite of sdpa's): a bool ``attn_mask``
    (L, S) or (N·num_heads, L, S) and a bool ``key_padding_mask`` (N, S) are True where
    attention is NOT allowed; float masks are added to the scores.  ``is_causal=True`` applies
    the causal mask (PyTorch treats it as a hint that attn_mask is causal and needs the mask as
    well; here the mask may be left out).

    ``need_weights=True`` (PyTorch's default) returns the (N, L, S) weights averaged over heads
    (per head, (N, num_heads, L, S), with ``average_attn_weights=False``); it builds the
    composite attention, which materialises the (L, S) weights.  Pass ``need_weights=False``
    (as TransformerEncoderLayer does) to let the fused attention op run.  Attention dropout
    (``dropout > 0``) acts in a training plan only, on the weights, as PyTorch.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None, name=None):
        super().__init__(name)
        self.embed_dim = _positive_int("MultiheadAttention", "embed_dim", embed_dim)
        self.num_heads = _positive_int("MultiheadAttention", "num_heads", num_heads)
        if embed_dim % num_heads:
            raise GraphError(f"MultiheadAttention: embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise GraphError(f"MultiheadAttention: dropout must be a probability in [0, 1), got {dropout!r}")
        if add_bias_kv or add_zero_attn:
            raise GraphError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        if device not in (None, "cpu") or dtype not in (None, "float32", np.float32):
            raise GraphError(f"MultiheadAttention: device={device!r} / dtype={dtype!r} are not supported "
                             f"(a plan chooses its device; variables follow the input's float dtype)")
        self.kdim = embed_dim if kdim is None else _positive_int("MultiheadAttention", "kdim", kdim)
        self.vdim = embed_dim if vdim is None else _positive_int("MultiheadAttention", "vdim", vdim)
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.use_bias = bool(bias)
        self.out_proj = _OutProj(embed_dim, embed_dim, bias=bias)
        # not a child: it owns no variables, and PyTorch's `dropout` attribute is the float p
        object.__setattr__(self, "_attn_dropout", Dropout(self.dropout) if self.dropout > 0 else None)

    def extra_repr(self):
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if not self._qkv_same_embed_dim:
            s += f", kdim={self.kdim}, vdim={self.vdim}"
        return s + (", batch_first=True" if self.batch_first else "")

    def _split_heads(self, t, batched_first):
        """(N, L, E) [batched_first] or (L, N, E) → (N, H, L, D), one transpose."""
        t = ops.reshape(t, (_dim(t.shape[0]), _dim(t.shape[1]), self.num_heads, self.head_dim))
        return ops.transpose(t, (0, 2, 1, 3) if batched_first else (1, 2, 0, 3))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        layer = f"MultiheadAttention({self.extra_repr()})"
        for what, t, e in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if not isinstance(t, Tensor):
                raise GraphError(f"{layer}: {what} must be a gc.Tensor, got {type(t).__name__}")
            if len(t.shape) not in (2, 3):
                raise ShapeError(f"{layer}: {what} must be (L, N, E), (N, L, E) with batch_first, or unbatched "
                                 f"(L, E), got shape {t.shape}")
            if isinstance(t.shape[-1], int) and t.shape[-1] != e:
                raise ShapeError(f"{layer}: {what} must have a last dim of {e}, got shape {t.shape}")
        if not len(query.shape) == len(key.shape) == len(value.shape):
            raise ShapeError(f"{layer}: query, key and value must all be batched or all unbatched, got shapes "
                             f"{query.shape}, {key.shape}, {value.shape}")
        unbatched = len(query.shape) == 2
        self_attention = query is key and key is value
        if unbatched:       # a batch of one, in the batch-first layout
            query, key, value = (ops.expand_dims(t, 0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = ops.expand_dims(key_padding_mask, 0)
            batch_first = True
        else:
            batch_first = self.batch_first
        seq_axis = 1 if batch_first else 0
        n = query.shape[1 - seq_axis]
        length, source = query.shape[seq_axis], key.shape[seq_axis]
        if key.shape[seq_axis] != value.shape[seq_axis] and all(
                isinstance(d, int) for d in (key.shape[seq_axis], value.shape[seq_axis])):
            raise ShapeError(f"{layer}: key and value must have the same sequence length, got shapes "
                             f"{key.shape} and {value.shape}")
        e, h = self.embed_dim, self.num_heads
        dt = _param_dtype(query)

        bias = self.variable("in_proj_bias", (3 * e,), _constant(0.0), dtype=dt) if self.use_bias else None
        if self._qkv_same_embed_dim:
            w = self.variable("in_proj_weight", (3 * e, e), _xavier(e, 3 * e), dtype=dt)
            if self_attention:
                q, k, v = ops.split(_project(query, w, bias), 3, axis=-1)
                projections = None
            else:
                projections = ops.split(w, 3, axis=0)
        else:
            projections = [self.variable(f"{c}_proj_weight", (e, d), _xavier(d, e), dtype=dt)
                           for c, d in (("q", e), ("k", self.kdim), ("v", self.vdim))]
        if projections is not None:
            biases = ops.split(bias, 3, axis=0) if bias is not None else (None,) * 3
            q, k, v = (_project(t, pw, b) for t, pw, b in zip((query, key, value), projections, biases))
        q, k, v = (self._split_heads(t, batch_first) for t in (q, k, v))

        mask = None         # in sdpa's convention: bool True = keep, float added
        if attn_mask is not None:
            _check_mask(layer, "attn_mask", attn_mask, [(length, source), (None if not isinstance(n, int) else n * h,
                                                                          length, source)])
            if len(attn_mask.shape) == 3:
                attn_mask = ops.reshape(attn_mask, (-1, h, length, source))
            mask = ops.logical_not(attn_mask) if attn_mask.dtype == "bool" else attn_mask
        if key_padding_mask is not None:
            _check_mask(layer, "key_padding_mask", key_padding_mask, [(n, source)])
            kpm = ops.reshape(key_padding_mask, (-1, 1, 1, source))
            kpm = ops.logical_not(kpm) if kpm.dtype == "bool" else kpm
            mask = _merge(mask, kpm, q.dtype)
        if mask is not None and mask.dtype != "bool" and mask.dtype != q.dtype:
            raise GraphError(f"{layer}: a float mask must have the query's dtype {q.dtype}, got {mask.dtype}")
        out, weights = _attention(q, k, v, mask, bool(is_causal), 1.0 / math.sqrt(self.head_dim),
                                  dropout=self._attn_dropout, need_weights=bool(need_weights))
        # (N, H, L, D) → (N, L, E) or (L, N, E), one transpose
        out = ops.transpose(out, (0, 2, 1, 3) if batch_first else (2, 0, 1, 3))
        out = ops.reshape(out, (_dim(out.shape[0]), _dim(out.shape[1]), e))
        out = self.out_proj(out)
        if weights is not None and average_attn_weights:
            weights = ops.mean(weights, axis=1)
        if unbatched:
            out = ops.squeeze(out, 0)
            if weights is not None:
                weights = ops.squeeze(weights, 0)
        return out, weights


_ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


class TransformerEncoderLayer(Module):
    """``torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True)``:
    self-attention and a feed-forward block (linear1 → activation → dropout → linear2), each
    with a residual connection and a LayerNorm after it (``norm_first=False``, post-norm) or
    before it (``norm_first=True``, pre-norm).  Children ``self_attn``, ``linear1``,
    ``dropout``, ``linear2``, ``norm1``, ``norm2``, ``dropout1``, ``dropout2`` as PyTorch's, so
    its state-dict keys load unchanged.  ``activation``: ``"relu"``, ``"gelu"`` or a callable
    (a gc.nn layer or a function of a Tensor).

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)`` with the masks
    of :class:`MultiheadAttention`.  Example (a causal pre-norm block over (N, L, 128))::

        block = gc.nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, activation="gelu",
                                              batch_first=True, norm_first=True)
        y = block(x, is_causal=True)
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None, name=None):
        super().__init__(name)
        self.d_model = _positive_int("TransformerEncoderLayer", "d_model", d_model)
        dim_feedforward = _positive_int("TransformerEncoderLayer", "dim_feedforward", dim_feedforward)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            device=device, dtype=dtype)
        self.linear1 = _Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = _Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise GraphError(f"TransformerEncoderLayer: activation must be 'relu', 'gelu' or a callable, "
                                 f"got {activation!r}")
            # a plain function in PyTorch (F.relu / F.gelu): no child, no state
            object.__setattr__(self, "activation", _ACTIVATIONS[activation]())
        elif callable(activation):
            self.activation = activation      # a gc.nn layer becomes the child `activation`, as in PyTorch
        else:
            raise GraphError(f"TransformerEncoderLayer: activation must be 'relu', 'gelu' or a callable, got "
                             f"{activation!r}")

    def extra_repr(self):
        return f"d_model={self.d_model}, norm_first={self.norm_first}"

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = ops.add(x, self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal))
            x = ops.add(x, self._ff_block(self.norm2(x)))
        else:
            x = self.norm1(ops.add(x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal)))
            x = self.norm2(ops.add(x, self._ff_block(x)))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return _drop(self.dropout1, x)

    def _ff_block(self, x):
        x = self.linear2(_drop(self.dropout, self.activation(self.linear1(x))))
        return _drop(self.dropout2, x)


def _fresh_copy(module):
    """A deep copy of a not-yet-named layer tree with no variables: each copy creates its own."""
    clone = copy.copy(module)
    object.__setattr__(clone, "_vars", weakref.WeakKeyDictionary())
    clone.__dict__.pop("_calls", None)
    clone.__dict__.pop("_graph", None)
    children = type(module._modules)()
    object.__setattr__(clone, "_modules", children)
    for key, value in list(module.__dict__.items()):
        if key in module._modules:
            continue
        if isinstance(value, Module):           # a private helper layer (not a child)
            object.__setattr__(clone, key, _fresh_copy(value))
    for key, child in module._modules.items():
        c = _fresh_copy(child)
        object.__setattr__(c, "_scope_name", child._scope_name)
        object.__setattr__(c, "_parent_named", child._parent_named)
        children[key] = c
        object.__setattr__(clone, key, c)
    return clone


class _LayerStack(Sequential):
    """PyTorch's ModuleList ``layers`` of TransformerEncoder: the layers in order, each called
    with the same masks, under the scope ``layers``."""

    def forward(self, x, **kwargs):
        for layer in self._modules.values():
            x = layer(x, **kwargs)
        return x


class TransformerEncoder(Module):
    """``torch.nn.TransformerEncoder(encoder_layer, num_layers, norm=None)``: ``num_layers``
    copies of ``encoder_layer`` (children ``layers.0``, ``layers.1``, ..., each with its own
    variables, as PyTorch's deep copies) applied in order, then ``norm`` if given.
    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=False)``."""

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True,
                 name=None):
        super().__init__(name)
        if not isinstance(encoder_layer, Module):
            raise GraphError(f"TransformerEncoder: encoder_layer must be a gc.nn layer, got "
                             f"{type(encoder_layer).__name__}")
        self.num_layers = _positive_int("TransformerEncoder", "num_layers", num_layers)
        layers = _LayerStack()
        for i in range(self.num_layers):
            c = _fresh_copy(encoder_layer)
            object.__setattr__(c, "_scope_name", None)
            object.__setattr__(c, "_parent_named", False)
            layers.add_module(str(i), c)
        self.layers = layers
        self.norm = norm

    def extra_repr(self):
        return f"num_layers={self.num_layers}"

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=False):
        x = self.layers(src, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        if self.norm is not None:
            x = self.norm(x)
        return x
