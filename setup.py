"""Build graphc: the Python package and the graphc._runtime extension (C++17 + Cython).

    pip install .                       # wheel build; pulls Cython, numpy, scipy-openblas32
    python setup.py build_ext --inplace # dev build; then PYTHONPATH=. python -m pytest

Environment: GRAPHC_BUILD_JOBS (parallel compile jobs, default: CPU count); GRAPHC_SANITIZE=1
builds with AddressSanitizer + UndefinedBehaviorSanitizer (use tools/sanitize.sh).
CUDA kernels are built only when nvcc is found (see cuda_extensions()); none exist yet.
"""
import glob
import os
import shutil
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
        super().build_extensions()


# The runtime sources an AOT artifact (graphc compile --emit c) copies: installed as
# graphc/_runtime_src/ with runtime/'s layout (graphc/aot/sources.py reads them there).
RUNTIME_SOURCE_PATTERNS = ("*.h", "*.cc", "aot/*.h", "aot/*.cc", "aot/*.inc", "cpu/*.h", "cpu/*.cc",
                           "cpu/*.inc")


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
    ext = Extension(
        "graphc._runtime",
        sources=sources,
        # distutils compares only a source's own time with its object's: list the headers
        # so that a changed one (op_schema.h is regenerated) recompiles what includes it.
        depends=sorted(glob.glob("runtime/*.h") + glob.glob("runtime/cpu/*.h") + glob.glob("runtime/cpu/*.inc")),
        language="c++",
        include_dirs=["runtime", inc],
        library_dirs=[libdir],
        libraries=[lib],
        # The build-time OpenBLAS folder (an in-place dev build) and, for an installed wheel
        # (pip builds in a temporary environment that is gone afterwards), the
        # scipy_openblas32 package installed beside graphc: `import graphc._runtime` then
        # finds libscipy_openblas.so by itself, without graphc._load_blas's preload.
        runtime_library_dirs=[libdir, "$ORIGIN/../scipy_openblas32/lib"],
        # -O3 only: no -march, so wheels run on any x86-64.
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    return cythonize([ext], include_path=["runtime"], compiler_directives={"language_level": "3"})


def cuda_extensions():
    """Extensions built with nvcc: none until the CUDA runtime issue lands.

    Returns [] when nvcc is absent, so the package builds and runs on CPU everywhere.
    A CUDA build also defines GRAPHC_WITH_CUDA for runtime/device.cc (make_device,
    cuda_built); without it, Session(device="cuda") raises DeviceError "not built".
    """
    if shutil.which("nvcc") is None:
        return []
    return []


setup(
    packages=find_packages(include=["graphc", "graphc.*"]),
    package_data={"graphc": ["data/*"]},
    ext_modules=cpu_extension() + cuda_extensions(),
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
    zip_safe=False,
)
