"""Shared by the tests that check gc.nn layers against torch.nn (test_nn_seq, test_nn_rnn,
test_nn_transformer): importing torch or skipping with the reason, and the per-tensor error
measure max|graphc − torch| / max|torch|."""
import numpy as np
import pytest


def torch_or_skip():
    """torch at one thread (comparisons need no speed; results must not depend on its
    threading), or a skip that says why."""
    torch = pytest.importorskip("torch", reason="torch is not installed: gc.nn is checked against PyTorch")
    torch.set_num_threads(1)
    return torch


def assert_close(ours, theirs, what, rtol, finite=False):
    """max|ours − theirs| ≤ rtol · max|theirs| (and same shape; all finite with ``finite``)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != torch's {theirs.shape}"
    if finite:
        assert np.all(np.isfinite(ours)), f"{what}: graphc gave non-finite values"
    scale = max(float(np.max(np.abs(theirs))), 1e-30)
    err = float(np.max(np.abs(ours - theirs))) / scale
    assert err <= rtol, f"{what}: max |graphc - torch| / max |torch| = {err:.3g} > {rtol:g}"
