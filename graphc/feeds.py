"""Feed checking: turn what a user passes to ``Session.run`` into the arrays the runtime reads.

The rules (docs/feeds.md has them with examples):

* ``feeds`` is a mapping from placeholder names (or Tensor handles) to values; None
  means no feeds.  A list or tuple of arrays, a bare array, or anything else that is
  not a mapping is a FeedError saying so: feeds are matched by name, never by position.
* Every placeholder is fed exactly once; an unknown name is a FeedError.
* A value is a numpy array (or anything ``np.asarray`` turns into one), a nested list
  or a scalar.  Its dtype must be the placeholder's; a Python scalar or list takes
  the placeholder's dtype when the conversion is exact (``[[1, 2]]`` feeds a float32
  placeholder, ``1.5`` does not feed an int32 one).  The shape must be exact.
* Refused with a FeedError: a masked array (graphc has no mask, so it would silently
  feed the hidden values), a ragged nested list, an object array.
* A non-native byte order (``'>f4'`` on a little-endian machine) is converted exactly
  to native order: swapping bytes loses nothing.  A dtype that differs otherwise is
  refused, and the message shows the byte order.
* Non-contiguous or misaligned arrays are copied; the caller's array is never written.
* Values are not inspected: NaN and ±inf go through (docs/feeds.md says what they do
  in a training plan and how to check for them).
"""

from collections.abc import Mapping

import numpy as np

from graphc.errors import FeedError, quote

# How many placeholder names a message lists before it says "and N more".
LIST_LIMIT = 20
_EXPECTED = "a dict mapping placeholder names (or Tensors) to arrays, e.g. {'x': np.zeros((2, 3), np.float32)}"


def check_feeds(feeds, specs):
    """Check ``feeds`` against ``specs`` and return one array per placeholder, in order.

    ``specs`` is a sequence of (name, numpy dtype, shape tuple), one per placeholder in
    plan order.  Each returned array has exactly that dtype (native byte order) and
    shape, and is C-contiguous and aligned.  Raises FeedError for a missing, unknown,
    duplicated, wrong-dtype, wrong-shape or unusable feed.

    Example::

        arrays = check_feeds({"x": np.ones((2, 3), np.float32)},
                             [("x", np.dtype(np.float32), (2, 3))])
    """
    if feeds is None:
        feeds = {}
    if not isinstance(feeds, Mapping):
        raise FeedError(f"feeds must be {_EXPECTED}; got {_describe_container(feeds)}")
    index = {spec[0]: pos for pos, spec in enumerate(specs)}
    arrays = [None] * len(specs)
    for key, value in feeds.items():
        name = key if isinstance(key, str) else getattr(key, "name", None)
        if not isinstance(name, str):
            raise FeedError(f"feed key {quote(key)} is neither a placeholder name nor a Tensor; feeds must be "
                            f"{_EXPECTED}")
        pos = index.get(name)
        if pos is None:
            raise FeedError(f"unknown feed {quote(name)}; the plan's placeholders are "
                            f"{_listing([s[0] for s in specs])}")
        if arrays[pos] is not None:
            raise FeedError(f"placeholder {quote(name)} is fed twice")
        _, dtype, shape = specs[pos]
        arrays[pos] = check_feed(name, value, dtype, shape)
    missing = [specs[p][0] for p, a in enumerate(arrays) if a is None]
    if missing:
        raise FeedError(f"missing feed for placeholder(s) {_listing(missing)}")
    return arrays


def check_feed(name, value, dtype, shape):
    """One feed: ``value`` as a C-contiguous, aligned, native-order array of exactly
    ``dtype`` and ``shape``, or a FeedError naming the placeholder."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    want = f"an array of {dtype.name} {shape}"
    if isinstance(value, np.ma.MaskedArray):
        raise FeedError(f"feed {quote(name)} is a masked array; graphc has no masks and would feed the masked "
                        f"values too; expected {want}: pass value.filled(fill) to choose what masked entries "
                        f"become, or value.data to feed them as they are")
    try:
        arr = np.asarray(value)
    except ValueError as e:
        # numpy >= 1.24 refuses ragged nested sequences
        raise FeedError(f"feed {quote(name)} is not a rectangular array ({_first_line(e)}); expected {want}, "
                        f"not a ragged nested list") from None
    except (TypeError, OverflowError) as e:
        raise FeedError(f"feed {quote(name)} cannot be read as an array ({_first_line(e)}); expected "
                        f"{want}") from None
    if arr.dtype.hasobject:
        what = "a ragged nested list or a list of objects" if isinstance(value, (list, tuple)) else \
            f"an object array (from {type(value).__name__})"
        raise FeedError(f"feed {quote(name)} is {what}, dtype object; expected {want}")
    if arr.dtype != dtype and not isinstance(value, (np.ndarray, np.generic)):
        # Python scalars and lists have no dtype of their own: take the placeholder's
        # when the conversion is exact.
        try:
            conv = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            conv = None
        if conv is not None and np.array_equal(conv, arr):
            arr = conv
    if arr.dtype != dtype and arr.dtype.newbyteorder("=") == dtype:
        # Only the byte order differs ('>f4' vs '<f4'): swapping is exact.
        arr = arr.astype(dtype)
    if arr.dtype != dtype:
        raise FeedError(f"feed {quote(name)} expects dtype {dtype.name}, got {_describe_dtype(arr.dtype)}")
    if arr.shape != shape:
        raise FeedError(f"feed {quote(name)} expects shape {shape}, got {arr.shape}")
    if not (arr.flags.c_contiguous and arr.flags.aligned):
        arr = np.array(arr, order="C", copy=True)   # a fresh array is aligned
    return arr


def _describe_dtype(dtype):
    """The dtype's name, with its byte order when that is not native: "float64 (big-endian '>f8')"."""
    if dtype.isnative or dtype.byteorder in "=|":
        return dtype.name
    order = "big-endian" if dtype.byteorder == ">" else "little-endian"
    return f"{dtype.name} ({order} {dtype.str!r})"


def _describe_container(feeds):
    kind = type(feeds).__name__
    if isinstance(feeds, (list, tuple)):
        return f"a {kind} of {len(feeds)} item(s); feeds are matched by name, not by position"
    if isinstance(feeds, np.ndarray):
        return f"a bare numpy array of shape {feeds.shape}; name the placeholder it feeds"
    return f"a {kind}"


def _listing(names):
    shown = ", ".join(quote(n) for n in names[:LIST_LIMIT])
    more = f" and {len(names) - LIST_LIMIT} more" if len(names) > LIST_LIMIT else ""
    return f"[{shown}{more}]"


def _first_line(e):
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 200 else text[:200] + "…"
