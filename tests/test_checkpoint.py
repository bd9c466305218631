"""Session checkpoints: every persistent variable (weights and optimizer state) saved
atomically and restored exactly, across processes; bad files are CheckpointErrors."""

import io
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import zipfile
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc import checkpoint as ckpt
from graphc import errors
from graphc.graph import Graph
from graphc.session import Session

BATCH = 8
THREADS = 2


def _mlp(hidden=16, optimizer=True):
    with Graph() as g:
        x = gc.placeholder("x", (None, 5))
        y = gc.placeholder("y", (None,), dtype="int64")
        w1 = gc.variable("w1", (5, hidden), init=gc.init.xavier_uniform(seed=1))
        w2 = gc.variable("w2", (hidden, 3), init=gc.init.xavier_uniform(seed=2))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, y)
        if optimizer:
            gc.optim.Adam(lr=1e-2).minimize(loss)
    return gc.compile(g, shapes={"x": (BATCH, 5), "y": (BATCH,)}), loss


def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((BATCH, 5)).astype(np.float32), "y": rng.integers(0, 3, BATCH)}
            for _ in range(n)]


def _python(code, **kw):
    # import the same graphc as this process (installed or in-place build), never the bare
    # source tree: hence PYTHONPATH = its parent folder and a cwd outside the repository
    parent = os.path.dirname(os.path.dirname(os.path.abspath(gc.__file__)))
    env = dict(os.environ, PYTHONPATH=parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tempfile.gettempdir(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _state(sess):
    return {name: sess.get_variable(name) for name in sess.variable_names}


def test_round_trip_includes_optimizer_state(tmp_path):
    plan, loss = _mlp()
    sess = Session(plan, threads=THREADS)
    assert {"w1", "w2", "w1/adam_m", "w1/adam_v", "optimizer/step"} <= set(sess.variable_names)
    for feeds in _batches(3):
        sess.run(feeds)
    path = tmp_path / "ckpt.npz"
    sess.save_checkpoint(path)
    with np.load(path) as f:  # a plain npz that numpy reads
        assert set(sess.variable_names) <= set(f.files)
    fresh = Session(plan, threads=THREADS)
    assert not np.array_equal(fresh.get_variable("w1"), sess.get_variable("w1"))
    fresh.load_checkpoint(path)
    want = _state(sess)
    got = _state(fresh)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert int(got["optimizer/step"]) == 3


def test_resume_in_a_new_process_equals_an_uninterrupted_run(tmp_path):
    n, m = 4, 5
    plan, loss = _mlp()
    plan.save(tmp_path / "train.plan")
    batches = _batches(n + m)
    np.savez(tmp_path / "batches.npz", **{f"{k}{i}": v for i, b in enumerate(batches) for k, v in b.items()})

    straight = Session(plan, threads=THREADS)
    straight_losses = [float(straight.run(b)[loss.name]) for b in batches]

    first = Session(plan, threads=THREADS)
    for b in batches[:n]:
        first.run(b)
    first.save_checkpoint(tmp_path / "ckpt.npz")
    del first

    proc = _python(f"""
        import numpy as np, graphc as gc
        sess = gc.Session(gc.load_plan({str(tmp_path / 'train.plan')!r}), threads={THREADS})
        sess.load_checkpoint({str(tmp_path / 'ckpt.npz')!r})
        b = np.load({str(tmp_path / 'batches.npz')!r})
        losses = []
        for i in range({n}, {n + m}):
            out = sess.run({{"x": b[f"x{{i}}"], "y": b[f"y{{i}}"]}})
            losses.append(float(out[{loss.name!r}]))
        np.save({str(tmp_path / 'losses.npy')!r}, np.array(losses))
        sess.save_checkpoint({str(tmp_path / 'final.npz')!r})
    """)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "losses.npy"), straight_losses[n:])
    resumed = Session(plan, threads=THREADS)
    resumed.load_checkpoint(tmp_path / "final.npz")
    assert int(resumed.get_variable("optimizer/step")) == n + m
    for name, want in _state(straight).items():
        np.testing.assert_array_equal(resumed.get_variable(name), want, err_msg=name)


