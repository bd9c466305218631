# Cython declarations for cpu/fused_program.h (only what Python needs).
from libcpp.string cimport string
from libcpp.vector cimport vector

from device cimport raise_current_exception

cdef extern from "cpu/fused_program.h" namespace "graphc::cpu":
    vector[string] fused_ops() except +raise_current_exception
