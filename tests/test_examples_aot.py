"""examples/aot: export the digits program, build train_digits.c and infer_digits.c with the
emitted Makefile, train in C and compare with a gc.Session run of the same steps (same batches,
same threads): the loss, every trained variable and the test accuracy are bit-identical; the C
checkpoint loads in Python, a Python checkpoint drives the C inference program, and infer_digits
classifies like the Session's "predict" entry; tools/bench_aot_driver.c (the benchmark's C timing
loop) builds against the same artifact and returns the Session's fetches.

Build cost: the artifact is emitted under the one name every AOT test uses (AOT_TEST_NAME,
"aotm") and built with the shared object folder (GRAPHC_AOT_OBJDIR), so the kernel objects
compile once per test session.  The example programs are written against the name "digits"; a
generated digits.h maps each DIGITS_* macro, digits_* function and the context type of the
emitted aotm.h onto the aotm ones, so the programs compile unchanged."""
import importlib.util
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "aot", "export_digits.py")
BENCH = os.path.join(ROOT, "tools", "bench_aot.py")
STEPS = 300  # ~14 epochs of 22 batches: the net is well past chance and still changing
BATCH = 64
try:
    from aot_harness import AOT_TEST_NAME as NAME
except ImportError:  # the shared harness not present: the same fixed name
    NAME = "aotm"
WEIGHTS = f"{NAME}.weights"

pytestmark = pytest.mark.skipif(not (shutil.which("make") and shutil.which("cc") and shutil.which("g++")),
                                reason="the AOT examples build with make, cc and g++")


