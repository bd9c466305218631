# Cython declarations for executor.h.
from libc.stdint cimport int32_t
from libcpp.vector cimport vector

from plan cimport PlanDesc, ValueDesc

cdef extern from "executor.h" namespace "graphc":
    cdef cppclass Executor:
        Executor(PlanDesc plan, int threads, bint poison) except +
        void run(const vector[const void*]& feeds) except + nogil
        vector[double] profile(const vector[const void*]& feeds, int iters, int warmup) except + nogil
        const PlanDesc& plan()
        int threads()
        bint poison()
        void* persistent_data(int32_t index) except +
        size_t persistent_nbytes(int32_t index) except +
        void* value_data(int32_t index) except +
        const ValueDesc& value(int32_t index) except +
