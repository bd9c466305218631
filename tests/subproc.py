"""Running Python in a subprocess that imports the same graphc as the tests.

After `pip install .` (CI) the tests import graphc from site-packages while the source tree,
the usual working directory, holds a graphc without the compiled extension; with an in-place
build the two are one.  A subprocess must import the tested package either way: its folder
goes first on PYTHONPATH, and the child runs outside the source tree (`python -c` and
`python -m` put the working directory first on sys.path)."""

import os
import subprocess
import sys
import tempfile

import graphc

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(graphc.__file__)))


def child_env(base=None, **extra):
    """``base`` (default: this process's environment) with PACKAGE_PARENT first on PYTHONPATH
    and ``extra`` set."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run_python(code, env=None, timeout=120, text=True):
    """``python -c code`` importing this graphc; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", code], env=child_env(env), capture_output=True, text=text,
                          cwd=tempfile.gettempdir(), timeout=timeout)
