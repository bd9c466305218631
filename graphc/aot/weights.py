"""The weights image of an AOT artifact (``graphc compile --emit c``): the initial bytes of every
persistent tensor and constant, written next to the generated code (``<name>.weights``) or
assembled into the library (``--embed-weights``).  The C reader is runtime/aot/weights_file.cc.

Format 1, little-endian::

    header, 128 bytes
      char[8]  magic  b"GRAPHCW1"
      u32      format (1)
      u32      count: the records that follow
      char[64] the plan's sha256, lowercase hex (the artifact's <NAME>_PLAN_SHA256)
      u64      data_bytes_total: the size of the whole image
      u64      table_offset (128)
      zero padding to 128 bytes
    `count` records, in table order (the persistent tensors, then the constants), each
      u32 kind (0 variable, 1 optimizer state, 2 constant) | u32 dtype (DataType) | u32 ndim
      u32 name_len | u64 offset (in the image, a multiple of 64; 0 when zero_init) | u64 nbytes
      u8[32] sha256 of the tensor's initial bytes | u32 zero_init | u32 reserved (0)
      i64 dims[ndim] | name (UTF-8) | zero padding to a multiple of 8
    data: each tensor that is not zero_init at its 64-aligned offset, zero bytes between.

A zero_init tensor (all bytes zero: optimizer state, zero biases) is not stored; its sha256 is
still that of its zero bytes, so the record matches the artifact's table either way.  The reader
checks every field against the tables compiled into the artifact and every tensor's sha256
before it copies a byte.
"""

import hashlib
import math
import operator
import struct
from typing import NamedTuple

import numpy as np

from graphc.fileio import atomic_write

MAGIC = b"GRAPHCW1"
FORMAT = 1
HEADER_BYTES = 128
ALIGNMENT = 64
# TensorKind of runtime/aot/tables.h.
VARIABLE, OPTIMIZER_STATE, CONSTANT = 0, 1, 2
KINDS = (VARIABLE, OPTIMIZER_STATE, CONSTANT)
# DataType number -> bytes per element (proto/graphc.proto; graphc::DType).
ITEM_BYTES = {1: 4, 2: 8, 3: 4, 4: 8, 5: 1}

_HEADER = struct.Struct("<8sII64sQQ")
_RECORD = struct.Struct("<IIIIQQ32sII")


class WeightsError(ValueError):
    """A tensor list that cannot be written as a weights image (a bug in the caller)."""


class TensorRecord(NamedTuple):
    """What the emitter puts in a TensorTable for one tensor: its offset in the artifact's state
    memory (persistent tensors) or constant memory (constants), its bytes, the sha256 (hex) of its
    initial bytes, and whether those are all zero (then the image does not store them)."""
    offset: int
    nbytes: int
    sha256: str
    zero_init: bool


class Layout(NamedTuple):
    """Where everything goes: ``records`` (one TensorRecord per tensor, input order), the
    tensors' offsets inside the image (``file_offsets``, 0 for zero_init ones), and the memory
    totals.  State memory holds the variables first, then the optimizer state, each tensor at a
    64-aligned offset in input order; constant memory holds the constants the same way."""
    records: list
    file_offsets: list
    variable_bytes: int
    optimizer_state_bytes: int
    state_bytes: int
    constant_bytes: int
    image_bytes: int


