"""Feeds: what Session.run accepts, converts and refuses (graphc/feeds.py, docs/feeds.md).

Every refusal is a FeedError whose message says what was expected; conversions
(byte order, Python lists, strided views) are exact and never touch the caller's array."""

import numpy as np
import pytest

import graphc as gc
from graphc import errors
from graphc.feeds import check_feed, check_feeds
from graphc.graph import Graph
from graphc.session import Session


@pytest.fixture(scope="module")
def mlp():
    """y = relu(x @ w) with x float32 (2, 3) and an int64 index feed i (2,) added through a cast."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        i = gc.placeholder("i", (None,), dtype="int64")
        w = gc.variable("w", (3, 4), init=gc.init.xavier_uniform(seed=0))
        y = gc.relu(x @ w)
        z = gc.cast(i, "float32")
    plan = gc.compile(g, shapes={"x": (2, 3), "i": (2,)}, fetches=[y.name, z.name])
    sess = Session(plan, threads=1)
    return sess, x, y, z


X = np.array([[1, -2, 3], [4, 5, -6]], np.float32)
I64 = np.array([3, -7], np.int64)


def _want(sess, y):
    return sess.run({"x": X, "i": I64})[y.name]


@pytest.mark.parametrize("feeds, expected", [
    ((X, I64), "got a tuple of 2 item"),
    ([X, I64], "got a list of 2 item"),
    (X, "got a bare numpy array of shape (2, 3)"),
    ("x", "got a str"),
])
def test_feeds_that_are_not_a_dict(mlp, feeds, expected):
    sess = mlp[0]
    with pytest.raises(errors.FeedError) as info:
        sess.run(feeds)
    msg = str(info.value)
    assert "feeds must be a dict mapping placeholder names (or Tensors) to arrays" in msg
    assert expected in msg


def test_ragged_list(mlp):
    sess = mlp[0]
    with pytest.raises(errors.FeedError, match=r"'x' is not a rectangular array.*expected an array of float32 "
                                               r"\(2, 3\), not a ragged nested list"):
        sess.run({"x": [[1.0, 2.0, 3.0], [4.0, 5.0]], "i": I64})


def test_masked_array(mlp):
    sess = mlp[0]
    for mask in (False, [[True, False, False], [False, False, False]]):   # even with nothing masked
        feed = np.ma.masked_array(X, mask=mask)
        with pytest.raises(errors.FeedError, match=r"'x' is a masked array.*expected an array of float32 \(2, 3\)"
                                                   r".*filled"):
            sess.run({"x": feed, "i": I64})


def test_object_array(mlp):
    sess = mlp[0]
    obj = X.astype(object)
    with pytest.raises(errors.FeedError, match=r"'x' is an object array.*expected an array of float32 \(2, 3\)"):
        sess.run({"x": obj, "i": I64})
    with pytest.raises(errors.FeedError, match="'x'.*object"):
        sess.run({"x": [[1.0, "a", None], [1, 2, 3]], "i": I64})


def test_big_endian_is_converted_exactly(mlp):
    sess, _, y, z = mlp
    want = sess.run({"x": X, "i": I64})
    xb, ib = X.astype(">f4"), I64.astype(">i8")
    assert not xb.dtype.isnative and xb.tobytes() != X.tobytes()
    got = sess.run({"x": xb, "i": ib})
    assert got[y.name].tobytes() == want[y.name].tobytes()
    assert got[z.name].tobytes() == want[z.name].tobytes()
    assert xb.dtype.str == ">f4"   # the caller's array is left as it was


def test_other_dtype_in_the_other_byte_order_is_refused_showing_it(mlp):
    sess = mlp[0]
    with pytest.raises(errors.FeedError, match=r"'x' expects dtype float32, got float64 \(big-endian '>f8'\)"):
        sess.run({"x": X.astype(">f8"), "i": I64})
    with pytest.raises(errors.FeedError, match=r"'x' expects dtype float32, got float64$"):
        sess.run({"x": X.astype("<f8"), "i": I64})


def test_strided_and_misaligned_arrays_are_copied(mlp):
    sess, _, y, _ = mlp
    want = _want(sess, y)
    big = np.zeros((4, 6), np.float32)
    big[::2, ::2] = X
    view = big[::2, ::2]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(sess.run({"x": view, "i": I64})[y.name], want)
    raw = np.zeros(X.nbytes + 1, np.uint8)
    odd = raw[1:].view(np.float32).reshape(2, 3)
    odd[...] = X
    assert not odd.flags.aligned
    np.testing.assert_array_equal(sess.run({"x": odd, "i": I64})[y.name], want)
    np.testing.assert_array_equal(big[::2, ::2], X)   # untouched


def test_todays_rules_are_kept(mlp):
    sess, x, y, _ = mlp
    want = _want(sess, y)
    # Python lists take the placeholder's dtype when that is exact; Tensor keys work.
    np.testing.assert_array_equal(sess.run({x: X.tolist(), "i": [3, -7]})[y.name], want)
    with pytest.raises(errors.FeedError, match="'i' expects dtype int64, got float64"):
        sess.run({"x": X, "i": [3.5, 1.0]})
    with pytest.raises(errors.FeedError, match="'x' expects dtype float32, got float64"):
        sess.run({"x": X.astype(np.float64), "i": I64})
    with pytest.raises(errors.FeedError, match=r"'x' expects shape \(2, 3\), got \(3, 2\)"):
        sess.run({"x": X.T.copy(), "i": I64})
    with pytest.raises(errors.FeedError, match=r"missing feed for placeholder\(s\) \['i'\]"):
        sess.run({"x": X})
    with pytest.raises(errors.FeedError, match="unknown feed 'zz'; the plan's placeholders are"):
        sess.run({"x": X, "i": I64, "zz": X})
    with pytest.raises(errors.FeedError, match="'x' is fed twice"):
        sess.run({"x": X, x: X, "i": I64})
    with pytest.raises(errors.FeedError, match="neither a placeholder name nor a Tensor"):
        sess.run({3: X})
    with pytest.raises(errors.FeedError, match="missing feed"):
        sess.run(None)


def test_huge_names_give_short_messages(mlp):
    sess = mlp[0]
    big = "n" * (10 << 20)
    with pytest.raises(errors.FeedError) as info:
        sess.run({"x": X, "i": I64, big: X})
    assert len(str(info.value)) < 2000
    assert "(10485760 characters)" in str(info.value)


def test_check_feeds_without_a_session():
    specs = [("a", np.dtype(np.float64), (2,)), ("b", np.dtype(np.bool_), ())]
    a, b = check_feeds({"b": True, "a": [1, 2]}, specs)
    assert a.dtype == np.float64 and a.flags.c_contiguous and b.dtype == np.bool_ and b.shape == ()
    many = [(f"p{k}", np.dtype(np.float32), (1,)) for k in range(100)]
    with pytest.raises(errors.FeedError, match=r"missing feed for placeholder\(s\) \['p0'.*'p19' and 80 more\]"):
        check_feeds({}, many)
    arr = np.arange(3.0)
    assert check_feed("a", arr, np.float64, (3,)) is arr   # a fitting array is not copied


def test_nan_in_a_training_feed_propagates_to_loss_and_weights():
    """docs/feeds.md: graphc does not look at values; NaN in a batch makes the loss NaN
    and, through the update, the weights."""
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        y = gc.placeholder("y", (None,), dtype="int64")
        w = gc.variable("w", (3, 2), init=gc.init.xavier_uniform(seed=0))
        loss = gc.softmax_cross_entropy(x @ w, y)
        gc.optim.SGD(lr=0.1).minimize(loss)
    sess = Session(gc.compile(g, shapes={"x": (2, 3), "y": (2,)}), threads=1)
    bad = X.copy()
    bad[0, 1] = np.nan
    assert not np.isfinite(bad).all()   # the check docs/feeds.md suggests
    out = sess.run({"x": bad, "y": np.array([0, 1])})
    assert np.isnan(out[loss.name])
    assert np.isnan(sess.get_variable("w")).any()
    # ...and the run does not recover on clean batches.
    assert np.isnan(sess.run({"x": X, "y": np.array([0, 1])})[loss.name])


class _Subclass(np.ndarray):
    """An ndarray subclass: the fast path leaves it to the full check."""


def _feed_variants():
    """Feeds for the (x float32 (2, 3), i int64 (2,)) plan: good ones in every spelling, and
    every kind of refusal the full check knows."""
    big = np.zeros((3, 4), np.float32)
    raw = np.zeros(2 * 3 * 4 + 5, np.uint8)
    start = (-raw.ctypes.data) % 4 + 1
    misaligned = raw[start:start + 24].view(np.float32).reshape(2, 3)
    return [
        {"x": X, "i": I64},
        {"i": I64, "x": X},
        {"x": X.tolist(), "i": I64},
        {"x": big[:2, :3], "i": I64},                   # strided
        {"x": misaligned, "i": I64},                    # misaligned, contiguous
        {"x": X.astype(">f4"), "i": I64},
        {"x": X.astype(np.float64), "i": I64},
        {"x": X.reshape(3, 2), "i": I64},
        {"x": X, "i": I64, "z": X},
        {"x": X},
        {"x": np.ma.masked_array(X), "i": I64},
        {"x": X.view(_Subclass), "i": I64},
        {"x": X, "i": I64.astype(np.int32)},
        {1: X, "i": I64},
        None,
        [X, I64],
    ]


@pytest.mark.parametrize("k", range(len(_feed_variants())))
def test_session_fast_path_agrees_with_check_feeds(mlp, k):
    """Session.run checks the common case (a dict of exact C-contiguous arrays) in a fast
    path; it must accept exactly what check_feeds accepts, with the same values, and let
    check_feeds word every refusal."""
    sess = mlp[0]
    feeds = _feed_variants()[k]
    specs = [sess._info[i] for i in sess._feeds]
    try:
        want = check_feeds(feeds, specs)
    except errors.FeedError as e:
        with pytest.raises(errors.FeedError) as info:
            sess._feed_arrays(feeds)
        assert str(info.value) == str(e)
        return
    got = sess._feed_arrays(feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is np.ndarray and g.flags.c_contiguous
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
