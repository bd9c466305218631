# nccl.pxi — included by _runtime.pyx: graphc._runtime.nccl_communicator, the NCCL communicator of
# data-parallel training on CUDA (runtime/cuda/nccl_comm.h).  Every build has these names; a
# build without CUDA (or without nccl.h) answers DeviceError saying so.
from cpython.pycapsule cimport (PyCapsule_GetContext, PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New,
                                PyCapsule_SetContext)
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport uint64_t
from libcpp.string cimport string


cdef extern from "comm_abi.h" nogil:
    ctypedef struct _nccl_graphc_comm "graphc_comm":
        int abi_version
        int rank
        int size
        int deterministic
    int _NCCL_ABI_VERSION "GRAPHC_COMM_ABI_VERSION"
    int _NCCL_UNSUPPORTED "GRAPHC_COMM_UNSUPPORTED"
    const char* _NCCL_CAPSULE_NAME "GRAPHC_COMM_CAPSULE"

cdef extern from "cuda/nccl_comm.h" nogil:
    cdef cppclass _NcclComm "graphc::nccl::Communicator":
        pass
    bint _nccl_built "graphc::nccl::built"()
    int _nccl_load_library "graphc::nccl::load_library"(string* path, uint64_t* version, string* err)
    int _nccl_create "graphc::nccl::create"(const _nccl_graphc_comm* host, bint deterministic, double timeout_s,
                                            _NcclComm** out, string* err)
    const _nccl_graphc_comm* _nccl_abi_of "graphc::nccl::abi_of"(_NcclComm* c)
    int _nccl_host_allreduce "graphc::nccl::host_allreduce"(_NcclComm* c, void* data, uint64_t count, int dtype,
                                                            string* err)
    void _nccl_destroy "graphc::nccl::destroy"(_NcclComm* c)


# graphc::DType numbering of comm_abi.h's allreduce_start.
_NCCL_DTYPES = {"float32": 1, "float64": 2, "int32": 3, "int64": 4}


def nccl_built():
    """Whether this build has the NCCL communicator (a CUDA build that found nccl.h)."""
    return bool(_nccl_built())


cdef object _nccl_error(int code, string msg):
    text = msg.decode("utf-8", "replace")
    return errors.DeviceError(text) if code == _NCCL_UNSUPPORTED else errors.CommError(text)


def nccl_load_library():
    """Load libnccl.so.2 as nccl_communicator would (the folders of set_cuda_library_dirs: NVIDIA's
    wheels, nvidia/nccl/lib; then the system's), without a GPU: {"path": str, "version": int}
    (NCCL_VERSION_CODE, 2.32.3 → 23203).  errors.CommError naming the file, the folders searched
    and the pip command when it cannot be loaded; errors.DeviceError in a build without NCCL."""
    cdef string path, err
    cdef uint64_t version = 0
    if c_cuda_built():
        _cuda_library_dirs_default()
    cdef int code = _nccl_load_library(&path, &version, &err)
    if code:
        raise _nccl_error(code, err)
    return {"path": path.decode("utf-8", "replace"), "version": int(version)}


def _nccl_timeout(timeout):
    import os
    if timeout is None:
        raw = os.environ.get("GRAPHC_COMM_TIMEOUT", "").strip()
        if not raw:
            return 60.0
        try:
            timeout = float(raw)
        except ValueError:
            raise ValueError(f"GRAPHC_COMM_TIMEOUT must be a number of seconds, got {raw[:40]!r}") from None
        what = "GRAPHC_COMM_TIMEOUT"
    else:
        timeout = float(timeout)
        what = "timeout"
    if not timeout > 0:  # NaN too
        raise ValueError(f"{what} must be a number of seconds > 0 (inf: no timeout), got {timeout!r}")
    return min(timeout, 1e9)  # inf: 31 years, as good as forever


cdef void _nccl_capsule_release(object capsule) noexcept:
    # Each capsule handed out keeps its NcclCommunicator (and so the C struct) alive.
    cdef void* owner = PyCapsule_GetContext(capsule)
    if owner != NULL:
        Py_DECREF(<object>owner)


