"""The conv ops' workspaces for target "cuda" (runtime/cuda/conv.cu reads them): a rank-1 cuDNN
workspace bound, grad_input's flag at its end, grad_weight's partial products of the own kernel's
split reduction — and the CPU plan's workspaces untouched.  Runs without a GPU."""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import graphc.ops  # noqa: F401  (registers the ops)
from graphc import registry
from graphc.ops import conv

CONV_CU = Path(__file__).resolve().parents[1] / "runtime" / "cuda" / "conv.cu"


def _ws(op, inputs, outputs, attrs, target):
    node = SimpleNamespace(op=op, attrs=attrs)
    return list(registry.get_op(op).workspace(registry.WorkspaceContext(node, inputs, outputs, target)))


def _attrs(stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1, **extra):
    return dict(stride=stride, pads=pads, dilation=dilation, groups=groups, **extra)


def test_constants_match_the_cuda_kernel():
    src = CONV_CU.read_text()
    tile = re.search(r"constexpr int kBM = (\d+), kBN = (\d+)", src)
    flag = re.search(r"constexpr size_t kFlagBytes = (\d+);", src)
    assert tile and flag, "runtime/cuda/conv.cu no longer declares kBM/kBN/kFlagBytes"
    assert int(tile.group(1)) == int(tile.group(2)) == conv.CUDA_TILE
    assert int(flag.group(1)) == conv.CUDA_FLAG_BYTES


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_workspace_is_the_bounded_column_matrix(dtype):
    item = np.dtype(dtype).itemsize
    # small: the 1 MiB floor
    (w0,) = _ws("conv2d", [(dtype, (2, 3, 5, 5)), (dtype, (4, 3, 3, 3))], [(dtype, (2, 4, 5, 5))], _attrs(), "cuda")
    assert w0 == (dtype, ((1 << 20) // item,))
    # the column matrix of the batch: 8 images · 64·3·3 rows · 32·32 positions
    col = 8 * 64 * 9 * 32 * 32 * item
    (w1,) = _ws("conv2d", [(dtype, (8, 64, 32, 32)), (dtype, (64, 64, 3, 3))], [(dtype, (8, 64, 32, 32))],
                _attrs(), "cuda")
    assert w1 == (dtype, (col // item,))
    # a huge one: the 256 MiB cap
    (w2,) = _ws("conv2d", [(dtype, (256, 256, 56, 56)), (dtype, (256, 256, 3, 3))],
                [(dtype, (256, 256, 56, 56))], _attrs(), "cuda")
    assert w2 == (dtype, ((256 << 20) // item,))


def test_grad_input_workspace_has_the_flag():
    (w,) = _ws("conv2d_grad_input", [("float32", (2, 4, 5, 5)), ("float32", (4, 3, 3, 3))],
               [("float32", (2, 3, 5, 5))], _attrs(input_size=(5, 5)), "cuda")
    assert w == ("float32", (((1 << 20) + 256) // 4,))


def test_empty_outputs_plan_no_cuda_workspace():
    assert _ws("conv2d", [("float32", (0, 2, 4, 4)), ("float32", (3, 2, 3, 3))], [("float32", (0, 3, 4, 4))],
               _attrs(), "cuda") == []
    assert _ws("conv2d_grad_input", [("float32", (0, 3, 4, 4)), ("float32", (3, 2, 3, 3))],
               [("float32", (0, 2, 4, 4))], _attrs(input_size=(4, 4)), "cuda") == []
    assert _ws("conv2d_grad_weight", [("float32", (2, 0, 2, 2)), ("float32", (2, 2, 4, 4))],
               [("float32", (0, 2, 3, 3))], _attrs(pads=(0, 0, 0, 0), kernel_size=(3, 3)), "cuda") == []


def test_grad_weight_splits_its_reduction_when_the_weight_is_small():
    # 64 x 576 weight: 1 x 9 tiles; reduction 32·32·32 = 32768 items -> min(64, ceil(264/9)=30, 64) = 30
    ws = _ws("conv2d_grad_weight", [("float32", (32, 64, 32, 32)), ("float32", (32, 64, 32, 32))],
             [("float32", (64, 64, 3, 3))], _attrs(kernel_size=(3, 3)), "cuda")
    assert len(ws) == 2 and len(ws[0][1]) == 1
    assert ws[1] == ("float32", (30, 64 * 64 * 9))
    # a short reduction (1 image of 4x4): no split, no second workspace
    ws = _ws("conv2d_grad_weight", [("float32", (1, 4, 4, 4)), ("float32", (1, 3, 4, 4))],
             [("float32", (4, 3, 3, 3))], _attrs(kernel_size=(3, 3)), "cuda")
    assert len(ws) == 1


def test_cpu_target_keeps_the_cpu_workspaces():
    args = ([("float32", (2, 3, 5, 5)), ("float32", (4, 3, 3, 3))], [("float32", (2, 4, 5, 5))], _attrs())
    cpu = _ws("conv2d", *args, "cpu")
    assert cpu == conv._col_request("float32", 2, 3, (3, 3), (5, 5), panels=True)
    assert all(len(dims) != 1 for _, dims in cpu)  # conv.cu tells the plans apart by ws[0]'s rank
