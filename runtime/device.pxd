# Cython declarations for device.h and errors.h (only what Python needs).
from libcpp cimport bool
from libcpp.pair cimport pair
from libcpp.string cimport string
from libcpp.vector cimport vector

cdef extern from "errors.h" namespace "graphc":
    cdef enum class ErrorKind(int):
        Invalid
        Resource
        Device
        Runtime
        Comm

    ErrorKind classify_current_exception(string* what)
    ctypedef void (*ExceptionHook)() except *
    void set_exception_hook(ExceptionHook hook)
    # The `except +` handler of every declaration below and in the other .pxd files.
    void raise_current_exception() except *

cdef extern from "device.h" namespace "graphc":
    bool cuda_built()
    vector[string] built_devices() except +raise_current_exception

    cdef cppclass CudaOptions:
        bool graphs
        bool sync
        bool tf32

    CudaOptions cuda_options() except +raise_current_exception
    string cuda_status() except +raise_current_exception
    vector[pair[string, string]] cuda_info() except +raise_current_exception
    void set_cuda_library_dirs(const vector[string]& dirs) except +raise_current_exception
    vector[string] cuda_library_dirs() except +raise_current_exception
    vector[pair[string, string]] cuda_load_library(const string& which) except +raise_current_exception
