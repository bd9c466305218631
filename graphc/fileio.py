"""Atomic file writes: every model, plan, checkpoint and drawing graphc writes goes
through :func:`atomic_write`, so a crash mid-write leaves the previous file intact."""

import os
import tempfile


def atomic_write(path, data):
    """Write ``data`` (bytes, or a callable taking the open binary file) to ``path``:
    a temp file in the same folder, flushed and fsynced, then renamed over ``path``
    (atomic on POSIX and Windows), then the folder is fsynced where the OS allows."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (or the old file's)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(dir_fd)
