"""graphc.aot.sources: which runtime sources an AOT artifact ships, and shipping them in the wheel.

The link tests compile every runtime/cpu file, kernel_registry.cc and the AOT runtime once
(objects cached under build/test_aot_sources/ by a hash of the flags, the compiler and the
sources they include; ccache too when installed), then link, for every kernel file, ONLY the
objects select_sources picks for that file's ops with a tiny main calling its register
function: a missing companion or a missing include fails the link.
"""
import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import graphc
from graphc._load_blas import load_openblas
from graphc.aot import sources
from graphc.errors import AotError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = os.path.join(REPO, "runtime")
CXX = os.environ.get("CXX", "g++").split()

load_openblas()
from graphc import _runtime  # noqa: E402  (after OpenBLAS is loaded)


def kernel_rows():
    return _runtime.kernel_files()


def setup_compile_args():
    """The kernel flags of setup.py's cpu_extension(), read from its `compile_args = [...]`."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "compile_args"
                                                 for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no compile_args list")


def openblas():
    import scipy_openblas32
    return (scipy_openblas32.get_include_dir(), scipy_openblas32.get_lib_dir(),
            scipy_openblas32.get_library())


def aot_runtime_present():
    return all(os.path.isfile(os.path.join(RUNTIME, rel)) for rel in sources.AOT_RUNTIME_SOURCES)


def link_base():
    # Before the AOT runtime has landed on a branch only the core files can be linked; with it
    # (main), every artifact's full base is linked too.
    return sources.BASE_SOURCES if aot_runtime_present() else sources.CORE_SOURCES


# ------------------------------------------------------------------ the kernel file table


def test_every_op_is_registered_by_exactly_one_file():
    owner = {}
    for source, _register, ops in kernel_rows():
        assert ops == sorted(ops) and ops, source
        for op in ops:
            assert op not in owner, f"{op} registered by {owner[op]} and {source}"
            owner[op] = source
    assert sorted(owner) == _runtime.kernel_ops()
    for op, source in owner.items():
        assert sources.kernel_file_for_op(op) == "cpu/" + source


def test_rows_name_files_that_define_their_register_function():
    for source, register, _ops in kernel_rows():
        path = os.path.join(RUNTIME, "cpu", source)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert re.search(r"^void " + register + r"\(KernelRegistry& r\) \{", text, re.MULTILINE), \
            f"{source} does not define {register}"
    registers = [r for _s, r, _o in kernel_rows()]
    assert len(set(registers)) == len(registers)


def test_runtime_source_dir():
    """The installed copy after `pip install .` (CI), the source tree's runtime/ in an in-place
    build; either way the same files as runtime/."""
    installed = os.path.join(os.path.dirname(os.path.abspath(graphc.__file__)), "_runtime_src")
    want = installed if os.path.isdir(installed) else RUNTIME
    got = sources.runtime_source_dir()
    assert os.path.samefile(got, want)
    for rel in ("kernel_registry.cc", "aot/aot_runtime.cc", "cpu/matmul.cc"):
        with open(os.path.join(got, rel), "rb") as a, open(os.path.join(RUNTIME, rel), "rb") as b:
            assert a.read() == b.read(), rel


def test_runtime_source_dir_prefers_installed_copy(tmp_path):
    pkg = tmp_path / "site" / "graphc"
    (pkg / "_runtime_src").mkdir(parents=True)
    with pytest.raises(AotError, match="kernel_registry.cc"):
        sources.runtime_source_dir(str(pkg))
    (pkg / "_runtime_src" / "kernel_registry.cc").write_text("// x\n")
    assert sources.runtime_source_dir(str(pkg)) == str(pkg / "_runtime_src")


def test_unknown_op_is_a_typed_error():
    with pytest.raises(AotError, match="'no_such_op'"):
        sources.kernel_file_for_op("no_such_op")
    with pytest.raises(AotError, match="'no_such_op'"):
        sources.select_sources(["add", "no_such_op"], base=sources.CORE_SOURCES)
    with pytest.raises(AotError, match="collection"):
        sources.select_sources("add")


# ------------------------------------------------------------------ selection


def test_selection_of_add_and_matmul():
    got = sources.select_sources(["add", "matmul"], base=sources.CORE_SOURCES)
    assert got == sorted(set(got))
    for rel in got:
        assert os.path.isfile(os.path.join(RUNTIME, rel)), rel
    # the registering files, what they include (relative to cpu/ and via ../), companions
    for rel in ["cpu/elementwise.cc", "cpu/matmul.cc", "cpu/common.h", "cpu/thread_pool.h",
                "cpu/elementwise_loops.inc", "kernel_registry.h", "op_schema.h", "plan.h",
                "kernel_registry.cc", "cpu/gemm.h", "cpu/gemm.cc"]:
        assert rel in got, rel
    # files of ops not asked for stay out
    for rel in ["cpu/conv.cc", "cpu/attention.cc", "cpu/kernel_files.cc", "executor.cc",
                "validate.cc", "device.cc"]:
        assert rel not in got, rel
    assert sources.register_functions(got) == ["register_elementwise_kernels",
                                               "register_matmul_kernels"]


def test_register_functions_follow_the_table_order():
    everything = sources.select_sources(_runtime.kernel_ops(), base=sources.CORE_SOURCES)
    assert sources.register_functions(everything) == [r for _s, r, _o in kernel_rows()]
    assert sources.register_functions(["cpu/gemm.cc", "plan.h"]) == []


def test_every_artifact_lists_the_aot_runtime():
    # The AOT runtime's files are part of every selection; a missing one is an error that names
    # it, never silently skipped.
    if aot_runtime_present():
        got = sources.select_sources(["add"])
        assert set(sources.AOT_RUNTIME_SOURCES) <= set(got)
    else:
        missing = [r for r in sources.AOT_RUNTIME_SOURCES
                   if not os.path.isfile(os.path.join(RUNTIME, r))]
        with pytest.raises(AotError, match="|".join(re.escape(m) for m in missing)):
            sources.select_sources(["add"])


def copy_runtime(tmp_path):
    root = tmp_path / "runtime"
    shutil.copytree(RUNTIME, root, ignore=shutil.ignore_patterns("*.cpp", "*.pyx", "*.pxd",
                                                                 "__pycache__"))
    return root


def test_missing_companion_or_include_is_a_typed_error(tmp_path):
    root = copy_runtime(tmp_path)
    (root / "cpu" / "gemm_avx2.cc").unlink()
    with pytest.raises(AotError, match=r"cpu/gemm\.h: aot-sources file 'gemm_avx2\.cc'"):
        sources.select_sources(["matmul"], root=str(root), base=sources.CORE_SOURCES)
    (root / "cpu" / "pad.cc").write_text('#include "common.h"\n#include "no_such.h"\n')
    with pytest.raises(AotError, match=r"cpu/pad\.cc.*'no_such\.h'"):
        sources.select_sources(["pad"], root=str(root), base=sources.CORE_SOURCES)
    (root / "cpu" / "pad.cc").write_text('#include "../../escape.h"\n')
    with pytest.raises(AotError, match="escape"):
        sources.select_sources(["pad"], root=str(root), base=sources.CORE_SOURCES)


def test_companion_lines_are_followed(tmp_path):
    root = copy_runtime(tmp_path)
    (root / "cpu" / "extra_part.cc").write_text("// defines what pad.h declares\n")
    (root / "cpu" / "pad_helpers.h").write_text("#pragma once\n// aot-sources: extra_part.cc\n")
    (root / "cpu" / "pad.cc").write_text('#include "common.h"\n #  include "pad_helpers.h"\n')
    got = sources.select_sources(["pad"], root=str(root), base=sources.CORE_SOURCES)
    assert "cpu/pad_helpers.h" in got and "cpu/extra_part.cc" in got
    assert "cpu/extra_part.cc" not in sources.closure(["cpu/pad.cc"], str(root), companions=False)


# ------------------------------------------------------------------ every kernel file links alone


def compiler_id():
    try:
        out = subprocess.run(CXX + ["--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no C++ compiler {' '.join(CXX)!r}")
    return out.stdout


@pytest.fixture(scope="module")
def objects():
    """{runtime-relative .cc path: object file} for every runtime/cpu file, kernel_registry.cc
    and the AOT runtime's .cc files, with setup.py's kernel flags + -fPIC."""
    inc = openblas()[0]
    flags = setup_compile_args() + ["-fPIC", "-I" + RUNTIME, "-I" + inc]
    version = compiler_id()
    wanted = sorted(["kernel_registry.cc"]
                    + ["cpu/" + f for f in os.listdir(os.path.join(RUNTIME, "cpu")) if f.endswith(".cc")]
                    + [r for r in sources.AOT_RUNTIME_SOURCES
                       if r.endswith(".cc") and os.path.isfile(os.path.join(RUNTIME, r))])
    cache = os.path.join(REPO, "build", "test_aot_sources")
    os.makedirs(cache, exist_ok=True)
    launcher = ["ccache"] if shutil.which("ccache") else []

    def build(rel):
        h = hashlib.sha256((version + "\0" + " ".join(CXX + flags)).encode())
        for dep in sources.closure([rel], RUNTIME, companions=False):
            h.update(dep.encode() + b"\0")
            with open(os.path.join(RUNTIME, dep), "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        obj = os.path.join(cache, rel.replace("/", "__")[:-3] + "-" + h.hexdigest()[:20] + ".o")
        if not os.path.exists(obj):
            tmp = obj + f".tmp{os.getpid()}"
            cmd = launcher + CXX + flags + ["-c", os.path.join(RUNTIME, rel), "-o", tmp]
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, f"compiling {rel} failed:\n{res.stderr[-4000:]}"
            os.replace(tmp, obj)
        return rel, obj

    jobs = int(os.environ.get("GRAPHC_BUILD_JOBS", os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(pool.map(build, wanted))


MAIN = """\
#include <cstdio>
#include "kernel_registry.h"
int main() {
  graphc::KernelRegistry r;
  graphc::%s(r);
  for (const std::string& op : r.ops()) std::printf("%%s\\n", op.c_str());
  return 0;
}
"""


def link_alone(tmp_path, objects, register, selection):
    """Compile a main calling `register`, link it with the objects of `selection` only."""
    inc, libdir, lib = openblas()
    main = tmp_path / "main.cc"
    main.write_text(MAIN % register)
    flags = setup_compile_args() + ["-fPIC", "-I" + RUNTIME, "-I" + inc]
    objs = [objects[rel] for rel in selection if rel.endswith(".cc")]
    exe = str(tmp_path / "main")
    res = subprocess.run(CXX + flags + [str(main)] + objs
                         + ["-pthread", "-L" + libdir, "-l" + lib, "-Wl,-rpath," + libdir, "-o", exe],
                         capture_output=True, text=True)
    return res, exe


@pytest.mark.parametrize("row", range(len(kernel_rows())), ids=[s for s, _r, _o in kernel_rows()])
def test_each_kernel_file_links_with_only_its_selection(tmp_path, objects, row):
    source, register, ops = kernel_rows()[row]
    selection = sources.select_sources(ops, base=link_base())
    assert "cpu/" + source in selection
    assert sources.register_functions(selection) == [register]
    res, exe = link_alone(tmp_path, objects, register, selection)
    assert res.returncode == 0, f"{source} alone does not link:\n{res.stderr[-4000:]}"
    run = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ops


def test_link_fails_without_a_companion(tmp_path, objects):
    # The check above can fail: the matmul selection without gemm.h's companions does not link.
    [(source, register, ops)] = [r for r in kernel_rows() if r[0] == "matmul.cc"]
    selection = sources.select_sources(ops, base=link_base())
    dropped = [rel for rel in selection if re.fullmatch(r"cpu/gemm(_\w+)?\.cc", rel)]
    assert dropped
    res, _exe = link_alone(tmp_path, objects, register, [r for r in selection if r not in dropped])
    assert res.returncode != 0
    assert "gemm" in res.stderr


# ------------------------------------------------------------------ the wheel ships the sources


def test_build_py_ships_runtime_sources(tmp_path):
    out = tmp_path / "lib"
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    shipped = out / "graphc" / "_runtime_src"
    got = sorted(os.path.relpath(os.path.join(d, f), shipped).replace(os.sep, "/")
                 for d, _dirs, files in os.walk(shipped) for f in files)
    # Every C++ source of the runtime, except runtime/cuda/: an AOT artifact is CPU code
    # (graphc compile --emit c refuses a cuda plan), so the CUDA sources are not shipped for it.
    want = sorted(rel for rel in (os.path.relpath(os.path.join(d, f), RUNTIME).replace(os.sep, "/")
                                  for d, _dirs, files in os.walk(RUNTIME) for f in files
                                  if f.endswith((".h", ".cc", ".inc")))
                  if not rel.startswith(("cuda/", "mpi/")))
    assert got == want
    for rel in want:
        assert (shipped / rel).read_bytes() == open(os.path.join(RUNTIME, rel), "rb").read(), rel
    assert sources.runtime_source_dir(str(out / "graphc")) == str(shipped)
    # an artifact's selection works from the installed copy alone
    ops = _runtime.kernel_ops()
    assert (sources.select_sources(ops, root=str(shipped), base=link_base())
            == sources.select_sources(ops, base=link_base()))


def test_sdist_carries_the_runtime_sources(tmp_path):
    # A wheel built from the sdist must be able to ship them too (MANIFEST.in).
    import tarfile

    res = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    [archive] = list(tmp_path.glob("*.tar.gz"))
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    want = {os.path.relpath(os.path.join(d, f), REPO).replace(os.sep, "/")
            for d, _dirs, files in os.walk(RUNTIME) for f in files
            if f.endswith((".h", ".cc", ".inc", ".pyx", ".pxd"))}
    assert want <= names, sorted(want - names)
