"""Shared helpers of the AOT artifact tests (tests/test_aot_parity.py, tests/test_aot_capi.py):
emit and build an artifact (``gc.emit_c`` + its Makefile), generate a C++ driver for it, run a
sequence of entry calls through the driver and through a ``gc.Session``, and compare.

The driver (one generated .cc per artifact, see :func:`driver_source`) is linked with the
artifact's static library.  ``driver run`` creates a context over aligned memory, loads the
weights (a file, ``@memory:FILE`` through ``<name>_load_weights_from_memory``, or ``@embedded``),
optionally loads a checkpoint, runs the entries listed in a sequence file (one line per call:
the entry index and a file holding the feeds' bytes, concatenated in the entry's feed order),
writes every fetch of every call and, at the end, every persistent tensor (by
``<name>_variable_info`` / ``<name>_read_variable``), and optionally saves a checkpoint.  Odd
calls go through ``<name>_run``, even ones through the per-entry ``<name>_run_<entry>``.  A
0-byte feed is passed as NULL (the C API allows it).

Allocation counting: the driver replaces the global operator new/delete and, because the
artifact's objects are linked statically, wraps malloc, calloc, realloc, free, posix_memalign
and aligned_alloc (``-Wl,--wrap=...``); a counter runs only inside entry calls, so every
allocation an entry call makes in our code (any thread) is counted.  OpenBLAS is a shared
library whose own buffers are not seen (they are outside graphc's control).  The counts of
the first call and of the later calls are reported separately.

``driver errors`` runs the C API's failure cases (see :func:`error_cases`) and prints one line
per case: ``case<TAB>status<TAB>message``.

Build cost: every artifact of the tests is emitted under one fixed name (``AOT_TEST_NAME``) and
built with one shared object folder (``OBJDIR`` of the emitted Makefile: ``GRAPHC_AOT_OBJDIR``,
which tests/conftest.py sets once per session unless it is set already, e.g. to a folder kept
across sessions), so the kernel objects compile once per test session.  ccache is used when
installed.
"""

import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np

import graphc as gc
from graphc._proto import graphc_pb2 as pb
from graphc.plan import Plan
from graphc.program import Program

NAME = "aotm"                      # the C prefix of every test artifact (one object folder)
AOT_TEST_NAME = NAME               # the name every AOT test uses unless it tests naming
PREFIX = NAME.upper()
SANITIZE_FLAGS = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
ALLOC_WRAPPED = ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc")
BUILD_TIMEOUT = 1800

_DTYPE_NAME = {pb.FLOAT32: "float32", pb.FLOAT64: "float64", pb.INT32: "int32", pb.INT64: "int64",
               pb.BOOL: "bool"}
# The status codes of I14.md, by name (the emitted header must agree: the driver asserts it).
STATUS = {"OK": 0, "ARGUMENT": 1, "ALIGNMENT": 2, "SIZE": 3, "WEIGHTS": 4, "NOT_FOUND": 5, "IO": 6,
          "CHECKPOINT": 7, "RUNTIME": 8, "NO_MEMORY": 9, "STATE": 10}
STATUS_NAME = {v: k for k, v in STATUS.items()}

_lock = threading.RLock()
_objdirs = {}
_tmp_root = None


