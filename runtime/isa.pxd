# Cython declarations for cpu/isa.h (only what Python needs).
from libcpp.string cimport string

from device cimport raise_current_exception

cdef extern from "cpu/isa.h" namespace "graphc::cpu":
    cdef enum class Isa:
        Baseline
        Avx2
        Avx512
    Isa detected_isa() except +raise_current_exception
    Isa active_isa() except +raise_current_exception
    void set_isa_cap(const string& name) except +raise_current_exception
    const char* isa_name(Isa isa)
