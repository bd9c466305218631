"""The recurrent layers of gc.nn: LSTM, LSTMCell, GRU, GRUCell, with PyTorch's constructor
arguments, parameter names, gate order and default initialisation U(-1/√H, 1/√H).

A recurrent layer is unrolled over the static sequence length into ordinary graph nodes (the
time dim of the input must be known when the layer is called).  Per layer and direction the
input projection ``x W_ihᵀ + b`` of every time step is one matmul; a step then adds only
``h W_hhᵀ`` (the add is the GEMM's fused epilogue) and the gate arithmetic, one ``lstm_cell`` or
``gru_cell`` node (graphc/ops/rnn_cell.py: one kernel forward, one ``*_cell_grad`` backward).  The
first step from the zero state reads no state and stays a few elementwise ops.  The per-step
pieces of the projection come from one ``split`` of it, and the outputs of all steps are
joined by one ``concat``: a copy each of a tensor the size of the layer's output, instead of a
slice and a concat per step.
"""

import math

from graphc import ops
from graphc.errors import GraphError, ShapeError
from graphc.graph import Tensor, get_default_graph
from graphc.nn.module import Module, _name_seed, _param_dtype, _positive_int, _require, _uniform

_GATES = {"LSTM": 4, "GRU": 3}


def _check_input(layer, x, rank, what):
    if not isinstance(x, Tensor):
        raise GraphError(f"{layer} expects a gc.Tensor, got {type(x).__name__}")
    if len(x.shape) != rank:
        raise ShapeError(f"{layer} expects {what} (rank {rank}), got shape {x.shape}")


def _check_state(layer, t, shape, what):
    if not isinstance(t, Tensor):
        raise GraphError(f"{layer} expects {what} as a gc.Tensor, got {type(t).__name__}")
    if len(t.shape) != len(shape) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                         for a, b in zip(t.shape, shape)):
        raise ShapeError(f"{layer} expects {what} of shape {shape}, got {t.shape}")


def _lstm_step(xw, h, c, w_hh):
    """One LSTM step from the precomputed input projection ``xw`` (B, 4H) (biases included).
    ``h``/``c`` None: the zero state (the h-projection and the forget term vanish).  From a
    state, the gate arithmetic is one ``lstm_cell`` node (one kernel forward and one backward,
    instead of a dozen elementwise steps each way)."""
    gates = xw if h is None else ops.add(xw, ops.matmul(h, w_hh, transpose_b=True))
    if c is not None:
        return ops.lstm_cell(gates, c)
    i, f, g, o = ops.split(gates, 4, axis=1)
    c = ops.mul(ops.sigmoid(i), ops.tanh(g))
    return ops.mul(ops.sigmoid(o), ops.tanh(c)), c


def _gru_step(xw, h, w_hh, b_hh):
    """One GRU step (PyTorch's equations) from ``xw`` = x W_ihᵀ + b_ih (B, 3H);
    ``h`` None: the zero state."""
    if h is not None:
        hw = ops.matmul(h, w_hh, transpose_b=True)
        if b_hh is not None:
            hw = ops.add(hw, b_hh)
        return ops.gru_cell(xw, hw, h)   # the gate arithmetic as one node (graphc/ops/rnn_cell.py)
    x_r, x_z, x_n = ops.split(xw, 3, axis=1)
    if b_hh is None:
        z = ops.sigmoid(x_z)
        n = ops.tanh(x_n)
        return ops.sub(n, ops.mul(z, n))
    h_r, h_z, h_n = ops.split(b_hh, 3, axis=0)
    r = ops.sigmoid(ops.add(x_r, h_r))
    z = ops.sigmoid(ops.add(x_z, h_z))
    n = ops.tanh(ops.add(x_n, ops.mul(r, h_n)))
    return ops.sub(n, ops.mul(z, n))            # (1 - z) n + z 0


