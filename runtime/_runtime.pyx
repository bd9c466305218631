# cython: language_level=3, boundscheck=False, wraparound=False
"""graphc._runtime — the Cython face of the C++ executor.

Thin on purpose: it turns a graphc.Plan protobuf message into the plain structs of
plan.h, owns one C++ Executor, and moves bytes between Python buffers and values.
Validation of feeds (names, dtypes, shapes) lives in graphc/session.py; validation of
the plan lives in C++ (runtime/validate.h), the one trust boundary.

C++ exceptions become: std::invalid_argument → ValueError, ResourceError and
std::bad_alloc → graphc.errors.ResourceError, DeviceUnavailable →
graphc.errors.DeviceError, CommFailure (a collective of a data-parallel plan) →
graphc.errors.CommError, any other → RuntimeError.
"""
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport int32_t, int64_t, uint64_t
from libcpp.memory cimport shared_ptr, unique_ptr
from libcpp.pair cimport pair
from libcpp.string cimport string
from libcpp.utility cimport move
from libcpp.vector cimport vector

from comm_abi cimport GRAPHC_COMM_ABI_VERSION, graphc_comm
from device cimport (CudaOptions, ErrorKind, built_devices, classify_current_exception, cuda_built as c_cuda_built,
                    cuda_info as c_cuda_info, cuda_library_dirs as c_cuda_library_dirs,
                    cuda_load_library as c_cuda_load_library, cuda_options as c_cuda_options,
                    cuda_status as c_cuda_status, set_cuda_library_dirs as c_set_cuda_library_dirs,
                    set_exception_hook)
from executor cimport Binding as CBinding, Executor as CExecutor, ExecutorOptions, SharedState
from fused_program cimport fused_ops as c_fused_ops
from isa cimport active_isa, detected_isa, isa_name, set_isa_cap
from kernel_registry cimport KernelFile, KernelRegistry, cpu_kernel_files
from plan cimport (ATTR_BOOL, ATTR_DTYPE, ATTR_FLOAT, ATTR_FLOATS, ATTR_INT, ATTR_INTS, ATTR_STRING,
                   ATTR_TENSOR, AttrValue, DType, PlanDesc, StepDesc, Storage, TensorData, ValueDesc, dtype_name)
from validate cimport Limits, physical_memory_bytes, set_inplace_ops
from validate cimport validate_plan as c_validate_plan

from graphc import errors


cdef void _raise_current_exception() except * with gil:
    """Called by Cython inside the catch block of every `except +` call (errors.h)."""
    cdef string what
    cdef ErrorKind kind = classify_current_exception(&what)
    msg = what.decode("utf-8", "replace")
    if kind == ErrorKind.Invalid:
        raise ValueError(msg)
    if kind == ErrorKind.Resource:
        raise errors.ResourceError(msg)
    if kind == ErrorKind.Device:
        raise errors.DeviceError(msg)
    if kind == ErrorKind.Comm:
        raise errors.CommError(msg)
    raise RuntimeError(msg)


set_exception_hook(_raise_current_exception)


def kernel_ops(device="cpu"):
    """Names of the ops that have a kernel on ``device``."""
    return sorted(op.decode() for op in KernelRegistry.for_device(_b(device)).ops())


def kernel_keys(device="cpu"):
    """Sorted ``(op name, dtype name)`` pairs with a kernel on ``device`` (dtype names:
    float32, float64, int32, int64, bool).  DeviceError for a device this build lacks."""
    cdef vector[pair[string, DType]] keys = KernelRegistry.for_device(_b(device)).keys()
    out = []
    for i in range(keys.size()):
        out.append((keys[i].first.decode(), dtype_name(keys[i].second).decode()))
    return sorted(out)


