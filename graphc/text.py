"""Text data for language models: a byte tokenizer, a corpus present on every machine, batches.

The corpus is the Python standard library's own ``.py`` files, so a language model trains with
no download.  The pieces, in the order an example uses them::

    import graphc as gc
    tok = gc.text.ByteTokenizer()                  # vocab 256: UTF-8 bytes
    ids = tok.encode(gc.text.stdlib_corpus(max_bytes=1_000_000, seed=0))
    train, val = gc.text.train_val_split(ids, val_fraction=0.1)
    for x, y in gc.text.lm_batches(train, batch=32, context=64, seed=0, steps=100):
        ...                                        # x, y: (32, 64) int64, y is x shifted by one
    vx, vy = gc.text.lm_windows(val, context=64)   # the fixed validation set
    # generation: the inference plan fetches topk(logits / temperature, k); then
    next_id = gc.text.sample_from_topk(values, indices, rng)

Everything is plain numpy and seeded: the same arguments give the same bytes and the same
batches on every machine that runs the same Python version (a different Python version has a
different standard library, hence a different corpus).  See docs/text.md.
"""

import math
import os
import sysconfig

import numpy as np

__all__ = ["ByteTokenizer", "stdlib_corpus", "train_val_split", "lm_batches", "lm_windows", "bits_per_char",
           "sample_from_topk"]

# Directory names under the stdlib folder that are not the standard library's own modules:
# third-party packages (a pyenv or venv Python keeps site-packages inside the stdlib folder),
# bytecode caches.
_NOT_STDLIB = frozenset({"site-packages", "dist-packages", "__pycache__"})
# The test suites: a third of the .py bytes, much of it generated data and deliberately odd code.
_TEST_DIRS = frozenset({"test", "tests", "idle_test"})


def _check_int(fn, name, value, low):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{fn}: {name} must be an integer >= {low}; got {value!r}")
    return int(value)


