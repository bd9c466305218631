"""Driver of tests/test_aot_review.py: a plan whose fused program carries a float literal (pow's
exponent) loaded and run after the C library's LC_NUMERIC is set to a locale whose decimal
separator is a comma, as a host program of an AOT artifact may do (setlocale(LC_ALL, "")).

    python tests/aot_review_locale.py [LOCALE]     prints the fetch's bytes as hex (the last line)
"""

import locale
import sys

import numpy as np

import graphc as gc


def main(argv):
    with gc.Graph() as g:
        x = gc.placeholder("x", (4,))
        y = gc.add(x ** 1.5, x * 0.25, name="y")
    plan = gc.compile(g, shapes={}, fetches=[y.name])
    programs = [s.attrs["program"].s for s in plan.proto.steps if "program" in s.attrs]
    assert any("exponent=1.5" in p for p in programs), programs  # the literal is in the plan
    if len(argv) > 1:
        locale.setlocale(locale.LC_NUMERIC, argv[1])
        assert locale.localeconv()["decimal_point"] == ",", locale.localeconv()["decimal_point"]
    sess = gc.Session(plan, threads=1)
    out = sess.run({"x": np.array([1, 2, 4, 9], np.float32)})
    print(np.asarray(out["y"]).tobytes().hex())


if __name__ == "__main__":
    main(sys.argv)
