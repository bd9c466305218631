# cython: language_level=3, boundscheck=False, wraparound=False
"""graphc._mpi._comm — the MPI communicator of data-parallel plans (runtime/mpi/mpi_comm.h).

Loaded by graphc/_mpi/__init__.py after mpi4py.MPI (which loads the MPI library this module's
NEEDED entry resolves to); import graphc._mpi, not this module.
"""
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from libcpp.string cimport string
from libcpp.vector cimport vector

from comm_abi cimport GRAPHC_COMM_OK, graphc_comm

from graphc import errors


cdef extern from "mpi/mpi_comm.h" namespace "graphc::mpi":
    void built_vendor(string* name, int* major, int* minor, int* micro)
    graphc_comm* create(int fortran_handle, int deterministic, double timeout_s, string* err) nogil
    void destroy(graphc_comm* comm)
    bint install_sigterm_handler()
    double timeout_of(const graphc_comm* comm)
    bint uses_worker(const graphc_comm* comm)
    void abort_job(const graphc_comm* comm, int code) nogil


cdef _vendor():
    cdef string name
    cdef int major = 0, minor = 0, micro = 0
    built_vendor(&name, &major, &minor, &micro)
    return name.decode(), (major, minor, micro)


# The MPI this module was compiled against, as mpi4py.MPI.get_vendor() spells it.
VENDOR = _vendor()

# graphc::DType numbering (runtime/plan.h, comm_abi.h).
_DTYPE_CODES = {"float32": 1, "float64": 2, "int32": 3, "int64": 4}


cdef void _free_comm(object capsule) noexcept:
    destroy(<graphc_comm*>PyCapsule_GetPointer(capsule, b"graphc.comm"))


def default_timeout():
    """GRAPHC_COMM_TIMEOUT in seconds (default 60; "inf": wait forever).  ValueError unless > 0."""
    import os
    text = os.environ.get("GRAPHC_COMM_TIMEOUT", "").strip()
    if not text:
        return 60.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"GRAPHC_COMM_TIMEOUT must be a number of seconds > 0, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"GRAPHC_COMM_TIMEOUT must be a number of seconds > 0, got {text!r}")
    return value