def _check_ids(fn, ids, vocab_size=None):
    """ids as a 1-D int64 array (a copy only when the dtype differs)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{fn}: ids must be a 1-D array of token ids; got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{fn}: ids must be integers; got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if vocab_size is not None and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{fn}: token ids must lie in [0, {vocab_size}); got {bad}")
    return arr


class ByteTokenizer:
    """A character-level tokenizer over bytes.

    ``vocab_size=256`` (the default): a token is one byte of the UTF-8 encoding, so every
    string round-trips: ``decode(encode(s)) == s``.  Non-ASCII characters take 2-4 tokens.

    ``vocab_size=128`` (compact, for ASCII text such as source code; the GPT benchmark's
    vocabulary): a token is one character; an ASCII character is its code point and every
    non-ASCII character becomes the single id ``unk_id = 0``, which decodes to U+FFFD.  Id 0
    is free because it is the NUL character, which Python source cannot contain.  Such text
    round-trips exactly when it is ASCII without NUL.

    Example::

        tok = ByteTokenizer()
        tok.encode("hé")          # array([104, 195, 169])
        tok.decode([104, 105])    # 'hi'
        ByteTokenizer(128).encode("hé")   # array([104, 0])
    """

    def __init__(self, vocab_size=256):
        if vocab_size not in (128, 256) or isinstance(vocab_size, bool):
            raise ValueError(f"ByteTokenizer: vocab_size must be 256 (UTF-8 bytes) or 128 (compact ASCII); "
                             f"got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.unk_id = 0 if self.vocab_size == 128 else None

    def __repr__(self):
        return f"ByteTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text):
        """``text`` (str) → 1-D int64 array of token ids."""
        if not isinstance(text, str):
            raise TypeError(f"ByteTokenizer.encode: text must be a str; got {type(text).__name__}")
        if self.vocab_size == 256:
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        # One id per character: UTF-32 gives the code points without a Python loop.
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        points[points >= 128] = self.unk_id
        return points

    def decode(self, ids):
        """Token ids (any integer sequence or array, 1-D) → str.  Bytes that are not valid
        UTF-8 (a sequence cut in the middle of a character, say) decode to U+FFFD, as
        ``bytes.decode(errors="replace")`` does; in compact mode ``unk_id`` decodes to U+FFFD."""
        arr = _check_ids("ByteTokenizer.decode", ids, self.vocab_size)
        if self.vocab_size == 256:
            return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        points = arr.astype(np.uint32)
        points[arr == self.unk_id] = 0xFFFD
        return points.tobytes().decode("utf-32-le")


def _stdlib_files(root, include_tests):
    """The .py files under root, as sorted '/'-separated relative paths."""
    skip = _NOT_STDLIB if include_tests else _NOT_STDLIB | _TEST_DIRS
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        rel = os.path.relpath(dirpath, root)
        for fn in filenames:
            if fn.endswith(".py"):
                out.append(fn if rel == "." else "/".join(rel.split(os.sep) + [fn]))
    return sorted(out)


def stdlib_corpus(max_bytes=None, seed=0, include_tests=False, root=None):
    """The text of the Python standard library's ``.py`` files, in a seeded order.

    The files under ``sysconfig.get_paths()["stdlib"]`` (or ``root``), leaving out
    third-party packages (site-packages, dist-packages) and, unless ``include_tests``, the test
    suites (folders named test, tests, idle_test), are sorted by relative path and then put in
    the order of ``numpy.random.default_rng(seed).permutation``; their texts (decoded as UTF-8,
    an invalid byte becoming U+FFFD) are joined by a newline.  ``max_bytes`` caps the UTF-8
    size of the result: files are read only until it is reached, and the text is cut there
    (never inside a character).

    The same arguments give the same text on every machine with the same Python version and
    the same standard library; another version (or a distribution that patches its standard
    library) gives another corpus.  About 12 MB without the tests on CPython 3.11.

    Example::

        text = stdlib_corpus(max_bytes=100_000, seed=0)
        len(text.encode("utf-8")) <= 100_000     # True
    """
    if max_bytes is not None:
        max_bytes = _check_int("stdlib_corpus", "max_bytes", max_bytes, 0)
    seed = _check_int("stdlib_corpus", "seed", seed, 0)
    root = sysconfig.get_paths()["stdlib"] if root is None else os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"stdlib_corpus: the standard library folder {root!r} does not exist")
    files = _stdlib_files(root, include_tests)
    if not files:
        raise FileNotFoundError(f"stdlib_corpus: no .py files under {root!r}")
    order = np.random.default_rng(seed).permutation(len(files))
    parts, total = [], 0
    for i in order:
        if max_bytes is not None and total >= max_bytes:
            break
        with open(os.path.join(root, *files[i].split("/")), "rb") as f:
            data = f.read()
        # Re-encoding makes the byte count that of the returned text (invalid bytes become
        # the 3-byte U+FFFD).
        data = data.decode("utf-8", errors="replace").encode("utf-8") + b"\n"
        parts.append(data)
        total += len(data)
    blob = b"".join(parts)
    if max_bytes is not None:
        blob = blob[:max_bytes]
    # A cut inside a multi-byte character leaves a partial sequence at the end: drop it.
    return blob.decode("utf-8", errors="ignore")


def train_val_split(ids, val_fraction=0.1):
    """Split a token sequence into (train, val): the first part and the last
    ``round(len * val_fraction)`` tokens (at least one when ``0 < val_fraction`` and there are
    two or more tokens).  A contiguous split keeps the two disjoint: no training window
    overlaps a validation window.  The corpus order is already a seeded shuffle of files, so
    the tail is a random sample of files.  Returns views of ``ids`` as int64."""
    arr = _check_ids("train_val_split", ids)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)) \
            or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be a number in [0, 1); got {val_fraction!r}")
    n_val = int(round(len(arr) * float(val_fraction)))
    if val_fraction > 0 and len(arr) >= 2:
        n_val = min(max(n_val, 1), len(arr) - 1)
    cut = len(arr) - n_val
    return arr[:cut], arr[cut:]


def lm_batches(ids, batch, context, seed=0, steps=None):
    """Yield ``(x, y)`` language-model batches: ``batch`` windows of ``context`` tokens drawn
    at uniformly random start positions of ``ids`` (seeded, with replacement), and the same
    windows shifted by one token, so ``y[b, t]`` is the token that follows ``x[b, t]``.  Both
    are int64 arrays of shape ``(batch, context)``.  ``steps=None`` yields forever.

    The same ``ids``, ``batch``, ``context`` and ``seed`` give the same batches."""
    arr = _check_ids("lm_batches", ids)
    batch = _check_int("lm_batches", "batch", batch, 1)
    context = _check_int("lm_batches", "context", context, 1)
    seed = _check_int("lm_batches", "seed", seed, 0)
    if steps is not None:
        steps = _check_int("lm_batches", "steps", steps, 0)
    n_starts = len(arr) - context  # a window needs context + 1 tokens
    if n_starts < 1:
        raise ValueError(f"lm_batches: ids has {len(arr)} tokens; a window of context {context} needs at least "
                         f"{context + 1}")
    return _lm_batches(arr, batch, context, seed, steps, n_starts)


def _lm_batches(arr, batch, context, seed, steps, n_starts):
    rng = np.random.default_rng(seed)
    offsets = np.arange(context + 1, dtype=np.int64)
    step = 0
    while steps is None or step < steps:
        starts = rng.integers(0, n_starts, size=batch, dtype=np.int64)
        windows = arr[starts[:, None] + offsets]
        yield np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
        step += 1


def lm_windows(ids, context, max_windows=None):
    """The fixed evaluation set: consecutive, non-overlapping windows of ``ids`` (window ``i``
    starts at ``i * context``), as ``(x, y)`` int64 arrays of shape ``(n, context)`` with ``y``
    shifted by one.  Every token after the first is predicted once (the remainder at the end
    that does not fill a window is left out); ``max_windows`` keeps the first ones.  Average the
    model's loss over them for the validation loss; ``bits_per_char`` converts it."""
    arr = _check_ids("lm_windows", ids)
    context = _check_int("lm_windows", "context", context, 1)
    n = (len(arr) - 1) // context if len(arr) else 0
    if max_windows is not None:
        n = min(n, _check_int("lm_windows", "max_windows", max_windows, 0))
    x = arr[:n * context].reshape(n, context)
    y = arr[1:n * context + 1].reshape(n, context)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def bits_per_char(nats):
    """A mean cross-entropy in nats (what softmax_cross_entropy returns) in bits per token:
    ``nats / ln 2``.  With ``ByteTokenizer(256)`` a token is a byte, so on ASCII text (the
    standard library is almost all ASCII) bits per token and bits per character agree."""
    return float(nats) / math.log(2.0)