def test_mismatched_checkpoint_names_the_variable(tmp_path):
    plan, _ = _mlp(hidden=16)
    Session(plan, threads=1).save_checkpoint(tmp_path / "h16.npz")
    other, _ = _mlp(hidden=7)
    sess = Session(other, threads=1)
    before = _state(sess)
    with pytest.raises(errors.CheckpointError, match=r"'w1'.*\(5, 7\).*\(5, 16\)"):
        sess.load_checkpoint(tmp_path / "h16.npz")
    for name, value in before.items():  # nothing was half-loaded
        np.testing.assert_array_equal(sess.get_variable(name), value)
    # An inference checkpoint has no optimizer state for a training plan.
    infer, _ = _mlp(optimizer=False)
    Session(infer, threads=1).save_checkpoint(tmp_path / "infer.npz")
    with pytest.raises(errors.CheckpointError, match=r"missing variable 'optimizer/step'.*'w1/adam_m'"):
        Session(plan, threads=1).load_checkpoint(tmp_path / "infer.npz")
    # ...and the other way round the training state is unexpected.
    with pytest.raises(errors.CheckpointError, match=r"unexpected variable 'optimizer/step'"):
        Session(infer, threads=1).load_checkpoint(tmp_path / "h16.npz")


def test_non_strict_load_takes_the_shared_variables_and_lists_the_rest(tmp_path):
    plan, _ = _mlp(hidden=16)
    trained = Session(plan, threads=1)
    trained.save_checkpoint(tmp_path / "train.npz")
    infer, _ = _mlp(hidden=16, optimizer=False)
    sess = Session(infer, threads=1)
    for name in sess.variable_names:   # make every variable differ from the file first
        sess.set_variable(name, sess.get_variable(name) + 1)
    missing, unexpected = sess.load_checkpoint(tmp_path / "train.npz", strict=False)
    assert missing == []
    assert set(unexpected) == set(trained.variable_names) - set(sess.variable_names) and unexpected
    for name in sess.variable_names:
        np.testing.assert_array_equal(sess.get_variable(name), trained.get_variable(name))
    # the other way round: the training session keeps its optimizer state, which is missing
    resumed = Session(plan, threads=1)
    Session(infer, threads=1).save_checkpoint(tmp_path / "infer.npz")
    missing, unexpected = resumed.load_checkpoint(tmp_path / "infer.npz", strict=False)
    assert set(missing) == set(resumed.variable_names) - set(sess.variable_names) and missing
    assert unexpected == []
    # shapes are still checked, and a refusal changes nothing
    other, _ = _mlp(hidden=7, optimizer=False)
    small = Session(other, threads=1)
    before = _state(small)
    with pytest.raises(errors.CheckpointError, match=r"'w1'.*\(5, 7\).*\(5, 16\)"):
        small.load_checkpoint(tmp_path / "train.npz", strict=False)
    for name, value in before.items():
        np.testing.assert_array_equal(small.get_variable(name), value)


def test_writer_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    plan, loss = _mlp()
    plan.save(tmp_path / "train.plan")
    sess = Session(plan, threads=THREADS)
    sess.run(_batches(1)[0])
    path = tmp_path / "ckpt.npz"
    sess.save_checkpoint(path)
    saved = _state(sess)
    proc = _python(f"""
        import sys, time
        import numpy as np, graphc as gc
        import graphc.checkpoint as ckpt
        real = ckpt.atomic_write
        def half_then_hang(path, data):
            def write(f):
                f.write(data[: len(data) // 2])
                f.flush()
                print("HALF", flush=True)
                time.sleep(600)
                f.write(data[len(data) // 2:])
            real(path, write)
        ckpt.atomic_write = half_then_hang
        sess = gc.Session(gc.load_plan({str(tmp_path / 'train.plan')!r}), threads=1)
        sess.set_variable("w1", np.full((5, 16), 7.0, np.float32))
        sess.save_checkpoint({str(path)!r})
    """)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "HALF", proc.stderr.read()
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # the half-written temp file
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    fresh = Session(plan, threads=THREADS)
    fresh.load_checkpoint(path)
    for name, want in saved.items():
        np.testing.assert_array_equal(fresh.get_variable(name), want, err_msg=name)