def kernel_files():
    """The CPU kernel files, one ``(source, register function, sorted op names)`` per register_*
    function of runtime/cpu/kernel_files.cc, in its order (source: a file name under
    runtime/cpu/, e.g. "elementwise.cc").  Each row's ops come from a registry of its own."""
    cdef const vector[KernelFile]* files = &cpu_kernel_files()
    cdef KernelRegistry* reg
    out = []
    for i in range(files.size()):
        reg = new KernelRegistry()
        try:
            files.at(i).register_fn(reg[0])
            ops = sorted(op.decode() for op in reg.ops())
        finally:
            del reg
        out.append((files.at(i).source.decode(), files.at(i).register_name.decode(), ops))
    return out


def cuda_built():
    """Whether this build has the CUDA runtime (compiled with GRAPHC_WITH_CUDA)."""
    return bool(c_cuda_built())


def devices():
    """Names of the devices this build has kernels for, "cpu" first."""
    return [d.decode() for d in built_devices()]


# Whether the CUDA library folders were set (by set_cuda_library_dirs, or from NVIDIA's wheels
# by _cuda_library_dirs_default before the first use of device 'cuda').
cdef bint _cuda_dirs_set = False


def set_cuda_library_dirs(dirs):
    """The folders searched first for libcublasLt.so.13 and libcudnn.so.9, before the system's
    library path (runtime/cuda/libs.h).  By default, those of NVIDIA's pip wheels
    (graphc._cuda_libs.library_dirs()), set on the first use of device 'cuda'.  A library
    stays loaded once found."""
    global _cuda_dirs_set
    cdef vector[string] v
    for d in dirs:
        v.push_back(_b(str(d)))
    c_set_cuda_library_dirs(v)
    _cuda_dirs_set = True


def cuda_library_dirs():
    """The folders set_cuda_library_dirs gave (after the default was applied, if it was)."""
    return [d.decode("utf-8", "replace") for d in c_cuda_library_dirs()]


cdef _cuda_library_dirs_default():
    if not _cuda_dirs_set:
        from graphc import _cuda_libs
        set_cuda_library_dirs(_cuda_libs.library_dirs())


def cuda_status():
    """"" when a Session on device "cuda" can open here, else the reason (the DeviceError
    message it would raise: not built, no driver, no GPU, the driver too old, cuBLASLt
    missing, ...).  Never raises."""
    if not c_cuda_built():
        return c_cuda_status().decode("utf-8", "replace")
    _cuda_library_dirs_default()
    return c_cuda_status().decode("utf-8", "replace")


def cuda_info():
    """Facts about GPU 0 and the CUDA libraries, a dict of str: name, compute_capability,
    sm_count, memory_bytes, driver_version, runtime_version, cublaslt_path, cublaslt_version,
    cudnn_path and cudnn_version (or cudnn_missing), library_dirs.  graphc.errors.DeviceError
    when device "cuda" is not available (the reason as cuda_status())."""
    if c_cuda_built():
        _cuda_library_dirs_default()
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in c_cuda_info()}


def cuda_load_library(which):
    """Load CUDA library ``which`` ("cublasLt" or "cudnn") as device "cuda" would (the folders
    of set_cuda_library_dirs, then the system's; major version checked) without opening the
    device: {"path": ..., "version": int}.  graphc.errors.DeviceError naming the file, what was
    searched and the fix; ValueError for another name."""
    if c_cuda_built():
        _cuda_library_dirs_default()
    d = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in c_cuda_load_library(_b(which))}
    d["version"] = int(d["version"])
    return d


def cuda_options():
    """The CUDA settings of the environment as the runtime reads them: {"graphs": bool,
    "sync": bool, "tf32": bool} from GRAPHC_CUDA_GRAPHS (default 1), GRAPHC_CUDA_SYNC (0) and
    GRAPHC_CUDA_TF32 (0).  ValueError naming the variable unless each is unset, "", "0" or "1"."""
    cdef CudaOptions o = c_cuda_options()
    return {"graphs": bool(o.graphs), "sync": bool(o.sync), "tf32": bool(o.tf32)}


