"""gc.text: the byte tokenizer, the standard-library corpus, the batchers, top-k sampling."""

import math
import os
import sysconfig

import numpy as np
import pytest

import graphc as gc
from graphc import text

# --- ByteTokenizer -------------------------------------------------------------------------

SAMPLES = ["", "a", "hello, world\n", "tab\tand\r\nCRLF", "héllo wörld — ∑ 𝄞 日本", "\x00\x7f", "🙂" * 3]


@pytest.mark.parametrize("s", SAMPLES)
def test_byte_tokenizer_roundtrip(s):
    tok = text.ByteTokenizer()
    ids = tok.encode(s)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ids.tolist() == list(s.encode("utf-8"))
    assert tok.decode(ids) == s
    assert tok.decode(ids.tolist()) == s


def test_byte_tokenizer_decode_replaces_invalid_utf8():
    tok = text.ByteTokenizer()
    ids = tok.encode("é")            # two bytes; the first alone is a cut character
    assert tok.decode(ids[:1]) == "\ufffd"
    assert tok.decode([104, 0xFF, 105]) == "h\ufffdi"


def test_byte_tokenizer_compact_ascii():
    tok = text.ByteTokenizer(128)
    assert tok.vocab_size == 128 and tok.unk_id == 0
    s = "def f(x):\n    return x ** 2  # ~!@\x7f"
    ids = tok.encode(s)
    assert ids.dtype == np.int64 and ids.tolist() == [ord(c) for c in s]
    assert tok.decode(ids) == s
    # One id per non-ASCII character (not per UTF-8 byte), decoding to U+FFFD.
    ids = tok.encode("aé日🙂b")
    assert ids.tolist() == [97, 0, 0, 0, 98]
    assert tok.decode(ids) == "a\ufffd\ufffd\ufffdb"
    assert int(tok.encode(text.stdlib_corpus(max_bytes=50_000)).max()) < 128


