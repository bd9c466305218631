"""The NCCL communicator of data-parallel training on CUDA (runtime/cuda/nccl_comm.h, issue 17).

On any machine: the Python face (graphc._runtime.nccl_communicator and its argument checks, the
DeviceError of a build without CUDA/NCCL), the wheel folders searched (graphc._cuda_libs), and,
through tests/nccl_driver.cc (g++, plus nvcc for nccl_comm.cu), the C++ itself: the deterministic
sum's exchange simulated rank by rank, the library search and its messages (libnccl.so.2 loads
with no GPU), and create() over an in-process world of N ranks giving every rank the same
verdict.  On a GPU (tools/gpu_check.sh) the same tests reach ncclCommInitRank and a real
allreduce.
"""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from graphc import _cuda_libs, _runtime, errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "nccl_driver.cc")

NCCL_BUILT = _runtime.nccl_built()


# -- a host communicator for a world of one, in ctypes (graphc_comm of runtime/comm_abi.h) ------

_ERRARGS = (ctypes.c_char_p, ctypes.c_size_t)
PREPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_void_p, *_ERRARGS)
START = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                         ctypes.c_void_p, *_ERRARGS)
WAIT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, *_ERRARGS)
BCAST = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, *_ERRARGS)
GATHER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, *_ERRARGS)
BARRIER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *_ERRARGS)


class GraphcComm(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_int), ("rank", ctypes.c_int), ("size", ctypes.c_int),
                ("deterministic", ctypes.c_int), ("backend", ctypes.c_char_p), ("self", ctypes.c_void_p),
                ("prepare", PREPARE), ("allreduce_start", START), ("allreduce_wait", WAIT),
                ("broadcast", BCAST), ("allgather", GATHER), ("barrier", BARRIER)]


class WorldOfOne:
    """A host communicator of one rank: allgather copies, broadcast and barrier do nothing.
    Counts the calls, so a test sees that create() used the host's collectives."""
    backend = "test"

    def __init__(self, capsule_name=b"graphc.comm", abi_version=1):
        self.calls = []
        self._name = capsule_name  # the capsule keeps a pointer to these bytes
        self._fns = [PREPARE(lambda *a: 0), START(lambda *a: 0), WAIT(lambda *a: 0),
                     BCAST(self._bcast), GATHER(self._gather), BARRIER(self._barrier)]
        self.struct = GraphcComm(abi_version, 0, 1, 0, b"test", None, *self._fns)

    def _bcast(self, _self, data, nbytes, root, err, errlen):
        self.calls.append(("broadcast", nbytes, root))
        return 0

    def _gather(self, _self, send, nbytes, recv, err, errlen):
        self.calls.append(("allgather", nbytes))
        ctypes.memmove(recv, send, nbytes)
        return 0

    def _barrier(self, _self, err, errlen):
        self.calls.append(("barrier",))
        return 0

    @property
    def capsule(self):
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self.struct), self._name, None)


# -- the Python face --------------------------------------------------------------------------

def test_every_build_has_the_names():
    assert isinstance(NCCL_BUILT, bool)
    assert callable(_runtime.nccl_communicator) and callable(_runtime.nccl_load_library)
    if not _runtime.cuda_built():
        assert not NCCL_BUILT


def test_host_comm_must_be_a_host_communicator():
    with pytest.raises(TypeError, match="'capsule' attribute"):
        _runtime.nccl_communicator(object())

    class Nccl:
        backend = "nccl"
        capsule = None
    with pytest.raises(TypeError, match="host-memory communicator"):
        _runtime.nccl_communicator(Nccl())
    with pytest.raises(TypeError, match="PyCapsule named 'graphc.comm'"):
        _runtime.nccl_communicator(WorldOfOne(capsule_name=b"graphc.other"))
    with pytest.raises(TypeError, match="ABI version 99"):
        _runtime.nccl_communicator(WorldOfOne(abi_version=99))