def test_corrupt_or_truncated_checkpoint(tmp_path):
    plan, _ = _mlp()
    sess = Session(plan, threads=1)
    good = tmp_path / "good.npz"
    sess.save_checkpoint(good)
    data = good.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "tail_cut.npz": data[:-10],
        "garbage.npz": b"\x00\x01not a checkpoint at all" * 10,
        "empty.npz": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(errors.CheckpointError):
            sess.load_checkpoint(tmp_path / name)
    # A valid npz that is not a graphc checkpoint.
    np.savez(tmp_path / "foreign.npz", w1=np.zeros((5, 16), np.float32))
    with pytest.raises(errors.CheckpointError, match="not a graphc checkpoint"):
        sess.load_checkpoint(tmp_path / "foreign.npz")
    with pytest.raises(errors.CheckpointError, match="does not exist"):
        sess.load_checkpoint(tmp_path / "missing.npz")
    # Bit flips inside the compressed-free payload: CRC or shape check must catch it.
    flipped = bytearray(data)
    mid = len(flipped) // 2
    flipped[mid] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(errors.CheckpointError):
        sess.load_checkpoint(tmp_path / "flipped.npz")
    sess.load_checkpoint(good)  # the good one still loads


# --- Hostile files: every bad class is a CheckpointError and changes no variable ---------------
#
# Each case starts from the members of a real checkpoint of a *trained* session and spoils
# one of them, by default the last variable (in the archive and in the order load reads),
# then loads into a *fresh* session whose every variable differs from the file's: had
# load applied the good members before meeting the bad one, the bytes would show it.


def _npy(arr, version=(1, 0)):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), version=version, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def _npy_header(descr, shape, fortran=False):
    """A hand-written .npy 1.0 header (data to be appended by the caller)."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _deflate(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _zip(entries):
    """A zip archive written by hand, so that sizes, CRCs, flags and names can lie.

    ``entries``: list of dicts with ``name`` and ``data`` (uncompressed bytes) and
    optionally ``method`` (0 stored, 8 deflated, other codes written as stored),
    ``payload`` (the bytes actually stored), ``file_size``, ``crc``, ``flags``.
    """
    out = io.BytesIO()
    central = []
    for e in entries:
        name = e["name"].encode("utf-8")
        data = e["data"]
        method = e.get("method", 0)
        payload = e.get("payload", _deflate(data) if method == 8 else data)
        crc = e.get("crc", zlib.crc32(data))
        usize = e.get("file_size", len(data))
        flags = e.get("flags", 0x800)
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, len(payload),
                              usize & 0xFFFFFFFF, len(name), 0) + name + payload)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, method, 0, 0x21, crc,
                                   e.get("compress_size", len(payload)), usize & 0xFFFFFFFF, len(name), 0, 0, 0, 0,
                                   0, offset) + name)
    cd_offset = out.tell()
    for c in central:
        out.write(c)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), out.tell() - cd_offset,
                          cd_offset, 0))
    return out.getvalue()


@pytest.fixture(scope="module")
def trained():
    """A trained session's checkpoint members (name → .npy bytes, archive order) and its plan."""
    plan, _ = _mlp()
    sess = Session(plan, threads=1)
    for feeds in _batches(2):
        sess.run(feeds)
    state = _state(sess)
    names = sorted(state)
    members = {n: state[n] for n in names}
    return plan, members


def _entries(members, marker=None, **overrides):
    """Archive entries from name → array (or raw .npy bytes); the marker last, as save() writes it."""
    entries = []
    for name, value in members.items():
        data = value if isinstance(value, bytes) else _npy(value)
        entry = {"name": name + ".npy", "data": data}
        entry.update(overrides.get(name, {}))
        entries.append(entry)
    entries.append({"name": ckpt.MARKER + ".npy", "data": _npy(np.asarray(ckpt.VERSION, np.int64))
                    if marker is None else marker})
    return entries


def _snapshot(sess):
    return {name: (v.dtype.str, v.shape, v.tobytes()) for name, v in _state(sess).items()}


