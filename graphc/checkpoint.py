"""Checkpoints: variables and optimizer state of a session, saved atomically.

The file is a numpy ``.npz`` archive (one array per persistent variable, keyed by its
name, plus a format marker), so numpy can read it too.  Writes go to a temporary file
in the same folder, are flushed to disk, then renamed over the target: a crash
mid-write leaves the previous checkpoint intact.
"""

import io
import os
import zipfile

import numpy as np

from graphc.errors import CheckpointError
from graphc.fileio import atomic_write

MARKER = "__graphc_checkpoint_version__"
VERSION = 1


def save(path, variables):
    """Write ``variables`` (name → array) to ``path`` atomically."""
    if MARKER in variables:
        raise CheckpointError(f"a variable may not be named {MARKER!r}")
    buf = io.BytesIO()
    arrays = {name: np.asarray(value) for name, value in variables.items()}
    arrays[MARKER] = np.asarray(VERSION, np.int64)
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def load(path, expected):
    """Read a checkpoint and check it against ``expected`` (name → (dtype name, shape)).

    Returns name → array.  A missing, corrupt or foreign file, or one whose variables
    differ from the plan's in names, shapes or dtypes, raises CheckpointError listing
    every difference.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if MARKER not in f.files:
                raise CheckpointError(f"{path!r} is not a graphc checkpoint (no format marker)")
            version = int(f[MARKER])
            if version > VERSION:
                raise CheckpointError(f"{path!r} has checkpoint version {version}; this graphc reads up to {VERSION}")
            values = {name: f[name] for name in f.files if name != MARKER}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path!r} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path!r} is corrupt or truncated: {e}") from None
    problems = []
    for name in sorted(set(expected) - set(values)):
        problems.append(f"missing variable {name!r}")
    for name in sorted(set(values) - set(expected)):
        problems.append(f"unexpected variable {name!r}")
    for name in sorted(set(values) & set(expected)):
        dtype, shape = expected[name]
        got = values[name]
        if got.dtype.name != dtype or tuple(got.shape) != tuple(shape):
            problems.append(f"variable {name!r}: the plan has {dtype} {tuple(shape)}, the checkpoint "
                            f"{got.dtype.name} {tuple(got.shape)}")
    if problems:
        raise CheckpointError(f"checkpoint {path!r} does not match the plan: " + "; ".join(problems))
    return values
