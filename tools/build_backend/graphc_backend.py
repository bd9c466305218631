"""graphc's PEP 517 build backend: setuptools' own, plus NVIDIA's header wheels for a CUDA build.

A CUDA build (setup.py, cuda_config) compiles against the headers of cuBLASLt, cuDNN and NCCL, which
ship in NVIDIA's wheels, not in the CUDA toolkit's compiler packages.  When nvcc is found (and
GRAPHC_CUDA is not 0) this backend adds those wheels to the isolated build environment, for the
CUDA major version nvcc reports; otherwise it adds nothing, and a CPU-only machine downloads no
CUDA package.  The libraries themselves are runtime extras: ``pip install "graphc[cuda]"``.
"""
import os
import re
import shutil
import subprocess

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 — every hook we do not override

# CUDA major version → the wheels that carry cublasLt.h, cudnn.h and nccl.h for it.
HEADER_WHEELS = {
    13: ["nvidia-cublas>=13,<14", "nvidia-cudnn-cu13>=9,<10", "nvidia-nccl-cu13>=2.19,<3"],
    12: ["nvidia-cublas-cu12>=12,<13", "nvidia-cudnn-cu12>=9,<10", "nvidia-nccl-cu12>=2.19,<3"],
}


def _nvcc():
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if nvcc is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        nvcc = "/usr/local/cuda/bin/nvcc"
    return nvcc


def cuda_build_requires():
    if os.environ.get("GRAPHC_CUDA", "").strip() == "0" or os.environ.get("GRAPHC_CUDA_LIB_INCLUDE"):
        return []
    nvcc = _nvcc()
    if nvcc is None:
        return []
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    m = re.search(r"release (\d+)\.", out)
    return list(HEADER_WHEELS.get(int(m.group(1)), [])) if m else []


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + cuda_build_requires()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + cuda_build_requires()