def _assert_refused(plan, members, tmp_path, content, match=None, filename="bad.npz"):
    """load_checkpoint of ``content`` raises CheckpointError (matching ``match``) and leaves
    every variable of a fresh session byte for byte as it was; returns the message."""
    sess = Session(plan, threads=1)
    before = _snapshot(sess)
    # The premise of "nothing was half-loaded": every variable differs from the file's.
    for name, value in members.items():
        assert before[name][2] != np.asarray(value).tobytes(), name
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(errors.CheckpointError, match=match) as info:
        sess.load_checkpoint(path)
    assert _snapshot(sess) == before
    assert len(str(info.value)) < 2000, len(str(info.value))
    return str(info.value)


def test_hand_written_archive_loads(trained, tmp_path):
    # The test's zip writer and member builder make a file load accepts: the refusals
    # below are for the spoilt part, not for the writer.
    plan, members = trained
    for method in (0, 8):
        path = tmp_path / f"ok{method}.npz"
        path.write_bytes(_zip(_entries(members, **{n: {"method": method} for n in members})))
        sess = Session(plan, threads=1)
        sess.load_checkpoint(path)
        for name, want in members.items():
            np.testing.assert_array_equal(sess.get_variable(name), want, err_msg=name)


def test_compressed_checkpoint_and_fortran_order_load(trained, tmp_path):
    plan, members = trained
    np.savez_compressed(tmp_path / "c.npz", **{ckpt.MARKER: np.asarray(1, np.int64)},
                        **{n: np.asfortranarray(v) if v.ndim > 1 else v for n, v in members.items()})
    with np.load(tmp_path / "c.npz") as f:   # the premise: deflated members, F-ordered headers
        assert f.zip.getinfo("w1.npy").compress_type == zipfile.ZIP_DEFLATED
        with f.zip.open("w1.npy") as member:
            assert np.lib.format.read_magic(member) == (1, 0)
            assert np.lib.format.read_array_header_1_0(member)[1]   # fortran_order
    sess = Session(plan, threads=1)
    sess.load_checkpoint(tmp_path / "c.npz")
    for name, want in members.items():
        got = sess.get_variable(name)
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_big_endian_members_are_converted_exactly(trained, tmp_path):
    plan, members = trained
    swapped = {n: v.astype(v.dtype.newbyteorder(">")) for n, v in members.items()}
    assert all(v.dtype.str.startswith(">") for v in swapped.values() if v.dtype.itemsize > 1)
    path = tmp_path / "be.npz"
    path.write_bytes(_zip(_entries(swapped)))
    sess = Session(plan, threads=1)
    sess.load_checkpoint(path)
    for name, want in members.items():
        got = sess.get_variable(name)
        assert got.dtype == want.dtype and got.dtype.isnative
        assert got.tobytes() == want.tobytes(), name


def test_not_a_checkpoint(trained, tmp_path):
    plan, members = trained
    _assert_refused(plan, members, tmp_path, b"PK\x03\x04" + b"\x00" * 100, "not a graphc checkpoint")
    _assert_refused(plan, members, tmp_path, b"", "not a graphc checkpoint")
    no_marker = _entries(members)[:-1]
    _assert_refused(plan, members, tmp_path, _zip(no_marker), "not a graphc checkpoint.*no format marker")
    sess = Session(plan, threads=1)
    before = _snapshot(sess)
    os.mkfifo(tmp_path / "fifo")     # opening it to read would block: refused from its stat
    for path, match in ((tmp_path, "not a regular file"), (tmp_path / "fifo", "not a regular file"),
                        (tmp_path / "nope.npz", "does not exist")):
        with pytest.raises(errors.CheckpointError, match=match):
            sess.load_checkpoint(path)
    assert _snapshot(sess) == before


@pytest.mark.parametrize("marker, match", [
    (_npy(np.asarray(2, np.int64)), "version 2; this graphc reads up to 1"),
    (_npy(np.asarray(0, np.int64)), "malformed format marker: version 0"),
    (_npy(np.asarray(1.0, np.float64)), "malformed format marker: expected a 0-d integer"),
    (_npy(np.asarray([1], np.int64)), r"malformed format marker.*shape \(1,\)"),
    (b"garbage, not an npy file", "no valid .npy header"),
    (_npy(np.zeros(4096, np.int64)), r"marker claims \d+ bytes; a marker is one integer"),
])
def test_malformed_marker(trained, tmp_path, marker, match):
    plan, members = trained
    _assert_refused(plan, members, tmp_path, _zip(_entries(members, marker=marker)), match)


