# cython: language_level=3, boundscheck=False, wraparound=False
"""graphc._runtime — the Cython face of the C++ executor.

Thin on purpose: it turns a graphc.Plan protobuf message into the plain structs of
plan.h, owns one C++ Executor, and moves bytes between Python buffers and values.
Validation of feeds (names, dtypes, shapes) lives in graphc/session.py.
"""
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy
from libcpp.string cimport string
from libcpp.utility cimport move
from libcpp.vector cimport vector

from executor cimport Executor as CExecutor
from kernel_registry cimport KernelRegistry
from plan cimport (ATTR_BOOL, ATTR_DTYPE, ATTR_FLOAT, ATTR_FLOATS, ATTR_INT, ATTR_INTS, ATTR_STRING,
                   ATTR_TENSOR, AttrValue, DType, PlanDesc, StepDesc, Storage, TensorData, ValueDesc)


def kernel_ops():
    """Names of the ops that have a CPU kernel."""
    return sorted(op.decode() for op in KernelRegistry.cpu().ops())


cdef string _b(s):
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


cdef AttrValue _attr(a) except *:
    cdef AttrValue v
    which = a.WhichOneof("value")
    if which == "i":
        v.kind = ATTR_INT
        v.i = a.i
    elif which == "f":
        v.kind = ATTR_FLOAT
        v.f = a.f
    elif which == "s":
        v.kind = ATTR_STRING
        v.s = _b(a.s)
    elif which == "b":
        v.kind = ATTR_BOOL
        v.i = 1 if a.b else 0
    elif which == "ints":
        v.kind = ATTR_INTS
        for x in a.ints.values:
            v.ints.push_back(x)
    elif which == "floats":
        v.kind = ATTR_FLOATS
        for x in a.floats.values:
            v.floats.push_back(x)
    elif which == "dtype":
        v.kind = ATTR_DTYPE
        v.i = a.dtype
    elif which == "tensor":
        v.kind = ATTR_TENSOR
    else:
        raise ValueError("attr has no value set")
    return v


cdef TensorData _tensor(t, name) except *:
    cdef TensorData d
    d.name = _b(name)
    d.dtype = <DType>(<int32_t>t.dtype)
    for x in t.dims:
        d.dims.push_back(x)
    if t.HasField("external") and not t.raw_data:
        raise ValueError(f"tensor {name!r} has external data; plans must inline their tensors")
    d.bytes = t.raw_data
    return d


cdef PlanDesc _plan_desc(msg) except *:
    cdef PlanDesc p
    cdef ValueDesc* v
    cdef StepDesc* s
    p.arena_bytes = msg.arena_bytes
    p.values.resize(len(msg.values))
    for i, pv in enumerate(msg.values):
        v = &p.values[i]
        v.name = _b(pv.name)
        v.dtype = <DType>(<int32_t>pv.dtype)
        for x in pv.dims:
            v.dims.push_back(x)
        v.storage = <Storage>(<int32_t>pv.storage)
        v.offset = pv.offset
        v.nbytes = pv.nbytes
        v.index = pv.index
        v.alias_of = pv.alias_of
    p.steps.resize(len(msg.steps))
    for i, ps in enumerate(msg.steps):
        s = &p.steps[i]
        s.op = _b(ps.op)
        s.node = _b(ps.node)
        for x in ps.inputs:
            s.inputs.push_back(x)
        for x in ps.outputs:
            s.outputs.push_back(x)
        for x in ps.frees:
            s.frees.push_back(x)
        for key, a in ps.attrs.items():
            s.attrs[_b(key)] = _attr(a)
    for x in msg.feeds:
        p.feeds.push_back(x)
    for x in msg.fetches:
        p.fetches.push_back(x)
    for var in msg.persistent:
        p.persistent.push_back(_tensor(var.init, var.name))
        # A variable's declared dtype/dims are authoritative when init is empty.
        if not var.init.dims and not var.init.raw_data:
            p.persistent.back().dtype = <DType>(<int32_t>var.dtype)
            p.persistent.back().dims.clear()
            for x in var.dims:
                p.persistent.back().dims.push_back(x)
    for i, t in enumerate(msg.constants):
        p.constants.push_back(_tensor(t, f"constant {i}"))
    return p


