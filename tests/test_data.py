"""gc.data (graphc/dataloader.py): the DataLoader and the MNIST / Fashion-MNIST / CIFAR-10 readers.

Every data file here is written in the exact published format into tmp_path; the network is
never touched (urlopen is replaced by a fake in every download test)."""

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

import graphc as gc
from graphc import dataloader as data
from graphc.errors import GraphcError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any urlopen a test did not replace itself fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"the test tried to reach the network: {args}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# --------------------------------------------------------------------------- IDX files


def idx_bytes(arr, magic):
    arr = np.asarray(arr, dtype=np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write_mnist(root, n=5, rows=3, cols=4, train=True, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    if n:
        images[0, 0, 0], images[-1, -1, -1] = 0, 255  # both ends of the scale
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if train else "t10k"
    suffix = ".gz" if gz else ""
    ipath = os.path.join(root, f"{prefix}-images-idx3-ubyte{suffix}")
    lpath = os.path.join(root, f"{prefix}-labels-idx1-ubyte{suffix}")
    for path, blob in ((ipath, idx_bytes(images, 2051)), (lpath, idx_bytes(labels, 2049))):
        with open(path, "wb") as f:
            f.write(gzip.compress(blob) if gz else blob)
    return images, labels, ipath, lpath


@pytest.mark.parametrize("reader", [data.mnist, data.fashion_mnist])
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("n,rows,cols", [(0, 28, 28), (1, 1, 1), (5, 3, 7)])
def test_idx_reader_roundtrip(tmp_path, reader, gz, train, n, rows, cols):
    images, labels, _, _ = write_mnist(tmp_path, n, rows, cols, train=train, gz=gz)
    x, y = reader(tmp_path, train=train)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (n, 1, rows, cols) and y.shape == (n,)
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, labels.astype(np.int64))
    if images.size > 1:  # write_mnist puts a 0 first and a 255 last
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x[0, 0, 0, 0] == 0.0 and x[-1, 0, -1, -1] == 1.0


def test_idx_reader_accepts_a_str_root_and_reads_gzip_by_content(tmp_path):
    images, labels, ipath, lpath = write_mnist(tmp_path, gz=True)
    x, y = data.mnist(str(tmp_path))
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[:, 0] * 255, images)


def corrupt(path, fn):
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(fn(blob))


@pytest.mark.parametrize("which,change,match", [
    ("images", lambda b: b[:-1], "truncated"),
    ("labels", lambda b: b[:-1], "truncated"),
    ("images", lambda b: b[:10], "truncated"),        # inside the header
    ("images", lambda b: b[:2], "truncated"),         # inside the magic number
    ("images", lambda b: b + b"\0", "longer than its header"),
    ("images", lambda b: (2049).to_bytes(4, "big") + b[4:], "magic number 2049, expected 2051"),
    ("labels", lambda b: (2051).to_bytes(4, "big") + b[4:], "magic number 2051, expected 2049"),
    ("labels", lambda b: b[:8] + bytes([10]) + b[9:], "label 10"),
])
def test_idx_reader_rejects_corrupt_files(tmp_path, which, change, match):
    _, _, ipath, lpath = write_mnist(tmp_path)
    path = ipath if which == "images" else lpath
    corrupt(path, change)
    with pytest.raises(data.DatasetError, match=match) as e:
        data.mnist(tmp_path)
    assert os.path.basename(path) in str(e.value)
    assert isinstance(e.value, GraphcError) and isinstance(e.value, ValueError)


