# Cython declarations for validate.h.
from libc.stdint cimport uint64_t
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.vector cimport vector

from plan cimport PlanDesc

from device cimport raise_current_exception

cdef extern from "validate.h" namespace "graphc":
    cdef cppclass Limits:
        uint64_t memory_limit

    void validate_plan(const PlanDesc& plan, const Limits& limits) except +raise_current_exception nogil
    uint64_t physical_memory_bytes()
    void set_inplace_ops(Limits* limits, const vector[string]& ops) except +raise_current_exception
