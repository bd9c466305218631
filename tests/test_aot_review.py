"""Review of issue 14's AOT pipeline: checks of what the artifact relies on that the other AOT
test modules do not cover.

matmul's BLAS path (runtime/cpu/matmul.cc blas_kernel) runs OpenBLAS on one thread over fixed
output blocks (64 rows of C, 1024 outputs of a gemv) spread over graphc's workers, so that an
artifact and a Session give the same bits at any `threads`.  tests/aot_review_probe.py runs
float64 products (always the BLAS path) big enough to be split, in every layout the kernel
distinguishes (gemm with op(A)/op(B) transposed or not, one row, one column, a batch): the
bytes must not depend on the thread count, the blocks must put every output in its place (numpy
agrees to rounding), and a run must allocate nothing, the first one included, even though
the workers make OpenBLAS calls of their own (docs/aot.md, "Threads and what is process-wide").

Also: the C checkpoint writer never writes through a link planted at its temporary name, the C
checkpoint reader refuses a FIFO without blocking (tests/aot_review_driver.cc), and a fused
program's float literal loads the same under a decimal-comma C locale, as a host program of an
artifact may set (tests/aot_review_locale.py).
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from subproc import child_env

from graphc import checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROBE = os.path.join(HERE, "aot_review_probe.py")


def _rows(threads, *extra, env=None):
    env = child_env(env)  # the tested graphc (site-packages after `pip install .`, else the source tree)
    proc = subprocess.run([sys.executable, PROBE, str(threads), *extra], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows, proc.stdout[-2000:]
    return {r["case"]: r for r in rows}


def test_blas_blocks_give_the_same_bits_at_any_thread_count():
    by_threads = {t: _rows(t) for t in (1, 2, 3)}
    names = list(by_threads[1])
    assert len(names) >= 9
    for name in names:
        row = by_threads[1][name]
        assert row["shape_ok"], name
        # every block in its place: numpy's product agrees to rounding
        assert row["rel_err"] < 1e-12, (name, row["rel_err"])
        for t in (2, 3):
            assert by_threads[t][name]["sha256"] == row["sha256"], (name, t)


@pytest.fixture(scope="module")
def shim(noalloc_shim):
    return noalloc_shim


@pytest.mark.parametrize("case", ["gemm", "gemm_ta", "row_tb", "col_ta", "batched"])
def test_blas_blocks_on_the_workers_allocate_nothing(shim, case):
    # One process per case: its first run is the first OpenBLAS call of the workers.
    rows = _rows(2, "count", case, env=dict(os.environ, LD_PRELOAD=shim))
    row = rows[case]
    assert (row["first"], row["later"]) == (0, 0), row


# -- the checkpoint writer's temporary file ---------------------------------------------------

DRIVER_SOURCES = ["tests/aot_review_driver.cc", "runtime/aot/sha256.cc", "runtime/aot/npz.cc",
                  "runtime/aot/weights_file.cc"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler: the review driver cannot be built")
    folder = tmp_path_factory.mktemp("aot_review")
    launcher = [shutil.which("ccache")] if shutil.which("ccache") else []
    flags = ["-O1", "-std=c++17", "-pthread", "-Wall", "-Wextra", "-Werror"]
    objects = []
    for source in DRIVER_SOURCES:
        obj = str(folder / (os.path.basename(source) + ".o"))
        subprocess.run([*launcher, cxx, *flags, "-I", os.path.join(ROOT, "runtime"), "-c", os.path.join(ROOT, source),
                        "-o", obj], check=True, capture_output=True, text=True)
        objects.append(obj)
    exe = str(folder / "aot_review_driver")
    subprocess.run([cxx, *flags, *objects, "-o", exe], check=True, capture_output=True, text=True)
    return exe


def test_checkpoint_writer_never_writes_through_a_planted_temporary_name(driver, tmp_path):
    # The writer's temporary name (<path>.tmp-<pid>-<n>) is predictable: in a shared folder
    # another user can plant a link there.  Opening it with O_TRUNC followed the link and
    # overwrote the file it points at; the writer must create its temporary file afresh
    # (O_EXCL, no link followed) and take another name when one is taken.
    path = tmp_path / "ckpt.npz"
    proc = subprocess.run([driver, "tmp_taken", str(path)], capture_output=True, text=True)
    victims = [tmp_path / f"ckpt.npz.victim-{n}" for n in range(4)]
    assert [v.read_bytes() for v in victims] == [b"victim"] * 4
    assert proc.returncode == 0, proc.stderr
    assert not path.is_symlink()
    loaded = dict(np.load(path))
    assert loaded["w"].tobytes() == np.array([1, 2, 3], np.float32).tobytes()
    assert int(loaded[checkpoint.MARKER]) == 1
    # no temporary file of the writer is left besides the planted links
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name and not p.is_symlink()) == []


K_IO = 6  # aot::kIo (runtime/aot/tables.h); the driver exits 10 + status


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_checkpoint_reader_refuses_a_fifo_without_blocking(driver, tmp_path):
    # graphc.checkpoint refuses anything but a regular file before it opens it ("a FIFO:
    # reading it could block forever"); the C reader made the same check only after open(),
    # which blocks on a FIFO until some writer opens it: the call never returned.
    fifo = tmp_path / "ckpt.npz"
    os.mkfifo(fifo)
    try:
        proc = subprocess.run([driver, "load_checkpoint", str(fifo)], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("loading a checkpoint from a FIFO blocked")
    assert proc.returncode == 10 + K_IO, (proc.returncode, proc.stderr)
    assert "is not a regular file" in proc.stderr


# -- locale --------------------------------------------------------------------------------------

LOCALE_DRIVER = os.path.join(HERE, "aot_review_locale.py")


@pytest.fixture(scope="module")
def comma_locale(tmp_path_factory):
    """(environment, locale name) of a locale whose decimal separator is a comma: an installed
    one, else de_DE.UTF-8 compiled with localedef into a temporary LOCPATH."""
    env = child_env()
    try:
        names = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    except OSError:
        names = []
    for name in names:
        if name.lower().replace("-", "") in ("de_de.utf8", "fr_fr.utf8", "de_de", "fr_fr"):
            return env, name
    localedef = shutil.which("localedef")
    if localedef is None:
        pytest.skip("no locale with a decimal comma and no localedef to make one")
    folder = tmp_path_factory.mktemp("locales")
    proc = subprocess.run([localedef, "-i", "de_DE", "-f", "UTF-8", str(folder / "de_DE.UTF-8")], capture_output=True,
                          text=True)
    if not (folder / "de_DE.UTF-8").exists():
        pytest.skip(f"localedef could not make de_DE.UTF-8: {proc.stderr[-300:]}")
    env["LOCPATH"] = str(folder)
    return env, "de_DE.UTF-8"


def test_fused_float_literals_do_not_depend_on_the_c_locale(comma_locale):
    # The fused interpreter read pow's exponent with strtod, which follows LC_NUMERIC: under a
    # decimal comma "1.5" stopped at the '.', and loading the plan (a Session, or an artifact's
    # context in a host program that called setlocale) failed with "is not a number".
    env, name = comma_locale

    def run(*args):
        proc = subprocess.run([sys.executable, LOCALE_DRIVER, *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.split()[-1]

    assert run(name) == run()