def test_idx_reader_rejects_a_truncated_gzip(tmp_path):
    _, _, ipath, _ = write_mnist(tmp_path, n=50, gz=True)
    corrupt(ipath, lambda b: b[: len(b) // 2])
    with pytest.raises(data.DatasetError, match="gzip") as e:
        data.mnist(tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(e.value)


def test_idx_reader_rejects_a_gz_name_that_is_not_gzip(tmp_path):
    _, _, ipath, _ = write_mnist(tmp_path, gz=True)
    with open(ipath, "wb") as f:
        f.write(b"plain text, not gzip")
    with pytest.raises(data.DatasetError, match="not a gzip file"):
        data.mnist(tmp_path)


def test_idx_reader_rejects_mismatched_counts(tmp_path):
    write_mnist(tmp_path, n=5)
    labels = np.zeros(4, np.uint8)
    with open(os.path.join(tmp_path, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(idx_bytes(labels, 2049))
    with pytest.raises(data.DatasetError, match="5 images but .* 4 labels"):
        data.mnist(tmp_path)


def test_missing_files_without_download_never_touch_the_network(tmp_path):
    # The autouse fixture turns any urlopen into a failure, so a DatasetError here means no
    # download was tried.
    with pytest.raises(data.DatasetError, match="download=True") as e:
        data.mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(e.value)
    with pytest.raises(data.DatasetError, match="download=True"):
        data.cifar10(tmp_path, train=False)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- downloads


class FakeResponse(io.BytesIO):
    pass


def serve(monkeypatch, files):
    """Replace urlopen by a server of ``files`` (url → bytes); returns the list of URLs asked."""
    asked = []

    def urlopen(url, timeout=None):
        asked.append(url)
        if url not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return FakeResponse(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def test_download_without_network_raises_a_typed_error_naming_the_url(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for reader, table in ((data.mnist, data.MNIST_FILES), (data.fashion_mnist, data.FASHION_MNIST_FILES)):
        with pytest.raises(data.DownloadError) as e:
            reader(tmp_path / reader.__name__, download=True)
        assert table["train-images-idx3-ubyte.gz"][0] in str(e.value)
        assert isinstance(e.value, GraphcError) and isinstance(e.value, OSError)
        assert os.listdir(tmp_path / reader.__name__) == []  # no partial file left behind
    with pytest.raises(data.DownloadError) as e:
        data.cifar10(tmp_path / "cifar", download=True)
    assert data.CIFAR10_ARCHIVE[1] in str(e.value)
    assert os.listdir(tmp_path / "cifar") == []


def test_download_fetches_checks_md5_and_saves_atomically(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    images, labels, _, _ = write_mnist(src, gz=True, train=False)
    table, files = {}, {}
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        blob = (src / name).read_bytes()
        url = f"https://example.invalid/{name}"
        table[name] = (url, hashlib.md5(blob).hexdigest())
        files[url] = blob
    monkeypatch.setattr(data, "MNIST_FILES", table)
    asked = serve(monkeypatch, files)
    root = tmp_path / "dst"
    x, y = data.mnist(root, train=False, download=True)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[:, 0] * 255, images)
    assert sorted(os.listdir(root)) == sorted(table)
    assert len(asked) == 2
    data.mnist(root, train=False, download=True)  # present: nothing fetched again
    assert len(asked) == 2


def test_download_with_a_wrong_md5_keeps_nothing(tmp_path, monkeypatch):
    url = "https://example.invalid/t10k-images-idx3-ubyte.gz"
    monkeypatch.setattr(data, "MNIST_FILES", {"t10k-images-idx3-ubyte.gz": (url, "0" * 32)})
    serve(monkeypatch, {url: b"not what was published"})
    with pytest.raises(data.DownloadError, match="MD5") as e:
        data.mnist(tmp_path, train=False, download=True)
    assert url in str(e.value)
    assert os.listdir(tmp_path) == []


def test_download_http_error_is_typed(tmp_path, monkeypatch):
    serve(monkeypatch, {})
    with pytest.raises(data.DownloadError, match="404") as e:
        data.mnist(tmp_path, download=True)
    assert data.MNIST_FILES["train-images-idx3-ubyte.gz"][0] in str(e.value)


# --------------------------------------------------------------------------- CIFAR-10


def cifar_batch(n, seed, label_offset=0):
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in (np.arange(n) + label_offset) % 10]
    return {b"batch_label": b"batch", b"labels": labels, b"data": d,
            b"filenames": [f"img{i}.png".encode() for i in range(n)]}


def write_cifar(directory, sizes, train, protocol=pickle.HIGHEST_PROTOCOL):
    os.makedirs(directory, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    batches = []
    for i, (name, n) in enumerate(zip(names, sizes)):
        b = cifar_batch(n, seed=i, label_offset=i)
        with open(os.path.join(directory, name), "wb") as f:
            pickle.dump(b, f, protocol=protocol)
        batches.append(b)
    return batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("nested", [False, True])
def test_cifar10_reads_train_and_test(tmp_path, protocol, nested):
    d = tmp_path / data.CIFAR10_DIR if nested else tmp_path
    train = write_cifar(d, [3, 1, 0, 2, 5], train=True, protocol=protocol)
    test = write_cifar(d, [7], train=False, protocol=protocol)
    for batches, flag in ((train, True), (test, False)):
        x, y = data.cifar10(tmp_path, train=flag)
        raw = np.concatenate([b[b"data"] for b in batches])
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (len(raw), 3, 32, 32) and y.shape == (len(raw),)
        np.testing.assert_array_equal(y, np.concatenate([b[b"labels"] for b in batches]))
        # The published layout: a row is the 1024 red values, then green, then blue, each row-major.
        i = len(raw) - 1
        for c, h, w in ((0, 0, 0), (1, 5, 31), (2, 31, 30)):
            assert x[i, c, h, w] == np.float32(raw[i, c * 1024 + h * 32 + w]) / np.float32(255)
        np.testing.assert_array_equal(x.reshape(len(raw), -1) * 255, raw.astype(np.float32))


class Evil:
    """A pickle that runs a shell command when loaded by a plain unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_refuses_a_malicious_pickle(tmp_path, protocol):
    marker = tmp_path / "pwned"
    batch = cifar_batch(2, 0)
    batch[b"labels"] = Evil(marker)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    with pytest.raises(data.DatasetError, match="refused to load global") as e:
        data.cifar10(tmp_path, train=False)
    assert "test_batch" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("obj,match", [
    ([1, 2, 3], "holds a list, expected a dict"),
    ({b"labels": [1]}, "no 'data' entry"),
    ({b"data": np.zeros((1, 3072), np.uint8)}, "no 'labels' entry"),
    ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "outside 0..9"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["a"]}, "list of ints"),
])
def test_cifar10_rejects_a_pickle_that_is_not_a_batch(tmp_path, obj, match):
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(obj, f)
    with pytest.raises(data.DatasetError, match=match) as e:
        data.cifar10(tmp_path, train=False)
    assert "test_batch" in str(e.value)


@pytest.mark.parametrize("change", [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b"\x80\x05garbage"])
def test_cifar10_rejects_truncated_or_garbage_files(tmp_path, change):
    write_cifar(tmp_path, [4], train=False)
    corrupt(tmp_path / "test_batch", change)
    with pytest.raises(data.DatasetError, match="not a CIFAR-10 batch") as e:
        data.cifar10(tmp_path, train=False)
    assert "test_batch" in str(e.value)


def test_cifar10_download_unpacks_only_the_batches(tmp_path, monkeypatch):
    buf = io.BytesIO()
    batch = cifar_batch(3, 0)
    blob = pickle.dumps(batch, protocol=2)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in ((f"{data.CIFAR10_DIR}/test_batch", blob), ("../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    archive = buf.getvalue()
    url = "https://example.invalid/cifar-10-python.tar.gz"
    monkeypatch.setattr(data, "CIFAR10_ARCHIVE", ("cifar-10-python.tar.gz", url, hashlib.md5(archive).hexdigest()))
    serve(monkeypatch, {url: archive})
    root = tmp_path / "root"
    x, y = data.cifar10(root, train=False, download=True)
    np.testing.assert_array_equal(y, batch[b"labels"])
    np.testing.assert_array_equal(x.reshape(3, -1) * 255, batch[b"data"].astype(np.float32))
    assert sorted(os.listdir(root)) == sorted(["cifar-10-python.tar.gz", data.CIFAR10_DIR])
    assert os.listdir(root / data.CIFAR10_DIR) == ["test_batch"]
    assert not (tmp_path / "escape").exists()
    # The archive lacks the training batches: a clear error naming it.
    with pytest.raises(data.DatasetError, match="data_batch_1") as e:
        data.cifar10(root, train=True, download=True)
    assert "cifar-10-python.tar.gz" in str(e.value)


# --------------------------------------------------------------------------- DataLoader


def specials(n):
    v = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.0], dtype=np.float32)
    return np.resize(v, n)


@pytest.mark.parametrize("n,bs", [(0, 1), (0, 4), (1, 1), (1, 5), (7, 3), (7, 7), (7, 8), (9, 2), (10, 5)])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_cover_every_example_once(n, bs, shuffle, drop_last):
    x = np.arange(n * 3, dtype=np.int64).reshape(n, 3)
    y = specials(n)
    loader = gc.data.DataLoader((x, y), bs, shuffle=shuffle, seed=3, drop_last=drop_last)
    batches = list(loader)
    expect_len = n // bs if drop_last else -(-n // bs)
    assert len(loader) == len(batches) == expect_len
    sizes = [len(b[0]) for b in batches]
    assert all(s == bs for s in sizes[:-1])
    if drop_last:
        assert all(s == bs for s in sizes)
    seen = np.concatenate([b[0][:, 0] // 3 for b in batches]) if batches else np.zeros(0, np.int64)
    if drop_last:
        assert len(seen) == (n // bs) * bs and len(set(seen.tolist())) == len(seen)
    else:
        assert sorted(seen.tolist()) == list(range(n))
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))
    for bx, by in batches:
        assert isinstance(bx, np.ndarray) and bx.dtype == np.int64 and bx.shape[1:] == (3,)
        # rows travel together, and special values (NaN, ±inf, -0.0) arrive bit for bit
        np.testing.assert_array_equal(by.view(np.uint32), y[bx[:, 0] // 3].view(np.uint32))


def test_structure_is_kept():
    x, y = np.arange(5.0), np.arange(5)
    d = next(iter(gc.data.DataLoader({"x": x, "y": y}, 2, shuffle=False)))
    assert list(d) == ["x", "y"]
    np.testing.assert_array_equal(d["x"], [0.0, 1.0])
    t = next(iter(gc.data.DataLoader((x, y), 2, shuffle=False)))
    assert isinstance(t, tuple) and len(t) == 2
    l_ = next(iter(gc.data.DataLoader([x], 2, shuffle=False)))
    assert isinstance(l_, list) and len(l_) == 1


def test_shuffle_is_reproducible_from_seed_and_epoch():
    x = np.arange(50)
    a = gc.data.DataLoader((x,), 8, seed=7)
    b = gc.data.DataLoader((x,), 8, seed=7)
    ea = [np.concatenate([t[0] for t in a]) for _ in range(3)]
    eb = [np.concatenate([t[0] for t in b]) for _ in range(3)]
    for p, q in zip(ea, eb):
        np.testing.assert_array_equal(p, q)
    # each epoch is a new permutation, and replaying one epoch needs no earlier ones
    assert not np.array_equal(ea[0], ea[1]) and not np.array_equal(ea[1], ea[2])
    c = gc.data.DataLoader((x,), 8, seed=7)
    np.testing.assert_array_equal(np.concatenate([t[0] for t in c.batches(2)]), ea[2])
    np.testing.assert_array_equal(c.order(1), ea[1])
    assert c.epoch == 0  # batches() and order() leave the counter alone
    other = gc.data.DataLoader((x,), 8, seed=8)
    assert not np.array_equal(np.concatenate([t[0] for t in other]), ea[0])
    # the batch size does not change the order
    np.testing.assert_array_equal(gc.data.DataLoader((x,), 50, seed=7).order(0), ea[0])


def test_epochs_yields_epoch_and_batch(capsys):
    x = np.arange(7)
    loader = gc.data.DataLoader((x,), 3, seed=1)
    got = list(loader.epochs(2, progress=False))
    assert [e for e, _ in got] == [0, 0, 0, 1, 1, 1]
    assert loader.epoch == 2
    for e in (0, 1):
        np.testing.assert_array_equal(np.concatenate([b[0] for ep, b in got if ep == e]), loader.order(e))
    # with a progress bar (tqdm): same batches, the counter goes on from 2
    with_bar = list(loader.epochs(1, progress=True))
    assert [e for e, _ in with_bar] == [2, 2, 2]
    assert list(loader.epochs(0)) == []


@pytest.mark.parametrize("args,kwargs,exc,match", [
    (((np.zeros(3), np.zeros(4)), 2), {}, ValueError, "same length"),
    (({"a": np.zeros(3), "b": np.zeros(2)}, 2), {}, ValueError, "a: 3, b: 2"),
    (((np.zeros(3),), 0), {}, ValueError, "batch_size"),
    (((np.zeros(3),), -1), {}, ValueError, "batch_size"),
    (((np.zeros(3),), 1.5), {}, ValueError, "batch_size"),
    (((np.zeros(3),), True), {}, ValueError, "batch_size"),
    (((np.zeros(3),), 2), {"seed": -1}, ValueError, "seed"),
    (((), 2), {}, ValueError, "empty"),
    ((([1, 2, 3],), 2), {}, TypeError, "numpy array"),
    (((np.float32(1.0),), 2), {}, TypeError, "numpy array"),
    (((np.array(1.0),), 2), {}, ValueError, "at least one axis"),
    ((np.zeros(3), 2), {}, TypeError, "tuple, list or dict"),
])
def test_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gc.data.DataLoader(*args, **kwargs)


def test_bad_epoch_count():
    loader = gc.data.DataLoader((np.zeros(3),), 2)
    with pytest.raises(ValueError, match="epochs"):
        list(loader.epochs(-1))


# --------------------------------------------------------------------------- package wiring


def test_gc_data_is_the_dataloader_module():
    import graphc.data

    assert gc.data is data and graphc.data is data
    assert gc.data.DataLoader is data.DataLoader


def test_digits_as_images():
    (xf, yf), (tf, tyf) = gc.datasets.load_digits()
    (xi, yi), (ti, tyi) = gc.datasets.load_digits(images=True)
    assert xi.shape == (len(xf), 1, 8, 8) and xi.dtype == np.float32
    np.testing.assert_array_equal(xi.reshape(len(xi), -1), xf)
    np.testing.assert_array_equal(ti.reshape(len(ti), -1), tf)
    np.testing.assert_array_equal(yi, yf)
    np.testing.assert_array_equal(tyi, tyf)


def test_cifar10_reads_pickles_that_name_numpy_1_modules(tmp_path):
    # The published batches were written by numpy 1.x, which names numpy.core.multiarray
    # (numpy 2 writes numpy._core.multiarray); both must load.
    batch = cifar_batch(2, 0)
    blob = pickle.dumps(batch, protocol=2)
    assert b"numpy._core.multiarray" in blob or b"numpy.core.multiarray" in blob
    (tmp_path / "test_batch").write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    x, y = data.cifar10(tmp_path, train=False)
    np.testing.assert_array_equal(y, batch[b"labels"])
    np.testing.assert_array_equal(x.reshape(2, -1) * 255, batch[b"data"].astype(np.float32))
