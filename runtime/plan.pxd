# Cython declarations for plan.h.
from libc.stdint cimport int32_t, int64_t, uint64_t
from libcpp.map cimport map
from libcpp.string cimport string
from libcpp.vector cimport vector

cdef extern from "plan.h" namespace "graphc":
    cpdef enum class DType(int32_t):
        Invalid
        F32
        F64
        I32
        I64
        Bool

    cpdef enum class Storage(int32_t):
        Arena
        Persistent
        Constant
        View

    size_t dtype_size(DType t)
    const char* dtype_name(DType t)

    cdef enum AttrKind "graphc::AttrValue::Kind":
        ATTR_INT "graphc::AttrValue::Int"
        ATTR_FLOAT "graphc::AttrValue::Float"
        ATTR_STRING "graphc::AttrValue::String"
        ATTR_BOOL "graphc::AttrValue::Bool"
        ATTR_INTS "graphc::AttrValue::Ints"
        ATTR_FLOATS "graphc::AttrValue::Floats"
        ATTR_DTYPE "graphc::AttrValue::DTypeKind"
        ATTR_TENSOR "graphc::AttrValue::Tensor"

    cdef cppclass AttrValue:
        AttrKind kind
        int64_t i
        double f
        string s
        vector[int64_t] ints
        vector[double] floats

    cdef cppclass ValueDesc:
        string name
        DType dtype
        vector[int64_t] dims
        Storage storage
        uint64_t offset
        uint64_t nbytes
        int32_t index
        int32_t alias_of

    cdef cppclass StepDesc:
        string op
        string node
        vector[int32_t] inputs
        vector[int32_t] outputs
        map[string, AttrValue] attrs
        vector[int32_t] frees
        vector[int32_t] workspaces

    cdef cppclass TensorData:
        string name
        DType dtype
        vector[int64_t] dims
        string bytes

    cdef cppclass PlanDesc:
        vector[ValueDesc] values
        vector[StepDesc] steps
        vector[int32_t] feeds
        vector[int32_t] fetches
        vector[TensorData] persistent
        vector[TensorData] constants
        uint64_t arena_bytes