def test_timeout_is_checked_before_anything_collective(monkeypatch):
    host = WorldOfOne()
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match=r"timeout must be a number of seconds > 0 \(inf: no timeout\)"):
            _runtime.nccl_communicator(host, timeout=bad)
    monkeypatch.setenv("GRAPHC_COMM_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="GRAPHC_COMM_TIMEOUT must be a number of seconds, got 'soon'"):
        _runtime.nccl_communicator(host)
    assert host.calls == []


@pytest.mark.skipif(NCCL_BUILT, reason="this build has the NCCL communicator")
def test_a_build_without_nccl_says_so():
    with pytest.raises(errors.DeviceError, match="NCCL") as e:
        _runtime.nccl_communicator(WorldOfOne())
    assert "not built with CUDA" in str(e.value) or "without NCCL's header" in str(e.value)
    with pytest.raises(errors.DeviceError, match="NCCL"):
        _runtime.nccl_communicator(WorldOfOne(), timeout=float("inf"))  # inf: accepted (no timeout)
    with pytest.raises(errors.DeviceError, match="NCCL"):
        _runtime.nccl_load_library()


@pytest.mark.skipif(not NCCL_BUILT, reason="this graphc was built without CUDA+NCCL")
def test_a_world_of_one_through_the_extension():
    """No GPU: a CommError naming it, after the host's allgather (every rank's verdict).  A GPU:
    a working 1-rank communicator whose allreduce (both modes) is the identity."""
    host = WorldOfOne()
    try:
        comm = _runtime.nccl_communicator(host, timeout=20)
    except errors.CommError as e:
        assert str(e).startswith("rank 0: cannot make the NCCL communicator: rank 0: "), e
        assert "no usable CUDA device" in str(e) or "NCCL (libnccl.so.2) was not found" in str(e)
        assert ("allgather", ctypes.sizeof(ctypes.c_int) * 2 + 64 + 32 + 384) in host.calls
        return
    assert (comm.rank, comm.size, comm.backend) == (0, 1, "nccl")
    if hasattr(_runtime, "comm_info"):  # the runtime's view through the capsule (COMM)
        assert _runtime.comm_info(comm) == {"rank": 0, "size": 1, "deterministic": False, "backend": "nccl"}
    x = np.arange(1000, dtype=np.float32) * 0.5
    np.testing.assert_array_equal(comm.allreduce(x.copy()), x)
    det = _runtime.nccl_communicator(WorldOfOne(), deterministic=True, timeout=20)
    for dt in (np.float32, np.float64, np.int32, np.int64):
        y = (np.arange(4097) - 7).astype(dt)
        np.testing.assert_array_equal(det.allreduce(y.copy()), y)
    with pytest.raises(TypeError, match="float32, float64, int32 or int64"):
        comm.allreduce(np.zeros(3, np.float16))


@pytest.mark.skipif(not NCCL_BUILT, reason="this graphc was built without CUDA+NCCL")
def test_nccl_loads_from_the_wheel_through_the_extension():
    dirs = _cuda_libs.library_dirs()
    if not any(os.path.exists(os.path.join(d, "libnccl.so.2")) for d in dirs):
        pytest.skip("the nvidia-nccl-cu13 wheel is not installed")
    info = _runtime.nccl_load_library()
    assert info["version"] // 10000 == 2
    assert info["path"] in [os.path.join(d, "libnccl.so.2") for d in dirs]


def test_library_dirs_include_the_nccl_wheel(tmp_path):
    a = tmp_path / "a"
    for d in (a / "cu13" / "lib", a / "nccl" / "lib", a / "nccl" / "include"):
        d.mkdir(parents=True)
    assert _cuda_libs.library_dirs([str(a)]) == [str(a / "cu13" / "lib"), str(a / "nccl" / "lib")]


# -- the C++ through tests/nccl_driver.cc -----------------------------------------------------

def _cxx():
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the NCCL test driver cannot be built")
    return cxx


def _run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def plan_driver(tmp_path_factory):
    """The driver without CUDA: nccl_comm.h's index math, and its "not built" answers."""
    exe = str(tmp_path_factory.mktemp("nccl_cpu") / "nccl_driver")
    _run([_cxx(), "-O2", "-std=c++17", "-pthread", "-Wall", "-Werror", "-I", os.path.join(ROOT, "runtime"), DRIVER,
          os.path.join(ROOT, "runtime", "device.cc"), "-o", exe])
    return exe


def _cuda_toolkit():
    """(nvcc, include dir, lib dir with libcudart_static.a, [nccl/cuBLAS/cuDNN include dirs]) or skip."""
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA build of the NCCL driver needs the CUDA toolkit")
    home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    if not os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
        home = "/usr/local/cuda"
    inc = os.path.join(home, "include")
    lib = next((d for d in (os.path.join(home, "lib64"), os.path.join(home, "targets", "x86_64-linux", "lib"))
                if os.path.isfile(os.path.join(d, "libcudart_static.a"))), None)
    if lib is None:
        pytest.skip(f"libcudart_static.a not found under {home}")
    extra = [d for d in os.environ.get("GRAPHC_CUDA_LIB_INCLUDE", "").split(os.pathsep) if d]
    search = extra + [os.path.join(r, sub, "include") for r in _cuda_libs.nvidia_roots()
                      for sub in ("cu13", "cublas", "cudnn", "nccl")] + [inc, "/usr/include"]
    found = {}
    for header in ("nccl.h", "cublasLt.h", "cudnn.h"):
        d = next((d for d in search if os.path.isfile(os.path.join(d, header))), None)
        if d is None:
            pytest.skip(f"{header} not found (pip install nvidia-nccl-cu13 nvidia-cublas nvidia-cudnn-cu13)")
        found[header] = d
    return nvcc, inc, lib, sorted(set(found.values()))


@pytest.fixture(scope="module")
def nccl_driver(tmp_path_factory):
    """The driver linked with the real communicator: nccl_comm.cc and libs.cc (g++ in a CUDA
    build's configuration), nccl_comm.cu (nvcc), device.cc (CPU: the library folders), cudart."""
    cxx = _cxx()
    nvcc, inc, lib, lib_inc = _cuda_toolkit()
    out = tmp_path_factory.mktemp("nccl_cuda")
    incs = ["-I" + os.path.join(ROOT, "runtime"), "-I" + inc] + ["-I" + d for d in lib_inc]
    flags = ["-O1", "-std=c++17", "-pthread", "-Wall", "-Werror", "-DGRAPHC_WITH_CUDA"] + incs
    objs = []
    for src in ("tests/nccl_driver.cc", "runtime/cuda/nccl_comm.cc", "runtime/cuda/libs.cc"):
        obj = str(out / (os.path.basename(src) + ".o"))
        _run([cxx, *flags, "-c", os.path.join(ROOT, src), "-o", obj])
        objs.append(obj)
    obj = str(out / "device_cpu.o")
    _run([cxx, "-O1", "-std=c++17", "-pthread", "-Wall", "-Werror", "-I" + os.path.join(ROOT, "runtime"), "-c",
          os.path.join(ROOT, "runtime", "device.cc"), "-o", obj])
    objs.append(obj)
    obj = str(out / "nccl_comm_cu.o")
    _run([nvcc, "-std=c++17", "-O1", "-DGRAPHC_WITH_CUDA", "-Werror", "all-warnings", "-Xcompiler=-Wall,-Werror",
          *incs, "-gencode=arch=compute_90,code=sm_90", "-c", os.path.join(ROOT, "runtime", "cuda", "nccl_comm.cu"),
          "-o", obj])
    objs.append(obj)
    exe = str(out / "nccl_driver")
    _run([cxx, "-pthread", *objs, "-L" + lib, "-lcudart_static", "-ldl", "-lrt", "-o", exe])
    return exe


def test_deterministic_exchange_is_the_rank_order_sum(plan_driver):
    """1..7 ranks, 13 sizes (0, 1, fewer elements than ranks, odd, 4097), float32/float64/int64:
    the chunks tile the bucket, every recv meets a send of its size, and after the ordered sum
    and the allgather every rank holds ((x0 + x1) + x2) ... bit for bit."""
    out = _run([plan_driver, "plan"])
    assert out.strip() == "ok 91 cases"


def test_the_cpu_driver_says_nccl_is_not_built(plan_driver):
    out = _run([plan_driver, "load"])
    assert out.startswith("error=data-parallel training on device 'cuda' needs NCCL, and this graphc was not built "
                          "with CUDA")


def test_library_search_names_every_place_it_looked(nccl_driver, tmp_path):
    empty, bogus = tmp_path / "empty", tmp_path / "bogus"
    empty.mkdir()
    bogus.mkdir()
    (bogus / "libnccl.so.2").write_bytes(b"not an ELF file")
    out = _run([nccl_driver, "load", str(empty), str(bogus)]).strip()
    if out.startswith("error="):
        msg = out[len("error="):]
        assert msg.startswith("NCCL (libnccl.so.2) was not found; searched ")
        assert f"{empty}/libnccl.so.2 (no such file)" in msg
        assert f"{bogus}/libnccl.so.2 (" in msg
        assert msg.index(str(empty)) < msg.index(str(bogus)) < msg.index("the system library path (")
        assert "nvidia-nccl-cu13" in msg
        assert msg.endswith('pip install "graphc[cuda]"')
    else:  # the system has NCCL: never the bogus file
        assert "path=" in out and str(bogus) not in out


def test_nccl_loads_from_the_wheel_first(nccl_driver):
    dirs = _cuda_libs.library_dirs()
    wheel = [d for d in dirs if os.path.exists(os.path.join(d, "libnccl.so.2"))]
    if not wheel:
        pytest.skip("the nvidia-nccl-cu13 wheel is not installed")
    out = _run([nccl_driver, "load", *dirs]).strip()
    assert out.startswith(f"path={wheel[0]}/libnccl.so.2 version="), out
    assert int(out.rsplit("=", 1)[1]) // 10000 == 2


@pytest.mark.parametrize("size", [1, 3])
def test_every_rank_gets_the_same_verdict(nccl_driver, tmp_path, size):
    """create() over an in-process world: with no NCCL found, and with the wheel's (no GPU here;
    on a one-GPU machine every rank is on that GPU), every rank fails with the same message,
    prefixed by its own rank, before any NCCL init that would hang."""
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [[str(empty)]]
    wheel = [d for d in _cuda_libs.library_dirs() if os.path.exists(os.path.join(d, "libnccl.so.2"))]
    if wheel:
        cases.append(wheel)
    for dirs in cases:
        lines = _run([nccl_driver, "create", str(size), *dirs]).strip().splitlines()
        assert len(lines) == size, lines
        if size == 1 and dirs == wheel and lines[0] == "rank 0 code=0 ":
            continue  # a GPU: a working world of one
        verdicts = set()
        for r, line in enumerate(lines):
            head = f"rank {r} code=1 rank {r}: cannot make the NCCL communicator: "
            assert line.startswith(head), line
            verdicts.add(line[len(head):])
        assert len(verdicts) == 1, lines
        (v,) = verdicts
        if dirs != wheel and not os.path.exists("/usr/lib/x86_64-linux-gnu/libnccl.so.2"):
            assert v.startswith("rank 0: NCCL (libnccl.so.2) was not found; searched ")
        elif dirs == wheel:
            assert ("rank 0: no usable CUDA device: " in v or
                    ("ranks 0 and 1 both use GPU" in v and "CUDA_VISIBLE_DEVICES" in v)), v



# -- the build ----------------------------------------------------------------------------------

def test_the_extension_does_not_link_nccl():
    """libnccl.so.2 is dlopened when a data-parallel CUDA Session starts, never a DT_NEEDED."""
    from test_cuda_build import elf_needed
    needed = elf_needed(_runtime.__file__)
    assert needed and not [n for n in needed if n.startswith("libnccl")], needed


def test_cuda_config_takes_nccl_h_from_the_wheel(monkeypatch):
    from test_cuda_build import _setup_functions
    setup = _setup_functions()
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GRAPHC_CUDA", raising=False)
    cfg = setup["cuda_config"]()
    if cfg is None:
        pytest.skip("no CUDA toolkit with the cuBLASLt/cuDNN headers here: cuda_config() is None")
    with_nccl = [d for d in cfg["include_dirs"] if os.path.isfile(os.path.join(d, "nccl.h"))]
    roots = _cuda_libs.nvidia_roots()
    if any(os.path.isfile(os.path.join(r, "nccl", "include", "nccl.h")) for r in roots):
        assert with_nccl and with_nccl[0] in [os.path.join(r, "nccl", "include") for r in roots], cfg["include_dirs"]
        assert "-I" + with_nccl[0] in cfg["flags"]


def test_cuda_config_without_nccl_h_builds_cuda_and_says_so(monkeypatch, capsys):
    from test_cuda_build import _setup_functions
    setup = _setup_functions()
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GRAPHC_CUDA", raising=False)
    find = setup["_find_header"]
    setup["_find_header"] = lambda header, dirs: None if header == "nccl.h" else find(header, dirs)
    cfg = setup["cuda_config"]()
    if cfg is None:
        pytest.skip("no CUDA toolkit with the cuBLASLt/cuDNN headers here: cuda_config() is None")
    assert not [d for d in cfg["include_dirs"] if os.path.isfile(os.path.join(d, "nccl.h"))
                and "nccl" in os.path.basename(os.path.dirname(d))]
    err = capsys.readouterr().err
    assert "building CUDA without NCCL (no data-parallel training on CUDA): nccl.h was not found: " \
           "pip install nvidia-nccl-cu13" in err


# -- a data-parallel plan on "cuda", dry (no GPU) --------------------------------------------------

def _dp_plan(target):
    import graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 5))
        lab = gc.placeholder("lab", (None,), dtype="int64")
        w1 = gc.variable("w1", (5, 7), init=gc.init.xavier_uniform(seed=1))
        w2 = gc.variable("w2", (7, 3), init=gc.init.xavier_uniform(seed=2))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, lab)
        gc.optim.Adam(lr=1e-3).minimize(loss)
    try:
        return gc.compile(g, shapes={"x": (4, 5), "lab": (4,)}, target=target, data_parallel=2)
    except TypeError as e:
        if "data_parallel" in str(e):
            pytest.skip(f"gc.compile has no data_parallel= in this checkout (issue 17's PASS part): {e}")
        raise


