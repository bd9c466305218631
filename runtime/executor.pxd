# Cython declarations for executor.h.
from libc.stdint cimport int32_t
from libcpp cimport bool
from libc.stdint cimport uint64_t
from libcpp.memory cimport shared_ptr, unique_ptr
from libcpp.string cimport string
from libcpp.vector cimport vector

from comm_abi cimport graphc_comm
from plan cimport PlanDesc, ValueDesc
from validate cimport Limits

from device cimport raise_current_exception

cdef extern from "executor.h" namespace "graphc":
    cdef cppclass ExecutorOptions:
        int threads
        bool poison
        string device
        Limits limits
        uint64_t arena_bytes
        const graphc_comm* comm

    cdef cppclass SharedState:
        pass

    cdef cppclass Binding:
        const vector[char]& feed_in_place()
        const vector[char]& fetch_in_place()
        size_t prepared_steps()

    cdef cppclass Executor:
        @staticmethod
        void prepare_only(const PlanDesc& plan, const string& device) except +raise_current_exception nogil
        string cuda_graph_state()
        Executor(PlanDesc plan, const ExecutorOptions& options,
                 shared_ptr[SharedState] share) except +raise_current_exception
        void run(const vector[const void*]& feeds, const vector[void*]& fetches) except +raise_current_exception nogil
        # Executor::run(const Binding&, ...), named apart from the plain run for Cython.
        void run_bound "run"(const Binding& binding, const vector[const void*]& feeds,
                             const vector[void*]& fetches) except +raise_current_exception nogil
        string feed_refusal(size_t k) except +raise_current_exception
        string fetch_refusal(size_t k) except +raise_current_exception
        unique_ptr[Binding] bind(const vector[const void*]& feeds,
                                 const vector[void*]& fetches) except +raise_current_exception
        vector[double] profile(const vector[const void*]& feeds, int iters, int warmup) except +raise_current_exception nogil
        const PlanDesc& plan()
        int threads()
        shared_ptr[SharedState] shared_state()
        size_t arena_nbytes()
        bint poison()
        void read_persistent(int32_t index, void* dst, size_t nbytes) except +raise_current_exception nogil
        void write_persistent(int32_t index, const void* src, size_t nbytes) except +raise_current_exception nogil
        void read_value(int32_t index, void* dst, size_t nbytes) except +raise_current_exception nogil
        size_t persistent_nbytes(int32_t index) except +raise_current_exception
        const ValueDesc& value(int32_t index) except +raise_current_exception
