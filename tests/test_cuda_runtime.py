"""The CUDA device layer as far as a machine without a GPU can check it: why device "cuda"
cannot open (cuda_status, the Session's DeviceError, the CLI), the dry prepare
(graphc._runtime.prepare_only), the search for NVIDIA's libraries, the GRAPHC_CUDA_* settings.
The kernels themselves run in tests/test_kernels.py etc. when a GPU is present."""

import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc import _cuda_libs, _runtime, errors
from graphc._proto import graphc_pb2 as pb
from graphc.graph import Graph
from graphc.session import Session

STATUS = _runtime.cuda_status()
NO_GPU = pytest.mark.skipif(STATUS == "", reason="device 'cuda' is usable here")
NEEDS_CUDA_BUILD = pytest.mark.skipif(not _runtime.cuda_built(), reason="graphc was built without CUDA")


def _mlp_plan():
    with Graph() as g:
        x = gc.placeholder("x", (None, 3))
        w = gc.variable("w", (3, 4), init=gc.init.xavier_uniform(seed=0))
        y = gc.relu(x @ w)
        s = gc.sum(y, axis=1)
    return gc.compile(g, shapes={"x": (2, 3)}, fetches=[y.name, s.name])


def _add_plan():
    """y = x + c (c a constant), v a VIEW of y."""
    p = pb.Plan(target="cpu", arena_bytes=128)
    p.values.add(name="x", dtype=pb.FLOAT32, dims=[2, 3], storage=pb.ARENA, offset=0, nbytes=24)
    p.values.add(name="c", dtype=pb.FLOAT32, dims=[3], storage=pb.CONSTANT, index=0, nbytes=12)
    p.values.add(name="y", dtype=pb.FLOAT32, dims=[2, 3], storage=pb.ARENA, offset=64, nbytes=24)
    p.values.add(name="v", dtype=pb.FLOAT32, dims=[6], storage=pb.VIEW, alias_of=2, nbytes=24)
    p.constants.add(dtype=pb.FLOAT32, dims=[3], raw_data=np.array([1, 2, 3], np.float32).tobytes())
    p.steps.add(op="add", node="plus", inputs=[0, 1], outputs=[2])
    p.feeds.append(0)
    p.fetches.extend([2, 3])
    return p


# -- why device "cuda" cannot open ------------------------------------------------------------

@NO_GPU
def test_cuda_status_says_why():
    assert STATUS.startswith("device 'cuda' is not available: ")
    if not _runtime.cuda_built():
        assert "not built with CUDA" in STATUS
    # Calling it again gives the same answer (nothing cached wrongly, nothing raised).
    assert _runtime.cuda_status() == STATUS


@NO_GPU
def test_session_on_cuda_raises_the_status_reason():
    plan = _mlp_plan()
    with pytest.raises(errors.DeviceError) as info:
        Session(plan, device="cuda")
    assert str(info.value) == STATUS
    with pytest.raises(errors.DeviceError) as info:
        _runtime.cuda_info()
    assert str(info.value) == STATUS