def test_byte_tokenizer_errors():
    with pytest.raises(ValueError, match="vocab_size"):
        text.ByteTokenizer(100)
    with pytest.raises(ValueError, match="vocab_size"):
        text.ByteTokenizer(True)
    tok = text.ByteTokenizer()
    with pytest.raises(TypeError, match="str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tok.decode([1, 256])
    with pytest.raises(ValueError, match=r"\[0, 128\)"):
        text.ByteTokenizer(128).decode([200])
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        tok.decode(np.array([1.5]))
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(np.zeros((2, 2), np.int64))
    assert tok.decode([]) == ""


# --- the corpus ------------------------------------------------------------------------------

def test_stdlib_corpus_is_reproducible_and_seeded():
    a = text.stdlib_corpus(max_bytes=200_000, seed=0)
    b = text.stdlib_corpus(max_bytes=200_000, seed=0)
    c = text.stdlib_corpus(max_bytes=200_000, seed=1)
    assert a == b
    assert a != c
    assert len(a.encode("utf-8")) <= 200_000
    assert len(a.encode("utf-8")) > 200_000 - 4     # cut at the cap (at most a partial character dropped)
    # A shorter cap is a prefix of a longer one with the same seed.
    assert text.stdlib_corpus(max_bytes=1000, seed=0) == a[:len(text.stdlib_corpus(max_bytes=1000, seed=0))]


def test_stdlib_corpus_contents(tmp_path):
    # A small fake standard library shows exactly which files are read and in what order.
    files = {"a.py": "A = 1\n", "b.py": "B = 2\n", "pkg/c.py": "C = 'é'\n", "pkg/d.txt": "not python",
             "test/t.py": "T = 0\n", "site-packages/x.py": "X = 0\n", "pkg/__pycache__/c.py": "P\n",
             "bad.py": b"Z = '\xff'\n"}
    for rel, body in files.items():
        path = tmp_path.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    names = sorted(["a.py", "b.py", "bad.py", "pkg/c.py"])
    order = np.random.default_rng(3).permutation(len(names))
    bodies = {"a.py": "A = 1\n", "b.py": "B = 2\n", "bad.py": "Z = '\ufffd'\n", "pkg/c.py": "C = 'é'\n"}
    expected = "".join(bodies[names[i]] + "\n" for i in order)
    assert text.stdlib_corpus(seed=3, root=tmp_path) == expected
    with_tests = text.stdlib_corpus(seed=3, root=tmp_path, include_tests=True)
    assert "T = 0" in with_tests and "X = 0" not in with_tests and "P\n" not in with_tests
    # The cap counts UTF-8 bytes and never cuts a character in two.
    for cap in range(len(expected.encode("utf-8")) + 2):
        got = text.stdlib_corpus(max_bytes=cap, seed=3, root=tmp_path)
        assert expected.startswith(got)
        assert len(expected.encode("utf-8")[:cap].decode("utf-8", errors="ignore")) == len(got)
    with pytest.raises(FileNotFoundError):
        text.stdlib_corpus(root=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .py"):
        text.stdlib_corpus(root=tmp_path / "empty")


def test_stdlib_corpus_reads_the_real_stdlib():
    root = sysconfig.get_paths()["stdlib"]
    s = text.stdlib_corpus(max_bytes=300_000, seed=0)
    assert "def " in s and "import " in s
    # The first file of the seeded order is the start of the text.
    names = text._stdlib_files(root, include_tests=False)
    first = names[np.random.default_rng(0).permutation(len(names))[0]]
    assert not any(part in ("test", "tests", "site-packages") for part in first.split("/")[:-1])
    with open(os.path.join(root, *first.split("/")), "rb") as f:
        head = f.read().decode("utf-8", errors="replace")
    assert s.startswith(head[:1000])


def test_stdlib_corpus_bad_arguments():
    for kw in ({"max_bytes": -1}, {"max_bytes": 1.5}, {"seed": -1}, {"seed": "0"}):
        with pytest.raises(ValueError):
            text.stdlib_corpus(**kw)
    assert text.stdlib_corpus(max_bytes=0) == ""


# --- splits and batches ----------------------------------------------------------------------

def test_train_val_split_disjoint_and_complete():
    ids = np.arange(1000, dtype=np.int64)
    train, val = text.train_val_split(ids, val_fraction=0.1)
    assert len(val) == 100 and len(train) == 900
    assert np.array_equal(np.concatenate([train, val]), ids)
    assert not set(train.tolist()) & set(val.tolist())
    assert train.dtype == val.dtype == np.int64
    train, val = text.train_val_split(ids[:3], val_fraction=0.01)   # rounds to 0, kept at 1
    assert len(val) == 1 and len(train) == 2
    train, val = text.train_val_split(ids, val_fraction=0.0)
    assert len(val) == 0 and len(train) == 1000
    train, val = text.train_val_split(np.zeros(0, np.int64))
    assert len(train) == len(val) == 0
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="val_fraction"):
            text.train_val_split(ids, val_fraction=bad)


def test_lm_batches_shapes_shift_and_determinism():
    ids = np.arange(500, dtype=np.int64) * 7 % 256
    a = list(text.lm_batches(ids, batch=4, context=9, seed=5, steps=6))
    b = list(text.lm_batches(ids, batch=4, context=9, seed=5, steps=6))
    c = list(text.lm_batches(ids, batch=4, context=9, seed=6, steps=6))
    assert len(a) == 6
    for (x, y), (x2, y2) in zip(a, b):
        assert x.shape == y.shape == (4, 9) and x.dtype == y.dtype == np.int64
        assert x.flags.c_contiguous and y.flags.c_contiguous
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
        assert np.array_equal(x[:, 1:], y[:, :-1])
    for x, y in a:
        # Every row is a window of ids followed by its next token.
        for row_x, row_y in zip(x, y):
            start = int(np.flatnonzero((np.arange(500) * 7 % 256) == row_x[0])[0])
            assert np.array_equal(row_x, ids[start:start + 9]) and np.array_equal(row_y, ids[start + 1:start + 10])
    assert any(not np.array_equal(p[0], q[0]) for p, q in zip(a, c))


def test_lm_batches_reaches_both_ends():
    ids = np.arange(12, dtype=np.int64)
    firsts = set()
    for x, y in text.lm_batches(ids, batch=16, context=4, seed=0, steps=20):
        firsts.update(x[:, 0].tolist())
        assert int(y.max()) <= 11
    assert firsts == set(range(8))           # every start 0..len-context-1, and none past it


def test_lm_batches_forever_and_errors():
    gen = text.lm_batches(np.arange(10), batch=2, context=9, seed=0)
    for _ in range(50):
        x, y = next(gen)
        assert x.tolist() == [list(range(9))] * 2
    with pytest.raises(ValueError, match="needs at least 10"):
        text.lm_batches(np.arange(9), batch=2, context=9)
    with pytest.raises(ValueError, match="batch"):
        text.lm_batches(np.arange(100), batch=0, context=4)
    with pytest.raises(ValueError, match="context"):
        text.lm_batches(np.arange(100), batch=1, context=0)
    with pytest.raises(ValueError, match="1-D"):
        text.lm_batches(np.zeros((5, 5), np.int64), batch=1, context=2)
    assert list(text.lm_batches(np.arange(100), batch=1, context=2, steps=0)) == []


def test_lm_windows():
    ids = np.arange(23, dtype=np.int64)
    x, y = text.lm_windows(ids, context=5)
    assert x.shape == y.shape == (4, 5) and x.dtype == np.int64
    assert np.array_equal(x.ravel(), ids[:20]) and np.array_equal(y.ravel(), ids[1:21])
    x, y = text.lm_windows(ids, context=5, max_windows=2)
    assert x.shape == (2, 5)
    x, y = text.lm_windows(ids[:21], context=5)     # exactly 4 windows need 21 tokens
    assert x.shape == (4, 5)
    x, y = text.lm_windows(ids[:20], context=5)
    assert x.shape == (3, 5)
    x, y = text.lm_windows(np.zeros(0, np.int64), context=5)
    assert x.shape == y.shape == (0, 5)


def test_bits_per_char():
    assert text.bits_per_char(math.log(2.0)) == pytest.approx(1.0)
    assert text.bits_per_char(math.log(256.0)) == pytest.approx(8.0)   # the uniform byte model


# --- sampling --------------------------------------------------------------------------------

def test_sample_from_topk_follows_the_softmax():
    values = np.array([2.0, 1.0, 0.0, -np.inf])
    indices = np.array([40, 7, 99, 3])
    rng = np.random.default_rng(0)
    n = 20000
    draws = text.sample_from_topk(np.tile(values, (n, 1)), np.tile(indices, (n, 1)), rng)
    assert set(draws.tolist()) <= {40, 7, 99}                 # -inf never drawn
    p = np.exp(values[:3] - 2.0) / np.exp(values[:3] - 2.0).sum()
    freq = np.array([(draws == t).mean() for t in (40, 7, 99)])
    # 5 standard deviations of a binomial proportion.
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n))


