"""Regenerate (--write) or check (--check, the default) the table of ONNX op handlers in
docs/onnx.md from graphc.onnx's HANDLERS (tests/test_onnx_import.py runs the check)."""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import graphc.onnx  # noqa: E402,F401  (registers the handlers)
from graphc.onnx._import import replace_handler_table  # noqa: E402

DOC = os.path.join(ROOT, "docs", "onnx.md")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--write", action="store_true", help="rewrite docs/onnx.md")
    args = p.parse_args(argv)
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    new = replace_handler_table(text)
    if args.write:
        if new != text:
            with open(DOC, "w", encoding="utf-8") as f:
                f.write(new)
        return 0
    if new != text:
        print("docs/onnx.md's handler table is stale: run python tools/onnx_handler_table.py --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