def _align(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _check(index, tensor):
    try:
        name, kind, dtype, dims, data = tensor
    except (TypeError, ValueError):
        raise WeightsError(f"tensor {index}: expected (name, kind, dtype, dims, bytes or None), got {tensor!r:.200}") \
            from None
    if not isinstance(name, str) or not name:
        raise WeightsError(f"tensor {index}: the name must be a non-empty str, got {name!r:.200}")
    if kind not in KINDS:
        raise WeightsError(f"tensor {name!r}: kind {kind!r} is not one of {KINDS}")
    if dtype not in ITEM_BYTES:
        raise WeightsError(f"tensor {name!r}: dtype {dtype!r} is not a DataType number 1..5")
    try:
        if any(isinstance(d, (bool, np.bool_)) for d in dims):
            raise TypeError("a bool is not a dim")
        dims = tuple(operator.index(d) for d in dims)  # ints, numpy ints
    except TypeError:
        raise WeightsError(f"tensor {name!r}: dims must be non-negative ints, got {dims!r:.200}") from None
    if any(d < 0 for d in dims):
        raise WeightsError(f"tensor {name!r}: dims must be non-negative ints, got {dims}")
    nbytes = ITEM_BYTES[dtype] * math.prod(dims)
    if data is not None:
        try:
            data = memoryview(data).cast("B")
        except (TypeError, ValueError) as e:
            raise WeightsError(f"tensor {name!r}: the data must be C-contiguous bytes-like: {e}") from None
        if data.nbytes != nbytes:
            raise WeightsError(f"tensor {name!r}: {data.nbytes} bytes for dtype {dtype} dims {dims}, "
                               f"which need {nbytes}")
    return name, kind, dtype, dims, data, nbytes


def _normalize(tensors):
    out = [_check(i, t) for i, t in enumerate(tensors)]
    seen = set()
    for name, *_ in out:
        if name in seen:
            raise WeightsError(f"two tensors are named {name!r}")
        seen.add(name)
    kinds = [kind for _, kind, *_ in out]
    first_constant = kinds.index(CONSTANT) if CONSTANT in kinds else len(kinds)
    if any(k != CONSTANT for k in kinds[first_constant:]):
        raise WeightsError("the persistent tensors must all come before the constants")
    return out


def _is_zero(data):
    return data is None or not np.frombuffer(data, np.uint8).any()


def weights_layout(tensors):
    """The :class:`Layout` of ``tensors`` (a list of (name, kind, dtype, dims, bytes or None) in
    table order: the persistent tensors in the plan's order, then the constants).  ``None`` bytes
    or all-zero bytes make a zero_init tensor."""
    tensors = _normalize(tensors)
    offsets = [0] * len(tensors)
    pos = {VARIABLE: 0, OPTIMIZER_STATE: 0, CONSTANT: 0}
    for kind in KINDS:
        for i, (_, k, _, _, _, nbytes) in enumerate(tensors):
            if k == kind:
                offsets[i] = pos[kind]
                pos[kind] = _align(pos[kind] + nbytes)
    variable_bytes, optimizer_bytes = pos[VARIABLE], pos[OPTIMIZER_STATE]
    for i, (_, k, *_rest) in enumerate(tensors):
        if k == OPTIMIZER_STATE:
            offsets[i] += variable_bytes
    table_end = HEADER_BYTES + sum(_RECORD.size + (8 * len(dims) + len(name.encode()) + 7) // 8 * 8
                                   for name, _, _, dims, _, _ in tensors)
    records, file_offsets = [], []
    end = _align(table_end)
    for (*_, data, nbytes), offset in zip(tensors, offsets):
        zero = _is_zero(data)
        digest = hashlib.sha256(bytes(nbytes) if zero else data).hexdigest()
        records.append(TensorRecord(offset, nbytes, digest, zero))
        if zero:
            file_offsets.append(0)
        else:
            file_offsets.append(end)
            end = _align(end + nbytes)
    # the image ends right after the last tensor's bytes (no padding after it)
    image_bytes = max([table_end] + [o + t[5] for o, t in zip(file_offsets, tensors) if o])
    return Layout(records, file_offsets, variable_bytes, optimizer_bytes, variable_bytes + optimizer_bytes,
                  pos[CONSTANT], image_bytes)


def write_weights(path, plan_sha256_hex, tensors):
    """Write the weights image of ``tensors`` (see :func:`weights_layout`) for the plan whose
    sha256 is ``plan_sha256_hex`` to ``path`` atomically; returns the TensorRecords (offset in
    state or constant memory, nbytes, sha256 hex, zero_init), one per tensor, for the tables.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.weights")
    >>> recs = write_weights(path, "0" * 64, [("w", VARIABLE, 1, (2,), b"\\0\\0\\x80?" * 2),
    ...                                       ("w/m", OPTIMIZER_STATE, 1, (2,), None)])
    >>> [(r.offset, r.nbytes, r.zero_init) for r in recs]
    [(0, 8, False), (64, 8, True)]
    """
    image = weights_image(plan_sha256_hex, tensors)
    atomic_write(path, image.data)
    return image.layout.records


class WeightsImage(NamedTuple):
    data: bytes
    layout: Layout


def weights_image(plan_sha256_hex, tensors):
    """The image as bytes and its :class:`Layout` (what :func:`write_weights` writes)."""
    if not isinstance(plan_sha256_hex, str) or len(plan_sha256_hex) != 64 or \
            any(c not in "0123456789abcdef" for c in plan_sha256_hex):
        raise WeightsError(f"the plan sha256 must be 64 lowercase hex digits, got {plan_sha256_hex!r:.100}")
    normalized = _normalize(tensors)
    layout = weights_layout(tensors)
    out = bytearray(layout.image_bytes)  # zero-filled: padding and the header's tail
    _HEADER.pack_into(out, 0, MAGIC, FORMAT, len(normalized), plan_sha256_hex.encode(), layout.image_bytes,
                      HEADER_BYTES)
    pos = HEADER_BYTES
    for (name, kind, dtype, dims, data, nbytes), rec, off in zip(normalized, layout.records, layout.file_offsets):
        encoded = name.encode()
        _RECORD.pack_into(out, pos, kind, dtype, len(dims), len(encoded), off, nbytes, bytes.fromhex(rec.sha256),
                          int(rec.zero_init), 0)
        pos += _RECORD.size
        struct.pack_into(f"<{len(dims)}q", out, pos, *dims)
        pos += 8 * len(dims)
        out[pos:pos + len(encoded)] = encoded
        pos = (pos + len(encoded) + 7) // 8 * 8
        if not rec.zero_init:
            out[off:off + nbytes] = data
    return WeightsImage(bytes(out), layout)


class WeightsTensor(NamedTuple):
    """One tensor of an image as :func:`read_weights` finds it (``data`` None when zero_init)."""
    name: str
    kind: int
    dtype: int
    dims: tuple
    nbytes: int
    sha256: str
    zero_init: bool
    data: bytes


def read_weights(data):
    """Parse and check an image (bytes-like): returns (plan sha256 hex, [WeightsTensor, ...]).

    The Python twin of the C reader's self-checks (magic, format, sizes, bounds, alignment, every
    tensor's sha256); the comparison with an artifact's tables is the C reader's.  Raises
    WeightsError naming what is wrong."""
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise WeightsError(f"{len(data)} bytes: shorter than the {HEADER_BYTES}-byte header")
    magic, fmt, count, plan, total, table = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise WeightsError(f"not a graphc weights image (magic {magic!r})")
    if fmt != FORMAT:
        raise WeightsError(f"format {fmt}; this graphc reads format {FORMAT}")
    if total != len(data):
        raise WeightsError(f"the header says {total} bytes, the image has {len(data)}")
    if table != HEADER_BYTES:
        raise WeightsError(f"the record table starts at {table}, expected {HEADER_BYTES}")
    tensors, pos = [], table
    for i in range(count):
        if pos + _RECORD.size > len(data):
            raise WeightsError(f"record {i} runs past the end")
        kind, dtype, ndim, name_len, offset, nbytes, digest, zero, reserved = _RECORD.unpack_from(data, pos)
        end = pos + (_RECORD.size + 8 * ndim + name_len + 7) // 8 * 8
        if end > len(data):
            raise WeightsError(f"record {i} runs past the end")
        dims = struct.unpack_from(f"<{ndim}q", data, pos + _RECORD.size)
        name = data[pos + _RECORD.size + 8 * ndim:pos + _RECORD.size + 8 * ndim + name_len].decode("utf-8", "replace")
        pos = end
        if kind not in KINDS or dtype not in ITEM_BYTES or reserved != 0 or any(d < 0 for d in dims) or \
                nbytes != ITEM_BYTES[dtype] * math.prod(dims) or zero not in (0, 1):
            raise WeightsError(f"record {i} ({name!r}) is malformed: kind {kind}, dtype {dtype}, dims {dims}, "
                               f"{nbytes} bytes, zero_init {zero}, reserved {reserved}")
        tensors.append([name, kind, dtype, dims, offset, nbytes, digest.hex(), bool(zero)])
    out = []
    for name, kind, dtype, dims, offset, nbytes, digest, zero in tensors:
        if zero:
            payload = None
            actual = hashlib.sha256(bytes(nbytes)).hexdigest()
        else:
            if offset % ALIGNMENT or offset < pos or offset + nbytes > len(data):
                raise WeightsError(f"{name!r}: {nbytes} bytes at offset {offset} are misaligned or outside the "
                                   f"data section [{pos}, {len(data)})")
            payload = data[offset:offset + nbytes]
            actual = hashlib.sha256(payload).hexdigest()
        if actual != digest:
            raise WeightsError(f"{name!r}: its bytes do not match their sha256 (the image is damaged)")
        out.append(WeightsTensor(name, kind, dtype, dims, nbytes, digest, zero, payload))
    return plan.decode("ascii", "replace"), out
