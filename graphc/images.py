"""PNG files of images with the standard library only: grids of generated digits and single
greyscale pictures, written without matplotlib or Pillow.

A PNG here is 8-bit greyscale (colour type 0), one IDAT chunk of zlib-compressed rows with
filter 0, no interlacing — the simplest file every viewer reads.  Values are floats in
[0, 1] (clipped; 0 is black, 1 white) or uint8 as they are.  Files are written atomically
(:func:`graphc.fileio.atomic_write`), so an interrupted run leaves the previous grid intact::

    import graphc as gc
    (x, _), _ = gc.datasets.load_digits(images=True)      # (N, 1, 8, 8) in [0, 1]
    gc.images.save_grid("digits.png", x[:100], nrow=10)   # 10 × 10 digits, each 4× enlarged
"""

import math
import struct
import zlib

import numpy as np

from graphc import errors
from graphc.fileio import atomic_write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The PNG format caps width and height at 2^31 - 1; a far smaller cap keeps a mistaken scale
# from asking for gigabytes.
MAX_SIDE = 1 << 15


def _chunk(kind, data):
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _as_pixels(array, what):
    """``array`` as uint8 pixels: uint8 as is, bool as 0/255, other reals in [0, 1] clipped and
    rounded.  Raises ImageError for a non-real dtype or a NaN."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype.kind not in "iuf":
        raise errors.ImageError(f"{what} expects real numbers (float in [0, 1] or uint8), got dtype {a.dtype}")
    a = a.astype(np.float64)
    if np.isnan(a).any():
        raise errors.ImageError(f"{what} got {int(np.isnan(a).sum())} NaN values out of {a.size}: a pixel "
                                "needs a number (a diverged model?)")
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_png(array):
    """The bytes of an 8-bit greyscale PNG of ``array`` (H, W): floats in [0, 1] (clipped) or
    uint8.  Raises :class:`graphc.errors.ImageError` for a bad shape, dtype or NaN."""
    pixels = _as_pixels(array, "encode_png")
    if pixels.ndim != 2 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise errors.ImageError(f"encode_png expects an array of shape (H, W) with H, W >= 1, got shape "
                                f"{tuple(pixels.shape)}")
    h, w = pixels.shape
    if h > MAX_SIDE or w > MAX_SIDE:
        raise errors.ImageError(f"encode_png expects H, W <= {MAX_SIDE}, got shape ({h}, {w})")
    # Each row starts with its filter type; 0 = the bytes as they are.
    rows = np.concatenate([np.zeros((h, 1), np.uint8), np.ascontiguousarray(pixels)], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # bit depth 8, greyscale, deflate, filter 0, no interlace
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + _chunk(b"IEND", b""))


def save_png(path, array):
    """Write ``array`` (H, W) — floats in [0, 1] (clipped) or uint8 — as an 8-bit greyscale PNG
    at ``path`` (atomically); returns ``path``.

    >>> import numpy as np, graphc as gc, os, tempfile
    >>> p = gc.images.save_png(os.path.join(tempfile.mkdtemp(), "ramp.png"), np.linspace(0, 1, 64).reshape(8, 8))
    """
    atomic_write(path, encode_png(array))
    return path


def grid(images, nrow=None, scale=4, padding=1, pad_value=0.5):
    """One (H', W') picture of ``images`` (N, 1, H, W) or (N, H, W): ``nrow`` images per row
    (default ceil(sqrt(N))), each enlarged ``scale`` times (nearest neighbour), ``padding``
    pixels of ``pad_value`` between and around them.  Values are clipped to [0, 1]."""
    a = np.asarray(images)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise errors.ImageError(f"save_grid expects greyscale images (N, 1, H, W), got shape {tuple(a.shape)} "
                                    f"with {a.shape[1]} channels")
        a = a[:, 0]
    if a.ndim != 3 or min(a.shape) < 1:
        raise errors.ImageError(f"save_grid expects images of shape (N, 1, H, W) or (N, H, W) with every size >= 1, "
                                f"got shape {tuple(np.shape(images))}")
    for name, value, low in (("scale", scale, 1), ("padding", padding, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise errors.ImageError(f"save_grid expects {name} an integer >= {low}, got {value!r}")
    n, h, w = a.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise errors.ImageError(f"save_grid expects nrow an integer >= 1 (images per row), got {nrow!r}")
    if not isinstance(pad_value, (int, float, np.integer, np.floating)) or not 0.0 <= float(pad_value) <= 1.0:
        raise errors.ImageError(f"save_grid expects pad_value a number in [0, 1], got {pad_value!r}")
    pixels = _as_pixels(a, "save_grid")
    cols = min(int(nrow), n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h * scale, w * scale
    height, width = rows * (cell_h + padding) + padding, cols * (cell_w + padding) + padding
    if height > MAX_SIDE or width > MAX_SIDE:
        raise errors.ImageError(f"save_grid would write a {height} × {width} picture, more than {MAX_SIDE} pixels "
                                f"a side: use a smaller scale ({scale}) or fewer images ({n})")
    out = np.full((height, width), int(round(float(pad_value) * 255)), np.uint8)
    big = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = padding + r * (cell_h + padding), padding + c * (cell_w + padding)
        out[top:top + cell_h, left:left + cell_w] = big[i]
    return out


def save_grid(path, images, nrow=None, scale=4, padding=1, pad_value=0.5):
    """Write ``images`` (N, 1, H, W) or (N, H, W), floats in [0, 1] (clipped) or uint8, as one
    greyscale PNG grid at ``path`` (atomically): ``nrow`` images per row (default
    ceil(sqrt(N))), each enlarged ``scale`` times, separated by ``padding`` pixels of
    ``pad_value``.  Returns ``path``.  Raises :class:`graphc.errors.ImageError` for bad input.

    >>> import numpy as np, graphc as gc, os, tempfile
    >>> (x, _), _ = gc.datasets.load_digits(images=True)
    >>> p = gc.images.save_grid(os.path.join(tempfile.mkdtemp(), "digits.png"), x[:100], nrow=10)
    """
    return save_png(path, grid(images, nrow=nrow, scale=scale, padding=padding, pad_value=pad_value))
