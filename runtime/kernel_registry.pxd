# Cython declarations for kernel_registry.h (only what Python needs).
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.vector cimport vector

cdef extern from "kernel_registry.h" namespace "graphc":
    cdef cppclass KernelRegistry:
        bool has_op(const string& op) except +
        vector[string] ops() except +

        @staticmethod
        const KernelRegistry& cpu() except +
