// mpi_comm.h — the MPI implementation of the communicator C ABI (runtime/comm_abi.h).
//
// Built only into the optional extension graphc._mpi._comm (runtime/mpi/_comm.pyx), compiled
// against the MPI that the `mpicc` found at build time; the rest of graphc never includes
// mpi.h.  The communicator works on a private duplicate (MPI_Comm_idup) of the caller's
// communicator with MPI_ERRORS_RETURN, so an MPI error becomes a return code and a message,
// never an abort, and its traffic never mixes with the user's own mpi4py calls.
//
// Collectives: allreduce_start hands the bucket to a worker thread that runs a blocking
// MPI_Allreduce(MPI_IN_PLACE, MPI_SUM) on a second duplicate (MPI_THREAD_MULTIPLE; else, or with
// GRAPHC_COMM_THREAD=0, it posts MPI_Iallreduce) and returns; allreduce_wait blocks until the sum
// is in place (polling MPI_Test in the non-blocking case: the polling is what drives Open MPI's
// progress), the timeout passes (GRAPHC_COMM_TIMEOUT) or the launcher sends SIGTERM
// (GRAPHC_COMM_ABORTED: mpirun tears the job down after a rank died).  Deterministic mode sums
// in rank order 0, 1, ..., size-1 whatever MPI's algorithm: each rank receives its chunk of
// every rank's buffer (MPI_Ialltoallv into scratch sized by prepare), adds them in rank order,
// and the chunks are gathered back into every rank's buffer (MPI_Iallgatherv in place).
//
// Errors are sticky (comm_abi.h): after the first failure every call fails at once with the
// first message.
#pragma once

#include <cstdint>
#include <string>

#include "../comm_abi.h"

namespace graphc {
namespace mpi {

// The vendor and version of the MPI this module was compiled against (from mpi.h), in
// mpi4py.MPI.get_vendor()'s words: "Open MPI", "MPICH", "Intel MPI", "MVAPICH", ... .
void built_vendor(std::string* name, int* major, int* minor, int* micro);

// A communicator over a duplicate of the caller's communicator `fortran_handle` (mpi4py's
// Comm.py2f()).  `deterministic`: rank-order sums.  `timeout_s` > 0: how long a wait may
// block (infinity: forever).  Returns nullptr and sets *err when MPI is not initialised (or
// already finalised), the handle is not a communicator, or the duplicate fails or times out.
// The caller owns the result: destroy() it (the graphc_comm's `self` holds the state).
graphc_comm* create(int fortran_handle, int deterministic, double timeout_s, std::string* err);
void destroy(graphc_comm* comm);

// Installs (once per process) a SIGTERM handler that lets a blocked wait end with
// GRAPHC_COMM_ABORTED; outside a wait it restores the previous disposition and re-raises, so
// SIGTERM still ends the process as before.  Does nothing when SIGTERM already has a handler
// (e.g. Python's signal.signal).  Returns whether our handler is installed.
bool install_sigterm_handler();

// The seconds a wait of `comm` may block (infinity: forever).
double timeout_of(const graphc_comm* comm);

// Whether `comm`'s sum-mode reductions run on its worker thread (blocking MPI_Allreduce on a
// second duplicate): sum mode, size > 1, MPI_THREAD_MULTIPLE, GRAPHC_COMM_THREAD not "0".
bool uses_worker(const graphc_comm* comm);

// MPI_Abort on `comm`'s communicator: ends every rank of the job (after a collective failed,
// when the survivors would otherwise block in MPI_Finalize waiting for a hung peer).
void abort_job(const graphc_comm* comm, int code);

}  // namespace mpi
}  // namespace graphc
