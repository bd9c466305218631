# Cython declarations for device.h and errors.h (only what Python needs).
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.vector cimport vector

cdef extern from "errors.h" namespace "graphc":
    cdef enum class ErrorKind(int):
        Invalid
        Resource
        Device
        Runtime

    ErrorKind classify_current_exception(string* what)
    ctypedef void (*ExceptionHook)() except *
    void set_exception_hook(ExceptionHook hook)
    # The `except +` handler of every declaration below and in the other .pxd files.
    void raise_current_exception() except *

cdef extern from "device.h" namespace "graphc":
    bool cuda_built()
    vector[string] built_devices() except +raise_current_exception
