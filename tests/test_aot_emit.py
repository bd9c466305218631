"""The AOT emitter (graphc/aot/emit.py, ``gc.emit_c``, ``graphc compile --emit c``).

Checked: every header macro against the plan it came from (sizes, layouts, feeds and fetches,
the memory report's lower bound and peak step, the plan's sha256), identifiers and their
collisions, exact literals (doubles, int64, strings with NUL and escapes: compiled by g++ and
printed back), determinism (two emits give byte-identical trees; no absolute paths in the .h/.cc),
a golden header of a hand-built plan (regenerate: GRAPHC_REGEN_GOLDEN=1), names, the CLI and its
errors, and one real build each with make and with cmake of a tiny training program whose C
driver's fetches and final variables equal a Session's byte for byte.  The broad parity tests
(every op, every optimizer, threads 1 and 2) are tests/test_aot_parity.py.

GRAPHC_AOT_OBJDIR=/some/dir shares the make build's runtime objects (the Makefile's OBJDIR) with the
other AOT test modules and between runs: the artifact is named "aotm" like theirs, so the kernels
compile once and a rerun compiles only the generated file.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from subproc import child_env

import graphc as gc
from graphc._proto import graphc_pb2 as pb
from graphc.aot import c_text
from graphc.aot.emit import emit_c
from graphc.errors import AotError
from graphc.plan import Plan, compute_memory_report
from graphc.program import build_program

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden", "aot_tiny.h")
GXX = shutil.which("g++") or shutil.which("c++")
M, K, N = 8, 6, 5
ITEMSIZE = {1: 4, 2: 8, 3: 4, 4: 8, 5: 1}


def _graph():
    rng = np.random.default_rng(0)
    with gc.Graph() as g:
        x = gc.placeholder("x", (M, K))
        t = gc.placeholder("t", (M, N))
        w = gc.variable("w", init=(rng.standard_normal((K, N)) * 0.3).astype(np.float32))
        b = gc.variable("b", (N,))
        y = gc.add(gc.matmul(x, w), b, name="y")
        d = y - t
        loss = gc.mean(d * d, name="loss")
    return g, y, loss


def _program():
    g, y, loss = _graph()
    train = gc.compile(g, train={"loss": loss, "optimizer": gc.optim.Adam(lr=0.05)})
    infer = gc.compile(g, train=False, fetches=[y])
    return build_program({"train": train, "infer": infer})


@pytest.fixture(scope="module")
def program():
    return _program()


def _defines(text):
    """{macro: value text} of a header's #define lines (the value without a trailing comment)."""
    out = {}
    for m in re.finditer(r"^#define (\w+)(?: (.*?))?(?:\s*/\*.*)?$", text, re.MULTILINE):
        out[m.group(1)] = (m.group(2) or "").strip()
    return out


def _uint(text):
    assert text.endswith("u"), text
    return int(text[:-1])


# -- header macros --------------------------------------------------------------------------------

