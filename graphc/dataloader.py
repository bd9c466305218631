"""Feeding data to a training loop: :class:`DataLoader` and readers for MNIST, Fashion-MNIST
and CIFAR-10.  Exported as ``gc.data`` (the folder ``graphc/data/`` holds package data, so
the module has another file name).

Example::

    (x, y) = gc.data.mnist("~/data/mnist", train=True, download=True)
    loader = gc.data.DataLoader((x, y), batch_size=64, seed=0)
    for epoch, (xb, yb) in loader.epochs(3):
        sess.run(..., feeds={"x": xb, "y": yb})

The readers never touch the network unless ``download=True``; downloads go through a
temporary file in ``root`` and ``os.replace``, so an interrupted download leaves no partial
file under the final name, and each file's MD5 is checked against the published one.
"""

import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

import numpy as np

from graphc.errors import GraphcError, quote


class DatasetError(GraphcError, ValueError):
    """A data set file is missing, truncated, corrupt or not of the expected format; the
    message names the file."""


class DownloadError(GraphcError, OSError):
    """A download failed (no network, HTTP error, wrong checksum); the message names the URL."""


# --------------------------------------------------------------------------- DataLoader


class DataLoader:
    """Batches over a tuple, list or dict of equal-length numpy arrays.

    Iterating yields batches with the same structure as ``arrays`` (a tuple of arrays, or a
    dict with the same keys), each array cut along its first axis.  With ``shuffle=True`` the
    order of an epoch is a permutation drawn from ``(seed, epoch)`` only, so epoch ``k`` is
    the same on every run and on every machine.  Each ``for`` loop over the loader is one
    epoch and advances the epoch counter; :meth:`batches` gives any epoch directly.

    ``drop_last=True`` leaves out a final batch smaller than ``batch_size``.
    ``len(loader)`` is the number of batches of one epoch.

    Data-parallel training (one loader per rank): ``shard=(rank, world_size)``, or
    ``shard=session`` (a data-parallel :class:`graphc.Session`: its ``rank`` and
    ``world_size``).  ``batch_size`` is then the per-rank batch (the plan's); every rank
    draws the same order (the same ``seed``), cuts it into global batches of
    ``batch_size * world_size`` examples, and rank r takes the r-th contiguous slice of each,
    so the ranks together see exactly what one process would with the global batch, and
    every rank takes the same number of steps.  A final partial global batch (kept unless
    ``drop_last``) is split as evenly as possible (sizes differ by at most one).  The
    progress bar of :meth:`epochs` shows on rank 0 only.

    Example::

        loader = gc.data.DataLoader((x, y), batch_size=64, seed=0, drop_last=True, shard=sess)
        for epoch, (xb, yb) in loader.epochs(3):
            sess.run({"x": xb, "y": yb})
    """

    def __init__(self, arrays, batch_size, shuffle=True, seed=0, drop_last=False, shard=None):
        if isinstance(arrays, dict):
            self._keys = list(arrays)
            values = [arrays[k] for k in self._keys]
        elif isinstance(arrays, (tuple, list)):
            self._keys = None
            values = list(arrays)
        else:
            raise TypeError(f"DataLoader: arrays must be a tuple, list or dict of numpy arrays; "
                            f"got {type(arrays).__name__}")
        self._container = type(arrays)
        if not values:
            raise ValueError("DataLoader: arrays is empty; expected at least one array")
        names = self._keys if self._keys is not None else [f"arrays[{i}]" for i in range(len(values))]
        for name, v in zip(names, values):
            if not isinstance(v, np.ndarray):
                raise TypeError(f"DataLoader: {name} must be a numpy array; got {type(v).__name__}")
            if v.ndim == 0:
                raise ValueError(f"DataLoader: {name} must have at least one axis (the examples); got a scalar")
        lengths = [len(v) for v in values]
        if len(set(lengths)) != 1:
            detail = ", ".join(f"{n}: {n_}" for n, n_ in zip(names, lengths))
            raise ValueError(f"DataLoader: the arrays must have the same length (first axis); got {detail}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be an integer >= 1; got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"DataLoader: seed must be an integer >= 0; got {seed!r}")
        self._values = values
        self.n = lengths[0]
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.rank, self.world_size = _shard(shard)
        self.epoch = 0

    @property
    def global_batch_size(self):
        """Examples per step over all ranks: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    def __len__(self):
        if self.drop_last:
            return self.n // self.global_batch_size
        return math.ceil(self.n / self.global_batch_size)

    def order(self, epoch):
        """The example indices of ``epoch`` in the order they are served (int64)."""
        if not self.shuffle:
            return np.arange(self.n, dtype=np.int64)
        # The generator is seeded from (seed, epoch) alone: no state carries over between
        # epochs, so any epoch can be replayed on its own.
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.n).astype(np.int64)

    def _pack(self, parts):
        if self._keys is not None:
            return dict(zip(self._keys, parts))
        return tuple(parts) if self._container is tuple else list(parts)

    def batches(self, epoch):
        """Yield the batches of ``epoch`` without touching the epoch counter."""
        order = self.order(epoch)
        size = self.global_batch_size
        for b in range(len(self)):
            # This rank's slice of global batch b (the whole batch when not sharded).
            start = b * size
            m = min(size, self.n - start)
            start, stop = start + _split_bound(m, self.world_size, self.rank), \
                start + _split_bound(m, self.world_size, self.rank + 1)
            if self.shuffle:
                idx = order[start:stop]
                yield self._pack([v[idx] for v in self._values])
            else:
                # In order, a slice is a view: no copy of the data.
                sl = slice(start, stop)
                yield self._pack([v[sl] for v in self._values])

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)

    def epochs(self, n, progress=True, desc="train"):
        """Yield ``(epoch, batch)`` for ``n`` epochs from the current epoch counter on, with a
        tqdm progress bar over all the steps when ``progress`` is true (and tqdm is installed)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"DataLoader.epochs: n must be an integer >= 0; got {n!r}")
        bar = None
        if progress and self.rank == 0:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is a dependency; train without a bar if it is missing
                tqdm = None
            if tqdm is not None:
                bar = tqdm(total=int(n) * len(self), desc=desc, unit="batch", disable=None, dynamic_ncols=True)
        try:
            for _ in range(int(n)):
                epoch = self.epoch
                self.epoch += 1
                if bar is not None:
                    bar.set_postfix(epoch=epoch)
                for batch in self.batches(epoch):
                    yield epoch, batch
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()