def test_member_that_is_not_npy(trained, tmp_path):
    plan, members = trained
    entries = _entries(members)
    entries.insert(len(entries) - 1, {"name": "notes.txt", "data": b"hello"})
    _assert_refused(plan, members, tmp_path, _zip(entries), "'notes.txt' is not a .npy array")


def test_duplicate_member(trained, tmp_path):
    plan, members = trained
    last = list(members)[-1]
    entries = _entries(members)
    entries.insert(len(entries) - 1, dict(entries[len(members) - 1]))
    _assert_refused(plan, members, tmp_path, _zip(entries), f"'{last}.npy' appears twice")


def test_missing_and_extra_variables_are_listed_bounded(trained, tmp_path):
    plan, members = trained
    last = list(members)[-1]
    fewer = {n: v for n, v in members.items() if n != last}
    _assert_refused(plan, members, tmp_path, _zip(_entries(fewer)), f"missing variable '{last}'")
    more = dict(members, **{f"extra{i:04d}": np.zeros(1, np.float32) for i in range(500)})
    msg = _assert_refused(plan, members, tmp_path, _zip(_entries(more)), "unexpected variable 'extra0000'")
    assert msg.endswith("; and 490 more")


def test_huge_variable_name_gives_a_short_message(trained, tmp_path):
    plan, members = trained
    big = "v" * 60000   # a zip member name is at most 65535 bytes
    more = dict(members, **{big: np.zeros(1, np.float32)})
    msg = _assert_refused(plan, members, tmp_path, _zip(_entries(more)), "unexpected variable 'vvvv")
    assert "(60000 characters)" in msg     # quote() says how long the name was


def _last_spoilt(members, value=None, **entry):
    """Entries whose last variable's member is replaced by ``value`` (array or bytes) and/or
    has entry fields overridden."""
    last = list(members)[-1]
    spoilt = dict(members)
    if value is not None:
        spoilt[last] = value
    return last, _entries(spoilt, **{last: entry})


@pytest.mark.parametrize("case", ["object", "wrong_dtype_big_endian", "wrong_shape", "huge_shape", "short_data",
                                  "long_data", "huge_header", "bad_header", "npy_version_3", "crc"])
def test_bad_last_member(trained, tmp_path, case):
    plan, members = trained
    last = list(members)[-1]
    want = members[last]
    if case == "object":
        value = np.empty(want.shape, object)
        value[...] = 1.5
        match = "holds Python objects"
    elif case == "wrong_dtype_big_endian":
        value = want.astype(">f8")
        match = re.escape(f"'{last}': the plan has float32 {want.shape}, the checkpoint float64 (big-endian '>f8')")
    elif case == "wrong_shape":
        value = np.zeros((want.shape[0] + 1,) + want.shape[1:], want.dtype)
        match = rf"'{last}': the plan has float32 {re.escape(str(want.shape))}"
    elif case == "huge_shape":
        value = _npy_header("<f4", (1 << 40, 1 << 20)) + want.tobytes()
        match = r"the checkpoint float32 \(1099511627776, 1048576\)"
    elif case == "short_data":
        value = _npy_header("<f4", want.shape) + want.tobytes()[:-4]
        match = f"holds {want.nbytes - 4} data bytes"
    elif case == "long_data":
        value = _npy_header("<f4", want.shape) + want.tobytes() + b"\0" * 4
        match = f"holds {want.nbytes + 4} data bytes"
    elif case == "huge_header":
        # over numpy's 10000-byte header bound, under the member-size bound (so the header
        # parser, not the size check, refuses it)
        n = ckpt.MAX_HEADER_BYTES + 100
        value = b"\x93NUMPY\x01\x00" + struct.pack("<H", n) + b"{" + b" " * (n - 2) + b"\n"
        assert len(value) <= want.nbytes + ckpt.MAX_HEADER_BYTES
        match = "no valid .npy header"
    elif case == "bad_header":
        value = b"\x93NUMPY\x01\x00" + struct.pack("<H", 20) + b"__import__('os')   \n"
        match = "no valid .npy header"
    elif case == "npy_version_3":
        value = b"\x93NUMPY\x03\x00" + _npy(want)[8:]
        match = r"\.npy format \(3, 0\)"
    elif case == "crc":
        data = bytearray(_npy(want))
        data[-1] ^= 0xFF
        _, entries = _last_spoilt(members, payload=bytes(data))
        _assert_refused(plan, members, tmp_path, _zip(entries), "CRC|corrupt")
        return
    _, entries = _last_spoilt(members, value)
    _assert_refused(plan, members, tmp_path, _zip(entries), match)