def prepare_only(plan_msg, device="cpu"):
    """A dry prepare of ``plan_msg`` (a graphc.Plan protobuf message, as Executor takes) on
    ``device``: validates the plan and calls every step's kernel factory from that device's
    registry with fake tensor pointers and no device (runtime/kernel_registry.h), running
    nothing and allocating no tensor.  Works for "cuda" on a machine without a GPU (a CUDA
    build).  ValueError naming the step (``step N (node 'x', op 'y'): ...``) when a factory
    refuses it or the plan is malformed; graphc.errors.DeviceError for a device this build
    lacks."""
    cdef PlanDesc desc = _plan_desc(plan_msg)
    cdef string dev = _b(device)
    with nogil:
        CExecutor.prepare_only(desc, dev)


def cpu_isa(detected=False):
    """The vector ISA the CPU kernels built from now on use: "avx512", "avx2" or "baseline"
    (runtime/cpu/isa.h).  ``detected=True``: what this CPU supports, whatever the cap.
    ValueError when GRAPHC_ISA holds something else than those three names."""
    return isa_name(detected_isa() if detected else active_isa()).decode()


def set_isa(name):
    """Cap the ISA of the CPU kernels of Sessions created afterwards (tests, benchmarks):
    "baseline", "avx2", "avx512" (never above what the CPU has), or None for no cap (back to
    GRAPHC_ISA).  Every ISA computes identical bits; only speed changes."""
    set_isa_cap(_b(name or ""))


def fused_ops():
    """The member ops the CPU fused-program interpreter knows (runtime/cpu/fused_program.h),
    sorted: it must equal ``graphc.ops.fused.fusible_ops()``."""
    return [op.decode() for op in c_fused_ops()]


def physical_memory():
    """The machine's physical memory in bytes: the default memory limit of a plan."""
    return int(physical_memory_bytes())


def validate_plan(plan_msg, memory_limit=0, inplace_ops=None):
    """Run the C++ plan validator alone (no allocation): ValueError for a malformed or
    unsafe plan, graphc.errors.ResourceError above ``memory_limit`` (0: physical memory).

    ``inplace_ops``: None uses the runtime's own in-place rule (the op schema's
    ``elementwise`` flag, runtime/op_schema.h); a collection of op names
    replaces it (for tests and tools).  Returns the seconds spent in C++.
    """
    import time
    cdef PlanDesc desc = _plan_desc(plan_msg)
    cdef Limits limits
    cdef vector[string] ops
    limits.memory_limit = _memory_limit(memory_limit)
    if inplace_ops is not None:
        for op in inplace_ops:
            ops.push_back(_b(op))
        set_inplace_ops(&limits, ops)
    t0 = time.perf_counter()
    with nogil:
        c_validate_plan(desc, limits)
    return time.perf_counter() - t0


cdef const graphc_comm* _comm_ptr(comm) except NULL:
    """The graphc_comm* behind ``comm.capsule`` (runtime/comm_abi.h): TypeError unless it is a
    PyCapsule named "graphc.comm" holding a communicator of this ABI version."""
    try:
        capsule = comm.capsule
    except AttributeError:
        raise TypeError(f"comm must be a communicator with a 'capsule' attribute (graphc._mpi.Communicator, "
                        f"graphc._runtime.nccl_communicator), got {type(comm).__name__}") from None
    if not PyCapsule_IsValid(capsule, b"graphc.comm"):
        what = type(capsule).__name__
        if type(capsule).__name__ == "PyCapsule":
            name = PyCapsule_GetName(capsule)
            what = f"a PyCapsule named {name.decode('utf-8', 'replace')!r}" if name != NULL else "an unnamed PyCapsule"
        raise TypeError(f"comm.capsule must be a PyCapsule named 'graphc.comm', got {what}")
    cdef const graphc_comm* c = <const graphc_comm*>PyCapsule_GetPointer(capsule, b"graphc.comm")
    if c.abi_version != GRAPHC_COMM_ABI_VERSION:
        raise TypeError(f"comm.capsule holds a communicator of ABI version {c.abi_version}, this graphc "
                        f"expects {GRAPHC_COMM_ABI_VERSION} (graphc and the communicator module were built apart)")
    return c