def _split_bound(m, parts, k):
    """Where part ``k`` of ``m`` items cut into ``parts`` contiguous parts begins (the first
    ``m % parts`` parts hold one more item, as numpy.array_split)."""
    base, extra = divmod(m, parts)
    return k * base + min(k, extra)


def _shard(shard):
    """(rank, world_size) from ``shard``: None, a pair, or an object with ``rank`` and
    ``world_size`` (a Session)."""
    if shard is None:
        return 0, 1
    if isinstance(shard, (tuple, list)):
        if len(shard) != 2:
            raise ValueError(f"DataLoader: shard must be (rank, world_size) or a Session; got {shard!r}")
        rank, world = shard
    elif hasattr(shard, "rank") and hasattr(shard, "world_size"):
        rank, world = shard.rank, shard.world_size
    else:
        raise TypeError(f"DataLoader: shard must be (rank, world_size) or a data-parallel Session; got "
                        f"{type(shard).__name__}")
    for what, v in (("rank", rank), ("world_size", world)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"DataLoader: shard {what} must be an integer; got {v!r}")
    if not 0 <= rank < world:
        raise ValueError(f"DataLoader: shard rank must satisfy 0 <= rank < world_size; got rank {rank}, "
                         f"world_size {world}")
    return int(rank), int(world)


# --------------------------------------------------------------------------- downloads

