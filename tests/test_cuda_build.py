"""The CUDA build, checked on machines without a GPU: the extension has no hard dependency on
the driver or NVIDIA's libraries (they are dlopened), CI compiles the CUDA sources, the CUDA
kernel files mirror the CPU ones, and setup.py's GRAPHC_CUDA switch does what it says."""

import ast
import glob
import os
import re
import shutil
import struct

import pytest

from graphc import _runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- ELF: the DT_NEEDED entries of a shared object, without readelf or pyelftools ----------------

def elf_needed(path):
    """The DT_NEEDED names of the ELF shared object at ``path``, in file order.
    ValueError when it is not a 64-bit little-endian ELF file with a dynamic section."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise ValueError(f"{path}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for i in range(e_shnum):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize
        sections.append(struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize))
    dynamic = [s for s in sections if s[1] == 6]  # SHT_DYNAMIC
    if not dynamic:
        raise ValueError(f"{path}: no dynamic section")
    _, _, _, _, offset, size, link, _, _, entsize = dynamic[0]
    strtab = sections[link]
    str_off, str_size = strtab[4], strtab[5]
    names = []
    for pos in range(offset, offset + size, entsize or 16):
        tag, val = struct.unpack_from("<qQ", data, pos)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            if val >= str_size:
                raise ValueError(f"{path}: DT_NEEDED string offset {val} outside .dynstr")
            end = data.index(b"\0", str_off + val)
            names.append(data[str_off + val:end].decode())
    return names


FORBIDDEN = re.compile(r"^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|nvrtc|nvJitLink)\.so", re.IGNORECASE)


def test_elf_parser_agrees_with_readelf():
    path = _runtime.__file__
    needed = elf_needed(path)
    assert any(n.startswith("libc.so") for n in needed), needed  # the parser found real entries
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf is not installed: the parser was checked against libc only")
    import subprocess
    out = subprocess.run([readelf, "-d", path], check=True, capture_output=True, text=True).stdout
    assert needed == re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def test_extension_needs_no_cuda_library():
    """libcuda comes with the driver, cuBLAS/cuDNN from the optional wheels: the extension must
    import without any of them (CUDA runtime static, libraries dlopened at Session creation)."""
    needed = elf_needed(_runtime.__file__)
    bad = [n for n in needed if FORBIDDEN.match(n)]
    assert not bad, f"graphc._runtime has hard dependencies on {bad} (cuda_built()={_runtime.cuda_built()})"


def test_forbidden_pattern_catches_the_libraries():
    for name in ("libcuda.so.1", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcudnn.so.9",
                 "libcudnn_graph.so.9"):
        assert FORBIDDEN.match(name), name
    for name in ("libc.so.6", "libscipy_openblas.so", "libstdc++.so.6", "libm.so.6"):
        assert not FORBIDDEN.match(name), name


def test_ci_builds_cuda_when_nvcc_is_present():
    """CI compiles runtime/cuda/ on every run so that it never rots (the CI machines have nvcc)."""
    if not os.environ.get("CI"):
        pytest.skip("CI is not set: a developer build may leave CUDA out")
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("no nvcc on this CI machine")
    if os.environ.get("GRAPHC_CUDA", "").strip() == "0":
        pytest.skip("GRAPHC_CUDA=0 was set for this build")
    assert _runtime.cuda_built(), "CI found nvcc but graphc was built without CUDA (see setup.py's build log)"


# --- runtime/cuda mirrors runtime/cpu -----------------------------------------------------------

ROW = re.compile(r'\{\s*"(\w+)\.(cc|cu)"\s*,\s*"(register_\w+)"\s*,\s*(register_\w+)\s*\}')


def _table(path):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    rows = ROW.findall(text)
    assert rows, f"no kernel file rows found in {path}"
    for stem, _, name, fn in rows:
        assert name == fn, f"{path}: row {stem} names {name} but registers {fn}"
    return [(stem, ext, name) for stem, ext, name, _ in rows]


def test_cuda_kernel_files_mirror_the_cpu_ones():
    cpu = _table("runtime/cpu/kernel_files.cc")
    cuda = _table("runtime/cuda/kernel_files.cc")
    assert {e for _, e, _ in cpu} == {"cc"} and {e for _, e, _ in cuda} == {"cu"}
    assert [(s, n) for s, _, n in cuda] == [(s, n) for s, _, n in cpu]
    with open(os.path.join(ROOT, "runtime/cuda/kernel_files.h")) as f:
        header = f.read()
    for stem, _, name in cuda:
        src = os.path.join(ROOT, "runtime", "cuda", stem + ".cu")
        assert os.path.isfile(src), f"runtime/cuda/kernel_files.cc lists {stem}.cu, which does not exist"
        with open(src) as f:
            body = f.read()
        assert re.search(rf"\bvoid\s+{name}\s*\(\s*KernelRegistry\s*&", body), f"{stem}.cu does not define {name}"
        assert re.search(rf"\bvoid\s+{name}\s*\(", header), f"kernel_files.h does not declare {name}"


def test_every_register_function_of_a_cu_file_is_in_the_table():
    """A .cu whose register function is missing from the table would compile but register nothing."""
    listed = {stem for stem, _, _ in _table("runtime/cuda/kernel_files.cc")}
    for src in sorted(glob.glob(os.path.join(ROOT, "runtime", "cuda", "*.cu"))):
        stem = os.path.basename(src)[:-3]
        with open(src) as f:
            defines = re.findall(r"\bvoid\s+(register_\w+_kernels)\s*\(\s*KernelRegistry\s*&\s*\w*\s*\)\s*\{", f.read())
        if defines:
            assert stem in listed, f"runtime/cuda/{stem}.cu defines {defines} but kernel_files.cc has no row for it"


# --- setup.py's cuda_config(), without running setup() -----------------------------------------

def _setup_functions():
    """setup.py's module-level imports and function definitions, executed without its setup()
    call (which would build the extension)."""
    path = os.path.join(ROOT, "setup.py")
    if not os.path.exists(path):
        pytest.skip("setup.py is not in this checkout")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    keep = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))]
    namespace = {"__file__": path, "__name__": "graphc_setup_under_test"}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)  # noqa: S102
    return namespace


def test_graphc_cuda_0_leaves_cuda_out(monkeypatch):
    setup = _setup_functions()
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("GRAPHC_CUDA", "0")
    assert setup["cuda_config"]() is None


def test_graphc_cuda_1_without_nvcc_fails_saying_so(monkeypatch):
    setup = _setup_functions()
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("GRAPHC_CUDA", "1")
    monkeypatch.delenv("NVCC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if "nvcc" in str(p) else real_exists(p))
    with pytest.raises(SystemExit, match="GRAPHC_CUDA=1 but nvcc was not found"):
        setup["cuda_config"]()
    monkeypatch.setenv("GRAPHC_CUDA", "")
    assert setup["cuda_config"]() is None  # unset: a CPU build, quietly


def test_graphc_cuda_1_with_a_missing_nvcc_file_fails_saying_so(monkeypatch, tmp_path):
    setup = _setup_functions()
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("GRAPHC_CUDA", "1")
    monkeypatch.setenv("NVCC", str(tmp_path / "no-such-nvcc"))
    with pytest.raises(SystemExit, match="is not an executable"):
        setup["cuda_config"]()


def test_cuda_config_flags_when_nvcc_is_here(monkeypatch):
    setup = _setup_functions()
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GRAPHC_CUDA", raising=False)
    monkeypatch.delenv("GRAPHC_CUDA_ARCHS", raising=False)
    cfg = setup["cuda_config"]()
    if cfg is None:
        pytest.skip("no CUDA toolkit with the cuBLASLt/cuDNN headers here: cuda_config() is None")
    flags = cfg["flags"]
    assert "-Werror" in flags and "all-warnings" in flags
    assert "-gencode=arch=compute_80,code=sm_80" in flags and "-gencode=arch=compute_90,code=sm_90" in flags
    assert "-gencode=arch=compute_90,code=compute_90" in flags  # PTX for newer GPUs
    assert cfg["sources"] == sorted(glob.glob("runtime/cuda/*.cu"))
    monkeypatch.setenv("GRAPHC_CUDA_ARCHS", "90")
    flags = setup["cuda_config"]()["flags"]
    assert not any("sm_80" in f for f in flags) and "-gencode=arch=compute_90,code=compute_90" in flags