class _RNNBase(Module):
    mode = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, name=None):
        super().__init__(name)
        kind = self.mode
        self.input_size = _positive_int(kind, "input_size", input_size)
        self.hidden_size = _positive_int(kind, "hidden_size", hidden_size)
        self.num_layers = _positive_int(kind, "num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise GraphError(f"{kind}: dropout must be a probability in [0, 1), got {dropout!r}")
        if proj_size not in (0, None):
            raise GraphError(f"{kind}: proj_size={proj_size!r} is not supported (only 0: no projection)")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def _params(self, layer, suffix, dt):
        """weight_ih, weight_hh, the bias folded into the input projection, and GRU's b_hh."""
        g, hs = _GATES[self.mode], self.hidden_size
        in_size = self.input_size if layer == 0 else hs * (2 if self.bidirectional else 1)
        init = _uniform(1.0 / math.sqrt(hs))
        w_ih = self.variable(f"weight_ih_l{layer}{suffix}", (g * hs, in_size), init, dtype=dt)
        w_hh = self.variable(f"weight_hh_l{layer}{suffix}", (g * hs, hs), init, dtype=dt)
        if not self.bias:
            return w_ih, w_hh, None, None
        b_ih = self.variable(f"bias_ih_l{layer}{suffix}", (g * hs,), init, dtype=dt)
        b_hh = self.variable(f"bias_hh_l{layer}{suffix}", (g * hs,), init, dtype=dt)
        if self.mode == "LSTM":
            return w_ih, w_hh, ops.add(b_ih, b_hh), None   # both biases add to every gate
        return w_ih, w_hh, b_ih, b_hh                       # GRU: b_hn sits inside r * (...)

    def forward(self, x, hx=None):
        """``x``: (T, B, input_size), or (B, T, input_size) with ``batch_first``; T must be
        static.  ``hx``: LSTM ``(h_0, c_0)``, GRU ``h_0``, each (num_layers * directions, B,
        hidden_size); None: zeros.  Returns ``(output, (h_n, c_n))`` (LSTM) or ``(output, h_n)``
        (GRU), output (T, B, directions * hidden_size) (batch_first: (B, T, ...))."""
        kind = f"{self.mode}({self.extra_repr()})"
        _check_input(kind, x, 3, "(T, B, input_size) input" if not self.batch_first
                     else "(B, T, input_size) input with batch_first=True")
        if x.dtype not in ("float32", "float64"):
            raise GraphError(f"{kind} expects a float32 or float64 input, got dtype {x.dtype}")
        ta, ba = (1, 0) if self.batch_first else (0, 1)
        steps, batch = x.shape[ta], x.shape[ba]
        if not isinstance(steps, int):
            raise ShapeError(f"{kind}: the sequence length (axis {ta} of input shape {x.shape}) must be known "
                             f"when the graph is built: the layer is unrolled over it")
        if steps < 1:
            raise ShapeError(f"{kind}: expects a sequence of length >= 1, got input of shape {x.shape}")
        if isinstance(x.shape[2], int) and x.shape[2] != self.input_size:
            raise ShapeError(f"{kind} expects input_size {self.input_size} in the last dim, got shape {x.shape}")
        dirs = 2 if self.bidirectional else 1
        hs = self.hidden_size
        h0 = c0 = None
        state_shape = (self.num_layers * dirs, batch, hs)
        if hx is not None:
            if self.mode == "LSTM":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise GraphError(f"{kind} expects hx = (h_0, c_0), got {type(hx).__name__}")
                _check_state(kind, hx[0], state_shape, "h_0")
                _check_state(kind, hx[1], state_shape, "c_0")
                h0 = [ops.reshape(t, (-1, hs)) for t in ops.split(hx[0], self.num_layers * dirs, axis=0)]
                c0 = [ops.reshape(t, (-1, hs)) for t in ops.split(hx[1], self.num_layers * dirs, axis=0)]
            else:
                _check_state(kind, hx, state_shape, "h_0")
                h0 = [ops.reshape(t, (-1, hs)) for t in ops.split(hx, self.num_layers * dirs, axis=0)]
        dt = _param_dtype(x)
        graph = x.graph if isinstance(x, Tensor) else get_default_graph()
        h_n, c_n = [], []
        seq = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                seed = _name_seed(f"{graph.scope or self.mode}/dropout_l{layer}")
                seed = (seed[1] ^ (seed[0] * 0x9E3779B97F4A7C15)) & 0x7FFFFFFFFFFFFFFF
                seq = _require("dropout")(seq, p=self.dropout, seed=seed)
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                hs_seq, h_last, c_last = self._direction(
                    seq, layer, "_reverse" if d else "", dt, ta, steps, reverse=bool(d),
                    h=None if h0 is None else h0[k], c=None if c0 is None else c0[k])
                outs.append(hs_seq)
                h_n.append(h_last)
                c_n.append(c_last)
            seq = outs[0] if dirs == 1 else ops.concat(outs, axis=2)
        h_n = ops.concat([ops.expand_dims(h, 0) for h in h_n], axis=0)
        if self.mode == "LSTM":
            return seq, (h_n, ops.concat([ops.expand_dims(c, 0) for c in c_n], axis=0))
        return seq, h_n

    def _direction(self, seq, layer, suffix, dt, ta, steps, reverse, h, c):
        """One layer in one direction over ``seq``: (its output sequence, h_T, c_T)."""
        g, hs = _GATES[self.mode], self.hidden_size
        w_ih, w_hh, b_x, b_hh = self._params(layer, suffix, dt)
        in_size = seq.shape[2]
        xw = ops.matmul(ops.reshape(seq, (-1, in_size)), w_ih, transpose_b=True)   # every step in one GEMM
        if b_x is not None:
            xw = ops.add(xw, b_x)
        xw = ops.reshape(xw, (steps, -1, g * hs) if ta == 0 else (-1, steps, g * hs))
        pieces = [ops.reshape(p, (-1, g * hs)) for p in ops.split(xw, steps, axis=ta)] if steps > 1 \
            else [ops.reshape(xw, (-1, g * hs))]
        hs_out = [None] * steps
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        for t in order:
            if self.mode == "LSTM":
                h, c = _lstm_step(pieces[t], h, c, w_hh)
            else:
                h = _gru_step(pieces[t], h, w_hh, b_hh)
            hs_out[t] = h
        out = [ops.expand_dims(v, ta) for v in hs_out]
        out = out[0] if steps == 1 else ops.concat(out, axis=ta)
        return out, h, c


class LSTM(_RNNBase):
    """A multi-layer LSTM as ``torch.nn.LSTM``: per layer k (and direction, ``_reverse``),
    ``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (4H,) in PyTorch's gate order i, f, g, o::

        i = σ(x W_iiᵀ + b_ii + h W_hiᵀ + b_hi)   f, o likewise;  g = tanh(...)
        c' = f c + i g;   h' = o tanh(c')

    ``forward(x, hx=None)`` → ``(output, (h_n, c_n))``.  ``dropout`` applies ``gc.dropout`` to
    the input of every layer after the first in a training plan.  ``bidirectional`` adds the
    ``_reverse`` parameters and concatenates both directions' outputs; ``proj_size`` is refused.
    From the zero state (``hx=None``) the first step skips ``h W_hhᵀ`` (h = 0): with a sequence
    of length 1, ``weight_hh_l*`` is then never read, the plan holds no such variable, and
    loading a PyTorch state dict needs ``strict=False``.

    Example::

        lstm = gc.nn.LSTM(64, 256, num_layers=2, batch_first=True)
        out, (h, c) = lstm(gc.placeholder("x", (None, 32, 64)))   # out: (B, 32, 256)
    """

    mode = "LSTM"


class GRU(_RNNBase):
    """A multi-layer GRU as ``torch.nn.GRU``: parameters as :class:`LSTM` with 3H rows in
    PyTorch's gate order r, z, n::

        r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)   z likewise
        n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn));   h' = (1 - z) n + z h

    ``forward(x, hx=None)`` → ``(output, h_n)``."""

    mode = "GRU"


class _CellBase(Module):
    mode = None

    def __init__(self, input_size, hidden_size, bias=True, name=None):
        super().__init__(name)
        self.input_size = _positive_int(self.mode + "Cell", "input_size", input_size)
        self.hidden_size = _positive_int(self.mode + "Cell", "hidden_size", hidden_size)
        self.bias = bool(bias)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _prepare(self, x):
        kind = f"{self.mode}Cell({self.extra_repr()})"
        _check_input(kind, x, 2, "(B, input_size) input")
        if isinstance(x.shape[1], int) and x.shape[1] != self.input_size:
            raise ShapeError(f"{kind} expects input_size {self.input_size} in the last dim, got shape {x.shape}")
        g, hs, dt = _GATES[self.mode], self.hidden_size, _param_dtype(x)
        init = _uniform(1.0 / math.sqrt(hs))
        w_ih = self.variable("weight_ih", (g * hs, self.input_size), init, dtype=dt)
        w_hh = self.variable("weight_hh", (g * hs, hs), init, dtype=dt)
        b_ih = self.variable("bias_ih", (g * hs,), init, dtype=dt) if self.bias else None
        b_hh = self.variable("bias_hh", (g * hs,), init, dtype=dt) if self.bias else None
        return kind, w_ih, w_hh, b_ih, b_hh


class LSTMCell(_CellBase):
    """One LSTM step as ``torch.nn.LSTMCell``: ``weight_ih`` (4H, in), ``weight_hh`` (4H, H),
    ``bias_ih``, ``bias_hh`` (4H,); ``forward(x, hx=None)`` with x (B, in) and
    ``hx = (h, c)`` each (B, H) (None: zeros) → ``(h', c')``."""

    mode = "LSTM"

    def forward(self, x, hx=None):
        kind, w_ih, w_hh, b_ih, b_hh = self._prepare(x)
        h = c = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise GraphError(f"{kind} expects hx = (h, c), got {type(hx).__name__}")
            h, c = hx
            _check_state(kind, h, (x.shape[0], self.hidden_size), "h")
            _check_state(kind, c, (x.shape[0], self.hidden_size), "c")
        xw = ops.matmul(x, w_ih, transpose_b=True)
        if b_ih is not None:
            xw = ops.add(xw, ops.add(b_ih, b_hh))
        return _lstm_step(xw, h, c, w_hh)


class GRUCell(_CellBase):
    """One GRU step as ``torch.nn.GRUCell`` (parameters as :class:`LSTMCell` with 3H rows,
    gate order r, z, n); ``forward(x, hx=None)`` → h'."""

    mode = "GRU"

    def forward(self, x, hx=None):
        kind, w_ih, w_hh, b_ih, b_hh = self._prepare(x)
        if hx is not None:
            _check_state(kind, hx, (x.shape[0], self.hidden_size), "hx")
        xw = ops.matmul(x, w_ih, transpose_b=True)
        if b_ih is not None:
            xw = ops.add(xw, b_ih)
        return _gru_step(xw, hx, w_hh, b_hh)