def comm_info(comm):
    """What the runtime sees through ``comm.capsule`` (a communicator of runtime/comm_abi.h):
    {"rank", "size", "deterministic", "backend"}.  TypeError when ``comm`` is not one."""
    cdef const graphc_comm* c = _comm_ptr(comm)
    return {"rank": c.rank, "size": c.size, "deterministic": bool(c.deterministic),
            "backend": c.backend.decode("utf-8", "replace") if c.backend != NULL else ""}


cdef uint64_t _memory_limit(value) except? 0:
    value = int(value)
    if value < 0 or value >= 2 ** 64:
        raise ValueError(f"memory_limit must be in [0, 2**64), got {value}")
    return value


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
    if t.HasField("external"):
        raise ValueError(f"tensor {str(name)[:200]!r} has external data; plans must inline their tensors")
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
        for x in ps.workspaces:
            s.workspaces.push_back(x)
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


cdef class _Buffers:
    """Buffers pinned for a C++ call with PyObject_GetBuffer (no memoryview objects: this
    is run()'s per-call path), with their pointers; close() releases them."""
    cdef vector[Py_buffer] bufs
    cdef vector[const void*] cptrs
    cdef vector[void*] ptrs

    def __cinit__(self, Py_ssize_t n):
        # Reserved up front so run()'s path never reallocates.
        self.bufs.reserve(n)
        self.cptrs.reserve(n)
        self.ptrs.reserve(n)

    def __dealloc__(self):
        self.close()

    cdef skip(self):
        self.cptrs.push_back(NULL)
        self.ptrs.push_back(NULL)

    cdef add(self, obj, size_t nbytes, bint writable, str what, size_t k):
        cdef Py_buffer buf
        cdef int flags = PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0)
        if self.bufs.size() == self.bufs.capacity():
            raise ValueError(f"{what} {k}: more buffers than reserved")
        try:
            PyObject_GetBuffer(obj, &buf, flags)
        except (BufferError, ValueError) as e:  # numpy: ValueError for a strided array
            raise ValueError(f"{what} {k}: {e}") from None
        except TypeError as e:
            raise ValueError(f"{what} {k}: not a buffer ({e})") from None
        if <size_t>buf.len != nbytes:
            n = buf.len
            PyBuffer_Release(&buf)
            raise ValueError(f"{what} {k}: buffer has {n} bytes, expected {nbytes}")
        self.bufs.push_back(buf)
        self.cptrs.push_back(buf.buf)
        self.ptrs.push_back(buf.buf)

    cdef close(self):
        cdef size_t i
        for i in range(self.bufs.size()):
            PyBuffer_Release(&self.bufs[i])
        self.bufs.clear()
        self.cptrs.clear()
        self.ptrs.clear()


cdef class Binding:
    """IO binding prepared by Executor.bind: the C++ Binding and the pinned arrays it
    points into (released when it is dropped)."""
    cdef CBinding* ptr
    cdef Executor owner
    cdef _Buffers pinned_in
    cdef _Buffers pinned_out
    cdef vector[const void*] none_feeds
    cdef vector[void*] none_outs

    def __dealloc__(self):
        del self.ptr  # before the pins are released and the executor can go
        self.ptr = NULL

    cdef _check(self):
        if self.ptr == NULL:
            raise ValueError("this Binding was not made by Executor.bind")

    @property
    def feed_in_place(self):
        """Per feed (plan order): whether its kernels read the bound array in place."""
        self._check()
        cdef const vector[char]* v = &self.ptr.feed_in_place()
        return [bool(v[0][i]) for i in range(v.size())]

    @property
    def fetch_in_place(self):
        """Per fetch (plan order): whether its producer writes the bound array in place."""
        self._check()
        cdef const vector[char]* v = &self.ptr.fetch_in_place()
        return [bool(v[0][i]) for i in range(v.size())]

    @property
    def prepared_steps(self):
        """How many steps were prepared again for this binding."""
        self._check()
        return self.ptr.prepared_steps()


