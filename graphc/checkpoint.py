"""Checkpoints: variables and optimizer state of a session, saved atomically.

The file is a numpy ``.npz`` archive (one ``.npy`` member per persistent variable,
named after it, plus a format marker), so numpy can read it too.  Writes go to a
temporary file in the same folder, are flushed to disk, then renamed over the target:
a crash mid-write leaves the previous checkpoint intact.

Loading treats the file as untrusted and is all-or-nothing.  :func:`load` checks, in
this order and before any member's data is read: the file is a zip archive; every
member is a ``.npy`` stored or deflated, listed once, whose bytes lie inside the
archive; the format marker is present and of this version; the variable names are
exactly the plan's (with ``strict=False``: only shared names are read); each member's
declared uncompressed size fits the plan's bytes (so a deflate bomb is refused from
the zip directory alone); each ``.npy`` header (at most ``MAX_HEADER_BYTES``, parsed
without pickle) names the plan's dtype and shape and leaves exactly the right number of
data bytes.  Only then is data read, in bounded chunks, with every member's CRC and
bool bytes checked.  Any failure raises :class:`graphc.errors.CheckpointError` and the caller has changed nothing yet.

Byte order: an array stored in the other byte order (``'>f4'`` on a little-endian
machine) is converted exactly to native order — byte swapping loses nothing — so a
checkpoint written on a big-endian machine loads.  A dtype that differs otherwise is
refused, and the message shows the byte order (``float64 (big-endian '>f8')``).
"""

import io
import math
import os
import stat
import tokenize
import zipfile
import zlib

import numpy as np

from graphc.errors import CheckpointError, quote
from graphc.fileio import atomic_write

MARKER = "__graphc_checkpoint_version__"
VERSION = 1

# numpy's own default bound on a .npy header; headers graphc writes are ~128 bytes.
MAX_HEADER_BYTES = 10000
# The marker is a 0-d integer: its member is ~136 bytes.
MAX_MARKER_BYTES = 4096
# How many names a message lists before it says "and N more".
LIST_LIMIT = 10
_READ_CHUNK = 16 << 20
_SUFFIX = ".npy"
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# What zipfile and zlib raise on a corrupt archive or member.
_ZIP_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
               KeyError)


def save(path, variables):
    """Write ``variables`` (name → array) to ``path`` atomically."""
    if MARKER in variables:
        raise CheckpointError(f"a variable may not be named {MARKER!r}")
    buf = io.BytesIO()
    arrays = {name: np.asarray(value) for name, value in variables.items()}
    arrays[MARKER] = np.asarray(VERSION, np.int64)
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def load(path, expected, strict=True, found=None):
    """Read a checkpoint and check it against ``expected`` (name → (dtype, shape)).

    ``dtype`` is anything ``np.dtype`` accepts.  Returns name → native-order, C-contiguous
    array of exactly that dtype and shape.  A missing, corrupt, foreign or hostile file,
    or one whose variables differ from the plan's in names, shapes or dtypes, raises
    CheckpointError (a mismatch lists every difference, bounded); see the module
    docstring for the checks and their order.

    ``strict=False`` (PyTorch's ``load_state_dict(strict=False)``): names only one side has
    are no error — the result holds the variables both have (an inference plan reading a
    training checkpoint skips its optimizer state); shapes and dtypes are still checked and
    every other check is the same.  ``found``: a list that receives every variable name the
    file holds.
    """
    path = os.fspath(path)
    where = f"checkpoint {quote(path)}"
    plan = {name: (np.dtype(dtype), tuple(int(d) for d in shape)) for name, (dtype, shape) in expected.items()}
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            # a folder, a FIFO (reading it could block forever) or a device
            raise CheckpointError(f"{where} is not a regular file")
        archive_size = st.st_size
        zf = zipfile.ZipFile(path)
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{where} does not exist") from None
    except zipfile.BadZipFile:
        raise CheckpointError(f"{where} is not a graphc checkpoint (not a zip archive, or a truncated one)") from None
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{where} is corrupt or unreadable: {_short(e)}") from None
    with zf:
        try:
            members = _members(zf, archive_size, where)
            _check_marker(zf, members, where)
            if found is not None:
                found.extend(sorted(set(members) - {MARKER}))
            if strict:
                _check_names(members, plan, where)
            else:
                plan = {name: spec for name, spec in plan.items() if name in members}
            headers = _check_headers(zf, members, plan, where)
            return {name: _read_data(zf, members[name], headers[name], plan[name], where) for name in plan}
        except CheckpointError:
            raise
        except _ZIP_ERRORS as e:
            raise CheckpointError(f"{where} is corrupt or truncated: {_short(e)}") from None


