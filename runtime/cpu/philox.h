// philox.h — Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011; the Random123 library) and the dropout mask drawn from it.
//
// A plain header: no std:: containers, inline functions only, GRAPHC_HD marks them
// __host__ __device__ under nvcc, so a CUDA kernel includes this file and draws the very
// same bits as the CPU.  graphc/ops/random.py is the numpy twin (the executable
// specification) and tests/test_philox.py checks both against Random123's known answers.
//
// The dropout stream: key = (seed low 32 bits, seed high 32 bits); element i uses word i % 4
// of the block b = i / 4 drawn at counter (b low, b high, step low, step high); it is kept
// iff (word >> 8) >= ceil(p · 2^24), i.e. u >= p for the 24-bit uniform u = (word >> 8) · 2^-24.
// A mask bit therefore depends on (seed, step, i) only: not on shapes, threads or devices.
#ifndef GRAPHC_CPU_PHILOX_H_
#define GRAPHC_CPU_PHILOX_H_

#include <stdint.h>

#include "../hd.h"

namespace graphc {
namespace philox {

struct Words {
  uint32_t w[4];
};

// The round multipliers and the Weyl sequence the key is bumped by between rounds.
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

GRAPHC_HD inline Words philox4x32_10(Words c, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c.w[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c.w[2];
    Words n;
    n.w[0] = static_cast<uint32_t>(p1 >> 32) ^ c.w[1] ^ k0;
    n.w[1] = static_cast<uint32_t>(p1);
    n.w[2] = static_cast<uint32_t>(p0 >> 32) ^ c.w[3] ^ k1;
    n.w[3] = static_cast<uint32_t>(p0);
    c = n;
  }
  return c;
}

// The four words of block b of the (seed, step) stream: counter (b lo, b hi, step lo, step hi),
// key (seed lo, seed hi).  Dropout and the random ops (random_math.h) all draw from it.
GRAPHC_HD inline Words stream_block(uint64_t seed, uint64_t step, uint64_t block) {
  Words c;
  c.w[0] = static_cast<uint32_t>(block);
  c.w[1] = static_cast<uint32_t>(block >> 32);
  c.w[2] = static_cast<uint32_t>(step);
  c.w[3] = static_cast<uint32_t>(step >> 32);
  return philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The four words of dropout block b (elements 4b .. 4b + 3) at (seed, step).
GRAPHC_HD inline Words dropout_block(uint64_t seed, uint64_t step, uint64_t block) {
  return stream_block(seed, step, block);
}

// ceil(p · 2^24) for p in [0, 1]: scaling by a power of two is exact, so (word >> 8) >= this
// is exactly u >= p.  Computed once on the host.
GRAPHC_HD inline uint32_t keep_threshold(double p) {
  const double t = p * 16777216.0;
  uint32_t k = static_cast<uint32_t>(t);  // floor for t >= 0
  if (static_cast<double>(k) < t) ++k;
  return k;
}

GRAPHC_HD inline bool keep(uint32_t word, uint32_t threshold) { return (word >> 8) >= threshold; }

}  // namespace philox
}  // namespace graphc

#endif  // GRAPHC_CPU_PHILOX_H_