def test_sample_from_topk_deterministic_and_batched():
    values = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    indices = np.argsort(-values, axis=1).astype(np.int64)
    a = text.sample_from_topk(values, indices, np.random.default_rng(42))
    b = text.sample_from_topk(values, indices, np.random.default_rng(42))
    assert a.dtype == np.int64 and a.shape == (6,) and np.array_equal(a, b)
    # Row r with one rng draw each equals drawing the rows one by one from the same stream.
    rng = np.random.default_rng(42)
    one_by_one = [text.sample_from_topk(values[r], indices[r], rng) for r in range(6)]
    assert a.tolist() == one_by_one
    # k = 1 is greedy.
    assert text.sample_from_topk(np.array([0.3]), np.array([17]), np.random.default_rng(0)) == 17
    # A huge logit gap is greedy too, without overflow.
    assert text.sample_from_topk(np.array([1e30, -1e30]), np.array([5, 6]), np.random.default_rng(0)) == 5


def test_sample_from_topk_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="Generator"):
        text.sample_from_topk(np.array([1.0]), np.array([0]), np.random.RandomState(0))
    with pytest.raises(ValueError, match="same"):
        text.sample_from_topk(np.array([1.0, 2.0]), np.array([0]), rng)
    with pytest.raises(ValueError, match="k is 0"):
        text.sample_from_topk(np.zeros(0), np.zeros(0, np.int64), rng)
    with pytest.raises(ValueError, match="NaN"):
        text.sample_from_topk(np.array([np.nan, 1.0]), np.array([0, 1]), rng)
    with pytest.raises(ValueError, match="-inf"):
        text.sample_from_topk(np.array([-np.inf, -np.inf]), np.array([0, 1]), rng)
    with pytest.raises(TypeError, match="floating"):
        text.sample_from_topk(np.array([1, 2]), np.array([0, 1]), rng)
    with pytest.raises(TypeError, match="integers"):
        text.sample_from_topk(np.array([1.0, 2.0]), np.array([0.0, 1.0]), rng)


def test_gc_text_is_the_module():
    assert gc.text is text
    assert all(hasattr(text, name) for name in text.__all__)
