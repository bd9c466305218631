"""Philox4x32-10, the generator behind dropout: the numpy twin (graphc/ops/random.py) and the
C++ header (runtime/cpu/philox.h) against Random123's known-answer vectors and a pure-Python
implementation, and the dropout stream's layout (element i = word i % 4 of block i // 4).

The header is compiled into a small driver with the system g++ (as tests/test_gemm.py does);
without a compiler those cases skip with the reason.  The masks the runtime kernel draws are
checked against the numpy stream in tests/test_dropout.py."""

import os
import shutil
import subprocess

import numpy as np
import pytest

from graphc.ops.random import dropout_keep, keep_threshold, philox4x32_10

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words),
# expected output (4 words).  Cross-checked in several independent copies of the file.
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _philox_py(ctr, key):
    """Philox4x32-10 on Python ints, written from the paper's round function."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        hi0, lo0 = divmod(0xD2511F53 * c0, 2**32)
        hi1, lo1 = divmod(0xCD9E8D57 * c2, 2**32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_numpy_philox_matches_random123_known_answers(ctr, key, want):
    assert tuple(int(w) for w in philox4x32_10(ctr, key)) == want
    assert _philox_py(ctr, key) == want


def test_numpy_philox_matches_pure_python_on_random_counters():
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(4, 200), dtype=np.uint64)
    for key in [(0, 0), (0xFFFFFFFF, 1), tuple(int(k) for k in rng.integers(0, 2**32, 2))]:
        got = np.stack(philox4x32_10(list(ctr), key))
        for j in range(ctr.shape[1]):
            assert tuple(int(w) for w in got[:, j]) == _philox_py(tuple(int(c) for c in ctr[:, j]), key)


def test_dropout_stream_layout():
    seed, step, p = 2**40 + 77, 2**32 + 5, 0.3
    n = 23
    keep = dropout_keep(n, seed, step, p)
    for i in range(n):
        words = _philox_py((i // 4, 0, step & 0xFFFFFFFF, step >> 32), (seed & 0xFFFFFFFF, seed >> 32))
        assert keep[i] == ((words[i % 4] >> 8) / 2**24 >= p)
    # a prefix of a longer stream: a mask bit does not depend on the tensor's size
    assert np.array_equal(dropout_keep(1000, seed, step, p)[:n], keep)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1 / 3, 0.999999])
def test_keep_threshold_is_exactly_u_at_least_p(p):
    t = keep_threshold(p)
    # u = t·2⁻²⁴ is the smallest 24-bit value >= p
    assert t / 2**24 >= p and (t == 0 or (t - 1) / 2**24 < p)


DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include "cpu/philox.h"
int main(int argc, char** argv) {
  // args: c0 c1 c2 c3 k0 k1 (hex) -> the four words; or "dropout seed step n p" -> the keep bits
  if (argc == 6) {
    unsigned long long seed = std::strtoull(argv[2], nullptr, 10), step = std::strtoull(argv[3], nullptr, 10);
    long long n = std::atoll(argv[4]);
    unsigned t = graphc::philox::keep_threshold(std::atof(argv[5]));
    for (long long b = 0; b * 4 < n; ++b) {
      graphc::philox::Words w = graphc::philox::dropout_block(seed, step, (unsigned long long)b);
      for (int j = 0; j < 4 && b * 4 + j < n; ++j) std::putchar(graphc::philox::keep(w.w[j], t) ? '1' : '0');
    }
    std::putchar('\n');
    return 0;
  }
  graphc::philox::Words c;
  for (int i = 0; i < 4; ++i) c.w[i] = (unsigned)std::strtoul(argv[1 + i], nullptr, 16);
  graphc::philox::Words r = graphc::philox::philox4x32_10(c, (unsigned)std::strtoul(argv[5], nullptr, 16),
                                                          (unsigned)std::strtoul(argv[6], nullptr, 16));
  std::printf("%08x %08x %08x %08x\n", r.w[0], r.w[1], r.w[2], r.w[3]);
  return 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++").split()[-1]) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) on PATH: the philox.h driver cannot be built")
    d = tmp_path_factory.mktemp("philox")
    src, exe = d / "philox_driver.cc", str(d / "philox_driver")
    src.write_text(DRIVER)
    subprocess.run([cxx, "-O2", "-std=c++17", "-Wall", "-Werror", "-I", os.path.join(ROOT, "runtime"), str(src),
                    "-o", exe], check=True, capture_output=True, text=True)
    return exe


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_header_matches_random123_known_answers(driver, ctr, key, want):
    out = subprocess.run([driver, *[f"{w:x}" for w in ctr + key]], check=True, capture_output=True, text=True)
    assert tuple(int(w, 16) for w in out.stdout.split()) == want


@pytest.mark.parametrize("seed,step,p", [(0, 0, 0.5), (12345, 7, 0.1), (2**40 + 3, 2**33 + 1, 0.9)])
def test_header_dropout_stream_matches_numpy(driver, seed, step, p):
    n = 1001
    out = subprocess.run([driver, "dropout", str(seed), str(step), str(n), repr(p)], check=True,
                         capture_output=True, text=True)
    got = np.array([c == "1" for c in out.stdout.strip()])
    assert np.array_equal(got, dropout_keep(n, seed, step, p))
