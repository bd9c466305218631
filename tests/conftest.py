"""Every plan compiled in the test suite is checked by the independent verifier.

The ``device`` fixture runs a test once per device of tests/devices.py ("cpu", "cuda"); the
"cuda" case skips, with the specific reason, where no CUDA Session can open.

AOT artifact builds (tests/aot_harness.py and every test that runs an emitted Makefile) share
one object folder per test session, GRAPHC_AOT_OBJDIR (the Makefile's OBJDIR): the runtime's
kernel objects then compile once per session, not once per test module.  Set it yourself to
keep the objects across sessions."""

import os
import shutil
import subprocess

import pytest
from devices import DEVICES, skip_unless

os.environ.setdefault("GRAPHC_VERIFY", "1")


@pytest.fixture(params=DEVICES)
def device(request):
    """"cpu" or "cuda"; skips the test (saying why) on a device that cannot run here."""
    skip_unless(request.param)
    return request.param


@pytest.fixture(scope="session", autouse=True)
def aot_objdir(tmp_path_factory):
    """GRAPHC_AOT_OBJDIR for the session: the caller's, else a session temporary folder."""
    if os.environ.get("GRAPHC_AOT_OBJDIR"):
        yield os.environ["GRAPHC_AOT_OBJDIR"]
        return
    path = str(tmp_path_factory.mktemp("aot_objects"))
    os.environ["GRAPHC_AOT_OBJDIR"] = path
    try:
        yield path
    finally:
        os.environ.pop("GRAPHC_AOT_OBJDIR", None)


@pytest.fixture(scope="session")
def noalloc_shim(tmp_path_factory):
    """tests/noalloc_shim.c built as an LD_PRELOAD library that counts malloc-family calls
    (tests/test_noalloc.py, tests/test_aot_review.py); skipped without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: the allocation-counting shim cannot be built")
    out = str(tmp_path_factory.mktemp("noalloc") / "noalloc_shim.so")
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", out, os.path.join(os.path.dirname(__file__), "noalloc_shim.c"),
                    "-ldl"], check=True, capture_output=True, text=True)
    return out