def _short(e):
    """An exception's text, bounded: zipfile quotes member names in its messages."""
    text = str(e)
    return text if len(text) <= 300 else text[:300] + f"… ({len(text)} characters)"


def _problems(problems):
    """'; '-joined, at most LIST_LIMIT of them, then how many more."""
    more = f"; and {len(problems) - LIST_LIMIT} more" if len(problems) > LIST_LIMIT else ""
    return "; ".join(problems[:LIST_LIMIT]) + more


def _members(zf, archive_size, where):
    """name (without .npy) → ZipInfo, after the directory-level checks."""
    members = {}
    for info in zf.infolist():
        fname = info.filename
        if not fname.endswith(_SUFFIX) or info.is_dir():
            raise CheckpointError(f"{where}: member {quote(fname)} is not a .npy array; a graphc checkpoint holds "
                                  f"only .npy members")
        name = fname[: -len(_SUFFIX)]
        if name in members:
            raise CheckpointError(f"{where}: member {quote(fname)} appears twice in the archive")
        if info.compress_type not in _METHODS:
            raise CheckpointError(f"{where}: member {quote(fname)} uses zip compression method "
                                  f"{info.compress_type}; expected stored (0) or deflated (8)")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{where}: member {quote(fname)} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointError(f"{where}: stored member {quote(fname)} claims {info.file_size} bytes but "
                                  f"occupies {info.compress_size}")
        if info.header_offset < 0 or info.header_offset + info.compress_size > archive_size:
            raise CheckpointError(f"{where}: member {quote(fname)} claims {info.compress_size} bytes at offset "
                                  f"{info.header_offset}, beyond the end of the {archive_size}-byte file")
        members[name] = info
    return members


def _open_npy(zf, info, where):
    """Open a member and parse its .npy header; returns (file, dtype, shape, fortran, data offset)."""
    f = zf.open(info)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
        else:
            raise CheckpointError(f"{where}: member {quote(info.filename)} is .npy format {version}; "
                                  f"expected 1.0 or 2.0")
        return f, dtype, shape, fortran, f.tell()
    except CheckpointError:
        f.close()
        raise
    except (ValueError, SyntaxError, TypeError, RecursionError, EOFError, OSError, zipfile.BadZipFile,
            tokenize.TokenError, zlib.error) as e:
        f.close()
        raise CheckpointError(f"{where}: member {quote(info.filename)} has no valid .npy header: "
                              f"{_short(e)}") from None


def _check_marker(zf, members, where):
    info = members.get(MARKER)
    if info is None:
        raise CheckpointError(f"{where} is not a graphc checkpoint (no format marker {MARKER!r})")
    if info.file_size > MAX_MARKER_BYTES:
        raise CheckpointError(f"{where}: the format marker claims {info.file_size} bytes; a marker is one integer")
    f, dtype, shape, _, _ = _open_npy(zf, info, where)
    with f:
        if dtype.kind not in "iu" or shape != ():
            raise CheckpointError(f"{where}: malformed format marker: expected a 0-d integer, got dtype "
                                  f"{_describe(dtype)} shape {shape}")
        data = f.read(dtype.itemsize)
    if len(data) != dtype.itemsize:
        raise CheckpointError(f"{where}: malformed format marker: truncated")
    version = int(np.frombuffer(data, dtype)[0])
    if version > VERSION:
        raise CheckpointError(f"{where} has checkpoint version {version}; this graphc reads up to {VERSION}")
    if version < 1:
        raise CheckpointError(f"{where}: malformed format marker: version {version}, expected 1 to {VERSION}")


