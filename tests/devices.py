"""The devices the device-parametrized tests run on ("cpu", "cuda") and why "cuda" skips.

``DEVICES`` parametrizes a test; ``skip_unless(device)`` skips it on a device that cannot run
here, with the specific reason (graphc built without CUDA, no driver, no GPU, a missing
cuBLASLt...).  The reason comes from ``graphc._runtime.cuda_status()`` ("" when a CUDA Session
can open); a runtime without that function is asked by opening a Session on a one-step plan
and reading its DeviceError."""

import functools

import numpy as np
import pytest

DEVICES = ("cpu", "cuda")


@functools.lru_cache(maxsize=None)
def cuda_skip_reason():
    """Why a CUDA Session cannot open in this process, or "" when it can."""
    from graphc import _runtime
    if not _runtime.cuda_built():
        return "graphc was built without CUDA (no nvcc at build time, or GRAPHC_CUDA=0)"
    status = getattr(_runtime, "cuda_status", None)
    if status is not None:
        reason = status()
        return f"CUDA is unavailable: {reason}" if reason else ""
    import graphc as gc
    from graphc.errors import DeviceError
    with gc.Graph() as g:
        y = gc.relu(gc.placeholder("x", (2,)))
    plan = gc.compile(g, fetches=[y.name], target="cuda")
    try:
        gc.Session(plan, device="cuda").run({"x": np.zeros(2, np.float32)})
    except DeviceError as e:
        return f"CUDA is unavailable: {e}"
    return ""


def skip_reason(device):
    """"" when ``device`` can run here, else why not."""
    if device == "cpu":
        return ""
    if device == "cuda":
        return cuda_skip_reason()
    raise ValueError(f"unknown test device {device!r}; expected one of {DEVICES}")


def skip_unless(device):
    """pytest.skip(reason) unless ``device`` can run a Session here."""
    reason = skip_reason(device)
    if reason:
        pytest.skip(f"device {device!r}: {reason}")


def cuda_available():
    return cuda_skip_reason() == ""