cdef _copy_out(void* src, size_t nbytes, out, str what):
    """memcpy nbytes from src into `out`, a writable C-contiguous buffer of exactly nbytes."""
    cdef Py_buffer buf
    PyObject_GetBuffer(out, &buf, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    try:
        if <size_t>buf.len != nbytes:
            raise ValueError(f"buffer has {buf.len} bytes, {what} has {nbytes}")
        if nbytes:
            memcpy(buf.buf, src, nbytes)
    finally:
        PyBuffer_Release(&buf)


cdef _copy_in(void* dst, size_t nbytes, data, str what):
    """memcpy `data` (a C-contiguous buffer of exactly nbytes) into dst."""
    cdef Py_buffer buf
    PyObject_GetBuffer(data, &buf, PyBUF_C_CONTIGUOUS)
    try:
        if <size_t>buf.len != nbytes:
            raise ValueError(f"buffer has {buf.len} bytes, {what} has {nbytes}")
        if nbytes:
            memcpy(dst, buf.buf, nbytes)
    finally:
        PyBuffer_Release(&buf)


cdef class Executor:
    """One loaded plan: its arena, persistent storage and prepared steps.

    Raises ValueError (from std::invalid_argument) when the plan is inconsistent.
    ``poison``: after each step, fill the values in its ``frees`` with 0xFF bytes.
    """
    cdef CExecutor* ptr

    def __cinit__(self, plan_msg, int threads, bint poison=False):
        cdef PlanDesc desc = _plan_desc(plan_msg)
        self.ptr = new CExecutor(move(desc), threads, poison)

    def __dealloc__(self):
        del self.ptr

    @property
    def threads(self):
        return self.ptr.threads()

    @property
    def poison(self):
        return self.ptr.poison()

    def run(self, list feeds):
        """Copy `feeds` (C-contiguous buffers, plan.feeds order) in and run every step.

        The caller guarantees each buffer holds exactly the value's nbytes.  The GIL is
        released for the whole run.  RuntimeError names the failing step.
        """
        self._run(feeds, 0, 0, False)

    def profile(self, list feeds, int iters, int warmup):
        """Run `warmup + iters` times; the median seconds of each step's kernel call
        over the last `iters` runs, one float per step (timed in C++)."""
        return self._run(feeds, iters, warmup, True)

    cdef _run(self, list feeds, int iters, int warmup, bint profiling):
        cdef vector[const void*] ptrs
        cdef vector[double] secs
        cdef Py_buffer buf
        bufs = [memoryview(f) for f in feeds]  # keeps each buffer exported during the run
        try:
            for m in bufs:
                if not m.c_contiguous:
                    raise ValueError("feed buffer is not C-contiguous")
                PyObject_GetBuffer(m, &buf, PyBUF_C_CONTIGUOUS)
                ptrs.push_back(buf.buf)
                PyBuffer_Release(&buf)  # memoryview `m` still pins the memory
            if profiling:
                with nogil:
                    secs = self.ptr.profile(ptrs, iters, warmup)
                return [secs[i] for i in range(secs.size())]
            with nogil:
                self.ptr.run(ptrs)
            return None
        finally:
            for m in bufs:
                m.release()

    def read_value(self, int32_t index, out):
        """Copy value `index` into `out`, a writable C-contiguous buffer of its nbytes."""
        _copy_out(self.ptr.value_data(index), self.ptr.value(index).nbytes, out, f"value {index}")

    def write_value(self, int32_t index, data):
        """Overwrite value `index` (a persistent variable) with `data` of its nbytes."""
        _copy_in(self.ptr.value_data(index), self.ptr.value(index).nbytes, data, f"value {index}")

    def read_persistent(self, int32_t index, out):
        """Copy persistent tensor `index` into `out`, a writable C-contiguous buffer of its size."""
        _copy_out(self.ptr.persistent_data(index), self.ptr.persistent_nbytes(index), out, f"persistent {index}")

    def write_persistent(self, int32_t index, data):
        """Overwrite persistent tensor `index` with `data` of its size."""
        _copy_in(self.ptr.persistent_data(index), self.ptr.persistent_nbytes(index), data, f"persistent {index}")
