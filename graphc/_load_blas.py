"""Load the OpenBLAS shared library that graphc._runtime links against.

The extension's rpath points at scipy-openblas32 as it was installed at build time
(often pip's temporary build environment), so the library is loaded here, with
RTLD_GLOBAL, from wherever scipy-openblas32 is installed now, before the extension.
"""
import ctypes
import glob
import os

_HANDLE = None


def load_openblas():
    global _HANDLE
    if _HANDLE is not None:
        return _HANDLE
    import scipy_openblas32

    libdir = scipy_openblas32.get_lib_dir()
    name = scipy_openblas32.get_library()
    candidates = sorted(glob.glob(os.path.join(libdir, f"lib{name}*.so*")) +
                        glob.glob(os.path.join(libdir, f"lib{name}*.dylib")) +
                        glob.glob(os.path.join(libdir, f"{name}*.dll")))
    if not candidates:
        raise ImportError(f"graphc: no {name} shared library in {libdir}")
    _HANDLE = ctypes.CDLL(candidates[0], mode=ctypes.RTLD_GLOBAL)
    return _HANDLE
