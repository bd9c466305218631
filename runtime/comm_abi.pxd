# Cython declarations for comm_abi.h (the communicator C ABI of data-parallel plans).
from libc.stdint cimport uint64_t


cdef extern from "comm_abi.h" nogil:
    enum:
        GRAPHC_COMM_ABI_VERSION
        GRAPHC_COMM_OK
        GRAPHC_COMM_ERROR
        GRAPHC_COMM_TIMEOUT
        GRAPHC_COMM_ABORTED
        GRAPHC_COMM_UNSUPPORTED
    const char* GRAPHC_COMM_CAPSULE

    ctypedef struct graphc_comm:
        int abi_version
        int rank
        int size
        int deterministic
        const char* backend
        void* self
        int (*prepare)(void* self, int slot, uint64_t nbytes, void* stream, char* err, size_t errlen) noexcept nogil
        int (*allreduce_start)(void* self, int slot, void* data, uint64_t count, int dtype, void* stream,
                               char* err, size_t errlen) noexcept nogil
        int (*allreduce_wait)(void* self, int slot, void* stream, char* err, size_t errlen) noexcept nogil
        int (*broadcast)(void* self, void* data, uint64_t nbytes, int root, char* err, size_t errlen) noexcept nogil
        int (*allgather)(void* self, const void* send, uint64_t nbytes, void* recv, char* err, size_t errlen) noexcept nogil
        int (*barrier)(void* self, char* err, size_t errlen) noexcept nogil