def _check_names(members, plan, where):
    names = set(members) - {MARKER}
    problems = [f"missing variable {quote(n)}" for n in sorted(set(plan) - names)]
    problems += [f"unexpected variable {quote(n)}" for n in sorted(names - set(plan))]
    if problems:
        raise CheckpointError(f"{where} does not match the plan: {_problems(problems)}")


def _describe(dtype):
    """The dtype's name, with its byte order when that is not native: 'float32 (big-endian '>f4')'."""
    if dtype.byteorder in "=|" or dtype.isnative:
        return dtype.name
    order = "big-endian" if dtype.byteorder == ">" else "little-endian"
    return f"{dtype.name} ({order} {dtype.str!r})"


def _check_headers(zf, members, plan, where):
    """Every member's header against the plan, before any data is read; name → (dtype, fortran)."""
    problems = []
    headers = {}
    for name in sorted(plan):
        info = members[name]
        want_dtype, want_shape = plan[name]
        nbytes = want_dtype.itemsize * math.prod(want_shape)
        # The zip directory's claim, checked before one byte is inflated: a deflate bomb
        # declares a huge uncompressed size (or lies and is cut off at the claim).
        if info.file_size > nbytes + MAX_HEADER_BYTES + 16:
            problems.append(f"variable {quote(name)}: the member claims {info.file_size} bytes uncompressed, the "
                            f"plan's {want_dtype.name} {want_shape} needs {nbytes} plus a header")
            continue
        f, dtype, shape, fortran, offset = _open_npy(zf, info, where)
        f.close()
        if dtype.hasobject:
            problems.append(f"variable {quote(name)} holds Python objects (dtype {dtype.str!r}); graphc never "
                            f"unpickles checkpoint data")
            continue
        if dtype.newbyteorder("=") != want_dtype or tuple(shape) != want_shape:
            problems.append(f"variable {quote(name)}: the plan has {want_dtype.name} {want_shape}, the checkpoint "
                            f"{_describe(dtype)} {tuple(shape)}")
            continue
        if info.file_size != offset + nbytes:
            problems.append(f"variable {quote(name)}: the member holds {info.file_size - offset} data bytes, "
                            f"{want_dtype.name} {want_shape} needs {nbytes}")
            continue
        headers[name] = (dtype, fortran)
    if problems:
        raise CheckpointError(f"{where} does not match the plan: {_problems(problems)}")
    return headers


def _read_data(zf, info, header, plan_entry, where):
    dtype, fortran = header
    want_dtype, want_shape = plan_entry
    f, _, _, _, _ = _open_npy(zf, info, where)
    with f:
        count = math.prod(want_shape)
        flat = np.empty(count, dtype)
        buf = memoryview(flat.view(np.uint8))
        pos = 0
        while pos < len(buf):
            n = f.readinto(buf[pos:pos + _READ_CHUNK])
            if not n:
                raise CheckpointError(f"{where}: member {quote(info.filename)} ended early")
            pos += n
        # Reading past the end makes zipfile compare the member's CRC-32.
        if f.read(1):
            raise CheckpointError(f"{where}: member {quote(info.filename)} has bytes after its data")
    if dtype.kind == "b" and count and flat.view(np.uint8).max() > 1:
        raise CheckpointError(f"{where}: bool variable {quote(info.filename[:-len(_SUFFIX)])} holds bytes other "
                              f"than 0 and 1")
    arr = flat.reshape(want_shape[::-1]).T if fortran else flat.reshape(want_shape)
    # astype to the native dtype swaps bytes exactly; order="C" lays it out as the runtime
    # reads it (np.ascontiguousarray would turn a 0-d array into a 1-d one).
    return arr.astype(want_dtype, order="C", copy=False)