cdef class Communicator:
    """The communicator of one rank over MPI (host memory): what a data-parallel Session hands
    its executor.

    ``Communicator(mpi4py_comm, deterministic=False, timeout=None)`` duplicates ``mpi4py_comm``
    (collective: every rank of it must call this) and sets MPI_ERRORS_RETURN on the duplicate.
    ``deterministic``: sums in rank order 0, 1, ..., size-1 (bit-identical to numpy's
    ``a0 + a1 + ...``, whatever MPI's algorithm), at about twice the traffic.  ``timeout``:
    seconds a collective may wait for the other ranks (None: GRAPHC_COMM_TIMEOUT, default 60;
    ``float("inf")``: forever).  A failure raises graphc.errors.CommError naming this rank, the
    operation and the cause; after one, every call raises it again (the communicator is broken).

    >>> from mpi4py import MPI                                     # doctest: +SKIP
    >>> import numpy as np, graphc._mpi                            # doctest: +SKIP
    >>> comm = graphc._mpi.Communicator(MPI.COMM_WORLD)           # doctest: +SKIP
    >>> x = np.full(3, comm.rank, np.float32); comm.allreduce(x)  # doctest: +SKIP
    """
    cdef graphc_comm* c
    cdef readonly object capsule
    """PyCapsule "graphc.comm" of the runtime/comm_abi.h struct (owns it)."""

    def __cinit__(self, comm, deterministic=False, timeout=None):
        cdef string err
        cdef int handle
        cdef int det = 1 if deterministic else 0
        cdef double secs
        secs = default_timeout() if timeout is None else float(timeout)
        if not secs > 0:
            raise ValueError(f"timeout must be > 0 seconds (or None), got {timeout!r}")
        try:
            handle = comm.py2f()
        except AttributeError:
            raise TypeError(f"comm must be an mpi4py communicator (mpi4py.MPI.Comm), got "
                            f"{type(comm).__name__}") from None
        with nogil:
            self.c = create(handle, det, secs, &err)
        if self.c == NULL:
            raise errors.CommError("cannot create the MPI communicator: " + err.decode("utf-8", "replace"))
        self.capsule = PyCapsule_New(self.c, b"graphc.comm", _free_comm)
        global _sigterm_ours
        _sigterm_ours = bool(install_sigterm_handler())

    @property
    def rank(self):
        return self.c.rank

    @property
    def size(self):
        return self.c.size

    @property
    def deterministic(self):
        return bool(self.c.deterministic)

    @property
    def backend(self):
        return "mpi"

    @property
    def timeout(self):
        """Seconds a collective may wait (inf: forever)."""
        return timeout_of(self.c)

    @property
    def threaded(self):
        """Whether sums run as blocking MPI_Allreduce on this communicator's worker thread (sum
        mode, more than one rank, MPI_THREAD_MULTIPLE, GRAPHC_COMM_THREAD not "0"); else
        MPI_Iallreduce polled by the wait."""
        return bool(uses_worker(self.c))

    def __repr__(self):
        return (f"<graphc._mpi.Communicator rank {self.c.rank} of {self.c.size}, "
                f"deterministic={bool(self.c.deterministic)}, timeout={timeout_of(self.c):g} s>")

    cdef _check(self, int rc, char* err):
        if rc != GRAPHC_COMM_OK:
            raise errors.CommError((<bytes>err).decode("utf-8", "replace"))

    def barrier(self):
        """Block until every rank has called barrier() (within the timeout)."""
        cdef char err[1024]
        cdef int rc
        err[0] = 0
        with nogil:
            rc = self.c.barrier(self.c.self, err, sizeof(err))
        self._check(rc, err)

    def broadcast(self, array, int root=0):
        """Overwrite ``array`` (any writable C-contiguous buffer, the same byte count on every
        rank) with rank ``root``'s bytes, in place.  Returns ``array``."""
        cdef Py_buffer buf
        cdef char err[1024]
        cdef int rc
        err[0] = 0
        PyObject_GetBuffer(array, &buf, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
        try:
            with nogil:
                rc = self.c.broadcast(self.c.self, buf.buf, <uint64_t>buf.len, root, err, sizeof(err))
        finally:
            PyBuffer_Release(&buf)
        self._check(rc, err)
        return array

    def allgather(self, data):
        """Every rank's ``data`` (bytes; lengths may differ), in rank order, on every rank."""
        cdef bytes mine = bytes(data)
        cdef uint64_t n = len(mine)
        cdef vector[uint64_t] lengths
        cdef char err[1024]
        cdef int rc
        cdef uint64_t width
        err[0] = 0
        lengths.resize(self.c.size)
        with nogil:
            rc = self.c.allgather(self.c.self, &n, sizeof(uint64_t), lengths.data(), err, sizeof(err))
        self._check(rc, err)
        width = 0
        for i in range(self.c.size):
            width = max(width, lengths[i])
        cdef bytearray send = bytearray(width)
        send[:n] = mine
        cdef bytearray recv = bytearray(width * self.c.size)
        cdef char* sp = send
        cdef char* rp = recv
        with nogil:
            rc = self.c.allgather(self.c.self, sp, width, rp, err, sizeof(err))
        self._check(rc, err)
        return [bytes(recv[i * width:i * width + lengths[i]]) for i in range(self.c.size)]

    def allreduce(self, array):
        """Sum ``array`` (a C-contiguous writable numpy array of float32, float64, int32 or int64)
        over all ranks in place, through the C path of a plan's allreduce steps (start, then
        wait).  Returns ``array``."""
        cdef Py_buffer buf
        cdef char err[1024]
        cdef int rc
        cdef int code
        cdef uint64_t count
        err[0] = 0
        name = str(getattr(array, "dtype", ""))
        if name not in _DTYPE_CODES:
            raise TypeError(f"allreduce takes a numpy array of float32, float64, int32 or int64, got "
                            f"{type(array).__name__} of dtype {name or '?'}")
        code = _DTYPE_CODES[name]
        PyObject_GetBuffer(array, &buf, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
        try:
            count = <uint64_t>(buf.len // array.dtype.itemsize)
            with nogil:
                # Slot -1: never a plan's bucket (those are >= 0).
                rc = self.c.allreduce_start(self.c.self, -1, buf.buf, count, code, NULL, err, sizeof(err))
                if rc == GRAPHC_COMM_OK:
                    rc = self.c.allreduce_wait(self.c.self, -1, NULL, err, sizeof(err))
        finally:
            PyBuffer_Release(&buf)
        self._check(rc, err)
        return array

    def abort(self, int code=1):
        """MPI_Abort: end every rank of the job now (after a CommError, so that the other ranks
        do not wait in MPI_Finalize for a rank that hangs)."""
        with nogil:
            abort_job(self.c, code)


_sigterm_ours = False


def sigterm_handler_installed():
    """Whether SIGTERM ends a blocked collective with CommError: installed by the first
    Communicator unless SIGTERM already had a handler (outside a collective, SIGTERM still ends
    the process as before)."""
    return _sigterm_ours
