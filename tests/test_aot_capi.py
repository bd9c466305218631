"""The C API of an AOT artifact (I14.md): failures give a status and a message naming the thing,
checkpoints go both ways between C and Python, the shared library links no libpython, and an
artifact with its weights embedded runs as the one that loads them from a file.

Every case runs through the generated driver of tests/aot_harness.py (``driver errors`` for
the failure cases, ``driver run`` for the rest) against artifacts of the harness's models.
"""

import os
import shutil
import subprocess

import aot_harness as h
import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.skipif(not h.have_toolchain(), reason="no C++ compiler or make")

KEY = "mlp_sgd"   # all-zero feeds are valid input for it (driver errors runs one call with them)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _bad_weights(art, tmp_path):
    """[(label, path, words the message must hold)] of weights files the artifact must refuse."""
    good = open(art.weights, "rb").read()
    records = h.weights_records(art.weights)
    other = h.artifact("two_optimizers").weights
    out = [("another model's weights", other, ["plan", other]),
           ("truncated", _write(tmp_path / "truncated.weights", good[:len(good) // 2]), [("truncated", "short")]),
           ("header only", _write(tmp_path / "header.weights", good[:128]), [("truncated", "short")]),
           ("empty", _write(tmp_path / "empty.weights", b""), ["empty.weights"])]
    # a flipped byte in the data of the last stored tensor: its sha256 no longer matches
    stored = [r for r in records if not r[6] and r[5] > 0]
    assert stored, "the model stores no tensor data"
    name, _, _, _, offset, nbytes, _ = stored[-1]
    flipped = bytearray(good)
    flipped[offset + nbytes // 2] ^= 0x40
    out.append(("a flipped data byte", _write(tmp_path / "flipped.weights", bytes(flipped)), [name]))
    # another plan hash in the header
    other_hash = bytearray(good)
    other_hash[16] = ord("0") if other_hash[16] != ord("0") else ord("1")
    out.append(("another plan hash", _write(tmp_path / "hash.weights", bytes(other_hash)),
                ["plan", bytes(other_hash[16:80]).decode()]))
    bad_magic = bytearray(good)
    bad_magic[0:8] = b"GRAPHCW9"
    out.append(("a bad magic", _write(tmp_path / "magic.weights", bytes(bad_magic)), ["magic"]))
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("capi")
    art = h.artifact(KEY)
    bad = _bad_weights(art, tmp)
    ckpt = tmp / "good.npz"
    sess = gc.Session(h.model(KEY).source)
    sess.save_checkpoint(ckpt)
    data = ckpt.read_bytes()
    bad_ckpt = _write(tmp / "truncated.npz", data[: len(data) - 40])
    missing_dir = str(tmp / "no" / "such" / "folder")
    return art, bad, h.error_cases(art, [p for _, p, _ in bad], bad_ckpt, missing_dir)


def _expect(cases, case, status, *words):
    assert case in cases, f"the driver reported no case {case!r}: {sorted(cases)}"
    got, message = cases[case]
    assert got == status, f"{case}: status {got}, expected {status} ({message!r})"
    if status != "OK":
        assert message.strip(), f"{case}: {status} with an empty message"
    low = message.lower()
    for w in words:
        alternatives = w if isinstance(w, tuple) else (w,)
        assert any(a.lower() in low for a in alternatives), f"{case}: the message does not say {w!r}: {message!r}"


def test_create_checks_pointers_alignment_sizes_and_threads(cases):
    art, _, c = cases
    _expect(c, "create_null_out", "ARGUMENT")
    _expect(c, "misaligned_arena", "ALIGNMENT", "arena", "64")
    assert c["misaligned_arena_out_null"] == ("OK", "null"), "a failed create must leave *out NULL"
    _expect(c, "misaligned_state", "ALIGNMENT", "state")
    # the header's sizes: the arena holds the largest entry's plan
    assert int(c["arena_bytes"][1]) >= art.source.arena_bytes
    _expect(c, "small_arena", "SIZE", "arena", c["arena_bytes"][1], str(int(c["arena_bytes"][1]) - 1))
    _expect(c, "small_state", "SIZE", "state", c["state_bytes"][1])
    if "small_constants" in c:
        _expect(c, "small_constants", "SIZE", "constant", c["constant_bytes"][1])
    _expect(c, "zero_threads", "ARGUMENT", "thread")
    _expect(c, "create", "OK")
    assert c["create_error_cleared"] == ("OK", "")


def test_nothing_runs_before_the_weights(cases):
    _, _, c = cases
    _expect(c, "run_before_weights", "STATE", "weights")
    _expect(c, "read_before_weights", "STATE", "weights")
    _expect(c, "save_checkpoint_before_weights", "STATE", "weights")


def test_wrong_weights_files_are_refused_whole(cases):
    _, bad, c = cases
    for k, (label, _, words) in enumerate(bad):
        _expect(c, f"weights:{k}", "WEIGHTS", *words)
        # refused before a good file: still nothing loaded
        # refused after a good file: variable 0 (zeroed by the driver) was not overwritten
        assert c[f"unchanged:{k}"] == ("OK", "unchanged"), f"{label}: the refused file changed variable 0"
    _expect(c, "run_after_bad_weights", "STATE", "weights")
    _expect(c, "weights_missing_file", "IO", "/nonexistent/graphc/weights.file")
    assert c["weights_null_memory"][0] in ("ARGUMENT", "WEIGHTS"), c["weights_null_memory"]
    _expect(c, "load_weights", "OK")
    assert c["load_weights_error_cleared"] == ("OK", "")
    _expect(c, "load_embedded_weights", "WEIGHTS", "embed")
    _expect(c, "reload_weights", "OK")


def test_bad_entries_feeds_and_variables(cases):
    _, _, c = cases
    _expect(c, "entry_minus_one", "ARGUMENT", "-1", "entr")
    _expect(c, "entry_past_end", "ARGUMENT", str(len(h.model(KEY).source.entries)), "entr")
    _expect(c, "run_null_context", "ARGUMENT")
    feed = c["null_feed_name"][1]
    _expect(c, "null_feed", "ARGUMENT", feed)
    _expect(c, "null_feeds", "ARGUMENT", "feed")
    _expect(c, "read_unknown_variable", "NOT_FOUND", "no/such/variable")
    _expect(c, "write_unknown_variable", "NOT_FOUND", "no/such/variable")
    m = h.model(KEY)
    v0 = m.source.proto.persistent[0]
    nbytes = len(v0.init.raw_data)
    _expect(c, "read_wrong_nbytes", "ARGUMENT", v0.name, str(nbytes), str(nbytes + 1))
    _expect(c, "read_null_name", "ARGUMENT")
    _expect(c, "variable_info_past_end", "ARGUMENT")
    _expect(c, "variable_info_minus_one", "ARGUMENT")
    _expect(c, "write_variable", "OK")
    _expect(c, "run_null_fetches", "OK")
    assert c["run_null_fetches"][1] == "", "a successful call must clear the last error"
    assert "destroyed" in c


def test_bad_checkpoints_are_refused_whole(cases):
    _, _, c = cases
    _expect(c, "bad_checkpoint", "CHECKPOINT")
    assert c["unchanged:checkpoint"] == ("OK", "unchanged"), "the refused checkpoint changed variable 0"
    _expect(c, "checkpoint_missing_file", "IO", "/nonexistent/graphc/checkpoint.npz")
    _expect(c, "checkpoint_unwritable", "IO", "no/such/folder")


def test_a_checkpoint_written_in_c_resumes_in_python(tmp_path):
    m = h.model("cnn_momentum")
    art = h.artifact("cnn_momentum")
    first, later = m.calls[:4], m.calls[4:]
    path = str(tmp_path / "from_c.npz")
    got = h.run_driver(art, first, 1, str(tmp_path / "c"), save_checkpoint=path)
    # the same file Session.save_checkpoint writes: every persistent tensor plus the marker
    with np.load(path) as z:
        assert sorted(z.files) == sorted(["__graphc_checkpoint_version__"] + list(got.variables))
        assert int(z["__graphc_checkpoint_version__"]) == 1
        for name, data in got.variables.items():
            assert z[name].tobytes() == data, name
    assert not [f for f in os.listdir(tmp_path) if "tmp" in f], "a temporary file was left behind"
    straight = h.run_session(m.source, m.calls, 1)
    sess = gc.Session(m.source, threads=1)
    sess.load_checkpoint(path)
    resumed = h.run_session(m.source, later, 1, session=sess)
    assert resumed.fetches == straight.fetches[len(first):]
    assert resumed.variables == straight.variables


def test_a_python_checkpoint_resumes_in_c(tmp_path):
    m = h.model("cnn_momentum")
    art = h.artifact("cnn_momentum")
    first, later = m.calls[:3], m.calls[3:]
    path = str(tmp_path / "from_python.npz")
    h.run_session(m.source, first, 2, save_checkpoint=path)
    straight = h.run_session(m.source, m.calls, 2)
    got = h.run_driver(art, later, 2, str(tmp_path / "c"), load_checkpoint=path)
    assert got.fetches == straight.fetches[len(first):]
    assert got.variables == straight.variables


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (binutils)")
    return path


def test_the_shared_library_links_no_libpython():
    art = h.artifact(KEY)
    dyn = subprocess.run([_tool("readelf"), "-d", art.shared_lib], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[", 1)[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    assert needed, dyn
    assert not [n for n in needed if "python" in n.lower()], needed
    undefined = subprocess.run([_tool("nm"), "-D", "--undefined-only", art.shared_lib], capture_output=True,
                               text=True, check=True).stdout.split()
    assert not [s for s in undefined if s.startswith(("Py", "_Py"))], [s for s in undefined if "Py" in s][:20]
    defined = subprocess.run([_tool("nm"), "-D", "--defined-only", art.shared_lib], capture_output=True, text=True,
                             check=True).stdout
    names = {line.split()[-1] for line in defined.splitlines() if line.strip()}
    api = ["create", "destroy", "last_error", "load_weights", "load_weights_from_memory", "load_embedded_weights",
           "run", "read_variable", "write_variable", "variable_info", "save_checkpoint", "load_checkpoint"]
    api += [f"run_{h.c_ident(e).lower()}" for e in h.model(KEY).source.entries]
    missing = [f"{h.NAME}_{f}" for f in api if f"{h.NAME}_{f}" not in names]
    assert not missing, f"the shared library does not export {missing}"
    if shutil.which("ldd"):
        out = subprocess.run(["ldd", art.shared_lib], capture_output=True, text=True).stdout
        assert "libpython" not in out, out


def test_embedded_weights_run_as_the_weights_file(tmp_path):
    m = h.model(KEY)
    art = h.artifact(KEY, embed_weights=True)
    s_files = [f for f in os.listdir(art.out_dir) if f.endswith(".S")]
    assert s_files, os.listdir(art.out_dir)
    with open(os.path.join(art.out_dir, s_files[0])) as f:
        assert ".incbin" in f.read()
    embedded = h.run_driver(art, m.calls, 1, str(tmp_path / "embedded"), weights="@embedded")
    from_file = h.run_driver(h.artifact(KEY), m.calls, 1, str(tmp_path / "file"))
    h.assert_identical(embedded, from_file, m.calls, "embedded weights vs the weights file")
    h.assert_identical(embedded, h.run_session(m.source, m.calls, 1), m.calls, "embedded weights vs the Session")