def test_header_macros_are_the_plans_figures(program, tmp_path):
    res = emit_c(program, tmp_path / "out", name="mlp")
    text = open(res.header).read()
    d = _defines(text)
    assert d["MLP_ABI_VERSION"] == "1"
    assert d["MLP_PLAN_SHA256"] == '"' + hashlib.sha256(program.to_bytes()).hexdigest() + '"'
    assert d["MLP_ALIGNMENT"] == "64"
    assert _uint(d["MLP_ARENA_BYTES"]) == max(e.plan.arena_bytes for e in program.proto.entries)
    # State: every persistent tensor padded to 64; model variables (trainable + model state) vs
    # optimizer state (written by an OPTIMIZER step), as Session._model_variable_names splits them.
    by_opt = {e.plan.values[i].index for e in program.proto.entries for s in e.plan.steps
              if s.role == pb.OPTIMIZER for i in s.outputs if e.plan.values[i].storage == pb.PERSISTENT}
    pad = lambda n: (n + 63) // 64 * 64  # noqa: E731
    var = opt = 0
    for k, v in enumerate(program.persistent):
        nb = pad(len(v.init.raw_data))
        if v.trainable or k not in by_opt:
            var += nb
        else:
            opt += nb
    assert opt > 0 and var > 0  # Adam has moments and a step count
    assert _uint(d["MLP_VARIABLE_BYTES"]) == var
    assert _uint(d["MLP_OPTIMIZER_STATE_BYTES"]) == opt
    assert _uint(d["MLP_STATE_BYTES"]) == var + opt
    consts = {(t.dtype, tuple(t.dims), t.raw_data) for e in program.proto.entries for t in e.plan.constants}
    assert _uint(d["MLP_CONSTANT_BYTES"]) == sum(pad(len(c[2])) for c in consts)
    assert d["MLP_NUM_VARIABLES"] == str(len(program.persistent))
    assert d["MLP_NUM_ENTRIES"] == "2"
    assert [d[f"MLP_{s}"] for s in ("FLOAT32", "FLOAT64", "INT32", "INT64", "BOOL")] == ["1", "2", "3", "4", "5"]
    assert d["MLP_OK"] == "0" and d["MLP_E_ARGUMENT"] == "1" and d["MLP_E_STATE"] == "10"
    # The arena comment: the lower bound and peak step of the entry with the largest lower bound.
    reports = {e.name: compute_memory_report(e.plan) for e in program.proto.entries}
    entry = max(reports, key=lambda n: reports[n]["lower_bound_bytes"])
    r = reports[entry]
    node = program.entry_proto(entry).steps[r["peak_step"]].node
    assert (f"lower bound {r['lower_bound_bytes']} bytes; peak at step {r['peak_step']} ('{node}') of entry "
            f"'{entry}'") in text
    for k, e in enumerate(program.proto.entries):
        E = "MLP_" + e.name.upper()
        assert d[f"MLP_ENTRY_{e.name.upper()}"] == str(k)
        assert d[f"{E}_NUM_FEEDS"] == str(len(e.plan.feeds))
        assert d[f"{E}_NUM_FETCHES"] == str(len(e.plan.fetches))
        for what, idxs in (("FEED", e.plan.feeds), ("FETCH", e.plan.fetches)):
            for j, idx in enumerate(idxs):
                v = e.plan.values[idx]
                P = f"{E}_{what}_{c_text.macro_id(v.name)}"
                assert d[P] == str(j)
                assert _uint(d[P + "_BYTES"]) == v.nbytes == int(np.prod(v.dims)) * ITEMSIZE[v.dtype]
                assert d[P + "_DTYPE"] == "MLP_" + {1: "FLOAT32", 2: "FLOAT64", 3: "INT32", 4: "INT64",
                                                     5: "BOOL"}[v.dtype]
                assert d[P + "_NDIM"] == str(len(v.dims))
                assert d[P + "_SHAPE"] == "{" + (", ".join(map(str, v.dims)) or "0") + "}"
    assert d["MLP_TRAIN_FEED_X_SHAPE"] == "{8, 6}"
    for fn in ("create", "destroy", "last_error", "load_weights", "load_weights_from_memory", "load_embedded_weights",
               "run", "run_train", "run_infer", "read_variable", "write_variable", "variable_info",
               "save_checkpoint", "load_checkpoint"):
        assert re.search(rf"\bmlp_{fn}\(", text), fn


