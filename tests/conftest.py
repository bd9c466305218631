"""Every plan compiled in the test suite is checked by the independent verifier.

AOT artifact builds (tests/aot_harness.py and every test that runs an emitted Makefile) share
one object folder per test session, GRAPHC_AOT_OBJDIR (the Makefile's OBJDIR): the runtime's
kernel objects then compile once per session, not once per test module.  Set it yourself to
keep the objects across sessions."""

import os

import pytest

os.environ.setdefault("GRAPHC_VERIFY", "1")


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