def prefix_shim(header_text, name, alias):
    """A header `alias`.h that includes `name`.h and spells its API with the prefix `alias`:
    every macro NAME_X becomes ALIAS_X, every function name_f alias_f, and the context type."""
    up, alias_up = name.upper(), alias.upper()
    macros = sorted(set(re.findall(rf"^#define ({up}_\w+)", header_text, re.M)))
    functions = sorted(set(re.findall(rf"\b{name}_(\w+)\s*\(", header_text)))
    assert macros and functions and "create" in functions, "the header has no API to alias"
    lines = [f"/* {alias}.h: the API of {name}.h under the prefix {alias} (tests/test_examples_aot.py) */",
             f"#ifndef {alias_up}_SHIM_H_", f"#define {alias_up}_SHIM_H_", f'#include "{name}.h"']
    lines += [f"#define {alias_up}{m[len(up):]} {m}" for m in macros]
    lines += [f"#define {alias}_{f} {name}_{f}" for f in functions]
    lines += [f"typedef {name}_context {alias}_context;", "#endif", ""]
    return "\n".join(lines)


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_example():
    return _load(EXAMPLE, "export_digits")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The exported and built example: (module, program, out folder)."""
    ed = _load_example()
    out = str(tmp_path_factory.mktemp("digits_aot"))
    program, result = ed.export(out, batch=BATCH, name=NAME)
    assert result.name == NAME
    for name in (f"{NAME}.h", WEIGHTS, "Makefile", "train_digits.c", "infer_digits.c",
                 "digits_train_images.f32", "digits_train_labels.i32", "digits_test_images.f32",
                 "digits_test_labels.i32"):
        assert os.path.isfile(os.path.join(out, name)), name
    if NAME != "digits":
        with open(result.header) as f:
            shim = prefix_shim(f.read(), NAME, "digits")
        with open(os.path.join(out, "digits.h"), "w") as f:
            f.write(shim)
    with open(os.path.join(out, "bench_driver.c"), "w") as f:  # tools/bench_aot.py's C timing loop
        f.write(_load(BENCH, "bench_aot").driver_wrapper(NAME))
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    cmd = ["make", "-j", jobs, "programs", "PROGRAMS=train_digits.c infer_digits.c bench_driver.c"]
    if os.environ.get("GRAPHC_AOT_OBJDIR"):  # the test session's shared object folder (tests/conftest.py)
        cmd.append(f"OBJDIR={os.path.abspath(os.environ['GRAPHC_AOT_OBJDIR'])}")
    if shutil.which("ccache"):
        cmd.append(f"CXX=ccache {os.environ.get('CXX') or 'g++'}")
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return ed, program, out


def _run(out, *args):
    r = subprocess.run([os.path.join(out, "bin", args[0]), *args[1:]], cwd=out, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def _accuracy(text):
    m = re.search(r"test accuracy (\d+)/(\d+) = ", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def test_data_files_hold_the_shipped_digits(built):
    _, _, out = built
    (xtr, ytr), (xte, yte) = gc.datasets.load_digits()
    np.testing.assert_array_equal(np.fromfile(os.path.join(out, "digits_train_images.f32"), "<f4").reshape(-1, 64),
                                  xtr)
    np.testing.assert_array_equal(np.fromfile(os.path.join(out, "digits_train_labels.i32"), "<i4"), ytr)
    np.testing.assert_array_equal(np.fromfile(os.path.join(out, "digits_test_images.f32"), "<f4").reshape(-1, 64),
                                  xte)
    np.testing.assert_array_equal(np.fromfile(os.path.join(out, "digits_test_labels.i32"), "<i4"), yte)


def test_batch_order_is_a_per_epoch_permutation():
    ed = _load_example()
    n = 1438
    order = ed.batch_indices(n, BATCH, 2 * (n // BATCH), seed=1)
    per_epoch = n // BATCH
    first, second = order[:per_epoch].ravel(), order[per_epoch:].ravel()
    assert len(set(first.tolist())) == len(first) == per_epoch * BATCH  # no row twice in an epoch
    assert not np.array_equal(first, second)                              # each epoch reshuffles
    assert not np.array_equal(first, np.arange(len(first)))
    np.testing.assert_array_equal(order, ed.batch_indices(n, BATCH, 2 * per_epoch, seed=1))
    assert not np.array_equal(order, ed.batch_indices(n, BATCH, 2 * per_epoch, seed=2))


@pytest.mark.parametrize("threads", [1, 2])
def test_c_training_equals_python_session_bit_for_bit(built, threads, tmp_path):
    ed, program, out = built
    ckpt = str(tmp_path / f"c_trained_{threads}.npz")
    text = _run(out, "train_digits", str(STEPS), "-t", str(threads), "-s", "1", "-o", ckpt, "-w", WEIGHTS)
    c_correct, n_test = _accuracy(text)
    c_loss = np.float32(float(re.search(r"final loss (\S+)", text).group(1)))  # %.9g: a float32 round-trips

    sess, loss, correct, _ = ed.python_run(program, STEPS, BATCH, seed=1, threads=threads)
    # The bar comes from the Python run of the same steps; training must have beaten the
    # untrained network's accuracy, and the C program must reach exactly the same.
    untrained = gc.Session(program, threads=threads)
    (_, _), (xte, yte) = gc.datasets.load_digits()
    before = int(np.sum(np.argmax(untrained.run({"x": xte}, entry="evaluate")["logits"], axis=1) == yte))
    assert correct > before
    assert n_test == len(yte)
    assert c_correct == correct, text
    assert c_loss.tobytes() == loss.tobytes(), (c_loss, loss)

    # The C checkpoint is Session.save_checkpoint's format: it loads, and every variable
    # (weights and momentum) equals the Python-trained one bit for bit.
    resumed = gc.Session(program, threads=threads)
    resumed.load_checkpoint(ckpt)
    assert sorted(resumed.variable_names) == sorted(sess.variable_names)
    for name in sess.variable_names:
        assert resumed.get_variable(name).tobytes() == sess.get_variable(name).tobytes(), name


def test_infer_digits_with_c_and_python_checkpoints(built, tmp_path):
    ed, program, out = built
    ckpt_c = str(tmp_path / "c.npz")
    _run(out, "train_digits", "100", "-t", "1", "-o", ckpt_c, "-w", WEIGHTS)
    sess, _, _, _ = ed.python_run(program, 100, BATCH, seed=1, threads=1)
    ckpt_py = str(tmp_path / "py.npz")
    sess.save_checkpoint(ckpt_py)

    # What the "predict" entry (batch 1) gives image by image through the Session.
    (_, _), (xte, yte) = gc.datasets.load_digits()
    predicted = np.array([int(np.argmax(sess.run({"x": xte[i:i + 1]}, entry="predict")["logits"]))
                          for i in range(len(xte))])
    want = int(np.sum(predicted == yte))
    for ckpt in (ckpt_c, ckpt_py):
        text = _run(out, "infer_digits", "-c", ckpt, "-r", "2", "-t", "1", "-w", WEIGHTS)
        assert _accuracy(text) == (want, len(yte)), text
        m = re.search(r"latency per call \(batch 1, 1 thread\(s\), (\d+) calls\): median ([\d.]+) us", text)
        assert m and int(m.group(1)) == 2 * len(yte) and float(m.group(2)) > 0, text

    # Images given on the command line: one class per image, the Session's.
    images = str(tmp_path / "five.f32")
    xte[:5].astype("<f4").tofile(images)
    text = _run(out, "infer_digits", "-c", ckpt_py, "-r", "1", "-w", WEIGHTS, images)
    assert re.findall(r"image (\d+): class (\d+)", text) == [(str(i), str(predicted[i])) for i in range(5)], text


def test_programs_report_errors_through_last_error(built, tmp_path):
    _, _, out = built
    exe = os.path.join(out, "bin", "infer_digits")
    r = subprocess.run([exe, "-w", WEIGHTS, "-c", str(tmp_path / "missing.npz")], cwd=out, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "digits_load_checkpoint failed" in r.stderr and "missing.npz" in r.stderr, r.stderr
    bad = tmp_path / "bad.weights"
    bad.write_bytes(b"not a weights image")
    r = subprocess.run([exe, "-w", str(bad), "-c", "none"], cwd=out, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "digits_load_weights failed" in r.stderr, r.stderr
    r = subprocess.run([os.path.join(out, "bin", "train_digits"), "-t", "0"], cwd=out, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "usage: train_digits" in r.stderr, r.stderr


def test_bench_driver_times_calls_and_returns_the_sessions_fetches(built, tmp_path):
    """tools/bench_aot_driver.c (the benchmark's timing loop in C) on this artifact: the
    per-call times it writes and, after 2 warm-up and 5 timed training steps, the loss equals
    a Session's after 7 steps on the same batch; the predict entry's logits equal the Session's."""
    _, program, out = built
    (xtr, ytr), (xte, _) = gc.datasets.load_digits()
    xb, yb, xi = xtr[:BATCH], ytr[:BATCH], xte[:1]
    sess = gc.Session(program, threads=1)
    for _ in range(7):
        loss = sess.run({"x": xb, "y": yb}, entry="train")["loss"]
    logits = sess.run({"x": xi}, entry="predict")["logits"]
    fresh_logits = gc.Session(program, threads=1).run({"x": xi}, entry="predict")["logits"]
    files = {}
    for key, value in (("x", xb), ("y", yb), ("xi", xi)):
        files[key] = str(tmp_path / f"{key}.bin")
        np.ascontiguousarray(value).tofile(files[key])
    times, fetch = str(tmp_path / "times.f64"), str(tmp_path / "fetch.bin")
    exe = os.path.join(out, "bin", "bench_driver")
    _run(out, "bench_driver", WEIGHTS, "1", str(program.entries.index("train")), "2", "5", times,
         "-f", files["x"], "-f", files["y"], "-o", "4", fetch)
    t = np.fromfile(times, np.float64)
    assert len(t) == 5 and np.all(t > 0), t
    assert open(fetch, "rb").read() == loss.tobytes()
    _run(out, "bench_driver", WEIGHTS, "1", str(program.entries.index("predict")), "0", "1", times,
         "-f", files["xi"], "-o", str(logits.nbytes), fetch)
    assert open(fetch, "rb").read() == fresh_logits.tobytes()  # a fresh context: the initial weights
    r = subprocess.run([exe, WEIGHTS, "1", "99", "0", "1", times], cwd=out, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "run (warmup) failed" not in r.stderr and "run failed" in r.stderr, r.stderr