cdef class _Pinned:
    """C-contiguous buffers pinned for a C++ call (each by a memoryview), with their
    pointers; close() releases them."""
    cdef list views
    cdef vector[void*] ptrs

    def __cinit__(self):
        self.views = []

    cdef add(self, obj, size_t nbytes, bint writable, str what):
        cdef Py_buffer buf
        m = memoryview(obj)
        self.views.append(m)
        if not m.c_contiguous:
            raise ValueError(f"{what}: buffer is not C-contiguous")
        if writable and m.readonly:
            raise ValueError(f"{what}: buffer is read-only")
        if <size_t>m.nbytes != nbytes:
            raise ValueError(f"{what}: buffer has {m.nbytes} bytes, expected {nbytes}")
        PyObject_GetBuffer(m, &buf, PyBUF_C_CONTIGUOUS)
        self.ptrs.push_back(buf.buf)
        PyBuffer_Release(&buf)  # the memoryview still pins the memory

    cdef close(self):
        for m in self.views:
            m.release()
        self.views = []
        self.ptrs.clear()


cdef class Executor:
    """One loaded plan on one device: its arena, persistent storage and prepared steps.

    ``Executor(plan_msg, threads, poison=False, device="cpu", memory_limit=0, share=None,
    arena_bytes=0, comm=None)``.
    The plan is validated in C++ before anything is allocated: ValueError (from
    std::invalid_argument) when it is malformed or unsafe, graphc.errors.ResourceError
    when it needs more than ``memory_limit`` bytes (0: the machine's physical memory) or
    an allocation fails, graphc.errors.DeviceError when ``device`` cannot be used.
    ``poison``: after each step, fill the values in its ``frees`` with 0xFF bytes.
    Every method may be called from several threads; calls are serialised in C++.

    ``comm``: the communicator of a data-parallel plan's collective steps (allreduce_start /
    allreduce_wait): any object whose ``capsule`` attribute is a PyCapsule named "graphc.comm"
    (graphc._mpi.Communicator, graphc._runtime.nccl_communicator); the executor keeps a
    reference to it.  None: a world of one process (the collectives do nothing).  TypeError for
    anything else.  A collective that fails raises graphc.errors.CommError naming the step, and
    from then on every run of every executor on the shared state raises CommError at once.

    The entries of a program share one arena and one persistent store (SharedState,
    runtime/executor.h): the first executor is made with ``arena_bytes`` of the largest
    entry plan, each other one with ``share=`` that first executor (any executor on the
    state will do); ValueError when its plan's persistent list differs from the state's
    (naming the first difference), the device differs or the arena is too small.  Runs of
    executors on one state are serialised.
    """
    cdef CExecutor* ptr
    cdef list _fetch_nbytes
    cdef readonly object comm

    def __cinit__(self, plan_msg, int threads, bint poison=False, device="cpu", memory_limit=0, share=None,
                  arena_bytes=0, comm=None):
        cdef ExecutorOptions options
        cdef PlanDesc desc
        cdef const PlanDesc* plan
        cdef shared_ptr[SharedState] state
        if share is not None:
            if not isinstance(share, Executor):
                raise TypeError(f"share must be an Executor, got {type(share).__name__}")
            state = (<Executor>share).ptr.shared_state()
        options.threads = threads
        options.poison = poison
        options.device = _b(device)
        if device == "cuda" and c_cuda_built():
            _cuda_library_dirs_default()
        options.limits.memory_limit = _memory_limit(memory_limit)
        arena_bytes = int(arena_bytes)
        if arena_bytes < 0 or arena_bytes >= 2 ** 64:
            raise ValueError(f"arena_bytes must be in [0, 2**64), got {arena_bytes}")
        options.arena_bytes = arena_bytes
        if comm is not None:
            options.comm = _comm_ptr(comm)
        # Before the C++ executor exists: its kernels hold the pointer from their factories on.
        self.comm = comm
        desc = _plan_desc(plan_msg)
        self.ptr = new CExecutor(move(desc), options, state)
        plan = &self.ptr.plan()
        self._fetch_nbytes = [self.ptr.value(plan.fetches[k]).nbytes for k in range(plan.fetches.size())]

    def __dealloc__(self):
        del self.ptr

    @property
    def threads(self):
        return self.ptr.threads()

    @property
    def poison(self):
        return self.ptr.poison()

    @property
    def cuda_graph_state(self):
        """On device "cuda": "captured" (run() replays one CUDA graph), "not yet" (before the
        second run), "off (GRAPHC_CUDA_GRAPHS=0)", "off (GRAPHC_CUDA_SYNC=1)" or "failed: <why>"
        (the capture failed; runs go step by step).  "" on other devices."""
        return self.ptr.cuda_graph_state().decode("utf-8", "replace")

    @property
    def arena_bytes(self):
        """The bytes of the arena this executor runs in (shared with the executors it shares a
        state with): at least its plan's arena_bytes."""
        return self.ptr.arena_nbytes()

    def shares_state_with(self, Executor other):
        """Whether this executor and ``other`` run on one shared state (arena and persistent store)."""
        return self.ptr.shared_state().get() == other.ptr.shared_state().get()

    def run(self, list feeds, list outs=None):
        """Copy `feeds` (C-contiguous buffers, plan.feeds order, each exactly its value's
        nbytes) in, run every step, and copy each fetch into `outs` (writable C-contiguous
        buffers, plan.fetches order, each exactly its value's nbytes) before the next run
        can start.  The GIL is released for the whole run.  RuntimeError names the failing
        step."""
        cdef _Buffers fin = _Buffers(len(feeds))
        cdef _Buffers fout = _Buffers(len(outs) if outs is not None else 0)
        try:
            self._pin_feeds(fin, feeds, True)
            if outs is not None:
                self._pin_outs(fout, outs, True)
            with nogil:
                self.ptr.run(fin.cptrs, fout.ptrs)
        finally:
            fin.close()
            fout.close()

    def profile(self, list feeds, int iters, int warmup):
        """Run `warmup + iters` times; the median seconds of each step's kernel call
        over the last `iters` runs, one float per step (timed in C++)."""
        cdef _Buffers fin = _Buffers(len(feeds))
        cdef vector[double] secs
        try:
            self._pin_feeds(fin, feeds, True)
            with nogil:
                secs = self.ptr.profile(fin.cptrs, iters, warmup)
        finally:
            fin.close()
        return [secs[i] for i in range(secs.size())]

    cdef _pin_feeds(self, _Buffers pin, list feeds, bint required):
        cdef const PlanDesc* plan = &self.ptr.plan()
        cdef size_t k
        if <size_t>len(feeds) != plan.feeds.size():
            raise ValueError(f"expected {plan.feeds.size()} feeds, got {len(feeds)}")
        for k in range(plan.feeds.size()):
            f = feeds[k]
            if f is None and not required:
                pin.skip()
            else:
                pin.add(f, self.ptr.value(plan.feeds[k]).nbytes, False, "feed", k)

    cdef _pin_outs(self, _Buffers pin, list outs, bint required):
        cdef const PlanDesc* plan = &self.ptr.plan()
        cdef size_t k
        if <size_t>len(outs) != plan.fetches.size():
            raise ValueError(f"expected {plan.fetches.size()} fetch buffers, got {len(outs)}")
        for k in range(plan.fetches.size()):
            o = outs[k]
            if o is None and not required:
                pin.skip()
            else:
                pin.add(o, self.ptr.value(plan.fetches[k]).nbytes, True, "fetch", k)

    def feed_refusals(self):
        """Per feed (plan order): why it cannot be bound in place, or "" when it can."""
        cdef size_t k
        return [self.ptr.feed_refusal(k).decode("utf-8", "replace") for k in range(self.ptr.plan().feeds.size())]

    def fetch_refusals(self):
        """Per fetch (plan order): why it cannot be bound in place, or "" when it can."""
        cdef size_t k
        return [self.ptr.fetch_refusal(k).decode("utf-8", "replace") for k in range(self.ptr.plan().fetches.size())]

    def bind(self, list feeds, list fetches):
        """A Binding whose kernels read feed k from `feeds[k]` and write fetch k into
        `fetches[k]` in place (None: keep the arena).  Each array must be C-contiguous,
        exactly the value's nbytes, aligned to its dtype (fetches: writable); the plan
        must allow it (feed_refusals, fetch_refusals).  ValueError otherwise.  The
        Binding pins the arrays until it is dropped."""
        cdef _Buffers fin = _Buffers(len(feeds))
        cdef _Buffers fout = _Buffers(len(fetches))
        cdef Binding b = Binding.__new__(Binding)
        try:
            self._pin_feeds(fin, feeds, False)
            self._pin_outs(fout, fetches, False)
            b.ptr = self.ptr.bind(fin.cptrs, fout.ptrs).release()
        except BaseException:
            fin.close()
            fout.close()
            raise
        b.owner = self
        b.pinned_in = fin
        b.pinned_out = fout
        b.none_feeds.assign(fin.cptrs.size(), NULL)
        return b

    def run_bound(self, Binding binding, list feeds=None, list outs=None):
        """run() under `binding`: `feeds[k]` is copied in (None for the feeds the binding
        holds in place; feeds=None when it holds them all) and fetch k is copied into
        `outs[k]` when not None (outs=None: copy none)."""
        cdef _Buffers fin
        cdef _Buffers fout
        if binding.owner is not self:
            raise ValueError("the binding belongs to another executor")
        if feeds is None and outs is None:
            # The fully bound path: nothing to pin per call.
            with nogil:
                self.ptr.run_bound(binding.ptr[0], binding.none_feeds, binding.none_outs)
            return
        fin = _Buffers(len(feeds) if feeds is not None else 0)
        fout = _Buffers(len(outs) if outs is not None else 0)
        try:
            if feeds is not None:
                self._pin_feeds(fin, feeds, False)
            else:
                fin.cptrs = binding.none_feeds
            if outs is not None:
                self._pin_outs(fout, outs, False)
            with nogil:
                self.ptr.run_bound(binding.ptr[0], fin.cptrs, fout.ptrs)
        finally:
            fin.close()
            fout.close()

    def read_value(self, int32_t index, out):
        """Copy value `index` into `out`, a writable C-contiguous buffer of its nbytes."""
        cdef _Pinned pin = _Pinned()
        cdef size_t n = self.ptr.value(index).nbytes
        try:
            pin.add(out, n, True, f"value {index}")
            with nogil:
                self.ptr.read_value(index, pin.ptrs[0], n)
        finally:
            pin.close()

    def read_persistent(self, int32_t index, out):
        """Copy persistent tensor `index` into `out`, a writable C-contiguous buffer of its size."""
        cdef _Pinned pin = _Pinned()
        cdef size_t n = self.ptr.persistent_nbytes(index)
        try:
            pin.add(out, n, True, f"persistent {index}")
            with nogil:
                self.ptr.read_persistent(index, pin.ptrs[0], n)
        finally:
            pin.close()

    def write_persistent(self, int32_t index, data):
        """Overwrite persistent tensor `index` with `data` (C-contiguous) of its size."""
        cdef _Pinned pin = _Pinned()
        cdef size_t n = self.ptr.persistent_nbytes(index)
        try:
            pin.add(data, n, False, f"persistent {index}")
            with nogil:
                self.ptr.write_persistent(index, pin.ptrs[0], n)
        finally:
            pin.close()


include "nccl.pxi"