cdef class NcclCommunicator:
    """The NCCL communicator of one rank (runtime/cuda/nccl_comm.h); make it with
    :func:`nccl_communicator`.  The protocol of graphc._mpi.Communicator: ``rank``, ``size``,
    ``deterministic``, ``timeout``, ``backend`` ("nccl"), ``capsule`` (a PyCapsule "graphc.comm"
    for Executor(comm=...)), ``allgather``/``broadcast``/``barrier`` (the host communicator's,
    host memory) and ``allreduce`` (a host array, summed in place through a device copy and the
    same C path as the plan's steps)."""
    cdef _NcclComm* ptr
    cdef readonly object host
    cdef readonly int rank
    cdef readonly int size
    cdef readonly bint deterministic
    cdef readonly double timeout

    def __cinit__(self):
        self.ptr = NULL

    def __init__(self):
        raise TypeError("use graphc._runtime.nccl_communicator(host_comm, deterministic=..., timeout=...)")

    def __dealloc__(self):
        if self.ptr != NULL:
            with nogil:
                _nccl_destroy(self.ptr)
            self.ptr = NULL

    @property
    def backend(self):
        return "nccl"

    @property
    def capsule(self):
        cap = PyCapsule_New(<void*>_nccl_abi_of(self.ptr), _NCCL_CAPSULE_NAME, _nccl_capsule_release)
        Py_INCREF(self)
        PyCapsule_SetContext(cap, <void*>self)
        return cap

    def allgather(self, data):
        return self.host.allgather(data)

    def broadcast(self, array, root=0):
        return self.host.broadcast(array, root=root)

    def barrier(self):
        return self.host.barrier()

    def allreduce(self, array):
        """Sum ``array`` (a writable C-contiguous numpy array of float32, float64, int32 or int64)
        over every rank, in place; returns it.  errors.CommError when the collective fails or
        times out (the communicator is then broken: every later call raises the same)."""
        import numpy as np
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
            raise TypeError("allreduce needs a writable C-contiguous numpy array")
        dtype = _NCCL_DTYPES.get(array.dtype.name)
        if dtype is None:
            raise TypeError(f"allreduce sums float32, float64, int32 or int64, got {array.dtype.name}")
        cdef string err
        cdef int code
        cdef uint64_t count = array.size
        cdef int d = dtype
        cdef Py_buffer buf
        PyObject_GetBuffer(array, &buf, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
        try:
            with nogil:
                code = _nccl_host_allreduce(self.ptr, buf.buf, count, d, &err)
        finally:
            PyBuffer_Release(&buf)
        if code:
            raise _nccl_error(code, err)
        return array

    def __repr__(self):
        return (f"<NcclCommunicator rank {self.rank} of {self.size}, deterministic={bool(self.deterministic)}, "
                f"timeout={self.timeout:g} s>")


def nccl_communicator(host_comm, deterministic=False, timeout=None):
    """The NCCL communicator over ``host_comm``'s ranks (a graphc._mpi.Communicator: its broadcast
    sends rank 0's ncclUniqueId); collective: every rank calls it.  NCCL runs on the current CUDA
    device (device 0 of CUDA_VISIBLE_DEVICES, as graphc's device 'cuda'): one GPU per rank.

    ``deterministic``: sums in rank order, bit-identical on every rank (runtime/cuda/nccl_comm.h).
    ``timeout`` (seconds, inf: none; None: env GRAPHC_COMM_TIMEOUT, default 60, as
    graphc._mpi): the longest an init or an allreduce may take before the NCCL communicator is
    aborted and errors.CommError raised.

    errors.CommError (the same verdict on every rank where it can be) when NCCL cannot be loaded
    (with the pip command), a rank has no usable GPU, two ranks share a GPU, or the init fails;
    errors.DeviceError in a build without CUDA or NCCL; TypeError when ``host_comm`` is not a
    host communicator.

    >>> from mpi4py import MPI                                           # doctest: +SKIP
    >>> from graphc import _mpi, _runtime                                 # doctest: +SKIP
    >>> comm = _runtime.nccl_communicator(_mpi.Communicator(MPI.COMM_WORLD))  # doctest: +SKIP
    >>> comm.allreduce(np.ones(4, np.float32))  # under mpirun -np 2: [2. 2. 2. 2.]  # doctest: +SKIP
    """
    if isinstance(host_comm, NcclCommunicator) or getattr(host_comm, "backend", None) == "nccl":
        raise TypeError("host_comm must be a host-memory communicator (graphc._mpi.Communicator), got an NCCL one")
    try:
        cap = host_comm.capsule
    except AttributeError:
        raise TypeError(f"host_comm must be a communicator with a 'capsule' attribute (graphc._mpi.Communicator), "
                        f"got {type(host_comm).__name__}") from None
    if not PyCapsule_IsValid(cap, _NCCL_CAPSULE_NAME):
        raise TypeError(f"host_comm.capsule must be a PyCapsule named 'graphc.comm', got {type(cap).__name__}")
    cdef const _nccl_graphc_comm* host = <const _nccl_graphc_comm*>PyCapsule_GetPointer(cap, _NCCL_CAPSULE_NAME)
    if host.abi_version != _NCCL_ABI_VERSION:
        raise TypeError(f"host_comm.capsule holds a communicator of ABI version {host.abi_version}, this graphc "
                        f"expects {_NCCL_ABI_VERSION}")
    cdef double t = _nccl_timeout(timeout)
    cdef bint det = bool(deterministic)
    cdef _NcclComm* out = NULL
    cdef string err
    cdef int code
    if c_cuda_built():
        _cuda_library_dirs_default()
    with nogil:
        code = _nccl_create(host, det, t, &out, &err)
    if code:
        raise _nccl_error(code, err)
    cdef NcclCommunicator c = NcclCommunicator.__new__(NcclCommunicator)
    c.ptr = out
    c.host = host_comm  # its capsule's struct stays valid while it lives
    c.rank = host.rank
    c.size = host.size
    c.deterministic = det
    c.timeout = t
    return c