def test_header_is_c89(program, tmp_path):
    """The header compiles as strict C89 and as C++ (no // comments, no C99-only syntax
    beyond <stdint.h>)."""
    if GXX is None or shutil.which("gcc") is None:
        pytest.skip("no C/C++ compiler")
    res = emit_c(program, tmp_path / "out", name="mlp")
    src = tmp_path / "use.c"
    src.write_text('#include "mlp.h"\nint main(void) { static const long s[] = MLP_TRAIN_FEED_X_SHAPE;\n'
                   '  mlp_context* c = 0; return (int)(s[0] + MLP_NUM_ENTRIES) + (c != 0); }\n')
    for cmd in (["gcc", "-std=c89", "-pedantic-errors", "-Wall", "-Werror", "-Wno-long-long"],
                [GXX, "-x", "c++", "-std=c++17", "-Wall", "-Werror"]):
        r = subprocess.run(cmd + ["-fsyntax-only", "-I", res.out_dir, str(src)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


# -- identifiers and names --------------------------------------------------------------------------

def test_identifiers_and_collisions():
    assert c_text.macro_id("dense/w:0") == "DENSE_W_0"
    assert c_text.unique_ids(["a.b", "a_b", "A-B", "x", "a_b_2"]) == ["A_B", "A_B_2", "A_B_3", "X", "A_B_2_2"]
    assert c_text.unique_ids(["é"]) == ["_"]


def test_feed_and_entry_collisions_get_numbered(tmp_path):
    with gc.Graph() as g:
        a = gc.placeholder("in.1", (2,))
        b = gc.placeholder("in_1", (2,))
        y = gc.add(a, b, name="y")
    plans = {"run.a": gc.compile(g, fetches=[y]), "run_a": gc.compile(g, fetches=[y])}
    res = emit_c(build_program(plans), tmp_path / "o", name="coll")
    text = open(res.header).read()
    d = _defines(text)
    assert d["COLL_ENTRY_RUN_A"] == "0" and d["COLL_ENTRY_RUN_A_2"] == "1"
    assert d["COLL_RUN_A_FEED_IN_1"] == "0" and d["COLL_RUN_A_FEED_IN_1_2"] == "1"
    assert "/* 'in.1' float32 (2,) */" in text and "/* 'in_1' float32 (2,) */" in text
    assert "coll_run_run_a_2(" in text
    defined = re.findall(r"^#define (\w+)", text, re.MULTILINE)
    others = [m for m in defined if m != "COLL_API"]
    assert len(others) == len(set(others)) and defined.count("COLL_API") == 2   # COLL_API: #if / #else


@pytest.mark.parametrize("bad", ["", "Mlp", "1mlp", "m-lp", "int", "graphc", "a" * 65, 7])
def test_bad_names_are_refused(program, tmp_path, bad):
    with pytest.raises(AotError, match="artifact name"):
        emit_c(program, tmp_path / "o", name=bad)
    assert not (tmp_path / "o").exists()


def test_names_from_file_stems(program, tmp_path):
    assert c_text.name_from_stem("My-Model.v2") == "my_model_v2"
    assert c_text.name_from_stem("2layer") == "m2layer"
    assert c_text.name_from_stem("int") == "int_model"
    assert c_text.name_from_stem("...") == "model"
    path = tmp_path / "Digits-MLP.program"
    program.save(path)
    res = emit_c(str(path), tmp_path / "o")
    assert res.name == "digits_mlp" and os.path.basename(res.header) == "digits_mlp.h"
    assert emit_c(program, tmp_path / "o2").name == "model"


def test_non_cpu_plans_and_other_objects_are_refused(program, tmp_path):
    proto = pb.Program()
    proto.CopyFrom(program.proto)
    for e in proto.entries:
        e.plan.target = "cuda"
    with pytest.raises(AotError, match="target 'cuda'"):
        emit_c(gc.Program(proto), tmp_path / "o")
    with pytest.raises(AotError, match="gc.Plan, a gc.Program"):
        emit_c(object(), tmp_path / "o")


# -- literals ---------------------------------------------------------------------------------------

DOUBLES = [0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1e-300,
           float("inf"), float("-inf"), float("nan"), -float("nan"),
           np.frombuffer(np.uint64(0x7FF8000000000123).tobytes(), np.float64)[0],   # quiet NaN, payload
           np.frombuffer(np.uint64(0x7FF0000000000042).tobytes(), np.float64)[0]]   # signalling NaN
INTS = [0, 1, -1, 2 ** 31, -(2 ** 31) - 1, 2 ** 63 - 1, -(2 ** 63), 1234567890123]
STRINGS = [b"", b"plain", b"a\0b", b"\x01" + b"23", b"\x7f9", b'q"uote\\back?slash??=', "héllo→".encode(),
           bytes(range(256))]


def test_literals_round_trip_through_the_compiler(tmp_path):
    if GXX is None:
        pytest.skip("no C++ compiler")
    lines = ["#include <cstdint>", "#include <cstdio>", "#include <cstring>", "int main() {"]
    for x in DOUBLES:
        lines.append(f"  {{ const double v = {c_text.double_literal(x)}; uint64_t b; std::memcpy(&b, &v, 8); "
                     f"std::printf(\"d %016llx\\n\", (unsigned long long)b); }}")
    for n in INTS:
        lines.append(f"  {{ const int64_t v = {c_text.int64_literal(n)}; std::printf(\"i %lld\\n\", (long long)v); }}")
    for s in STRINGS:
        lines.append(f"  {{ static const char v[] = {c_text.string_literal(s)}; std::printf(\"s %zu\", sizeof v - 1); "
                     f"for (size_t k = 0; k + 1 < sizeof v; ++k) std::printf(\" %02x\", (unsigned char)v[k]); "
                     f"std::printf(\"\\n\"); }}")
    lines.append("  return 0;\n}")
    src = tmp_path / "lit.cc"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "lit"
    r = subprocess.run([GXX, "-std=c++17", "-Wall", "-Werror", "-Wno-trigraphs", str(src), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    want = [f"d {np.float64(x).view(np.uint64):016x}" for x in DOUBLES]
    want += [f"i {n}" for n in INTS]
    want += [f"s {len(s)}" + "".join(f" {b:02x}" for b in s) for s in STRINGS]
    assert out == want


def test_int64_out_of_range_is_an_error():
    with pytest.raises(AotError):
        c_text.int64_literal(2 ** 63)


def test_comments_cannot_be_broken_out_of():
    s = c_text.comment_text("a */ b /* c \\\nd\u2192")
    assert "*/" not in s and "/*" not in s and "\n" not in s and not s.endswith("\\")
    assert c_text.quoted("x\\").endswith("'") and not c_text.comment_text("x\\").endswith("\\")


# -- determinism and the golden header --------------------------------------------------------------

def _tree(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def test_emit_is_deterministic(tmp_path):
    a = emit_c(_program(), tmp_path / "a", name="mlp")
    b = emit_c(_program(), tmp_path / "b", name="mlp")   # compiled again from scratch
    ta, tb = _tree(a.out_dir), _tree(b.out_dir)
    assert sorted(ta) == sorted(a.files) == sorted(tb)
    assert ta == tb
    for f in ("mlp.h", "mlp.cc"):
        assert str(tmp_path).encode() not in ta[f] and b"/tmp" not in ta[f]
    # Emitting again into the same folder changes no file (make rebuilds nothing).
    before = {f: os.stat(os.path.join(a.out_dir, f)).st_mtime_ns for f in ta if not f.endswith(".weights")}
    emit_c(_program(), tmp_path / "a", name="mlp")
    assert {f: os.stat(os.path.join(a.out_dir, f)).st_mtime_ns for f in before} == before
    # Another plan emitted over it (with and then without embedded weights) leaves the tree a
    # fresh emit of that plan gives: no stale runtime source, no stale .S.
    emit_c(_tiny_plan(), tmp_path / "a", name="mlp", embed_weights=True)
    emit_c(_tiny_plan(), tmp_path / "a", name="mlp")
    fresh = emit_c(_tiny_plan(), tmp_path / "c", name="mlp")
    assert _tree(a.out_dir) == _tree(fresh.out_dir)
    assert len(fresh.files) < len(a.files)


def _tiny_plan():
    """A hand-built plan (no compiler involved, so the golden header changes only when the
    emitter does): y = x + w, z = y * c (c a constant), fetches y and z."""
    p = pb.Plan(format_version=1, min_consumer_version=1, producer_name="golden", producer_version="0",
                target="cpu", arena_bytes=192)
    f32 = pb.FLOAT32
    p.values.add(name="x", dtype=f32, dims=[4], storage=pb.ARENA, offset=0, nbytes=16, kind="input")
    p.values.add(name="w", dtype=f32, dims=[4], storage=pb.PERSISTENT, index=0, nbytes=16)
    p.values.add(name="y", dtype=f32, dims=[4], storage=pb.ARENA, offset=64, nbytes=16, kind="activation")
    p.values.add(name="c", dtype=f32, dims=[4], storage=pb.CONSTANT, index=0, nbytes=16)
    p.values.add(name="z", dtype=f32, dims=[2, 2], storage=pb.ARENA, offset=128, nbytes=16, kind="activation")
    p.values.add(name="z:0 view", dtype=f32, dims=[4], storage=pb.VIEW, alias_of=4, nbytes=16)
    s = p.steps.add(op="add", node="y", inputs=[0, 1], outputs=[2])
    s.provenance.file, s.provenance.line = "/home/user/model.py", 12
    p.steps.add(op="mul", node="z", inputs=[2, 3], outputs=[4])
    p.feeds.extend([0])
    p.fetches.extend([2, 5])
    var = p.persistent.add(name="w", dtype=f32, dims=[4], trainable=True)
    var.init.dtype, var.init.dims[:] = f32, [4]
    var.init.raw_data = np.arange(4, dtype=np.float32).tobytes()
    c = p.constants.add(dtype=f32, dims=[4])
    c.raw_data = np.full(4, 0.5, np.float32).tobytes()
    return Plan(p)


def test_golden_header(tmp_path):
    """The header of a fixed hand-built plan is byte-stable.  After an intended change of the
    emitter, regenerate with GRAPHC_REGEN_GOLDEN=1 and review the diff."""
    res = emit_c(_tiny_plan(), tmp_path / "o", name="tiny")
    text = open(res.header).read()
    if os.environ.get("GRAPHC_REGEN_GOLDEN"):
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "w") as f:
            f.write(text)
    with open(GOLDEN) as f:
        assert text == f.read(), "the emitted header changed; if intended, rerun with GRAPHC_REGEN_GOLDEN=1"


def test_tables_of_the_tiny_plan(tmp_path):
    """The generated source: values (the view aliases its root), steps with where = the base
    name of the provenance file, the persistent and constant tables, the straight-line entry."""
    res = emit_c(_tiny_plan(), tmp_path / "o", name="tiny")
    src = open(res.source).read()
    assert '{"z:0 view", 1, 3, UINT64_C(0), UINT64_C(16), 0, 4, 1, d' in src
    assert '{"add", "y", "model.py:12", 2, ' in src and "/home/user" not in src
    assert '{"mul", "z", "", 2, ' in src
    assert "std::memcpy(A + 0, feeds[0], 16);" in src
    assert "c.at = 0; k[0]();" in src and "c.at = 1; k[1]();" in src
    assert "std::memcpy(fetches[1], A + 128, 16);" in src   # the view's root's bytes
    sha = hashlib.sha256(np.arange(4, dtype=np.float32).tobytes()).hexdigest()
    assert '{"w", 0, 1, 1, d' in src and f'"{sha}", 0}}' in src
    assert "graphc::register_elementwise_kernels(r);" in src


def test_edge_plan_compiles_warning_free(tmp_path):
    """0-byte feeds and fetches (no memcpy: a NULL pointer is allowed there), a scalar int64 feed,
    a bool feed fetched back, a variable fetched from state memory: the generated C++ compiles
    with -Wall -Wextra -Werror against the shipped runtime headers."""
    if GXX is None:
        pytest.skip("no C++ compiler")
    with gc.Graph() as g:
        x = gc.placeholder("x", (0, 3))
        s = gc.placeholder("s", (), dtype="int64")
        b = gc.placeholder("b", (2,), dtype="bool")
        w = gc.variable("w", init=np.ones((2, 2), np.float32))
        y = gc.mul(x, 2.0, name="y")
        z = gc.add(s, 1, name="z")
    plan = gc.compile(g, fetches=[w, y, z, b])
    res = emit_c(plan, tmp_path / "o", name="edge")
    src = open(res.source).read()
    assert "// feed 0 'x' float32 (0, 3): no bytes" in src and "// fetch 1 'y' float32 (0, 3): no bytes" in src
    w_off = 0   # the only persistent tensor
    assert f"std::memcpy(fetches[0], S + {w_off}, 16);" in src
    d = _defines(open(res.header).read())
    assert d["EDGE_MAIN_FEED_X_BYTES"] == "0u" and d["EDGE_MAIN_FEED_S_NDIM"] == "0"
    assert d["EDGE_MAIN_FEED_S_SHAPE"] == "{0}" and d["EDGE_MAIN_FEED_B_DTYPE"] == "EDGE_BOOL"
    r = subprocess.run([GXX, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Dgraphc=graphc_edge",
                        "-Igraphc", "-I.", "edge.cc"], cwd=res.out_dir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# -- the CLI ----------------------------------------------------------------------------------------

def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "graphc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=child_env(None), timeout=300)


def test_cli_emit_c(tmp_path):
    g, _, _ = _graph()
    g.save(str(tmp_path / "Tiny Model.pb"))
    r = _cli("compile", tmp_path / "Tiny Model.pb", "--emit", "c", "-o", tmp_path / "out", "--inference",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "C artifact 'tiny_model'" in r.stdout
    assert (tmp_path / "out" / "tiny_model.h").is_file() and (tmp_path / "out" / "Makefile").is_file()
    r = _cli("compile", tmp_path / "Tiny Model.pb", "--emit", "c", "-o", tmp_path / "out2", "--name", "tm",
             "--embed-weights", "--inference", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out2" / "tm_weights.S").is_file()
    assert "tm_graphc_weights_begin" in (tmp_path / "out2" / "tm.cc").read_text()
    # A program of the model's entry points.
    g, y, loss = _graph()
    with g:
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss, name="train")
        g.entry("infer", fetches=[y])
    g.save(str(tmp_path / "prog.pb"))
    r = _cli("compile", tmp_path / "prog.pb", "--entries", "all", "--emit", "c", "-o", tmp_path / "out3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "C artifact 'prog'" in r.stdout
    d = _defines((tmp_path / "out3" / "prog.h").read_text())
    assert d["PROG_ENTRY_TRAIN"] == "0" and d["PROG_ENTRY_INFER"] == "1" and d["PROG_NUM_ENTRIES"] == "2"
    # the momentum buffers of w (6, 5) and b (5,), float32, each padded to 64 bytes
    assert _uint(d["PROG_OPTIMIZER_STATE_BYTES"]) == 128 + 64


@pytest.mark.parametrize("args, needle", [
    (["--emit", "c"], "--emit c needs -o FOLDER"),
    (["--emit", "wasm", "-o", "x"], "unknown --emit 'wasm'"),
    (["--name", "m", "-o", "x.plan"], "--name applies to --emit c only"),
    (["--embed-weights", "-o", "x.plan"], "--embed-weights applies to --emit c only"),
    (["--emit", "c", "-o", "x", "--name", "Bad-Name"], "bad artifact name 'Bad-Name'"),
])
def test_cli_emit_errors(tmp_path, capsys, args, needle):
    from graphc.cli import main
    g, _, _ = _graph()
    g.save(str(tmp_path / "m.pb"))
    capsys.readouterr()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(["compile", str(tmp_path / "m.pb"), "--inference", *args])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


# -- real builds ------------------------------------------------------------------------------------

DRIVER = r"""
/* Runs train x3 then infer, writes every fetch and every variable to out/<k>.bin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mlp.h"

static void* block(size_t n) { return n ? aligned_alloc(MLP_ALIGNMENT, (n + 63) / 64 * 64) : NULL; }
static void* load(const char* path, size_t n) {
  void* p = malloc(n); FILE* f = fopen(path, "rb");
  if (!f || fread(p, 1, n, f) != n) { fprintf(stderr, "cannot read %s\n", path); exit(3); }
  fclose(f); return p;
}
static int k_out = 0;
static void dump(const char* dir, const void* p, size_t n) {
  char path[4096]; FILE* f; snprintf(path, sizeof path, "%s/%d.bin", dir, k_out++);
  f = fopen(path, "wb"); fwrite(p, 1, n, f); fclose(f);
}
#define CHECK(x) do { int st_ = (x); \
  if (st_) { fprintf(stderr, "%s: %d %s\n", #x, st_, mlp_last_error(ctx)); return 1; } } while (0)

int main(int argc, char** argv) {
  const char* dir = argv[1]; int embedded = atoi(argv[2]); int threads = atoi(argv[3]);
  mlp_context* ctx = NULL; char path[4096]; int step, i;
  void* arena = block(MLP_ARENA_BYTES); void* state = block(MLP_STATE_BYTES); void* consts = block(MLP_CONSTANT_BYTES);
  const void* feeds[2]; void* fetches[8]; float loss; float y[@M@ * @N@]; const void* ifeeds[1];
  if (mlp_create(&ctx, arena, MLP_ARENA_BYTES, state, MLP_STATE_BYTES, consts, MLP_CONSTANT_BYTES, threads)) {
    fprintf(stderr, "create: %s\n", mlp_last_error(NULL)); return 1;
  }
  if (embedded) CHECK(mlp_load_embedded_weights(ctx)); else CHECK(mlp_load_weights(ctx, "mlp.weights"));
  snprintf(path, sizeof path, "%s/x.bin", dir); feeds[MLP_TRAIN_FEED_X] = load(path, MLP_TRAIN_FEED_X_BYTES);
  snprintf(path, sizeof path, "%s/t.bin", dir); feeds[MLP_TRAIN_FEED_T] = load(path, MLP_TRAIN_FEED_T_BYTES);
  for (step = 0; step < 3; ++step) {
    for (i = 0; i < MLP_TRAIN_NUM_FETCHES; ++i) fetches[i] = NULL;
    fetches[0] = &loss;
    CHECK(mlp_run(ctx, MLP_ENTRY_TRAIN, feeds, fetches));
    dump(dir, &loss, sizeof loss);
  }
  fetches[MLP_INFER_FETCH_Y] = y;
  ifeeds[MLP_INFER_FEED_X] = feeds[MLP_TRAIN_FEED_X];
  CHECK(mlp_run_infer(ctx, ifeeds, fetches));
  dump(dir, y, MLP_INFER_FETCH_Y_BYTES);
  for (i = 0; i < MLP_NUM_VARIABLES; ++i) {
    const char* name; size_t nbytes; void* buf;
    CHECK(mlp_variable_info(ctx, i, &name, NULL, NULL, NULL, &nbytes));
    buf = malloc(nbytes ? nbytes : 1);
    CHECK(mlp_read_variable(ctx, name, buf, nbytes));
    dump(dir, buf, nbytes);
    free(buf);
  }
  if (mlp_run(ctx, 7, feeds, NULL) != MLP_E_ARGUMENT || !strstr(mlp_last_error(ctx), "7")) return 5;
  mlp_destroy(ctx);
  return 0;
}
""".replace("@M@", str(M)).replace("@N@", str(N))


def _session_reference(program, x, t, threads):
    sess = gc.Session(program, threads=threads)
    outs = []
    for _ in range(3):
        r = sess.run({"x": x, "t": t}, entry="train")
        outs.append(np.asarray(r[sess.fetch_names("train")[0]]).tobytes())
    r = sess.run({"x": x}, entry="infer")
    outs.append(np.asarray(r["y"]).tobytes())
    for v in program.persistent:
        outs.append(np.ascontiguousarray(sess.get_variable(v.name)).tobytes())
    return outs


def _build_env():
    env = child_env(None)
    if shutil.which("ccache"):
        env.setdefault("CXX", "ccache g++")
    return env


def _check_driver(program, out, exe, tmp_path, embedded, threads=1):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((M, K)).astype(np.float32)
    t = rng.standard_normal((M, N)).astype(np.float32)
    run_dir = tmp_path / f"run{embedded}{threads}"
    run_dir.mkdir()
    (run_dir / "x.bin").write_bytes(x.tobytes())
    (run_dir / "t.bin").write_bytes(t.tobytes())
    r = subprocess.run([str(exe), str(run_dir), str(int(embedded)), str(threads)], cwd=out, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    want = _session_reference(program, x, t, threads)
    got = [(run_dir / f"{k}.bin").read_bytes() for k in range(len(want))]
    assert got == want


# The artifact name of the make build: the one every AOT test module builds under (tests/aot_harness.py
# AOT_TEST_NAME), so with a shared GRAPHC_AOT_OBJDIR the runtime objects compile once per session.
AOT_TEST_NAME = "aotm"


@pytest.fixture(scope="module")
def objdir(tmp_path_factory):
    """GRAPHC_AOT_OBJDIR (the session's shared object folder) when set, else one of this module."""
    return os.environ.get("GRAPHC_AOT_OBJDIR") or str(tmp_path_factory.mktemp("aot_objects"))


@pytest.mark.skipif(shutil.which("make") is None or GXX is None, reason="needs make and a C++ compiler")
def test_make_build_runs_like_a_session(program, tmp_path, objdir):
    """--embed-weights artifact built with `make`; the C driver (built by `make programs`) trains
    3 steps and infers, from the weights file and from the embedded image, at threads 1 and 2:
    byte-identical to a Session of the same threads.  The shared library links no libpython."""
    train_fetch = program.plan("train").fetches
    assert train_fetch, "the train entry fetches its loss"
    n = AOT_TEST_NAME
    res = emit_c(program, tmp_path / "out", name=n, embed_weights=True)
    (tmp_path / "driver.c").write_text(DRIVER.replace("mlp", n).replace("MLP", n.upper()))
    jobs = os.environ.get("GRAPHC_BUILD_JOBS", "2")
    r = subprocess.run(["make", f"-j{jobs}", "all", "programs", f"PROGRAMS={tmp_path / 'driver.c'}",
                        f"OBJDIR={objdir}"], cwd=res.out_dir, capture_output=True, text=True, env=_build_env(),
                       timeout=1500)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    out = res.out_dir
    assert os.path.isdir(os.path.join(objdir, n, "openblas", "graphc", "cpu"))   # the shared runtime objects
    assert os.path.isfile(os.path.join(out, f"lib{n}.a")) and os.path.isfile(os.path.join(out, f"lib{n}.so"))
    for embedded, threads in ((False, 1), (True, 1), (True, 2)):
        _check_driver(program, out, os.path.join(out, "bin", "driver"), tmp_path, embedded, threads)
    if shutil.which("readelf"):
        so = os.path.join(out, f"lib{n}.so")
        dyn = subprocess.run(["readelf", "-d", so], capture_output=True, text=True).stdout
        assert "libpython" not in dyn
        syms = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True).stdout.split()
        exported = sorted(s for s in syms if s.startswith(f"{n}_"))
        assert f"{n}_create" in exported and f"{n}_run_train" in exported
        assert not [s for s in syms if "graphc" in s and "weights" in s]   # the image symbols are hidden


CONCAT_DRIVER = r"""
/* y = concat(x, w): run, write w := w + 1 through the API, run again; print both y. */
#include <stdio.h>
#include <stdlib.h>
#include "cat.h"

int main(void) {
  cat_context* ctx = NULL; float x[6] = {1, 2, 3, 4, 5, 6}, w[6], y[12]; int i, pass;
  const void* feeds[1]; void* fetches[1];
  void* arena = aligned_alloc(CAT_ALIGNMENT, CAT_ARENA_BYTES);
  void* state = aligned_alloc(CAT_ALIGNMENT, CAT_STATE_BYTES);
  if (cat_create(&ctx, arena, CAT_ARENA_BYTES, state, CAT_STATE_BYTES, NULL, 0, 1)) {
    fprintf(stderr, "%s\n", cat_last_error(NULL)); return 1;
  }
  if (cat_run_main(ctx, feeds, NULL) != CAT_E_STATE) return 2;   /* weights not loaded yet */
  if (cat_load_embedded_weights(ctx)) { fprintf(stderr, "%s\n", cat_last_error(ctx)); return 3; }
  feeds[CAT_MAIN_FEED_X] = x; fetches[CAT_MAIN_FETCH_Y] = y;
  for (pass = 0; pass < 2; ++pass) {
    if (cat_run(ctx, CAT_ENTRY_MAIN, feeds, fetches)) { fprintf(stderr, "%s\n", cat_last_error(ctx)); return 4; }
    for (i = 0; i < 12; ++i) printf("%a ", y[i]);
    printf("\n");
    if (cat_read_variable(ctx, "w", w, sizeof w)) return 5;
    for (i = 0; i < 6; ++i) w[i] += 1.0f;
    if (cat_write_variable(ctx, "w", w, sizeof w)) return 6;
  }
  if (cat_read_variable(ctx, "nope", w, sizeof w) != CAT_E_NOT_FOUND) return 7;
  cat_destroy(ctx);
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("cmake") is None or GXX is None, reason="needs cmake and a C++ compiler")
def test_cmake_build_runs_like_a_session(tmp_path):
    """A tiny artifact (one concat: the shape kernels only, so the build is short) with embedded
    weights, built with cmake; a C driver linked with the static library prints what a Session
    computes, before and after a variable write through the C API."""
    w0 = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    with gc.Graph() as g:
        x = gc.placeholder("x", (2, 3))
        w = gc.variable("w", init=w0)
        y = gc.concat([x, w], axis=0, name="y")
    plan = gc.compile(g, fetches=[y])
    assert {s.op for s in plan.steps} == {"concat"}
    res = emit_c(plan, tmp_path / "out", name="cat", embed_weights=True)
    assert _defines(open(res.header).read())["CAT_CONSTANT_BYTES"] == "0u"
    build = tmp_path / "cmbuild"
    env = _build_env()
    r = subprocess.run(["cmake", "-S", res.out_dir, "-B", str(build)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    r = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert (build / "libcat.a").is_file() and (build / "libcat.so").is_file()
    (tmp_path / "driver.c").write_text(CONCAT_DRIVER)
    exe = tmp_path / "driver"
    from graphc.aot.build_files import openblas_defaults
    _, libdir, lib = openblas_defaults()
    r = subprocess.run(["gcc", "-std=c11", "-O2", "-I", res.out_dir, "-c", str(tmp_path / "driver.c"), "-o",
                        str(tmp_path / "driver.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([GXX, "-pthread", "-o", str(exe), str(tmp_path / "driver.o"), str(build / "libcat.a"),
                        f"-L{libdir}", f"-l{lib}", f"-Wl,-rpath,{libdir}", "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    sess = gc.Session(plan)
    xv = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    want = []
    for _ in range(2):
        want.append(" ".join(float(v).hex() for v in sess.run({"x": xv})["y"].ravel()))
        sess.set_variable("w", sess.get_variable("w") + np.float32(1))
    got = [" ".join(float.fromhex(t).hex() for t in line.split()) for line in r.stdout.splitlines()]
    assert got == want
