"""2-D convolution over NCHW input with OIHW weights (PyTorch's conv2d semantics), and the ops
its gradients are built from: conv2d_grad_input and conv2d_grad_weight.

Attrs shared by the three ops:
  stride   (s_h, s_w) > 0;
  pads     (top, left, bottom, right) >= 0 — ONNX's order (begins, then ends), so PyTorch's
           ``padding="same"`` with an even kernel (the extra row/column at the bottom/right)
           is expressible;
  dilation (d_h, d_w) > 0;
  groups   g > 0, dividing the input channels C and the output channels O; the weight is
           (O, C / g, k_h, k_w) and output channel o reads input channels of group o // (O / g).

Output rows: floor((H + top + bottom - d_h·(k_h - 1) - 1) / s_h) + 1 (likewise columns), which
must be >= 1.  Output (n, o, i, j) = Σ_{c, a, b} x_pad[n, g·C/g + c, i·s_h + a·d_h, j·s_w + b·d_w]
· w[o, c, a, b] with x_pad the input padded with zeros: padding takes part in the sum as 0
(so an infinite weight over padding gives NaN, as an im2col implementation does).

conv2d_grad_input(dy, w) is the adjoint of conv2d in x (attr ``input_size`` = (H, W), since the
floor loses trailing rows); conv2d_grad_weight(dy, x) the adjoint in w (attr ``kernel_size``).
Both are linear in each input, so their gradients are the three ops again.  A bias is not part
of the op: gc.conv2d adds it with a broadcast add, whose gradient is the sum over (N, H, W).

The numpy references sum in float64 and round once to the dtype; the kernels sum in the
dtype (float32: FMA chains in a fixed order, graphc's own GEMM) — see docs/conv.md.
"""

import numpy as np

from graphc import dtypes
from graphc.errors import GraphError, ShapeError
from graphc.ops._common import Example, F, build, rand, special
from graphc.registry import AttrSpec, defgrad, register_op

CONV_ATTRS = {
    "stride": AttrSpec("ints", doc="step between output positions (s_h, s_w), each > 0"),
    "pads": AttrSpec("ints", doc="zero padding (top, left, bottom, right), each >= 0"),
    "dilation": AttrSpec("ints", doc="spacing of the kernel taps (d_h, d_w), each > 0"),
    "groups": AttrSpec("int", default=1, doc="channel groups g > 0, dividing the input and output channels"),
}
GRAD_INPUT_ATTRS = dict(CONV_ATTRS, input_size=AttrSpec("ints", doc="(H, W) of the convolution's input"))
GRAD_WEIGHT_ATTRS = dict(CONV_ATTRS, kernel_size=AttrSpec("ints", doc="(k_h, k_w) of the convolution's weight"))

# Images whose im2col matrices the planned workspace holds at once: the kernels run that many
# images in parallel (one per thread, up to this many threads; more threads split each GEMM).
WORKSPACE_SLOTS = 4
# The widest column panel of graphc's GEMM (runtime/cpu/gemm.h, AVX-512: 32 floats).
PANEL = 32


def _known(d):
    return isinstance(d, int)


def _check_attrs(ctx):
    a = ctx.attrs
    for name, n in (("stride", 2), ("pads", 4), ("dilation", 2)):
        if len(a[name]) != n:
            ctx.fail(f"{name}={list(a[name])} must hold {n} ints")
    if any(v <= 0 for v in a["stride"]) or any(v <= 0 for v in a["dilation"]):
        ctx.fail(f"stride={list(a['stride'])} and dilation={list(a['dilation'])} must be positive")
    if any(v < 0 for v in a["pads"]):
        ctx.fail(f"pads={list(a['pads'])} must be >= 0")
    if a["groups"] <= 0:
        ctx.fail(f"groups={a['groups']} must be positive")


