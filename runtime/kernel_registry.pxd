# Cython declarations for kernel_registry.h (only what Python needs).
from libcpp cimport bool
from libcpp.pair cimport pair
from libcpp.string cimport string
from libcpp.vector cimport vector

from plan cimport DType

from device cimport raise_current_exception

cdef extern from "kernel_registry.h" namespace "graphc":
    cdef cppclass KernelRegistry:
        bool has_op(const string& op) except +raise_current_exception
        vector[string] ops() except +raise_current_exception
        vector[pair[string, DType]] keys() except +raise_current_exception

        @staticmethod
        const KernelRegistry& cpu() except +raise_current_exception

        @staticmethod
        const KernelRegistry& for_device(const string& name) except +raise_current_exception

    cdef cppclass KernelFile:
        const char* source
        const char* register_name
        void (*register_fn)(KernelRegistry& r) except +raise_current_exception

    const vector[KernelFile]& cpu_kernel_files() except +raise_current_exception
