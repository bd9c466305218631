"""Where NVIDIA's pip wheels keep the CUDA libraries graphc loads with dlopen.

``pip install "graphc[cuda]"`` installs cuBLAS (libcublasLt.so.13, in the ``nvidia-cublas``
wheel: ``<site-packages>/nvidia/cu13/lib``), cuDNN (libcudnn.so.9, ``nvidia-cudnn-cu13``:
``<site-packages>/nvidia/cudnn/lib``) and NCCL (libnccl.so.2, ``nvidia-nccl-cu13``:
``<site-packages>/nvidia/nccl/lib``; data-parallel training on CUDA only).
:func:`library_dirs` lists those folders without importing any of NVIDIA's modules;
graphc._runtime searches them first, then the system's library path (runtime/cuda/libs.h), the
first time device "cuda" is used.
"""
import importlib.util
import os

# Under each ``nvidia`` package folder, in search order: the CUDA 13 wheels' shared folder,
# the older one-folder-per-library layout, then cuDNN's and NCCL's.
SUBDIRS = (("cu13", "lib"), ("cublas", "lib"), ("cudnn", "lib"), ("nccl", "lib"))


def nvidia_roots():
    """The folders of the ``nvidia`` namespace package on sys.path (none when no NVIDIA wheel
    is installed)."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    return [str(p) for p in (spec.submodule_search_locations or [])]


def library_dirs(roots=None):
    """The existing library folders of NVIDIA's wheels under ``roots`` (default:
    :func:`nvidia_roots`), in search order, without duplicates."""
    out = []
    for root in nvidia_roots() if roots is None else roots:
        for parts in SUBDIRS:
            d = os.path.join(root, *parts)
            if os.path.isdir(d) and d not in out:
                out.append(d)
    return out
