# Cython declarations for arena.h.
from libc.stdint cimport uint8_t

cdef extern from "arena.h" namespace "graphc":
    size_t kAlignment

    cdef cppclass AlignedBuffer:
        AlignedBuffer() except +
        AlignedBuffer(size_t nbytes) except +
        uint8_t* data()
        size_t size()
