# Cython declarations for executor.h.
from libc.stdint cimport int32_t
from libcpp.vector cimport vector

from plan cimport PlanDesc, ValueDesc

cdef extern from "executor.h" namespace "graphc":
    cdef cppclass Executor:
        Executor(PlanDesc plan, int threads) except +
        void run(const vector[const void*]& feeds) except + nogil
        const PlanDesc& plan()
        int threads()
        void* value_data(int32_t index) except +
        const ValueDesc& value(int32_t index) except +