@NO_GPU
def test_cli_run_on_cuda_prints_the_reason(tmp_path, capsys):
    from graphc import cli

    plan = _mlp_plan()
    path = tmp_path / "m.plan"
    plan.save(path)
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    assert cli.main(["run", str(path), "--feed", f"x={tmp_path / 'x.npy'}", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and STATUS in err[0]


# -- the dry prepare --------------------------------------------------------------------------

def test_prepare_only_accepts_what_the_cpu_executor_accepts():
    plan = _mlp_plan()
    _runtime.prepare_only(plan.proto, "cpu")
    _runtime.prepare_only(_add_plan(), "cpu")
    # The real executor on the same plan runs it: the dry prepare did not refuse a good plan.
    Session(plan, threads=1).run({"x": np.ones((2, 3), np.float32)})


def test_prepare_only_names_the_step_a_factory_refuses():
    p = _add_plan()
    p.values[2].dims[:] = [3, 2]  # same bytes, a shape add cannot produce
    with pytest.raises(ValueError) as dry:
        _runtime.prepare_only(p, "cpu")
    assert str(dry.value).startswith("step 0 (node 'plus', op 'add'): ")
    # The same words as the executor's own prepare.
    with pytest.raises(ValueError) as real:
        _runtime.Executor(p, 1)
    assert str(dry.value) == str(real.value)

    p = _add_plan()
    p.steps[0].op = "no_such_op"
    with pytest.raises(ValueError, match=r"^step 0 \(node 'plus', op 'no_such_op'\): unknown op"):
        _runtime.prepare_only(p, "cpu")


def test_prepare_only_validates_the_plan_but_allocates_nothing():
    p = _add_plan()
    p.steps[0].inputs[1] = 9  # no such value
    with pytest.raises(ValueError, match="9"):
        _runtime.prepare_only(p, "cpu")
    # An arena far above any machine's memory: validated, never allocated.
    p = _add_plan()
    p.arena_bytes = 1 << 50
    _runtime.prepare_only(p, "cpu")
    with pytest.raises(errors.ResourceError):
        _runtime.Executor(p, 1)


def test_prepare_only_on_an_unknown_or_unbuilt_device():
    with pytest.raises(errors.DeviceError, match="tpu"):
        _runtime.prepare_only(_add_plan(), "tpu")
    if not _runtime.cuda_built():
        with pytest.raises(errors.DeviceError, match="not built with CUDA"):
            _runtime.prepare_only(_add_plan(), "cuda")


@NEEDS_CUDA_BUILD
def test_prepare_only_on_cuda_reaches_the_cuda_registry():
    p = _add_plan()
    if ("add", "float32") in _runtime.kernel_keys("cuda"):
        _runtime.prepare_only(p, "cuda")
    else:
        with pytest.raises(ValueError, match=r"^step 0 \(node 'plus', op 'add'\): unknown op 'add' \(no cuda kernel\)"):
            _runtime.prepare_only(p, "cuda")
    p.steps[0].op = "no_such_op"
    with pytest.raises(ValueError, match=r"unknown op 'no_such_op' \(no cuda kernel\)"):
        _runtime.prepare_only(p, "cuda")


# -- GRAPHC_CUDA_* ------------------------------------------------------------------------------

def test_cuda_options_from_the_environment(monkeypatch):
    for name in ("GRAPHC_CUDA_GRAPHS", "GRAPHC_CUDA_SYNC", "GRAPHC_CUDA_TF32"):
        monkeypatch.delenv(name, raising=False)
    assert _runtime.cuda_options() == {"graphs": True, "sync": False, "tf32": False}
    monkeypatch.setenv("GRAPHC_CUDA_GRAPHS", "0")
    monkeypatch.setenv("GRAPHC_CUDA_SYNC", "1")
    monkeypatch.setenv("GRAPHC_CUDA_TF32", "")
    assert _runtime.cuda_options() == {"graphs": False, "sync": True, "tf32": False}
    monkeypatch.setenv("GRAPHC_CUDA_TF32", "1")
    assert _runtime.cuda_options()["tf32"] is True
    for bad in ("yes", "2", " 1", "true"):
        monkeypatch.setenv("GRAPHC_CUDA_SYNC", bad)
        with pytest.raises(ValueError, match=f"GRAPHC_CUDA_SYNC must be 0 or 1 \\(or unset\\), got '{bad}'"):
            _runtime.cuda_options()


@NEEDS_CUDA_BUILD
def test_a_bad_cuda_setting_is_a_device_error_naming_it(monkeypatch):
    monkeypatch.setenv("GRAPHC_CUDA_GRAPHS", "on")
    with pytest.raises(errors.DeviceError, match="^device 'cuda': GRAPHC_CUDA_GRAPHS must be 0 or 1"):
        Session(_mlp_plan(), device="cuda")
    Session(_mlp_plan(), device="cpu")  # the CPU never reads them


# -- NVIDIA's libraries -------------------------------------------------------------------------

def test_library_dirs_of_the_wheels(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a / "cudnn" / "lib", a / "cu13" / "lib", b / "cublas" / "lib", b / "cu13" / "include"):
        d.mkdir(parents=True)
    got = _cuda_libs.library_dirs([str(a), str(b), str(a)])
    assert got == [str(a / "cu13" / "lib"), str(a / "cudnn" / "lib"), str(b / "cublas" / "lib")]
    assert _cuda_libs.library_dirs([str(tmp_path / "missing")]) == []
    for d in _cuda_libs.library_dirs():
        assert any(d.startswith(r) for r in _cuda_libs.nvidia_roots())


def _probe(dirs, which):
    """cuda_load_library(which) in a fresh process whose library folders are `dirs` (a library
    once loaded stays loaded: a process of its own keeps the search honest)."""
    code = textwrap.dedent(f"""
        import json, sys
        from graphc import _runtime, errors
        _runtime.set_cuda_library_dirs({[str(d) for d in dirs]!r})
        try:
            print(json.dumps({{"ok": _runtime.cuda_load_library({which!r})}}))
        except errors.DeviceError as e:
            print(json.dumps({{"error": str(e)}}))
    """)
    import json

    from subproc import run_python
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@NEEDS_CUDA_BUILD
def test_library_search_names_every_place_it_looked(tmp_path):
    empty = tmp_path / "empty"
    bogus = tmp_path / "bogus"
    empty.mkdir()
    bogus.mkdir()
    (bogus / "libcublasLt.so.13").write_bytes(b"not an ELF file")
    r = _probe([empty, bogus], "cublasLt")
    if "error" in r:
        msg = r["error"]
        assert msg.startswith("device 'cuda' is not available: cuBLASLt (libcublasLt.so.13) was not found; searched ")
        assert f"{empty}/libcublasLt.so.13 (no such file)" in msg
        assert f"{bogus}/libcublasLt.so.13 (" in msg
        assert msg.index(str(empty)) < msg.index(str(bogus)) < msg.index("the system library path (")
        assert msg.endswith('pip install "graphc[cuda]"')
    else:  # the system has cuBLASLt: never the bogus file
        assert r["ok"]["path"] != str(bogus / "libcublasLt.so.13")
    r = _probe([empty], "cudnn")
    if "error" in r:
        assert "cuDNN (libcudnn.so.9) was not found" in r["error"]
        assert "convolutions use graphc's own kernels" in r["error"]


@NEEDS_CUDA_BUILD
@pytest.mark.skipif(not _cuda_libs.library_dirs(), reason="NVIDIA's CUDA wheels are not installed")
def test_libraries_load_from_the_wheels_first():
    dirs = _cuda_libs.library_dirs()
    r = _probe(dirs, "cublasLt")
    assert "ok" in r, r
    assert r["ok"]["path"] in [f"{d}/libcublasLt.so.13" for d in dirs]
    assert r["ok"]["version"] // 10000 == 13
    r = _probe(dirs, "cudnn")
    if any((__import__("os").path.exists(f"{d}/libcudnn.so.9")) for d in dirs):
        assert "ok" in r, r
        assert r["ok"]["version"] // 10000 == 9


def test_cuda_load_library_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="unknown CUDA library 'cufft'"):
        _runtime.cuda_load_library("cufft")


# -- on a GPU (skipped here: they run in tools/gpu_check.sh) ------------------------------------

GPU = pytest.mark.skipif(STATUS != "", reason=STATUS or "device 'cuda' is usable")


def _train_plan():
    with Graph() as g:
        x = gc.placeholder("x", (None, 4))
        lab = gc.placeholder("lab", (None,), dtype="int64")
        w1 = gc.variable("w1", (4, 8), init=gc.init.xavier_uniform(seed=1))
        w2 = gc.variable("w2", (8, 3), init=gc.init.xavier_uniform(seed=2))
        loss = gc.softmax_cross_entropy(gc.relu(x @ w1) @ w2, lab)
        gc.optim.SGD(lr=0.1).minimize(loss)
    return gc.compile(g, shapes={"x": (6, 4), "lab": (6,)}), loss


def _train_feeds(step):
    rng = np.random.default_rng(100 + step)
    return {"x": rng.standard_normal((6, 4)).astype(np.float32), "lab": rng.integers(0, 3, 6)}


def _graph_state(sess):
    return sess._entry(None)._exec.cuda_graph_state


@GPU
@pytest.mark.parametrize("env", [{}, {"GRAPHC_CUDA_GRAPHS": "0"}, {"GRAPHC_CUDA_SYNC": "1"}, {"GRAPHC_POISON": "1"}],
                         ids=["graph", "steps", "sync", "poison"])
def test_cuda_training_follows_the_cpu_run_for_run(env, monkeypatch):
    """New feeds every run (the staged copies are in the captured graph), weights updated on
    the device, read back and overwritten between runs (the graph reads the device memory)."""
    for k in ("GRAPHC_CUDA_GRAPHS", "GRAPHC_CUDA_SYNC", "GRAPHC_POISON"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    plan, loss = _train_plan()
    cpu = Session(plan, threads=1)
    gpu = Session(plan, device="cuda")
    want_state = {"GRAPHC_CUDA_GRAPHS": "off (GRAPHC_CUDA_GRAPHS=0)", "GRAPHC_CUDA_SYNC": "off (GRAPHC_CUDA_SYNC=1)"}
    final = next((want_state[k] for k in env if k in want_state), "captured")
    assert _graph_state(gpu) == (final if final != "captured" else "not yet")
    for step in range(5):
        if step == 3:  # an update from outside between two replays
            for name in cpu.variable_names:
                v = cpu.get_variable(name) * 0.5
                cpu.set_variable(name, v)
                gpu.set_variable(name, v)
        a = cpu.run(_train_feeds(step))[loss.name]
        b = gpu.run(_train_feeds(step))[loss.name]
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=f"run {step}")
        if step >= 1:
            assert _graph_state(gpu) == final
    for name in cpu.variable_names:
        np.testing.assert_allclose(gpu.get_variable(name), cpu.get_variable(name), rtol=1e-4, atol=1e-5)


@GPU
def test_cuda_refuses_io_binding_in_place_and_copies_instead():
    plan = _mlp_plan()
    sess = Session(plan, device="cuda")
    ex = sess._entry(None)._exec
    assert ex.feed_refusals() == ["device 'cuda': feeds are copied through pinned staging"]
    assert set(ex.fetch_refusals()) == {"device 'cuda': fetches are copied through pinned staging"}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    want = Session(plan, threads=1).run({"x": x})
    b = sess.io_binding()
    b.bind_input("x", x)
    for _ in range(3):
        sess.run_with_binding(b)
        got = b.copy_outputs_to_cpu()
        assert len(got) == len(want)
        for name, g in zip(sess.fetch_names, got):
            np.testing.assert_allclose(g, want[name], rtol=1e-5, atol=1e-6)
    assert b.zero_copy == {"x": False}


@GPU
def test_cuda_profile_and_info():
    plan = _mlp_plan()
    sess = Session(plan, device="cuda")
    rows = sess.profile({"x": np.ones((2, 3), np.float32)}, iters=3, warmup=1)
    assert len(rows) == len(plan.proto.steps) and all(r["seconds"] > 0 for r in rows)
    info = _runtime.cuda_info()
    assert info["name"] and int(info["sm_count"]) > 0 and int(info["cublaslt_version"]) // 10000 == 13
    assert float(info["compute_capability"]) >= 8.0
