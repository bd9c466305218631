"""The generated protobuf module is committed; it must match proto/graphc.proto."""

import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = os.path.join(ROOT, "proto", "graphc.proto")


def _descriptor(source):
    match = re.search(r"AddSerializedFile\((b'.*?')\)", source, re.S)
    assert match, "no serialized descriptor found in the generated module"
    return ast.literal_eval(match.group(1))


@pytest.mark.skipif(not os.path.exists(PROTO), reason="run from a source checkout (proto/ absent)")
def test_generated_module_is_not_stale(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools is in the test extra")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{os.path.dirname(PROTO)}",
                    f"--python_out={tmp_path}", PROTO], check=True)
    fresh = _descriptor((tmp_path / "graphc_pb2.py").read_text())
    committed = _descriptor(open(os.path.join(ROOT, "graphc", "_proto", "graphc_pb2.py")).read())
    # Compare the serialized schema, not the generator's boilerplate (which varies by version).
    assert fresh == committed, ("graphc/_proto/graphc_pb2.py is stale: regenerate with "
                           "python -m grpc_tools.protoc -Iproto --python_out=graphc/_proto proto/graphc.proto")