def compiler():
    """The C++ compiler the artifacts are built with, or None."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def have_toolchain():
    return compiler() is not None and shutil.which("make") is not None


def _cxx_command():
    cxx = compiler()
    if shutil.which("ccache") and "ccache" not in cxx:
        return f"ccache {cxx}"
    return cxx


def tmp_root():
    """One temporary folder per test process for artifacts and object folders."""
    global _tmp_root
    if _tmp_root is None:
        _tmp_root = tempfile.mkdtemp(prefix="graphc_aot_tests_")
        import atexit
        atexit.register(shutil.rmtree, _tmp_root, True)
    return _tmp_root


def objdir(kind="default"):
    """The object folder (the Makefile's OBJDIR) shared by every artifact built with the
    ``kind`` flags: GRAPHC_AOT_OBJDIR itself for the default flags (tests/conftest.py sets it
    once per session, so every AOT test module shares the kernel objects), a folder inside it
    for the sanitizer flags."""
    with _lock:
        if kind not in _objdirs:
            base = os.environ.get("GRAPHC_AOT_OBJDIR") or os.path.join(tmp_root(), "obj")
            path = base if kind == "default" else os.path.join(base, kind)
            _objdirs[kind] = os.path.abspath(path)
            os.makedirs(_objdirs[kind], exist_ok=True)
        return _objdirs[kind]


def sanitizer_works():
    """(ok, why): whether ``g++ -fsanitize=address,undefined`` links and runs a trivial program."""
    cxx = compiler()
    if cxx is None:
        return False, "no C++ compiler"
    d = os.path.join(tmp_root(), "san_probe")
    os.makedirs(d, exist_ok=True)
    src = os.path.join(d, "probe.cc")
    with open(src, "w") as f:
        f.write("#include <vector>\nint main() { std::vector<int> v(3); return v[1]; }\n")
    exe = os.path.join(d, "probe")
    r = subprocess.run([cxx, "-fsanitize=address,undefined", src, "-o", exe], capture_output=True, text=True,
                       env=_tool_env())
    if r.returncode != 0:
        return False, f"{cxx} -fsanitize=address,undefined does not link: {r.stderr.strip()[-300:]}"
    r = subprocess.run([exe], capture_output=True, text=True, env=_sanitizer_env())
    if r.returncode != 0:
        return False, f"a trivial ASan program fails to run here: {r.stderr.strip()[-300:]}"
    return True, ""


def _tool_env():
    """The environment of the compiler, make and the drivers: without LD_PRELOAD (tools/sanitize.sh
    preloads libasan into Python; the sanitized driver links it itself, the tools need none)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


def _sanitizer_env():
    env = _tool_env()
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    return env


# -- what an artifact holds: entries, feeds, fetches, from the plan (not the header) -----------

@dataclass
class Tensor:
    name: str
    dtype: str
    dims: tuple
    nbytes: int


@dataclass
class Entry:
    name: str            # the C entry name ("main" for a plain plan)
    session_entry: str   # what Session.run(entry=) takes (None for a plain plan)
    feeds: list
    fetches: list


def _tensor(v):
    return Tensor(v.name, _DTYPE_NAME[v.dtype], tuple(int(d) for d in v.dims), int(v.nbytes))


def entries_of(source):
    """The artifact's entries in index order, from the plan or program."""
    if isinstance(source, Plan):
        protos = [("main", None, source.proto)]
    elif isinstance(source, Program):
        protos = [(e.name, e.name, e.plan) for e in source.proto.entries]
    else:
        raise TypeError(f"a gc.Plan or gc.Program, got {type(source).__name__}")
    return [Entry(name, sess, [_tensor(p.values[i]) for i in p.feeds], [_tensor(p.values[i]) for i in p.fetches])
            for name, sess, p in protos]


def persistent_of(source):
    return [(v.name, _DTYPE_NAME[v.dtype], tuple(int(d) for d in v.dims)) for v in source.proto.persistent]


def c_ident(name):
    """I14.md's identifier rule (without the collision suffix): upper-case, every character
    outside [A-Za-z0-9] becomes '_'."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


# -- emit and build ------------------------------------------------------------------------

@dataclass
class Artifact:
    source: object
    out_dir: str
    name: str
    header: str
    weights: str
    static_lib: str
    shared_lib: str
    entries: list
    persistent: list
    kind: str
    drivers: dict = field(default_factory=dict)


def _make(out_dir, kind, extra=()):
    cmd = ["make", "-C", out_dir, f"-j{os.environ.get('GRAPHC_BUILD_JOBS', '2')}", f"OBJDIR={objdir(kind)}",
           f"CXX={_cxx_command()}"]
    if kind == "sanitize":
        # The Makefile puts CXXFLAGS after the kernel flags: -O1 wins over -O3.
        cmd.append(f"CXXFLAGS=-O1 -g {SANITIZE_FLAGS}")
        cmd.append(f"LDFLAGS={SANITIZE_FLAGS}")
    cmd += list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                       env=_tool_env())
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}")


def build(source, out_dir, embed_weights=False, kind="default"):
    """Emit ``source`` (a Plan or Program) under ``NAME`` into ``out_dir`` and build it with the
    emitted Makefile (objects in the shared folder of ``kind``: "default" or "sanitize")."""
    with _lock:
        # Emit and build under one lock: the object of <name>.cc in the shared folder must be
        # made from this artifact's source, never a later-emitted one's.
        result = gc.emit_c(source, out_dir, name=NAME, embed_weights=embed_weights)
        _make(out_dir, kind)
    static_lib = os.path.join(out_dir, f"lib{NAME}.a")
    shared_lib = os.path.join(out_dir, f"lib{NAME}.so")
    for p in (static_lib, shared_lib):
        assert os.path.isfile(p), f"make did not produce {p}: {sorted(os.listdir(out_dir))}"
    return Artifact(source, out_dir, NAME, str(result.header), str(result.weights), static_lib, shared_lib,
                    entries_of(source), persistent_of(source), kind)


def blas_link_flags():
    import scipy_openblas32
    libdir = scipy_openblas32.get_lib_dir()
    return [f"-L{libdir}", f"-l{scipy_openblas32.get_library()}", f"-Wl,-rpath,{libdir}"]


# -- the driver --------------------------------------------------------------------------------

def _sizes(name, values):
    body = ", ".join(f"{t.nbytes}u" for t in values) or "0u"
    return f"static const size_t {name}[] = {{{body}}};\n"


def _header_checks(art):
    """static_asserts of the header's macros against the plan (I14.md's names)."""
    p = PREFIX
    lines = [f"static_assert({p}_NUM_ENTRIES == {len(art.entries)}, \"NUM_ENTRIES\");",
             f"static_assert({p}_NUM_VARIABLES == {len(art.persistent)}, \"NUM_VARIABLES\");",
             f"static_assert({p}_ALIGNMENT == 64, \"ALIGNMENT\");",
             f"static_assert({p}_STATE_BYTES == {p}_VARIABLE_BYTES + {p}_OPTIMIZER_STATE_BYTES, \"STATE\");"]
    lines += [f"static_assert({p}_E_{k} == {v}, \"status {k}\");" if k != "OK" else
              f"static_assert({p}_OK == 0, \"OK\");" for k, v in STATUS.items()]
    for d, code in (("FLOAT32", 1), ("FLOAT64", 2), ("INT32", 3), ("INT64", 4), ("BOOL", 5)):
        lines.append(f"static_assert({p}_{d} == {code}, \"{d}\");")
    idents = [c_ident(e.name) for e in art.entries]
    for k, e in enumerate(art.entries):
        if idents.count(idents[k]) > 1:
            continue
        ep = f"{p}_{idents[k]}"
        lines += [f"static_assert({p}_ENTRY_{idents[k]} == {k}, \"entry {e.name}\");",
                  f"static_assert({ep}_NUM_FEEDS == {len(e.feeds)}, \"feeds of {e.name}\");",
                  f"static_assert({ep}_NUM_FETCHES == {len(e.fetches)}, \"fetches of {e.name}\");"]
        for what, values in (("FEED", e.feeds), ("FETCH", e.fetches)):
            ids = [c_ident(t.name) for t in values]
            for j, t in enumerate(values):
                if ids.count(ids[j]) > 1 or re.search(r"_(BYTES|DTYPE|NDIM|SHAPE)$", ids[j]):
                    continue   # a collision suffix or a macro-like name: the emitter's rule decides
                m = f"{ep}_{what}_{ids[j]}"
                lines += [f"static_assert({m} == {j}, \"{m}\");",
                          f"static_assert({m}_BYTES == {t.nbytes}u, \"{m}_BYTES\");",
                          f"static_assert({m}_DTYPE == {p}_{t.dtype.upper()}, \"{m}_DTYPE\");",
                          f"static_assert({m}_NDIM == {len(t.dims)}, \"{m}_NDIM\");"]
                if t.dims:
                    lines.append(f"{{ constexpr long long s[] = {m}_SHAPE; static_assert(sizeof(s) / sizeof(s[0]) "
                                 f"== {len(t.dims)}, \"{m}_SHAPE\"); " +
                                 " ".join(f"static_assert(s[{i}] == {d}, \"{m}_SHAPE\");" for i, d in enumerate(t.dims))
                                 + " }")
    return lines


def driver_source(art):
    """The C++ driver of ``art`` (see the module docstring)."""
    n, p = art.name, PREFIX
    tables = []
    rows = []
    for k, e in enumerate(art.entries):
        tables.append(_sizes(f"kFeeds{k}", e.feeds))
        tables.append(_sizes(f"kFetches{k}", e.fetches))
        feed_names = ", ".join(_c_string(t.name) for t in e.feeds) or "nullptr"
        tables.append(f"static const char* const kFeedNames{k}[] = {{{feed_names}}};\n")
        rows.append(f"  {{{_c_string(e.name)}, {len(e.feeds)}, kFeeds{k}, kFeedNames{k}, {len(e.fetches)}, "
                    f"kFetches{k}, {n}_run_{c_ident(e.name).lower()}}},")
    checks = _header_checks(art)
    checks_fn = "static void header_checks() {\n  " + "\n  ".join(
        c for c in checks if c.startswith("{")) + "\n}\n"
    static_checks = "\n".join(c for c in checks if not c.startswith("{"))
    return (_DRIVER_TEMPLATE
            .replace("@HEADER@", os.path.basename(art.header))
            .replace("@STATIC_CHECKS@", static_checks)
            .replace("@CHECKS_FN@", checks_fn)
            .replace("@TABLES@", "".join(tables))
            .replace("@ROWS@", "\n".join(rows))
            .replace("@P@", p)
            .replace("@n@", n))


def _c_string(s):
    out = []
    for b in s.encode():
        if b in (34, 92) or b < 32 or b > 126:
            out.append(f"\\{b:03o}")
        else:
            out.append(chr(b))
    return '"' + "".join(out) + '"'


def build_driver(art, sanitize=False):
    """Compile the driver of ``art`` and link it with the static library; the executable path."""
    key = "sanitize" if sanitize else "default"
    if key in art.drivers:
        return art.drivers[key]
    src = os.path.join(art.out_dir, f"driver_{key}.cc")
    with open(src, "w") as f:
        f.write(driver_source(art))
    exe = os.path.join(art.out_dir, f"driver_{key}")
    flags = SANITIZE_FLAGS.split() + ["-O1", "-g", "-DAOT_NO_ALLOC_COUNT"] if sanitize else ["-O1"]
    cmd = _cxx_command().split() + flags + ["-std=c++17", "-pthread", "-I", art.out_dir, src, "-o", exe]
    cmd += [art.static_lib] + blas_link_flags()
    if not sanitize:
        cmd += [f"-Wl,--wrap={fn}" for fn in ALLOC_WRAPPED] + ["-rdynamic"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                       env=_tool_env())
    if r.returncode != 0:
        raise AssertionError(f"driver build failed:\n{' '.join(cmd)}\n{r.stderr[-8000:]}")
    art.drivers[key] = exe
    return exe


# -- running a sequence --------------------------------------------------------------------------

@dataclass
class Result:
    fetches: list            # per call: list of bytes, one per fetch
    variables: dict          # name -> bytes (every persistent tensor at the end)
    allocs_first: int = 0    # allocations in the first entry call (driver only)
    allocs_rest: int = 0     # in every later call together


def _feed_bytes(entry, feeds):
    missing = [t.name for t in entry.feeds if t.name not in feeds]
    if missing:
        raise KeyError(f"entry {entry.name!r}: no feed for {missing}")
    out = []
    for t in entry.feeds:
        a = np.asarray(feeds[t.name], dtype=np.dtype(t.dtype), order="C")   # (ascontiguousarray makes 0-d 1-d)
        assert a.shape == t.dims, (t.name, a.shape, t.dims)
        out.append(a.tobytes())
    return b"".join(out)


def run_driver(art, calls, threads, work_dir, weights=None, load_checkpoint=None, save_checkpoint=None,
               sanitize=False, timeout=900):
    """Run ``calls`` (a list of (entry name, {feed name: array})) through the driver; a Result."""
    exe = build_driver(art, sanitize=sanitize)
    os.makedirs(work_dir, exist_ok=True)
    index = {e.name: k for k, e in enumerate(art.entries)}
    seq = []
    for r, (entry_name, feeds) in enumerate(calls):
        k = index[entry_name]
        path = os.path.join(work_dir, f"feeds{r}.bin")
        with open(path, "wb") as f:
            f.write(_feed_bytes(art.entries[k], feeds))
        seq.append(f"{k} {path}\n")
    seq_path = os.path.join(work_dir, "sequence.txt")
    with open(seq_path, "w") as f:
        f.writelines(seq)
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    cmd = [exe, "run", str(threads), weights or art.weights, seq_path, out_dir, load_checkpoint or "-",
           save_checkpoint or "-"]
    env = _sanitizer_env() if sanitize else _tool_env()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        raise AssertionError(f"driver failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}")
    fetches = []
    for r_, (entry_name, _) in enumerate(calls):
        e = art.entries[index[entry_name]]
        with open(os.path.join(out_dir, f"run{r_}.bin"), "rb") as f:
            data = f.read()
        assert len(data) == sum(t.nbytes for t in e.fetches), (entry_name, len(data))
        parts, at = [], 0
        for t in e.fetches:
            parts.append(data[at:at + t.nbytes])
            at += t.nbytes
        fetches.append(parts)
    variables = {}
    with open(os.path.join(out_dir, "vars.txt")) as f, open(os.path.join(out_dir, "vars.bin"), "rb") as fb:
        blob = fb.read()
        at = 0
        for line in f:
            name, nbytes = line.rstrip("\n").rsplit("\t", 1)
            variables[name] = blob[at:at + int(nbytes)]
            at += int(nbytes)
        assert at == len(blob)
    first = rest = 0
    if not sanitize:
        with open(os.path.join(out_dir, "allocs.txt")) as f:
            first, rest = (int(x) for x in f.read().split())
    return Result(fetches, variables, first, rest)


def run_session(source, calls, threads, load_checkpoint=None, save_checkpoint=None, session=None):
    """The same calls through ``gc.Session(source, threads=threads)``; a Result."""
    entries = {e.name: e for e in entries_of(source)}
    sess = session or gc.Session(source, threads=threads)
    if load_checkpoint:
        sess.load_checkpoint(load_checkpoint)
    fetches = []
    for entry_name, feeds in calls:
        e = entries[entry_name]
        out = sess.run({t.name: np.asarray(feeds[t.name], dtype=np.dtype(t.dtype)) for t in e.feeds},
                       entry=e.session_entry)
        fetches.append([out[t.name].tobytes() for t in e.fetches])
    variables = {name: sess.get_variable(name).tobytes() for name in sess.variable_names}
    if save_checkpoint:
        sess.save_checkpoint(save_checkpoint)
    return Result(fetches, variables)


def assert_identical(got, want, calls, what=""):
    """Byte equality of every fetch of every call and of every final variable."""
    assert len(got.fetches) == len(want.fetches)
    bad = []
    for r, (g, w) in enumerate(zip(got.fetches, want.fetches)):
        for k, (a, b) in enumerate(zip(g, w)):
            if a != b:
                bad.append(f"call {r} ({calls[r][0]}) fetch {k}")
    assert sorted(got.variables) == sorted(want.variables), (what, sorted(got.variables), sorted(want.variables))
    bad += [f"variable {name!r}" for name in want.variables if got.variables[name] != want.variables[name]]
    assert not bad, f"{what}: the artifact differs from the Session in {len(bad)} places: {bad[:20]}"


def alloc_selftest(art):
    """(allocations the driver made itself: 3 expected, allocations while the library created a
    context: > 0 expected) as the driver's counter saw them."""
    r = subprocess.run([build_driver(art), "selftest"], capture_output=True, text=True, timeout=300,
                       env=_tool_env())
    if r.returncode != 0:
        raise AssertionError(f"driver selftest failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    own, created = (int(x) for x in r.stdout.split())
    return own, created


# -- the C API's failure cases ---------------------------------------------------------------------

def error_cases(art, bad_weights=(), bad_checkpoint=None, missing_dir=None):
    """Run ``driver errors``: {case: (status name, message)} (a case may appear once).
    ``bad_weights``: files load_weights must refuse (each reported as ``weights:<i>``; the
    message of ``unchanged:<i>`` says whether variable 0 kept its value: "unchanged" or
    "CHANGED"); ``bad_checkpoint``: a file load_checkpoint must refuse; ``missing_dir``: a
    folder that does not exist (save fails)."""
    exe = build_driver(art)
    cmd = [exe, "errors", art.weights, bad_checkpoint or "-", os.path.join(missing_dir or "/nonexistent", "x.npz"),
           *bad_weights]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_tool_env())
    if r.returncode != 0:
        raise AssertionError(f"driver errors failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    cases = {}
    for line in r.stdout.splitlines():
        case, status, message = line.split("\t", 2)
        assert case not in cases, case
        cases[case] = (STATUS_NAME.get(int(status), status), message)
    return cases


# -- the weights image (I14.md), read independently of the writer ----------------------------------

def weights_records(path):
    """[(name, kind, dtype, dims, offset, nbytes, zero_init)] of a .weights file (checks the
    header's magic and table offset)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"GRAPHCW1", data[:8]
    fmt, count = struct.unpack_from("<II", data, 8)
    total, table = struct.unpack_from("<QQ", data, 80)
    assert fmt == 1 and table == 128 and total == len(data), (fmt, table, total, len(data))
    at, out = table, []
    for _ in range(count):
        kind, dtype, ndim, name_len, offset, nbytes = struct.unpack_from("<IIIIQQ", data, at)
        at += 32 + 32
        zero_init, _ = struct.unpack_from("<II", data, at)
        at += 8
        dims = struct.unpack_from(f"<{ndim}q", data, at)
        at += 8 * ndim
        name = data[at:at + name_len].decode()
        at += (name_len + 7) // 8 * 8
        out.append((name, kind, dtype, dims, offset, nbytes, zero_init))
    return out


_DRIVER_TEMPLATE = r'''// Generated by tests/aot_harness.py: the test driver of an AOT artifact.
#include "@HEADER@"

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#ifndef AOT_NO_ALLOC_COUNT
// -- allocation counting: operator new/delete and the wrapped C allocators --------------------
// AOT_ALLOC_BACKTRACE=1: print the stack of every counted allocation (to find it).
static std::atomic<long> g_allocs{0};
static std::atomic<int> g_counting{0};
static const bool g_backtrace = std::getenv("AOT_ALLOC_BACKTRACE") != nullptr;
static thread_local int g_in_backtrace = 0;
static inline void count_alloc() {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (g_backtrace && !g_in_backtrace) {
    g_in_backtrace = 1;
    void* frames[48];
    int n = backtrace(frames, 48);
    backtrace_symbols_fd(frames, n, 2);
    (void)!write(2, "--\n", 3);
    g_in_backtrace = 0;
  }
}
extern "C" {
void* __real_malloc(size_t);
void* __real_calloc(size_t, size_t);
void* __real_realloc(void*, size_t);
void __real_free(void*);
int __real_posix_memalign(void**, size_t, size_t);
void* __real_aligned_alloc(size_t, size_t);
void* __wrap_malloc(size_t n) { count_alloc(); return __real_malloc(n); }
void* __wrap_calloc(size_t a, size_t b) { count_alloc(); return __real_calloc(a, b); }
void* __wrap_realloc(void* p, size_t n) { count_alloc(); return __real_realloc(p, n); }
void __wrap_free(void* p) { __real_free(p); }
int __wrap_posix_memalign(void** p, size_t a, size_t n) { count_alloc(); return __real_posix_memalign(p, a, n); }
void* __wrap_aligned_alloc(size_t a, size_t n) { count_alloc(); return __real_aligned_alloc(a, n); }
}
static void* counted_new(size_t n, size_t align) {
  count_alloc();
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = __real_malloc(n);
  } else if (__real_posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  return p;
}
void* operator new(size_t n) { void* p = counted_new(n, 0); if (!p) throw std::bad_alloc(); return p; }
void* operator new[](size_t n) { void* p = counted_new(n, 0); if (!p) throw std::bad_alloc(); return p; }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return counted_new(n, 0); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return counted_new(n, 0); }
void* operator new(size_t n, std::align_val_t a) {
  void* p = counted_new(n, static_cast<size_t>(a)); if (!p) throw std::bad_alloc(); return p;
}
void* operator new[](size_t n, std::align_val_t a) {
  void* p = counted_new(n, static_cast<size_t>(a)); if (!p) throw std::bad_alloc(); return p;
}
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_new(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_new(n, static_cast<size_t>(a));
}
void operator delete(void* p) noexcept { __real_free(p); }
void operator delete[](void* p) noexcept { __real_free(p); }
void operator delete(void* p, size_t) noexcept { __real_free(p); }
void operator delete[](void* p, size_t) noexcept { __real_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { __real_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { __real_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __real_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __real_free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { __real_free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { __real_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { __real_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { __real_free(p); }
static void counting(bool on) { g_counting.store(on ? 1 : 0, std::memory_order_seq_cst); }
static long allocs() { return g_allocs.load(); }
#else
static void counting(bool) {}
static long allocs() { return 0; }
#endif

// -- the header against the plan --------------------------------------------------------------
@STATIC_CHECKS@
@CHECKS_FN@
// -- the artifact's entries (from the plan) ---------------------------------------------------
typedef int (*EntryFn)(@n@_context*, const void* const*, void* const*);
struct EntryDesc {
  const char* name;
  int n_feeds;
  const size_t* feed_bytes;
  const char* const* feed_names;
  int n_fetches;
  const size_t* fetch_bytes;
  EntryFn run;
};
@TABLES@
static const EntryDesc kEntries[] = {
@ROWS@
};
static const int kNumEntries = (int)(sizeof(kEntries) / sizeof(kEntries[0]));

static void die(int code, const char* what, const char* message) {
  std::fprintf(stderr, "driver: %s: %s\n", what, message ? message : "(null)");
  std::exit(code);
}

static void* aligned_block(size_t n) {
  size_t size = (n + 63) / 64 * 64 + 64;
  void* p = std::aligned_alloc(64, size);
  if (!p) die(9, "aligned_alloc", "out of memory");
  std::memset(p, 0, size);
  return p;
}

static std::vector<unsigned char> read_file(const char* path) {
  std::vector<unsigned char> out;
  FILE* f = std::fopen(path, "rb");
  if (!f) die(2, "cannot open", path);
  unsigned char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
  std::fclose(f);
  return out;
}

static void write_file(const std::string& path, const void* data, size_t n) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) die(2, "cannot write", path.c_str());
  if (n && std::fwrite(data, 1, n, f) != n) die(2, "short write", path.c_str());
  std::fclose(f);
}

struct Memory {
  void* arena;
  void* state;
  void* constants;
};

static Memory memory() {
  return Memory{aligned_block(@P@_ARENA_BYTES), aligned_block(@P@_STATE_BYTES),
                aligned_block(@P@_CONSTANT_BYTES)};
}

static @n@_context* create(const Memory& m, int threads) {
  @n@_context* ctx = nullptr;
  int s = @n@_create(&ctx, m.arena, @P@_ARENA_BYTES, m.state, @P@_STATE_BYTES, m.constants,
                     @P@_CONSTANT_BYTES, threads);
  if (s != @P@_OK || !ctx) die(3, "create", @n@_last_error(nullptr));
  return ctx;
}

static std::vector<unsigned char> g_weights_image;

static int load_weights(@n@_context* ctx, const char* spec) {
  if (std::strcmp(spec, "@embedded") == 0) return @n@_load_embedded_weights(ctx);
  if (std::strncmp(spec, "@memory:", 8) == 0) {
    std::vector<unsigned char> bytes = read_file(spec + 8);
    // An aligned copy: the image's tensors are 64-byte aligned within it.
    unsigned char* image = static_cast<unsigned char*>(aligned_block(bytes.size()));
    if (!bytes.empty()) std::memcpy(image, bytes.data(), bytes.size());
    int s = @n@_load_weights_from_memory(ctx, image, bytes.size());
    std::free(image);
    return s;
  }
  return @n@_load_weights(ctx, spec);
}

// driver run THREADS WEIGHTS SEQUENCE OUTDIR LOAD_CKPT|- SAVE_CKPT|-
static int run_mode(int argc, char** argv) {
  if (argc != 8) die(2, "usage", "run THREADS WEIGHTS SEQUENCE OUTDIR LOAD_CKPT|- SAVE_CKPT|-");
  int threads = std::atoi(argv[2]);
  std::string out_dir = argv[5];
  Memory m = memory();
  @n@_context* ctx = create(m, threads);
  if (load_weights(ctx, argv[3]) != @P@_OK) die(4, "load weights", @n@_last_error(ctx));
  if (std::strcmp(argv[6], "-") != 0 && @n@_load_checkpoint(ctx, argv[6]) != @P@_OK)
    die(5, "load checkpoint", @n@_last_error(ctx));

  // Every buffer is made before the first call: only the calls are counted.
  struct Call { int entry; std::vector<unsigned char> feeds; std::vector<const void*> feed_ptrs;
                std::vector<unsigned char> fetches; std::vector<void*> fetch_ptrs; };
  std::vector<Call> calls;
  FILE* seq = std::fopen(argv[4], "r");
  if (!seq) die(2, "cannot open", argv[4]);
  int entry;
  char path[4096];
  while (std::fscanf(seq, "%d %4095s", &entry, path) == 2) {
    if (entry < 0 || entry >= kNumEntries) die(2, "sequence", "entry index out of range");
    const EntryDesc& e = kEntries[entry];
    Call c;
    c.entry = entry;
    c.feeds = read_file(path);
    size_t want = 0, fetch_total = 0;
    for (int i = 0; i < e.n_feeds; ++i) want += e.feed_bytes[i];
    for (int i = 0; i < e.n_fetches; ++i) fetch_total += e.fetch_bytes[i];
    if (c.feeds.size() != want) die(2, "sequence", "feed file size is not the entry's feed bytes");
    c.fetches.assign(fetch_total, 0xAB);
    calls.push_back(std::move(c));
  }
  std::fclose(seq);
  for (Call& c : calls) {
    const EntryDesc& e = kEntries[c.entry];
    size_t at = 0;
    for (int i = 0; i < e.n_feeds; ++i) {
      c.feed_ptrs.push_back(e.feed_bytes[i] ? c.feeds.data() + at : nullptr);
      at += e.feed_bytes[i];
    }
    at = 0;
    for (int i = 0; i < e.n_fetches; ++i) {
      c.fetch_ptrs.push_back(c.fetches.data() + at);
      at += e.fetch_bytes[i];
    }
    if (c.feed_ptrs.empty()) c.feed_ptrs.push_back(nullptr);
    if (c.fetch_ptrs.empty()) c.fetch_ptrs.push_back(nullptr);
  }
  long first = 0, rest = 0;
  for (size_t r = 0; r < calls.size(); ++r) {
    Call& c = calls[r];
    long before = allocs();
    counting(true);
    int s = (r % 2 == 0) ? @n@_run(ctx, c.entry, c.feed_ptrs.data(), c.fetch_ptrs.data())
                         : kEntries[c.entry].run(ctx, c.feed_ptrs.data(), c.fetch_ptrs.data());
    counting(false);
    long n = allocs() - before;
    if (r == 0) first = n; else rest += n;
    if (s != @P@_OK) {
      std::fprintf(stderr, "call %zu (entry %s): status %d\n", r, kEntries[c.entry].name, s);
      die(6, "run", @n@_last_error(ctx));
    }
    if (@n@_last_error(ctx)[0] != '\0') die(6, "run", "last_error is not empty after a successful call");
    write_file(out_dir + "/run" + std::to_string(r) + ".bin", c.fetches.data(), c.fetches.size());
  }
  std::string names;
  std::vector<unsigned char> blob;
  for (int i = 0; i < @P@_NUM_VARIABLES; ++i) {
    const char* name = nullptr;
    int dtype = 0, ndim = -1;
    const int64_t* dims = nullptr;
    size_t nbytes = 0;
    if (@n@_variable_info(ctx, i, &name, &dtype, &ndim, &dims, &nbytes) != @P@_OK)
      die(7, "variable_info", @n@_last_error(ctx));
    std::vector<unsigned char> buf(nbytes);
    if (@n@_read_variable(ctx, name, buf.data(), nbytes) != @P@_OK) die(7, "read_variable", @n@_last_error(ctx));
    blob.insert(blob.end(), buf.begin(), buf.end());
    names += std::string(name) + "\t" + std::to_string(nbytes) + "\n";
  }
  write_file(out_dir + "/vars.txt", names.data(), names.size());
  write_file(out_dir + "/vars.bin", blob.data(), blob.size());
  std::string counts = std::to_string(first) + " " + std::to_string(rest) + "\n";
  write_file(out_dir + "/allocs.txt", counts.data(), counts.size());
  if (std::strcmp(argv[7], "-") != 0 && @n@_save_checkpoint(ctx, argv[7]) != @P@_OK)
    die(8, "save checkpoint", @n@_last_error(ctx));
  @n@_destroy(ctx);
  std::free(m.arena);
  std::free(m.state);
  std::free(m.constants);
  return 0;
}

static void report(const char* name, int status, const char* message) {
  std::string msg = message ? message : "(null)";
  for (char& ch : msg) if (ch == '\n' || ch == '\t') ch = ' ';
  std::printf("%s\t%d\t%s\n", name, status, msg.c_str());
}

// driver errors GOOD_WEIGHTS BAD_CHECKPOINT|- UNWRITABLE_PATH BAD_WEIGHTS...
static int errors_mode(int argc, char** argv) {
  if (argc < 5) die(2, "usage", "errors GOOD_WEIGHTS BAD_CHECKPOINT|- UNWRITABLE_PATH BAD_WEIGHTS...");
  header_checks();
  report("arena_bytes", 0, std::to_string((unsigned long long)@P@_ARENA_BYTES).c_str());
  report("state_bytes", 0, std::to_string((unsigned long long)@P@_STATE_BYTES).c_str());
  report("constant_bytes", 0, std::to_string((unsigned long long)@P@_CONSTANT_BYTES).c_str());
  Memory m = memory();
  @n@_context* ctx = nullptr;
  int s;
  // create: bad arguments leave *out NULL and say why through last_error(NULL)
  s = @n@_create(nullptr, m.arena, @P@_ARENA_BYTES, m.state, @P@_STATE_BYTES, m.constants, @P@_CONSTANT_BYTES, 1);
  report("create_null_out", s, @n@_last_error(nullptr));
  ctx = reinterpret_cast<@n@_context*>(1);
  s = @n@_create(&ctx, static_cast<char*>(m.arena) + 1, @P@_ARENA_BYTES, m.state, @P@_STATE_BYTES, m.constants,
                 @P@_CONSTANT_BYTES, 1);
  report("misaligned_arena", s, @n@_last_error(nullptr));
  report("misaligned_arena_out_null", 0, ctx == nullptr ? "null" : "NOT NULL");
  s = @n@_create(&ctx, m.arena, @P@_ARENA_BYTES, static_cast<char*>(m.state) + 8, @P@_STATE_BYTES, m.constants,
                 @P@_CONSTANT_BYTES, 1);
  report("misaligned_state", s, @n@_last_error(nullptr));
  if (@P@_ARENA_BYTES > 0) {
    s = @n@_create(&ctx, m.arena, @P@_ARENA_BYTES - 1, m.state, @P@_STATE_BYTES, m.constants, @P@_CONSTANT_BYTES, 1);
    report("small_arena", s, @n@_last_error(nullptr));
  }
  if (@P@_STATE_BYTES > 0) {
    s = @n@_create(&ctx, m.arena, @P@_ARENA_BYTES, m.state, @P@_STATE_BYTES - 1, m.constants, @P@_CONSTANT_BYTES, 1);
    report("small_state", s, @n@_last_error(nullptr));
  }
  if (@P@_CONSTANT_BYTES > 0) {
    s = @n@_create(&ctx, m.arena, @P@_ARENA_BYTES, m.state, @P@_STATE_BYTES, m.constants, @P@_CONSTANT_BYTES - 1, 1);
    report("small_constants", s, @n@_last_error(nullptr));
  }
  s = @n@_create(&ctx, m.arena, @P@_ARENA_BYTES, m.state, @P@_STATE_BYTES, m.constants, @P@_CONSTANT_BYTES, 0);
  report("zero_threads", s, @n@_last_error(nullptr));
  s = @n@_create(&ctx, m.arena, @P@_ARENA_BYTES, m.state, @P@_STATE_BYTES, m.constants, @P@_CONSTANT_BYTES, 1);
  report("create", s, @n@_last_error(nullptr));
  if (s != @P@_OK) return 0;
  report("create_error_cleared", 0, @n@_last_error(nullptr));

  // before the weights
  std::vector<std::vector<unsigned char>> feeds(kNumEntries > 0 ? kEntries[0].n_feeds : 0);
  std::vector<const void*> feed_ptrs;
  for (int i = 0; i < kEntries[0].n_feeds; ++i) {
    feeds[i].assign(kEntries[0].feed_bytes[i] + 1, 0);
    feed_ptrs.push_back(feeds[i].data());
  }
  if (feed_ptrs.empty()) feed_ptrs.push_back(nullptr);
  s = @n@_run(ctx, 0, feed_ptrs.data(), nullptr);
  report("run_before_weights", s, @n@_last_error(ctx));
  const char* v0 = nullptr;
  int dtype = 0, ndim = 0;
  const int64_t* dims = nullptr;
  size_t v0_bytes = 0;
  if (@P@_NUM_VARIABLES > 0) {
    s = @n@_variable_info(ctx, 0, &v0, &dtype, &ndim, &dims, &v0_bytes);
    report("variable_info_0", s, v0 ? v0 : "(null)");
    std::vector<unsigned char> buf(v0_bytes + 1);
    s = @n@_read_variable(ctx, v0, buf.data(), v0_bytes);
    report("read_before_weights", s, @n@_last_error(ctx));
    s = @n@_save_checkpoint(ctx, argv[4]);
    report("save_checkpoint_before_weights", s, @n@_last_error(ctx));
  }
  if (@P@_NUM_VARIABLES > 0 && v0) {
    // a refused weights file before any good one: still nothing loaded
    for (int k = 5; k < argc; ++k) {
      s = @n@_load_weights(ctx, argv[k]);
      report(("weights:" + std::to_string(k - 5)).c_str(), s, @n@_last_error(ctx));
    }
    s = @n@_run(ctx, 0, feed_ptrs.data(), nullptr);
    report("run_after_bad_weights", s, @n@_last_error(ctx));
  }
  s = @n@_load_weights(ctx, "/nonexistent/graphc/weights.file");
  report("weights_missing_file", s, @n@_last_error(ctx));
  s = @n@_load_weights_from_memory(ctx, nullptr, 0);
  report("weights_null_memory", s, @n@_last_error(ctx));
  s = @n@_load_weights(ctx, argv[2]);
  report("load_weights", s, @n@_last_error(ctx));
  report("load_weights_error_cleared", 0, @n@_last_error(ctx));
  if (s != @P@_OK) return 0;
  s = @n@_load_embedded_weights(ctx);
  report("load_embedded_weights", s, @n@_last_error(ctx));
  s = @n@_load_weights(ctx, argv[2]);
  report("reload_weights", s, @n@_last_error(ctx));

  // entries
  s = @n@_run(ctx, -1, feed_ptrs.data(), nullptr);
  report("entry_minus_one", s, @n@_last_error(ctx));
  s = @n@_run(ctx, @P@_NUM_ENTRIES, feed_ptrs.data(), nullptr);
  report("entry_past_end", s, @n@_last_error(ctx));
  s = @n@_run(nullptr, 0, feed_ptrs.data(), nullptr);
  report("run_null_context", s, @n@_last_error(nullptr));
  int feed_with_bytes = -1;
  for (int i = 0; i < kEntries[0].n_feeds; ++i)
    if (kEntries[0].feed_bytes[i] > 0) { feed_with_bytes = i; break; }
  if (feed_with_bytes >= 0) {
    std::vector<const void*> with_null = feed_ptrs;
    with_null[feed_with_bytes] = nullptr;
    s = @n@_run(ctx, 0, with_null.data(), nullptr);
    report("null_feed", s, @n@_last_error(ctx));
    report("null_feed_name", 0, kEntries[0].feed_names[feed_with_bytes]);
    s = @n@_run(ctx, 0, nullptr, nullptr);
    report("null_feeds", s, @n@_last_error(ctx));
  }

  // variables
  if (@P@_NUM_VARIABLES > 0) {
    std::vector<unsigned char> buf(v0_bytes + 1), zeros(v0_bytes + 1, 0), back(v0_bytes + 1);
    s = @n@_read_variable(ctx, "no/such/variable", buf.data(), v0_bytes);
    report("read_unknown_variable", s, @n@_last_error(ctx));
    s = @n@_write_variable(ctx, "no/such/variable", buf.data(), v0_bytes);
    report("write_unknown_variable", s, @n@_last_error(ctx));
    s = @n@_read_variable(ctx, v0, buf.data(), v0_bytes + 1);
    report("read_wrong_nbytes", s, @n@_last_error(ctx));
    s = @n@_read_variable(ctx, nullptr, buf.data(), v0_bytes);
    report("read_null_name", s, @n@_last_error(ctx));
    s = @n@_variable_info(ctx, @P@_NUM_VARIABLES, &v0, &dtype, &ndim, &dims, &v0_bytes);
    report("variable_info_past_end", s, @n@_last_error(ctx));
    s = @n@_variable_info(ctx, -1, &v0, &dtype, &ndim, &dims, &v0_bytes);
    report("variable_info_minus_one", s, @n@_last_error(ctx));
    @n@_variable_info(ctx, 0, &v0, &dtype, &ndim, &dims, &v0_bytes);
    // all or nothing: zero variable 0, then a refused weights file must leave it zero
    s = @n@_write_variable(ctx, v0, zeros.data(), v0_bytes);
    report("write_variable", s, @n@_last_error(ctx));
    for (int k = 5; k < argc; ++k) {
      s = @n@_load_weights(ctx, argv[k]);
      s = @n@_read_variable(ctx, v0, back.data(), v0_bytes);
      report(("unchanged:" + std::to_string(k - 5)).c_str(), 0,
             s == @P@_OK && std::memcmp(back.data(), zeros.data(), v0_bytes) == 0 ? "unchanged" : "CHANGED");
    }
    if (std::strcmp(argv[3], "-") != 0) {
      s = @n@_load_checkpoint(ctx, argv[3]);
      report("bad_checkpoint", s, @n@_last_error(ctx));
      s = @n@_read_variable(ctx, v0, back.data(), v0_bytes);
      report("unchanged:checkpoint", 0,
             s == @P@_OK && std::memcmp(back.data(), zeros.data(), v0_bytes) == 0 ? "unchanged" : "CHANGED");
    }
    s = @n@_load_checkpoint(ctx, "/nonexistent/graphc/checkpoint.npz");
    report("checkpoint_missing_file", s, @n@_last_error(ctx));
    s = @n@_save_checkpoint(ctx, argv[4]);
    report("checkpoint_unwritable", s, @n@_last_error(ctx));
  }
  // fetches may be NULL (all zero feeds: the caller picks a model where that is valid input);
  // a success clears the last error
  for (int i = 0; i < kEntries[0].n_feeds; ++i) {
    if (kEntries[0].feed_bytes[i] == 0) feed_ptrs[i] = nullptr;
  }
  @n@_load_weights(ctx, argv[2]);
  s = @n@_read_variable(ctx, "no/such/variable", nullptr, 0);
  s = @n@_run(ctx, 0, feed_ptrs.data(), nullptr);
  report("run_null_fetches", s, @n@_last_error(ctx));
  @n@_destroy(ctx);
  @n@_destroy(nullptr);
  report("destroyed", 0, "");
  std::free(m.arena);
  std::free(m.state);
  std::free(m.constants);
  return 0;
}

// driver selftest: the counter sees the driver's own allocations (3) and the library's
// allocations while a context is created (> 0), so a count of 0 in run means none were made.
static void* volatile g_sink = nullptr;
static int selftest_mode() {
  counting(true);
  long before = allocs();
  // through a volatile sink, so the compiler cannot elide the allocations
  void* p = std::malloc(16);
  g_sink = p;
  int* q = new int[4];
  g_sink = q;
  void* r = std::aligned_alloc(64, 64);
  g_sink = r;
  long own = allocs() - before;
  std::free(p);
  delete[] q;
  std::free(r);
  Memory m = memory();
  before = allocs();
  @n@_context* ctx = create(m, 2);
  long created = allocs() - before;
  counting(false);
  @n@_destroy(ctx);
  std::printf("%ld %ld\n", own, created);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "run") == 0) return run_mode(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "selftest") == 0) return selftest_mode();
  if (argc >= 2 && std::strcmp(argv[1], "errors") == 0) return errors_mode(argc, argv);
  die(2, "usage", "driver run ... | driver errors ...");
  return 2;
}
'''


# -- the test models ------------------------------------------------------------------------------
#
# Each builder returns a Model: the Plan or Program, the call sequence (entry name, feeds), and
# the graph it was compiled from (for the op-coverage check).

@dataclass
class Model:
    key: str
    source: object
    calls: list
    graph: object


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pick_examples(op, rng, per_op, cap):
    """Examples of ``op`` with at most ``cap`` input bytes: one per distinct input-dtype
    signature first, then more up to ``per_op``; the smallest one when none fits."""
    exs = list(op.examples(rng))
    assert exs, f"{op.name} has no examples"
    size = [sum(np.asarray(x).nbytes for x in ex.inputs) for ex in exs]
    fits = [k for k in range(len(exs)) if size[k] <= cap]
    if not fits:
        return [exs[int(np.argmin(size))]]
    chosen, seen = [], set()
    for k in fits:
        sig = tuple(np.asarray(x).dtype.name for x in exs[k].inputs)
        if sig not in seen:
            seen.add(sig)
            chosen.append(k)
    for k in fits:
        if len(chosen) >= per_op:
            break
        if k not in chosen:
            chosen.append(k)
    return [exs[k] for k in sorted(chosen)]


def every_op_model(per_op=6, cap=32768, runs=3):
    """One inference plan holding examples of every registry op (its registry examples: every
    dtype signature they use, sizes 0 and 1 among them), a placeholder per input except the
    inputs an op updates in place (variables, as tests/single_op.py does), every output
    fetched; ``runs`` calls with the same feeds (in-place updates and the rng step change the
    state between calls)."""
    from graphc import registry
    from graphc.aot.emit import COLLECTIVE_OPS
    g = gc.Graph()
    rng = np.random.default_rng(0)
    feeds, fetches = {}, []
    with g:
        for op in registry.all_ops():
            if op.name in COLLECTIVE_OPS:  # data-parallel steps: an artifact refuses them (no communicator)
                continue
            inplace = set(op.inplace.values())
            for k, ex in enumerate(_pick_examples(op, rng, per_op, cap)):
                ins = []
                for i, x in enumerate(ex.inputs):
                    name = f"{op.name}_{k}_in{i}"
                    x = np.asarray(x)
                    if i in inplace:
                        ins.append(gc.variable(name, init=x))
                    else:
                        ins.append(gc.placeholder(name, x.shape, x.dtype.name))
                        feeds[name] = x
                outs = g.add_node(op.name, ins, ex.attrs, name=f"{op.name}_{k}")
                outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
                fetches += [t.name for t in outs]
    plan = gc.compile(g, shapes={}, fetches=fetches)
    return Model("every_op", plan, [("main", feeds)] * runs, g)


def _train_eval_calls(make_feeds, pattern="ttettte"):
    calls = []
    for r, c in enumerate(pattern):
        calls.append(("train" if c == "t" else "eval", make_feeds(r, c == "t")))
    return calls


def mlp_model(optimizer=None, key="mlp_sgd", batch=16, n_in=20, hidden=32, classes=10):
    """A two-layer MLP: entries 'train' (the optimizer's step, fetching the loss) and 'eval'
    (logits and predicted classes) over the same variables."""
    optimizer = optimizer or gc.optim.SGD(lr=0.1)
    rng = np.random.default_rng(0)
    with gc.Graph() as g:
        x = gc.placeholder("x", (batch, n_in))
        y = gc.placeholder("y", (batch,), dtype="int64")
        w1 = gc.variable("fc1/w", init=(rng.standard_normal((n_in, hidden)) * 0.3).astype(np.float32))
        b1 = gc.variable("fc1/b", init=np.zeros(hidden, np.float32))
        w2 = gc.variable("fc2/w", init=(rng.standard_normal((hidden, classes)) * 0.3).astype(np.float32))
        b2 = gc.variable("fc2/b", init=np.full(classes, 0.01, np.float32))
        logits = gc.relu(x @ w1 + b1) @ w2 + b2
        loss = gc.mean(gc.softmax_cross_entropy(logits, y))
        optimizer.minimize(loss, name="train")
        g.entry("eval", fetches=[logits, gc.argmax(logits, axis=1)])
    program = gc.compile(g, entries=["train", "eval"])

    def feeds(r, train):
        d = np.random.default_rng(100 + r)
        out = {"x": d.standard_normal((batch, n_in)).astype(np.float32)}
        if train:
            out["y"] = d.integers(0, classes, batch)
        return out
    return Model(key, program, _train_eval_calls(feeds), g)


def cnn_model(batch=4):
    """conv-bn-relu, a residual block, dropout, pooling and a linear head (tests/test_cnn_modes.py's
    CNN), SGD with Nesterov momentum and weight decay; 'eval' runs batch norm and dropout in
    their inference form."""
    rng = np.random.default_rng(0)

    def var(name, shape, scale=0.2):
        return gc.variable(name, init=(rng.standard_normal(shape) * scale).astype(np.float32))

    def bn(x, name, c):
        with gc.name_scope(name):
            rm = gc.variable("running_mean", init=np.zeros(c, np.float32), trainable=False)
            rv = gc.variable("running_var", init=np.ones(c, np.float32), trainable=False)
            w = gc.variable("weight", init=np.ones(c, np.float32))
            b = gc.variable("bias", init=np.zeros(c, np.float32))
            return gc.batch_norm(x, rm, rv, w, b)

    with gc.Graph() as g:
        x = gc.placeholder("x", (batch, 1, 8, 8))
        y = gc.placeholder("y", (batch,), dtype="int64")
        h = gc.relu(bn(gc.conv2d(x, var("stem/weight", (8, 1, 3, 3)), padding=1), "stem_bn", 8))
        r = gc.relu(bn(gc.conv2d(h, var("block/conv1/weight", (8, 8, 3, 3)), padding=1), "block_bn1", 8))
        r = bn(gc.conv2d(r, var("block/conv2/weight", (8, 8, 3, 3)), padding=1), "block_bn2", 8)
        h = gc.relu(r + h)
        h = gc.max_pool2d(gc.dropout(h, p=0.25, seed=7), 2)
        logits = gc.flatten(h) @ var("fc/weight", (8 * 4 * 4, 10))
        loss = gc.mean(gc.softmax_cross_entropy(logits, y))
        gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4).minimize(loss, name="train")
        g.entry("eval", fetches=[logits])
    program = gc.compile(g, entries=["train", "eval"])

    def feeds(r, train):
        d = np.random.default_rng(200 + r)
        out = {"x": d.standard_normal((batch, 1, 8, 8)).astype(np.float32)}
        if train:
            out["y"] = d.integers(0, 10, batch)
        return out
    return Model("cnn_momentum", program, _train_eval_calls(feeds), g)


def _example_module(name):
    import importlib.util
    path = os.path.join(ROOT, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"aot_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lm_model(key, module_cls, cfg, optimizer, batch=4):
    t, v = cfg["context"], cfg["vocab"]
    gc.nn.manual_seed(0)
    with gc.Graph() as g:
        x = gc.placeholder("x", (batch, t), dtype="int64")
        y = gc.placeholder("y", (batch, t), dtype="int64")
        logits = module_cls(cfg)(x)
        loss = gc.mean(gc.softmax_cross_entropy(gc.reshape(logits, (-1, v)), gc.reshape(y, (-1,))))
        optimizer.minimize(loss, name="train")
        g.entry("eval", fetches=[gc.topk(gc.reshape(logits, (-1, v)), 3, axis=-1)[1], loss])
    program = gc.compile(g, entries=["train", "eval"])

    def feeds(r, train):
        d = np.random.default_rng(300 + r)
        return {"x": d.integers(0, v, (batch, t)), "y": d.integers(0, v, (batch, t))}
    return Model(key, program, _train_eval_calls(feeds), g)


def gpt_model():
    """The examples' GPT (a pre-norm causal Transformer layer, GELU, attention dropout),
    tiny, trained by AdamW with global-norm gradient clipping."""
    cfg = dict(vocab=32, width=16, heads=2, layers=1, ffn=32, dropout=0.1, context=8)
    return _lm_model("gpt_adamw_clip", _example_module("train_gpt").GPT, cfg,
                     gc.optim.AdamW(1e-2, weight_decay=0.01, clip_global_norm=1.0))


def lstm_model():
    """The examples' character LSTM (two layers), tiny, trained by Adam with clipping."""
    cfg = dict(vocab=32, embed=8, hidden=16, layers=2, dropout=0.0, context=8)
    return _lm_model("lstm_adam_clip", _example_module("train_lstm_lm").CharLSTM, cfg,
                     gc.optim.Adam(1e-2, clip_global_norm=0.5))


def two_optimizers_model(m=8, k=6, n=5):
    """tests/test_program_session.py's program: 'train_a' (SGD momentum on w), 'train_b'
    (Adam on v) and 'infer' over shared variables, run interleaved."""
    rng = np.random.default_rng(0)
    with gc.Graph() as g:
        x = gc.placeholder("x", (m, k))
        t = gc.placeholder("t", (m, n))
        w = gc.variable("w", init=(rng.standard_normal((k, n)) * 0.3).astype(np.float32))
        v = gc.variable("v", init=(rng.standard_normal((n, n)) * 0.3).astype(np.float32))
        h = gc.matmul(x, w)
        y = gc.matmul(h, v)
        d_a, d_b = h - t, y - t
        gc.optim.SGD(lr=0.2, momentum=0.9).minimize(gc.mean(d_a * d_a), var_list=[w], name="train_a")
        gc.optim.Adam(lr=0.05).minimize(gc.mean(d_b * d_b), var_list=[v], name="train_b")
        g.entry("infer", fetches=[y])
    program = gc.compile(g, entries=["train_a", "train_b", "infer"])
    calls = []
    for r, entry in enumerate(["train_a", "infer", "train_b", "train_b", "train_a", "infer", "train_a", "infer"]):
        d = np.random.default_rng(400 + r)
        f = {"x": d.standard_normal((m, k)).astype(np.float32)}
        if entry != "infer":
            f["t"] = d.standard_normal((m, n)).astype(np.float32)
        calls.append((entry, f))
    return Model("two_optimizers", program, calls, g)


MODELS = {"every_op": every_op_model, "mlp_sgd": mlp_model, "cnn_momentum": cnn_model, "gpt_adamw_clip": gpt_model,
          "lstm_adam_clip": lstm_model, "two_optimizers": two_optimizers_model}
_models = {}
_artifacts = {}


def model(key):
    """The test model ``key`` (built once per process)."""
    with _lock:
        if key not in _models:
            _models[key] = MODELS[key]()
        return _models[key]


def artifact(key, embed_weights=False, kind="default"):
    """The built artifact of model ``key`` (once per process)."""
    m = model(key)
    k = (key, embed_weights, kind)
    if k not in _artifacts:
        out = os.path.join(tmp_root(), "art", f"{key}{'_embed' if embed_weights else ''}_{kind}")
        _artifacts[k] = build(m.source, out, embed_weights=embed_weights, kind=kind)
    return _artifacts[k]