@pytest.mark.skipif(not _runtime.cuda_built(), reason="graphc was built without CUDA: no CUDA registry to prepare")
@pytest.mark.parametrize("target", ["cuda", "cpu"])
def test_a_data_parallel_plan_prepares_on_cuda(target):
    """Every step of a 2-rank data-parallel training plan (its allreduce_start/wait steps
    included) passes the CUDA kernel factories' dry prepare (no communicator is touched: a dry
    prepare never calls comm->prepare)."""
    plan = _dp_plan(target)
    ops = [s.op for s in plan.proto.steps]
    assert "allreduce_start" in ops and "allreduce_wait" in ops, sorted(set(ops))
    _runtime.prepare_only(plan.proto, "cuda")


# -- over graphc._mpi under mpirun ----------------------------------------------------------------

def test_two_ranks_over_mpi_agree():
    """nccl_communicator over a real graphc._mpi.Communicator on 2 ranks.  Without a GPU (or NCCL,
    or CUDA) every rank raises the same error (after its own "rank r: " prefix) and none hangs in
    an init its peer never joins; with one GPU both are refused as sharing it; with two GPUs the
    sum of [1] and [2] is [3] on both, in both modes."""
    try:
        from mpirun import mpirun, require_mpi
    except ImportError as e:  # `python -P -m pytest` (tools/gpu_check.sh): the repository root is not on sys.path
        pytest.skip(f"tests/mpirun.py cannot be imported here: {e}")
    require_mpi()
    proc = mpirun("""
        import re
        import numpy as np
        from mpi4py import MPI
        from graphc import _mpi, _runtime, errors
        import os
        if os.environ.get("GRAPHC_TEST_NCCL_SPLIT_GPUS"):  # a 2-GPU machine: one GPU per rank
            os.environ["CUDA_VISIBLE_DEVICES"] = os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", "0")
        host = _mpi.Communicator(MPI.COMM_WORLD, timeout=30)
        for det in (False, True):
            try:
                c = _runtime.nccl_communicator(host, deterministic=det, timeout=30)
            except (errors.CommError, errors.DeviceError) as e:
                msg = re.sub(r"^rank [0-9]+: ", "", str(e))
                print(f"VERDICT {host.rank} {type(e).__name__}: {msg}", flush=True)
                break
            got = c.allreduce(np.full(7, host.rank + 1.0, np.float32))
            print(f"SUM {host.rank} {det} {got.tolist()}", flush=True)
    """, np=2, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("VERDICT", "SUM"))]
    verdicts = {ln.split(" ", 2)[2] for ln in lines if ln.startswith("VERDICT")}
    sums = [ln for ln in lines if ln.startswith("SUM")]
    if verdicts:
        assert len(lines) == 2 and len(verdicts) == 1, lines
        (v,) = verdicts
        if NCCL_BUILT:
            assert v.startswith("CommError: cannot make the NCCL communicator: "), v
            assert "no usable CUDA device" in v or "both use GPU" in v or "was not found" in v, v
        else:
            assert v.startswith("DeviceError: ") and "NCCL" in v, v
    else:
        assert sorted(sums) == sorted(f"SUM {r} {d} {[3.0] * 7}" for r in (0, 1) for d in (False, True)), sums