def _out_hw(ctx, hw, khw, what="x"):
    """Output (H_out, W_out) for input (H, W) and kernel (k_h, k_w); None where unknown."""
    a = ctx.attrs
    out = []
    for axis, d, k, s, p0, p1, dil in zip("HW", hw, khw, a["stride"], a["pads"][:2], a["pads"][2:], a["dilation"]):
        if not (_known(d) and _known(k)):
            out.append(None)
            continue
        if d < 1:
            ctx.fail(f"{what}: {axis}={d} must be >= 1")
        span = dil * (k - 1) + 1
        if d + p0 + p1 < span:
            ctx.fail(f"{what}: {axis}={d} padded by ({p0}, {p1}) is smaller than the dilated kernel ({span}): "
                     f"the output would be empty")
        out.append((d + p0 + p1 - span) // s + 1)
    return tuple(out)


def _check_rank4(ctx, i, what):
    if len(ctx.shape(i)) != 4:
        ctx.fail(f"expects input {i} ({what}) of rank 4, got shape {tuple(ctx.shape(i))}")


def _check_channels(ctx, c_in, w_shape, what_w="w"):
    """The weight (O, C/g, k_h, k_w) against the input channels c_in and the groups."""
    g = ctx.attrs["groups"]
    o, cg = w_shape[0], w_shape[1]
    if _known(c_in) and c_in % g:
        ctx.fail(f"x has {c_in} channels, not divisible by groups={g}")
    if _known(o) and o % g:
        ctx.fail(f"{what_w} has {o} output channels, not divisible by groups={g}")
    if _known(c_in) and _known(cg) and cg * g != c_in:
        ctx.fail(f"{what_w} of shape {tuple(w_shape)} expects {cg} input channels per group (x with {cg * g} "
                 f"channels at groups={g}), x has {c_in}")
    for axis, k in zip("HW", w_shape[2:]):
        if _known(k) and k < 1:
            ctx.fail(f"{what_w} of shape {tuple(w_shape)}: kernel {axis}={k} must be >= 1")


def _same(a, b):
    return len(a) == len(b) and all(not _known(x) or not _known(y) or x == y for x, y in zip(a, b))


def _conv_infer(ctx):
    _check_attrs(ctx)
    _check_rank4(ctx, 0, "x")
    _check_rank4(ctx, 1, "w")
    x, w = ctx.shape(0), ctx.shape(1)
    _check_channels(ctx, x[1], w)
    return ctx.dtype(0), (x[0], w[0]) + _out_hw(ctx, x[2:], w[2:])


def _grad_input_infer(ctx):
    # (dy, w) -> dx of shape (N, C, H, W)
    _check_attrs(ctx)
    _check_rank4(ctx, 0, "dy")
    _check_rank4(ctx, 1, "w")
    hw = ctx.attrs["input_size"]
    if len(hw) != 2:
        ctx.fail(f"input_size={list(hw)} must hold 2 ints (H, W)")
    dy, w = ctx.shape(0), ctx.shape(1)
    c_in = w[1] * ctx.attrs["groups"] if _known(w[1]) else None
    _check_channels(ctx, c_in, w)
    want = (dy[0], w[0]) + _out_hw(ctx, hw, w[2:], what=f"input_size={list(hw)}")
    if not _same(dy, want):
        ctx.fail(f"expects dy of the convolution's output shape {want}, got {tuple(dy)}")
    return ctx.dtype(1), (dy[0], c_in) + tuple(hw)


def _grad_weight_infer(ctx):
    # (dy, x) -> dw of shape (O, C/g, k_h, k_w)
    _check_attrs(ctx)
    _check_rank4(ctx, 0, "dy")
    _check_rank4(ctx, 1, "x")
    khw = ctx.attrs["kernel_size"]
    if len(khw) != 2 or any(k < 1 for k in khw):
        ctx.fail(f"kernel_size={list(khw)} must hold 2 ints >= 1")
    dy, x = ctx.shape(0), ctx.shape(1)
    g = ctx.attrs["groups"]
    o = dy[1]
    cg = x[1] // g if _known(x[1]) else None
    w = (o, cg) + tuple(khw)
    _check_channels(ctx, x[1], w, what_w="dy")
    want = (x[0], o) + _out_hw(ctx, x[2:], khw)
    if not _same(dy, want):
        ctx.fail(f"expects dy of the convolution's output shape {want}, got {tuple(dy)}")
    return ctx.dtype(1), w


def _conv_cost(in_shapes, out_shapes, attrs):
    """2·(output elements)·(C/g)·k_h·k_w: each output is one dot product over a window."""
    return 2 * int(np.prod(out_shapes[0])) * int(np.prod(in_shapes[1][1:]))


def _grad_input_cost(in_shapes, out_shapes, attrs):
    return 2 * int(np.prod(in_shapes[0])) * int(np.prod(in_shapes[1][1:]))


def _grad_weight_cost(in_shapes, out_shapes, attrs):
    return 2 * int(np.prod(in_shapes[0])) * int(np.prod(out_shapes[0][1:]))


# -- workspaces: what runtime/cpu/conv.cc uses for each case (the same decisions as its kernels) ----
# im2col matrices, or the implicit GEMM's padded images / output grid / repacked weights, and
# grad_weight's per-image partial sums.  A mismatch is refused when the plan loads.

def _is_pointwise(w_shape, attrs):
    """A 1x1 kernel at stride 1 without padding: the input is already the im2col matrix."""
    return (tuple(w_shape[2:]) == (1, 1) and tuple(attrs["stride"]) == (1, 1)
            and not any(attrs["pads"]))


def _col_request(dtype, n, c, khw, out_hw, panels=False):
    slots = min(int(n), WORKSPACE_SLOTS)
    if slots == 0:
        return []
    p = int(out_hw[0]) * int(out_hw[1])
    if panels:  # the forward writes float32 columns straight into the GEMM's 32-wide B panels
        p = -(-p // PANEL) * PANEL
    return [(dtype, (slots, int(c) * int(khw[0]) * int(khw[1]), p))]


# Input channels from which a float32 convolution runs as an implicit GEMM on the padded image
# (runtime/cpu/conv.cc, kImplicitMinChannels): below, each tap's product is too short.
IMPLICIT_MIN_CHANNELS = 16
# Images whose implicit weight-gradient products one partial sum holds (runtime/cpu/conv.cc,
# kImagesPerPartial): one FMA chain over the group's images, in order, then the partials in order.
IMAGES_PER_PARTIAL = 4


def _implicit(dtype, attrs, w_shape, c_in, stride1=False):
    """Whether the kernel computes this convolution as an implicit GEMM (no im2col): float32,
    one group, a kernel of more than one tap, enough channels (grad_input: stride 1 only)."""
    return (dtype == "float32" and attrs["groups"] == 1 and int(w_shape[2]) * int(w_shape[3]) > 1
            and int(c_in) >= IMPLICIT_MIN_CHANNELS and (not stride1 or tuple(attrs["stride"]) == (1, 1)))


def _implicit_request(dtype, n, c_in, c_out, hw, khw, dilation, pads, stride=(1, 1)):
    """The implicit GEMM's workspaces: the padded images' stride phases, the output on the phase
    grid, the repacked weights (runtime/cpu/conv.cc, struct Implicit)."""
    slots = min(int(n), WORKSPACE_SLOTS)
    if slots == 0:
        return []
    (h, w), (kh, kw), (dh, dw), (sh, sw) = hw, khw, dilation, stride
    hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
    hq, wq = -(-hp // sh), -(-wp // sw)
    grid = ((hp - dh * (kh - 1) - 1) // sh + 1) * wq
    return [(dtype, (slots, sh * sw * c_in * hq * wq + dw * (kw - 1) // sw + PANEL)), (dtype, (slots, c_out * grid)),
            (dtype, (kh * kw * c_in, c_out))]


# -- CUDA target (runtime/cuda/conv.cu) -----------------------------------------------------------
# ws[0]: cuDNN's workspace, one rank-1 buffer of the op's dtype (the kernel picks only algorithms
# that fit it): the explicit-GEMM column matrix of the whole batch, at least 1 MiB, at most
# 256 MiB; grad_input adds CUDA_FLAG_BYTES at its end (the non-finite-weight flag).
# grad_weight's ws[1]: (S, weight numel) partial products of graphc's own kernel, which splits
# the reduction over N·H_out·W_out into S slices when the weight alone gives too few CTAs.
CUDA_WS_MIN_BYTES = 1 << 20
CUDA_WS_MAX_BYTES = 256 << 20
CUDA_FLAG_BYTES = 256
# The own kernel's output tile (runtime/cuda/conv.cu kBM x kBN) and the CTAs it aims for (about two
# waves of an H100/H200's 132 SMs); a slice covers at least CUDA_MIN_SLICE reduction items.
CUDA_TILE = 64
CUDA_TARGET_CTAS = 264
CUDA_MAX_SLICES = 64
CUDA_MIN_SLICE = 512


def _itemsize(dtype):
    return np.dtype(dtype).itemsize


def _cuda_cudnn_ws(dtype, n, c, khw, out_hw, extra_bytes=0):
    """[(dtype, (items,))]: cuDNN's workspace bound (+ extra_bytes), in items of dtype."""
    col = int(n) * int(c) * int(khw[0]) * int(khw[1]) * int(out_hw[0]) * int(out_hw[1]) * _itemsize(dtype)
    nbytes = min(CUDA_WS_MAX_BYTES, max(CUDA_WS_MIN_BYTES, col)) + extra_bytes
    return [(dtype, (-(-nbytes // _itemsize(dtype)),))]


def _cuda_grad_weight_slices(n, out_hw, w_shape, groups):
    """S: how many slices the own kernel splits grad_weight's reduction into (1: none)."""
    og, k = int(w_shape[0]) // groups, int(w_shape[1]) * int(w_shape[2]) * int(w_shape[3])
    tiles = -(-og // CUDA_TILE) * -(-k // CUDA_TILE) * groups
    reduction = int(n) * int(out_hw[0]) * int(out_hw[1])
    return max(1, min(CUDA_MAX_SLICES, -(-CUDA_TARGET_CTAS // max(tiles, 1)), reduction // CUDA_MIN_SLICE))


def _numel(shape):
    return int(np.prod([int(d) for d in shape]))


def _conv_workspace(ctx):
    x, w = ctx.shape(0), ctx.shape(1)
    if ctx.target == "cuda":
        y = ctx.out_shape(0)
        if _numel(y) == 0:
            return []
        return _cuda_cudnn_ws(ctx.dtype(0), x[0], x[1], w[2:], y[2:])
    if _is_pointwise(w, ctx.attrs):
        return []
    if _implicit(ctx.dtype(0), ctx.attrs, w, x[1]):
        return _implicit_request(ctx.dtype(0), x[0], x[1], w[0], x[2:], w[2:], ctx.attrs["dilation"],
                                 ctx.attrs["pads"], ctx.attrs["stride"])
    return _col_request(ctx.dtype(0), x[0], x[1], w[2:], ctx.out_shape(0)[2:], panels=True)


def _grad_input_workspace(ctx):
    dy, w = ctx.shape(0), ctx.shape(1)
    if ctx.target == "cuda":
        dx = ctx.out_shape(0)
        if _numel(dx) == 0:
            return []
        return _cuda_cudnn_ws(ctx.dtype(0), dy[0], dx[1], w[2:], dy[2:], extra_bytes=CUDA_FLAG_BYTES)
    if _is_pointwise(w, ctx.attrs):
        return []
    a = ctx.attrs
    kh, kw = w[2:]
    (dh, dw), pads = a["dilation"], a["pads"]
    flipped = (dh * (kh - 1) - pads[0], dw * (kw - 1) - pads[1], dh * (kh - 1) - pads[2], dw * (kw - 1) - pads[3])
    if _implicit(ctx.dtype(0), a, w, w[0], stride1=True) and min(flipped) >= 0:
        # dx: the stride-1 convolution of dy with the flipped kernel, padded by d·(k-1) - p
        return _implicit_request(ctx.dtype(0), dy[0], w[0], ctx.out_shape(0)[1], dy[2:], w[2:], a["dilation"],
                                 flipped)
    return _col_request(ctx.dtype(0), dy[0], ctx.out_shape(0)[1], w[2:], dy[2:])


def _grad_weight_workspace(ctx):
    dy, x = ctx.shape(0), ctx.shape(1)
    w = ctx.out_shape(0)
    n = int(x[0])
    if n == 0:
        return []
    if ctx.target == "cuda":
        if _numel(w) == 0:
            return []
        ws = _cuda_cudnn_ws(ctx.dtype(0), n, x[1], w[2:], dy[2:])
        slices = _cuda_grad_weight_slices(n, dy[2:], w, ctx.attrs["groups"])
        return ws + ([(ctx.dtype(0), (slices, _numel(w)))] if slices > 1 else [])
    if _implicit(ctx.dtype(0), ctx.attrs, w, x[1]):
        # the forward's padded images; dy transposed onto its grid (+ the panel the AVX2 and
        # portable micro-kernels read past O); one partial product per image
        xq, grid_out, _ = _implicit_request(ctx.dtype(0), n, x[1], w[0], x[2:], w[2:], ctx.attrs["dilation"],
                                            ctx.attrs["pads"], ctx.attrs["stride"])
        dyt = (ctx.dtype(0), (xq[1][0], grid_out[1][1] + PANEL))
        return [xq, dyt, (ctx.dtype(0), (-(-n // IMAGES_PER_PARTIAL), int(np.prod(w))))]
    cols = [] if _is_pointwise(w, ctx.attrs) else _col_request(ctx.dtype(0), n, x[1], w[2:], dy[2:])
    # one weight-sized partial sum per image, added in image order (the same bits at any thread count)
    return cols + [(ctx.dtype(0), (n,) + tuple(int(d) for d in w))]


# -- numpy references: one tap (a, b) of the kernel at a time, summed in float64 -------------------

def _geometry(attrs, x_hw, khw):
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = attrs["stride"], attrs["pads"], attrs["dilation"]
    ho = (x_hw[0] + pt + pb - dh * (khw[0] - 1) - 1) // sh + 1
    wo = (x_hw[1] + pl + pr - dw * (khw[1] - 1) - 1) // sw + 1
    return ho, wo


def _taps(attrs, khw, ho, wo):
    """(a, b, row slice, column slice) of each kernel tap in the padded input."""
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    for a in range(khw[0]):
        for b in range(khw[1]):
            yield a, b, slice(a * dh, a * dh + sh * (ho - 1) + 1, sh), slice(b * dw, b * dw + sw * (wo - 1) + 1, sw)


def _padded(x, attrs):
    pt, pl, pb, pr = attrs["pads"]
    return np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _grouped(a, g):
    """(N, C, ...) -> (N, g, C/g, ...)."""
    return a.reshape((a.shape[0], g, a.shape[1] // g) + a.shape[2:])


def _conv_ref(inputs, attrs):
    x, w = inputs
    g = attrs["groups"]
    ho, wo = _geometry(attrs, x.shape[2:], w.shape[2:])
    xp = _padded(x, attrs)
    wg = w.astype(np.float64).reshape((g, w.shape[0] // g) + w.shape[1:])
    y = np.zeros((x.shape[0], g, w.shape[0] // g, ho, wo))
    for a, b, rs, cs in _taps(attrs, w.shape[2:], ho, wo):
        y += np.einsum("ngchw,goc->ngohw", _grouped(xp[:, :, rs, cs], g), wg[..., a, b])
    return y.reshape(x.shape[0], w.shape[0], ho, wo).astype(x.dtype)


def _grad_input_ref(inputs, attrs):
    dy, w = inputs
    g = attrs["groups"]
    h, wd = attrs["input_size"]
    pt, pl, pb, pr = attrs["pads"]
    n, c = dy.shape[0], w.shape[1] * g
    ho, wo = dy.shape[2:]
    dxp = np.zeros((n, g, c // g, h + pt + pb, wd + pl + pr))
    wg = w.astype(np.float64).reshape((g, w.shape[0] // g) + w.shape[1:])
    dyg = _grouped(dy.astype(np.float64), g)
    for a, b, rs, cs in _taps(attrs, w.shape[2:], ho, wo):
        dxp[:, :, :, rs, cs] += np.einsum("ngohw,goc->ngchw", dyg, wg[..., a, b])
    return dxp[:, :, :, pt:pt + h, pl:pl + wd].reshape(n, c, h, wd).astype(w.dtype)


def _grad_weight_ref(inputs, attrs):
    dy, x = inputs
    g = attrs["groups"]
    kh, kw = attrs["kernel_size"]
    o = dy.shape[1]
    ho, wo = dy.shape[2:]
    xp = _padded(x, attrs)
    dyg = _grouped(dy.astype(np.float64), g)
    dw = np.zeros((g, o // g, x.shape[1] // g, kh, kw))
    for a, b, rs, cs in _taps(attrs, (kh, kw), ho, wo):
        dw[..., a, b] = np.einsum("ngohw,ngchw->goc", dyg, _grouped(xp[:, :, rs, cs], g))
    return dw.reshape(o, x.shape[1] // g, kh, kw).astype(x.dtype)


# -- examples ------------------------------------------------------------------------------------

def _a(stride=1, pads=0, dilation=1, groups=1):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    p = (pads,) * 4 if isinstance(pads, int) else tuple(pads)
    return {"stride": pair(stride), "pads": p, "dilation": pair(dilation), "groups": groups}


# (x shape, w shape, attrs): size 1, size-0 batch / channels / outputs, odd sizes, strides, asymmetric pads,
# dilation, groups, depthwise, kernels larger than the input, 1x1 (the pointwise path and strided)
CASES = [
    ((1, 1, 1, 1), (1, 1, 1, 1), _a()),
    ((0, 2, 4, 4), (3, 2, 3, 3), _a(pads=1)),
    ((2, 0, 3, 3), (2, 0, 1, 1), _a()),
    ((2, 0, 3, 3), (2, 0, 3, 3), _a(pads=1)),
    ((2, 2, 4, 4), (0, 2, 3, 3), _a()),
    ((2, 3, 5, 5), (4, 3, 3, 3), _a(pads=1)),
    ((5, 3, 5, 4), (2, 3, 3, 2), _a()),
    ((2, 4, 7, 6), (6, 2, 3, 3), _a(stride=2, pads=1, groups=2)),
    ((1, 3, 6, 7), (3, 1, 3, 3), _a(pads=2, dilation=2, groups=3)),
    ((2, 2, 5, 5), (4, 1, 3, 3), _a(pads=1, groups=2)),
    ((1, 2, 3, 3), (2, 2, 5, 5), _a(pads=2)),
    ((1, 1, 1, 1), (1, 1, 3, 3), _a(pads=1)),
    ((2, 3, 5, 4), (4, 3, 1, 1), _a()),
    ((1, 2, 5, 5), (3, 2, 1, 1), _a(stride=2)),
    ((1, 2, 4, 3), (3, 2, 1, 1), _a(pads=(1, 0, 0, 1))),
    ((1, 2, 6, 5), (2, 2, 2, 3), _a(stride=(1, 2), pads=(0, 1, 1, 2), dilation=(2, 1))),
    ((1, 2, 7, 7), (2, 2, 4, 4), _a(pads=(1, 1, 2, 2))),
    ((6, 8, 9, 9), (8, 8, 3, 3), _a(pads=1)),
    # >= 16 channels: the float32 kernels' implicit GEMM (strided, dilated, asymmetric pads)
    ((2, 16, 7, 6), (16, 16, 3, 2), _a(stride=(2, 1), pads=(1, 0, 2, 1), dilation=(2, 1))),
    ((2, 16, 5, 6), (17, 16, 3, 2), _a(pads=(1, 0, 2, 1), dilation=(2, 1))),
]
SPECIAL_CASES = [((2, 3, 6, 7), (4, 3, 3, 3), _a(stride=2, pads=1)),
                 ((1, 16, 4, 5), (16, 16, 3, 3), _a(pads=1))]  # float32: the implicit GEMM


def _x_w_examples(rng, cases, special_cases, w_note):
    """Examples of an op of (x, w): every case per float dtype, and each special case twice, with
    NaN/±inf/-0.0 in x and then in w (``w_note`` says what to expect there)."""
    out = []
    for dt in dtypes.FLOATS:
        for xs, ws, attrs in cases:
            out.append(Example([rand(rng, xs, dt), rand(rng, ws, dt)], attrs, note=dt))
        for xs, ws, attrs in special_cases:
            # no extremes: a sum of float maxima overflows in the kernel's order and not in float64
            out.append(Example([special(rng, xs, dt, extremes=False), rand(rng, ws, dt)], attrs, grad=False,
                               note=f"{dt} special values in x"))
            out.append(Example([rand(rng, xs, dt), special(rng, ws, dt, extremes=False)], attrs, grad=False,
                               note=f"{dt} special values in w{w_note}"))
    return out


def _conv_examples(rng):
    return _x_w_examples(rng, CASES, SPECIAL_CASES, " (inf over padding: NaN)")


def _out_shape(xs, ws, attrs):
    return (xs[0], ws[0]) + _geometry(attrs, xs[2:], ws[2:])


def _dy(rng, shape, dtype, specials):
    return special(rng, shape, dtype, extremes=False) if specials else rand(rng, shape, dtype)


def _grad_input_examples(rng):
    # special values in one input at a time: NaN from dy would hide a kernel's stray NaN from w
    out = []
    for ex in _conv_examples(rng):
        x, w = ex.inputs
        shape = _out_shape(x.shape, w.shape, ex.attrs)
        dy = _dy(rng, shape, x.dtype.name, not ex.grad and np.isfinite(w).all())
        note = ex.note if np.isfinite(w).all() else ex.note + ", dy finite"
        out.append(Example([dy, w], dict(ex.attrs, input_size=x.shape[2:]), grad=ex.grad, note=note))
    return out


def _grad_weight_examples(rng):
    out = []
    for ex in _conv_examples(rng):
        x, w = ex.inputs
        shape = _out_shape(x.shape, w.shape, ex.attrs)
        dy = _dy(rng, shape, x.dtype.name, not ex.grad and np.isfinite(x).all())
        note = ex.note if np.isfinite(x).all() else ex.note + ", dy finite"
        out.append(Example([dy, x], dict(ex.attrs, kernel_size=w.shape[2:]), grad=ex.grad, note=note))
    return out


# -- declarations --------------------------------------------------------------------------------

_FLOAT_T = {"T": dtypes.FLOATS}

register_op(
    "conv2d",
    doc="y[n,o,i,j] = Σ_{c,a,b} x_pad[n, g·C/g + c, i·s_h + a·d_h, j·s_w + b·d_w] · w[o,c,a,b] "
        "(NCHW x, OIHW w, g = o // (O/g), x_pad zero-padded by pads = (top, left, bottom, right)).",
    inputs=[("x", "T"), ("w", "T")],
    type_vars=_FLOAT_T,
    attrs=CONV_ATTRS,
    infer=_conv_infer,
    reference=_conv_ref,
    examples=_conv_examples,
    cost=_conv_cost,
    workspace=_conv_workspace,
)

register_op(
    "conv2d_grad_input",
    doc="The gradient of conv2d in x (its adjoint): dx[n,c,h,w] = Σ dy[n,o,i,j] · w[o,c',a,b] over the "
        "(o, i, j, a, b) whose tap reads x[n,c,h,w]; x's (H, W) is the attr input_size.",
    inputs=[("dy", "T"), ("w", "T")],
    type_vars=_FLOAT_T,
    attrs=GRAD_INPUT_ATTRS,
    infer=_grad_input_infer,
    reference=_grad_input_ref,
    examples=_grad_input_examples,
    cost=_grad_input_cost,
    workspace=_grad_input_workspace,
)

register_op(
    "conv2d_grad_weight",
    doc="The gradient of conv2d in w (its adjoint): dw[o,c,a,b] = Σ_{n,i,j} dy[n,o,i,j] · "
        "x_pad[n, g·C/g + c, i·s_h + a·d_h, j·s_w + b·d_w]; w's (k_h, k_w) is the attr kernel_size.",
    inputs=[("dy", "T"), ("x", "T")],
    type_vars=_FLOAT_T,
    attrs=GRAD_WEIGHT_ATTRS,
    infer=_grad_weight_infer,
    reference=_grad_weight_ref,
    examples=_grad_weight_examples,
    cost=_grad_weight_cost,
    workspace=_grad_weight_workspace,
)


def _conv_attrs(attrs):
    return {k: attrs[k] for k in CONV_ATTRS}


# -- gradients: every op is linear in each input, and the three are each other's adjoints ---------

@defgrad("conv2d")
def _grad_conv2d(ctx):
    x, w = ctx.inputs
    a = _conv_attrs(ctx.attrs)
    return [conv2d_grad_input(ctx.g, w, x.shape[2:], a), conv2d_grad_weight(ctx.g, x, w.shape[2:], a)]


@defgrad("conv2d_grad_input")
def _grad_conv2d_grad_input(ctx):
    # dx = A_w^T dy, so <dx, G> = <dy, conv2d(G, w)>: dy gets conv2d(G, w), w gets grad_weight(dy, G)
    dy, w = ctx.inputs
    a = _conv_attrs(ctx.attrs)
    return [build("conv2d", [ctx.g, w], a), conv2d_grad_weight(dy, ctx.g, w.shape[2:], a)]


@defgrad("conv2d_grad_weight")
def _grad_conv2d_grad_weight(ctx):
    # <dw, G> = <dy, conv2d(x, G)>: dy gets conv2d(x, G), x gets grad_input(dy, G)
    dy, x = ctx.inputs
    a = _conv_attrs(ctx.attrs)
    return [build("conv2d", [x, ctx.g], a), conv2d_grad_input(dy, ctx.g, x.shape[2:], a)]


# -- builders ------------------------------------------------------------------------------------

def _pair(name, v):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    try:
        t = tuple(int(e) for e in v)
        ok = len(t) == 2 and not any(isinstance(e, bool) for e in v)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise GraphError(f"conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return t


def _resolve_padding(padding, w_shape, stride, dilation):
    """pads (top, left, bottom, right) of an int, a pair, "valid" or "same" (PyTorch's split:
    total d·(k-1) per axis, the odd one extra at the bottom/right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise GraphError(f"conv2d: padding={padding!r} must be an int, a pair, 'same' or 'valid'")
        if stride != (1, 1):
            raise GraphError(f"conv2d: padding='same' needs stride 1 (as PyTorch), got stride={stride}")
        k = w_shape[2:]
        if not all(_known(d) for d in k):
            raise ShapeError(f"conv2d: padding='same' needs a known kernel size, w has shape {tuple(w_shape)}")
        total = [dil * (kk - 1) for dil, kk in zip(dilation, k)]
        begin = [t // 2 for t in total]
        return (begin[0], begin[1], total[0] - begin[0], total[1] - begin[1])
    p = _pair("padding", padding)
    return (p[0], p[1], p[0], p[1])


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, name=None):
    """2-D convolution (as ``torch.nn.functional.conv2d``): NCHW ``x``, OIHW ``w`` (O output
    channels, C / groups input channels per group), optional ``bias`` of shape (O,).

    stride and dilation are ints or (h, w) pairs; padding an int, a pair, ``"valid"`` (0) or
    ``"same"`` (stride 1 only; an odd total padding puts the extra row/column at the
    bottom/right, as PyTorch).  groups == C is a depthwise convolution.  Output rows:
    floor((H + 2p - d·(k - 1) - 1) / s) + 1.  Bad shapes raise ShapeError naming the argument."""
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise GraphError(f"conv2d: groups must be an int, got {groups!r}")
    stride, dilation = _pair("stride", stride), _pair("dilation", dilation)
    if len(w.shape) != 4:
        raise ShapeError(f"conv2d: w must have rank 4 (O, C/groups, k_h, k_w), got shape {tuple(w.shape)}")
    attrs = {"stride": stride, "pads": _resolve_padding(padding, w.shape, stride, dilation),
             "dilation": dilation, "groups": int(groups)}
    if bias is None:
        return build("conv2d", [x, w], attrs, name=name)
    if len(bias.shape) != 1 or (_known(bias.shape[0]) and _known(w.shape[0]) and bias.shape[0] != w.shape[0]):
        raise ShapeError(f"conv2d: bias must have shape ({w.shape[0]},) (one per output channel of w), "
                         f"got {tuple(bias.shape)}")
    y = build("conv2d", [x, w], attrs)
    return F.add(y, F.reshape(bias, (w.shape[0], 1, 1)), name=name)


def conv2d_grad_input(dy, w, input_size, attrs, name=None):
    """The gradient of conv2d(x, w, **attrs) in x, for x of spatial size input_size = (H, W)."""
    return build("conv2d_grad_input", [dy, w], dict(_conv_attrs(attrs), input_size=tuple(input_size)), name=name)


def conv2d_grad_weight(dy, x, kernel_size, attrs, name=None):
    """The gradient of conv2d(x, w, **attrs) in w, for w of spatial size kernel_size = (k_h, k_w)."""
    return build("conv2d_grad_weight", [dy, x], dict(_conv_attrs(attrs), kernel_size=tuple(kernel_size)),
                 name=name)


# -- conv_transpose2d: the adjoint of conv2d in x, as an op of its own ------------------------------
# torch.nn.functional.conv_transpose2d: x (N, C_in, H, W), w (C_in, C_out/g, k_h, k_w) — the weight of
# the conv2d (C_out -> C_in channels) whose input gradient it is.  Output rows
#   H_out = (H - 1)·s_h - top - bottom + d_h·(k_h - 1) + output_padding_h + 1
# (likewise columns); output_padding adds rows at the bottom (and columns at the right) that the
# formula's floor in conv2d loses, and must be < the stride or < the dilation (as torch).
# Composite: conv2d_grad_input(x, w) with input_size (H_out, W_out) and the bottom/right pads chosen
# so that the conv2d of an (H_out, W_out) image has exactly x's (H, W) outputs (the bottom pad only
# changes how many outputs the conv2d has, never which taps meet which rows); where no pad >= 0
# does (output_padding >= stride, allowed when < dilation), x gets zero rows/columns at the
# bottom/right first.  Autodiff differentiates that definition: x's gradient is conv2d(dy, w),
# w's is conv2d_grad_weight(x, dy) — the conv2d kernels, no third convolution.

TRANSPOSE_ATTRS = dict(CONV_ATTRS, output_padding=AttrSpec(
    "ints", default=(0, 0), doc="rows/columns added at the bottom/right (h, w), each < stride or < dilation"))


def _transpose_out_hw(ctx_fail, attrs, hw, khw):
    """(H_out, W_out) of conv_transpose2d for x's (H, W) and the kernel's (k_h, k_w); None where unknown."""
    out = []
    for axis, d, k, s, p0, p1, dil, op in zip("HW", hw, khw, attrs["stride"], attrs["pads"][:2], attrs["pads"][2:],
                                               attrs["dilation"], attrs["output_padding"]):
        if not (_known(d) and _known(k)):
            out.append(None)
            continue
        if d < 1:
            ctx_fail(f"x: {axis}={d} must be >= 1")
        size = (d - 1) * s - p0 - p1 + dil * (k - 1) + op + 1
        if size < 1:
            ctx_fail(f"x: {axis}={d} gives an output {axis} of {size} (= ({d} - 1)·{s} - {p0} - {p1} + "
                     f"{dil}·({k} - 1) + {op} + 1): must be >= 1; reduce the padding")
        out.append(size)
    return tuple(out)


def _check_transpose_attrs(ctx):
    _check_attrs(ctx)
    a = ctx.attrs
    op = a["output_padding"]
    if len(op) != 2:
        ctx.fail(f"output_padding={list(op)} must hold 2 ints")
    for axis, p, s, d in zip("HW", op, a["stride"], a["dilation"]):
        if p < 0 or not (p < s or p < d):
            ctx.fail(f"output_padding={list(op)}: {axis}={p} must be >= 0 and smaller than the stride ({s}) or "
                     f"the dilation ({d})")


def _transpose_infer(ctx):
    _check_transpose_attrs(ctx)
    _check_rank4(ctx, 0, "x")
    _check_rank4(ctx, 1, "w")
    x, w = ctx.shape(0), ctx.shape(1)
    g = ctx.attrs["groups"]
    c_in, cog = w[0], w[1]
    if _known(c_in) and c_in % g:
        ctx.fail(f"w of shape {tuple(w)} has {c_in} input channels, not divisible by groups={g}")
    if _known(x[1]) and _known(c_in) and x[1] != c_in:
        ctx.fail(f"w of shape {tuple(w)} (C_in, C_out/groups, k_h, k_w) expects x with {c_in} channels, x has {x[1]}")
    for axis, k in zip("HW", w[2:]):
        if _known(k) and k < 1:
            ctx.fail(f"w of shape {tuple(w)}: kernel {axis}={k} must be >= 1")
    c_out = cog * g if _known(cog) else None
    return ctx.dtype(0), (x[0], c_out) + _transpose_out_hw(ctx.fail, ctx.attrs, x[2:], w[2:])


def _shape_error(msg):
    raise ShapeError(f"conv_transpose2d: {msg}")


def transpose_as_grad_input(attrs, hw, khw):
    """How conv_transpose2d over x of spatial size hw runs as conv2d_grad_input: (the conv2d's
    attrs, its input_size, the zero rows and columns x gets at the bottom and right)."""
    out = _transpose_out_hw(_shape_error, attrs, hw, khw)
    pads, extra = list(attrs["pads"]), [0, 0]
    for i, s in enumerate(attrs["stride"]):
        op, end = attrs["output_padding"][i], attrs["pads"][2 + i]
        # conv2d of an out-sized image with end pad e has floor(((H-1)·s - end + e + op) / s) + 1
        # outputs: x's H exactly for e in [end - op, end - op + s - 1]
        e = max(0, end - op)
        pads[2 + i] = e
        extra[i] = ((hw[i] - 1) * s - end + e + op) // s + 1 - hw[i]
    return ({"stride": tuple(attrs["stride"]), "pads": tuple(pads), "dilation": tuple(attrs["dilation"]),
             "groups": attrs["groups"]}, out, tuple(extra))


def _transpose_composite(ctx):
    x, w = ctx.inputs
    if not all(_known(d) for d in tuple(x.shape[2:]) + tuple(w.shape[2:])):
        raise ShapeError(f"conv_transpose2d: needs known spatial sizes, got x {tuple(x.shape)} and w {tuple(w.shape)}")
    conv_attrs, out, extra = transpose_as_grad_input(ctx.attrs, tuple(x.shape[2:]), tuple(w.shape[2:]))
    if any(extra):
        x = F.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    return conv2d_grad_input(x, w, out, conv_attrs)


def _transpose_ref(inputs, attrs):
    # scatter form: x[n, c, i, j]·w[c, o, a, b] lands on output row i·s_h + a·d_h - top, column
    # j·s_w + b·d_w - left; rows/columns outside [0, H_out) x [0, W_out) are dropped
    x, w = inputs
    g = attrs["groups"]
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    pt, pl = attrs["pads"][:2]
    n, c_in, h, wd = x.shape
    kh, kw = w.shape[2:]
    cog = w.shape[1]
    ho, wo = _transpose_out_hw(lambda m: None, attrs, (h, wd), (kh, kw))
    full_h = max(pt + ho, (h - 1) * sh + dh * (kh - 1) + 1)
    full_w = max(pl + wo, (wd - 1) * sw + dw * (kw - 1) + 1)
    y = np.zeros((n, g, cog, full_h, full_w))
    xg = _grouped(x.astype(np.float64), g)
    wg = w.astype(np.float64).reshape((g, c_in // g, cog, kh, kw))
    for a in range(kh):
        for b in range(kw):
            rs = slice(a * dh, a * dh + sh * (h - 1) + 1, sh)
            cs = slice(b * dw, b * dw + sw * (wd - 1) + 1, sw)
            y[:, :, :, rs, cs] += np.einsum("ngchw,gco->ngohw", xg, wg[..., a, b])
    return y[:, :, :, pt:pt + ho, pl:pl + wo].reshape(n, g * cog, ho, wo).astype(x.dtype)


def _transpose_cost(in_shapes, out_shapes, attrs):
    """2·(input elements)·(C_out/g)·k_h·k_w: each input item meets every tap of its group's outputs."""
    return 2 * int(np.prod(in_shapes[0])) * int(np.prod(in_shapes[1][1:]))


def _t(stride=1, pads=0, dilation=1, groups=1, output_padding=0):
    a = _a(stride, pads, dilation, groups)
    a["output_padding"] = (output_padding,) * 2 if isinstance(output_padding, int) else tuple(output_padding)
    return a


# (x shape, w shape, attrs): size 1, size-0 batch / channels, odd sizes, DCGAN's k4 s2 p1, output_padding
# (< stride, and >= stride under a dilation: x padded), asymmetric pads, groups, depthwise, 1x1 (the
# pointwise grad_input), >= 16 output channels at stride 1 (the float32 implicit GEMM)
TRANSPOSE_CASES = [
    ((1, 1, 1, 1), (1, 1, 1, 1), _t()),
    ((0, 2, 3, 3), (2, 3, 3, 3), _t(pads=1)),
    ((2, 0, 3, 3), (0, 2, 2, 2), _t(stride=2)),
    ((2, 2, 3, 3), (2, 0, 3, 3), _t()),
    ((2, 3, 4, 4), (3, 2, 4, 4), _t(stride=2, pads=1)),
    ((3, 3, 5, 4), (3, 2, 3, 2), _t()),
    ((2, 3, 3, 5), (3, 4, 3, 2), _t(stride=(2, 3), pads=(1, 0, 1, 0), output_padding=(1, 2))),
    ((1, 4, 3, 3), (4, 1, 3, 3), _t(stride=2, pads=1, groups=2, output_padding=1)),
    ((1, 3, 4, 3), (3, 1, 3, 3), _t(pads=1, groups=3)),
    ((1, 2, 4, 3), (2, 3, 3, 3), _t(dilation=2, output_padding=1)),
    ((1, 2, 4, 3), (2, 3, 3, 2), _t(stride=(1, 2), dilation=(3, 1), pads=(1, 0, 1, 0), output_padding=(2, 1))),
    ((2, 2, 5, 4), (2, 2, 3, 3), _t(pads=(1, 0, 2, 1))),
    ((1, 2, 2, 2), (2, 2, 5, 5), _t(stride=3, pads=2, output_padding=2)),
    ((2, 3, 4, 5), (3, 2, 1, 1), _t()),
    ((1, 2, 3, 3), (2, 3, 1, 1), _t(stride=2, output_padding=1)),
    ((5, 4, 7, 6), (4, 3, 4, 4), _t(stride=2, pads=1)),
    ((2, 16, 5, 6), (16, 17, 3, 3), _t(pads=1)),
]
TRANSPOSE_SPECIAL = [((2, 3, 4, 5), (3, 4, 3, 3), _t(stride=2, pads=1, output_padding=1)),
                     ((1, 16, 4, 5), (16, 16, 3, 3), _t(pads=1))]  # float32: the implicit GEMM


def _transpose_examples(rng):
    return _x_w_examples(rng, TRANSPOSE_CASES, TRANSPOSE_SPECIAL, "")


register_op(
    "conv_transpose2d",
    doc="The transposed convolution (torch.nn.functional.conv_transpose2d): y[n, g·C_out/g + o, i·s_h + a·d_h - top, "
        "j·s_w + b·d_w - left] += x[n, g·C_in/g + c, i, j] · w[g·C_in/g + c, o, a, b]; H_out = (H - 1)·s_h - top - "
        "bottom + d_h·(k_h - 1) + output_padding_h + 1.  Composite: conv2d_grad_input.",
    inputs=[("x", "T"), ("w", "T")],
    type_vars=_FLOAT_T,
    attrs=TRANSPOSE_ATTRS,
    infer=_transpose_infer,
    reference=_transpose_ref,
    examples=_transpose_examples,
    cost=_transpose_cost,
    composite=_transpose_composite,
    kernels=(),
)


def conv_transpose2d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, name=None):
    """Transposed 2-D convolution (as ``torch.nn.functional.conv_transpose2d``): NCHW ``x``,
    ``w`` of shape (C_in, C_out / groups, k_h, k_w), optional ``bias`` of shape (C_out,).

    stride, padding, output_padding and dilation are ints or (h, w) pairs; output rows:
    (H - 1)·s - 2p + d·(k - 1) + output_padding + 1, with output_padding < stride or < dilation.
    It is the gradient of ``conv2d`` in its input (the same weight): ``conv_transpose2d(x, w,
    stride=2, padding=1)`` upsamples a 4x4 map to 8x8 with a 4x4 kernel.  Bad shapes raise
    ShapeError naming the argument.

    >>> import graphc as gc
    >>> with gc.Graph():
    ...     z = gc.placeholder("z", (None, 64, 4, 4))
    ...     w = gc.variable("w", (64, 32, 4, 4))
    ...     gc.conv_transpose2d(z, w, stride=2, padding=1).shape
    (None, 32, 8, 8)
    """
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise GraphError(f"conv_transpose2d: groups must be an int, got {groups!r}")
    try:
        stride, dilation = _pair("stride", stride), _pair("dilation", dilation)
        p, op = _pair("padding", padding), _pair("output_padding", output_padding)
    except GraphError as e:
        raise GraphError(str(e).replace("conv2d:", "conv_transpose2d:", 1)) from None
    if len(w.shape) != 4:
        raise ShapeError(f"conv_transpose2d: w must have rank 4 (C_in, C_out/groups, k_h, k_w), got shape "
                         f"{tuple(w.shape)}")
    attrs = {"stride": stride, "pads": (p[0], p[1], p[0], p[1]), "dilation": dilation, "groups": int(groups),
             "output_padding": op}
    if bias is None:
        return build("conv_transpose2d", [x, w], attrs, name=name)
    c_out = w.shape[1] * int(groups) if _known(w.shape[1]) else None
    if len(bias.shape) != 1 or (_known(bias.shape[0]) and c_out is not None and bias.shape[0] != c_out):
        raise ShapeError(f"conv_transpose2d: bias must have shape ({c_out},) (one per output channel: w.shape[1] "
                         f"· groups), got {tuple(bias.shape)}")
    y = build("conv_transpose2d", [x, w], attrs)
    return F.add(y, F.reshape(bias, (c_out, 1, 1)), name=name)