# name → (URL, MD5 of the file as published).  Module-level tables so a test can point them
# at a fake server.
MNIST_FILES = {
    name: ("https://ossci-datasets.s3.amazonaws.com/mnist/" + name, md5)
    for name, md5 in (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                      ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
                      ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                      ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))
}
FASHION_MNIST_FILES = {
    name: ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" + name, md5)
    for name, md5 in (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                      ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                      ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                      ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"))
}
CIFAR10_ARCHIVE = ("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                   "c58f30108f718f92721af3b95e74349a")
CIFAR10_DIR = "cifar-10-batches-py"
DOWNLOAD_TIMEOUT_S = 60


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url, path, md5=None):
    """Fetch ``url`` into ``path`` atomically (temporary file + os.replace), checking ``md5``."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=directory)
    try:
        h = hashlib.md5()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            raise DownloadError(f"could not download {url} to {path}: {e} (check the network, or put the "
                                f"file there yourself)") from e
        if md5 is not None and h.hexdigest() != md5:
            raise DownloadError(f"the file downloaded from {url} has MD5 {h.hexdigest()}, expected {md5}; "
                                f"it was not saved to {path}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------- IDX (MNIST)

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dims (count, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dim (count)


def _read_bytes(path):
    """The content of ``path``, gunzipped when it is a gzip file (by content, not by name)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(f"cannot read {quote(path)}: {e}") from e
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{quote(path)} is a corrupt or truncated gzip file: {e}") from e
    if path.endswith(".gz"):
        raise DatasetError(f"{quote(path)} is named .gz but is not a gzip file")
    return data


def read_idx(path, magic):
    """Read an IDX file of unsigned bytes (plain or gzip) whose magic number must be ``magic``
    (2051 for images, 2049 for labels); returns a uint8 array of the dims in its header."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{quote(path)} is truncated: {len(data)} bytes, shorter than the IDX magic number")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise DatasetError(f"{quote(path)} has magic number {got}, expected {magic} "
                           f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'} IDX file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{quote(path)} is truncated: {len(data)} bytes, the header needs {header}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    want = header + math.prod(dims)
    if len(data) != want:
        what = "truncated" if len(data) < want else "longer than its header says"
        raise DatasetError(f"{quote(path)} is {what}: dims {dims} need {want} bytes, the file has {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_file(root, stem, table, download):
    """Path of ``stem`` (plain) or ``stem.gz`` in root, downloading the .gz if asked."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    path = os.path.join(root, stem + ".gz")
    if not download:
        raise DatasetError(f"neither {quote(os.path.join(root, stem))} nor {quote(path)} exists; "
                           f"pass download=True to fetch it")
    url, md5 = table[stem + ".gz"]
    _download(url, path, md5)
    return path


def _idx_dataset(root, train, download, table, what):
    root = os.path.expanduser(os.fspath(root))
    prefix = "train" if train else "t10k"
    ipath = _idx_file(root, f"{prefix}-images-idx3-ubyte", table, download)
    lpath = _idx_file(root, f"{prefix}-labels-idx1-ubyte", table, download)
    images = read_idx(ipath, IDX_IMAGES_MAGIC)
    labels = read_idx(lpath, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetError(f"{what}: {quote(ipath)} has {len(images)} images but {quote(lpath)} has "
                           f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{what}: {quote(lpath)} has label {int(labels.max())}, expected 0..9")
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return x, labels.astype(np.int64)


def mnist(root, train=True, download=False):
    """MNIST from the IDX files in ``root`` (``train-images-idx3-ubyte`` etc., plain or
    ``.gz``).  Returns ``(images, labels)``: float32 (N, 1, 28, 28) in [0, 1] and int64 labels.
    ``download=True`` fetches missing files (checked by MD5) into ``root``."""
    return _idx_dataset(root, train, download, MNIST_FILES, "mnist")


def fashion_mnist(root, train=True, download=False):
    """Fashion-MNIST; same files, format and result as :func:`mnist`."""
    return _idx_dataset(root, train, download, FASHION_MNIST_FILES, "fashion_mnist")


# --------------------------------------------------------------------------- CIFAR-10

# Unpickling runs code named by the file: only these globals may be named.  A CIFAR batch is a
# dict of bytes keys, a numpy uint8 array, lists of ints and bytes; builtins are listed for
# pickles written by Python 3 (Python 2 names them __builtin__), and _codecs.encode is how
# protocol 2 writes bytes.
_PICKLE_ALLOWED = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "bytes"), ("builtins", "str"), ("builtins", "int"),
    ("__builtin__", "dict"), ("__builtin__", "list"), ("__builtin__", "bytes"), ("__builtin__", "str"),
    ("__builtin__", "int"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    # protocol 5 (numpy >= 1.16 writes arrays as a buffer and rebuilds them with _frombuffer)
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}: a CIFAR batch needs only "
                                     f"dicts, lists, bytes, ints and numpy arrays")


def _safe_load(data):
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def read_cifar_batch(path):
    """Read one CIFAR-10 python batch with a restricted unpickler; returns (uint8 (N, 3072),
    int64 (N,))."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"cannot read {quote(path)}: {e}") from e
    try:
        obj = _safe_load(raw)
    except Exception as e:  # anything a corrupt or hostile pickle raises is a bad file
        raise DatasetError(f"{quote(path)} is not a CIFAR-10 batch: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{quote(path)} is not a CIFAR-10 batch: it holds a {type(obj).__name__}, "
                           f"expected a dict")

    def get(key):
        for k in (key.encode(), key):
            if k in obj:
                return obj[k]
        raise DatasetError(f"{quote(path)} is not a CIFAR-10 batch: it has no {key!r} entry")

    data, labels = get("data"), get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{quote(path)}: 'data' must be a uint8 array of shape (N, 3072); got {got}")
    if not (isinstance(labels, (list, np.ndarray))
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels)):
        raise DatasetError(f"{quote(path)}: 'labels' must be a list of ints")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(data):
        raise DatasetError(f"{quote(path)} has {len(data)} images but {len(y)} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DatasetError(f"{quote(path)} has a label outside 0..9: {int(y.min())}..{int(y.max())}")
    return data, y


def _cifar_dir(root, names, download):
    """The folder holding the batches: root itself, or root/cifar-10-batches-py."""
    for d in (root, os.path.join(root, CIFAR10_DIR)):
        if all(os.path.exists(os.path.join(d, n)) for n in names):
            return d
    d = os.path.join(root, CIFAR10_DIR)
    if not download:
        raise DatasetError(f"the CIFAR-10 batches {', '.join(names)} are neither in {quote(root)} nor in "
                           f"{quote(d)}; pass download=True to fetch them")
    archive_name, url, md5 = CIFAR10_ARCHIVE
    archive = os.path.join(root, archive_name)
    if not (os.path.exists(archive) and _md5(archive) == md5):
        _download(url, archive, md5)
    os.makedirs(d, exist_ok=True)
    # Read the members we need by name rather than extracting the archive: no member path
    # of the archive ever becomes a path on disk.
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for n in names:
                try:
                    member = tar.getmember(f"{CIFAR10_DIR}/{n}")
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise DatasetError(f"{quote(archive)} has no regular file {CIFAR10_DIR}/{n}")
                fd, tmp = tempfile.mkstemp(prefix=".part-", dir=d)
                try:
                    with os.fdopen(fd, "wb") as out:
                        out.write(f.read())
                    os.replace(tmp, os.path.join(d, n))
                finally:
                    if os.path.exists(tmp):
                        os.remove(tmp)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DatasetError(f"{quote(archive)} is not a readable CIFAR-10 archive: {e}") from e
    return d


def cifar10(root, train=True, download=False):
    """CIFAR-10 from the python batches (``data_batch_1``..``5``, ``test_batch``) in ``root`` or
    ``root/cifar-10-batches-py``.  Returns ``(images, labels)``: float32 (N, 3, 32, 32) in
    [0, 1] and int64 labels.  The pickles are read with an unpickler that refuses every
    global but dicts, lists, bytes, ints and numpy arrays (unpickling is code execution).
    ``download=True`` fetches and unpacks the archive (checked by MD5) into ``root``."""
    root = os.path.expanduser(os.fspath(root))
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    d = _cifar_dir(root, names, download)
    parts = [read_cifar_batch(os.path.join(d, n)) for n in names]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    x = (data.astype(np.float32) / np.float32(255.0)).reshape(-1, 3, 32, 32)
    return x, labels