def test_bool_variable_with_bytes_other_than_0_and_1(tmp_path):
    with Graph() as g:
        x = gc.placeholder("x", (2,))
        a = gc.variable("a", (2,), init=gc.init.ones())
        flag = gc.variable("flag", (3,), dtype="bool", init=gc.init.zeros())
        y = gc.relu(x * a)
        f = gc.cast(flag, "float32")
    sess = Session(gc.compile(g, shapes={"x": (2,)}, fetches=[y.name, f.name]), threads=1)
    assert set(sess.variable_names) == {"a", "flag"}
    before = _snapshot(sess)
    data = _npy_header("|b1", (3,)) + bytes([1, 7, 0])
    members = [{"name": "a.npy", "data": _npy(np.full(2, 5, np.float32))}, {"name": "flag.npy", "data": data},
               {"name": ckpt.MARKER + ".npy", "data": _npy(np.asarray(1, np.int64))}]
    (tmp_path / "b.npz").write_bytes(_zip(members))
    with pytest.raises(errors.CheckpointError, match="'flag' holds bytes other than 0 and 1"):
        sess.load_checkpoint(tmp_path / "b.npz")
    assert _snapshot(sess) == before


def test_compression_bomb_is_refused_before_it_is_opened(trained, tmp_path, monkeypatch):
    plan, members = trained
    last = list(members)[-1]
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *a, **kw):
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    # A real bomb: 64 MiB of zeros deflate to ~64 KiB; the directory says 64 MiB.
    bomb = _npy_header("<f4", members[last].shape) + bytes(64 << 20)
    _, entries = _last_spoilt(members, bomb, method=8)
    msg = _assert_refused(plan, members, tmp_path, _zip(entries), f"'{last}': the member claims {len(bomb)} bytes")
    assert f"{last}.npy" not in opened, msg
    # A claim of 4 GiB with a small payload is refused the same way.
    opened.clear()
    _, entries = _last_spoilt(members, method=8, file_size=0xFFFFFFFF)
    _assert_refused(plan, members, tmp_path, _zip(entries), "claims 4294967295 bytes uncompressed")
    assert f"{last}.npy" not in opened


def test_lying_deflated_size_is_cut_off_and_caught(trained, tmp_path):
    # The directory claims the right size but the deflate stream holds far more: zipfile
    # stops at the claim, so at most the claimed bytes are inflated, and the CRC (of the
    # whole stream) does not match what was read.
    plan, members = trained
    last = list(members)[-1]
    good = _npy(members[last])
    stream = good + bytes(64 << 20)
    _, entries = _last_spoilt(members, method=8, payload=_deflate(stream), file_size=len(good),
                              crc=zlib.crc32(stream))
    _assert_refused(plan, members, tmp_path, _zip(entries), "CRC|corrupt")


@pytest.mark.parametrize("entry, match", [
    ({"method": 12}, "compression method 12"),
    ({"flags": 0x801}, "is encrypted"),
    ({"method": 8, "compress_size": 1 << 31}, "beyond the end"),
    ({"file_size": 3}, "claims 3 bytes but occupies"),
])
def test_bad_zip_directory_entry(trained, tmp_path, entry, match):
    plan, members = trained
    _, entries = _last_spoilt(members, **entry)
    _assert_refused(plan, members, tmp_path, _zip(entries), match)