def sample_from_topk(values, indices, rng):
    """Draw the next token from the top-k candidates of a language model.

    ``values``: the k largest of ``logits / temperature`` (what ``gc.topk`` fetched from the
    inference plan), ``indices``: their token ids; 1-D for one row, or 2-D (rows, k) for a
    batch.  The draw follows ``softmax(values)`` (renormalised over the k candidates), from
    the seeded ``numpy.random.Generator`` ``rng`` with one ``rng.random()`` number per row, so
    a seed gives the same text.  Candidates at -inf have probability 0.  Returns the token id
    (int) for 1-D input, an int64 array of shape (rows,) for 2-D.

    Example::

        rng = np.random.default_rng(0)
        sample_from_topk(np.array([2.0, 1.0, -np.inf]), np.array([7, 3, 9]), rng)  # 7 or 3
    """
    v = np.asarray(values)
    idx = np.asarray(indices)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"sample_from_topk: rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
                        f"got {type(rng).__name__}")
    if v.ndim not in (1, 2) or v.shape != idx.shape:
        raise ValueError(f"sample_from_topk: values and indices must have the same 1-D (k,) or 2-D (rows, k) "
                         f"shape; got {v.shape} and {idx.shape}")
    if v.shape[-1] == 0:
        raise ValueError("sample_from_topk: k is 0; there is no candidate to draw")
    if not np.issubdtype(v.dtype, np.floating):
        raise TypeError(f"sample_from_topk: values must be floating point (logits); got dtype {v.dtype}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"sample_from_topk: indices must be integers; got dtype {idx.dtype}")
    rows = v.reshape(-1, v.shape[-1]).astype(np.float64)
    if np.isnan(rows).any() or np.isposinf(rows).any():
        raise ValueError("sample_from_topk: values contain NaN or +inf; the logits must be finite (or -inf for "
                         "an excluded token)")
    top = rows.max(axis=1, keepdims=True)
    if np.isneginf(top).any():
        raise ValueError("sample_from_topk: every candidate of a row is -inf; there is nothing to draw")
    weights = np.exp(rows - top)
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(rows)) * cdf[:, -1]
    # The first candidate whose cumulative weight exceeds u; a zero-weight candidate never is.
    pick = (cdf <= u[:, None]).sum(axis=1)
    pick = np.minimum(pick, rows.shape[1] - 1)
    out = idx.reshape(rows.shape)[np.arange(len(rows)), pick].astype(np.int64)
    return int(out[0]) if v.ndim == 1 else out
