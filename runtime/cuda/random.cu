// random.cu — the CUDA twin of runtime/cpu/random.cc: random_uniform, random_normal and their
// _like forms, drawn from the same Philox stream with the same math (philox.h, random_math.h:
// GRAPHC_HD, shared with the CPU), so element i depends on (seed, step, i) only.
//
// Kernel: one thread per Philox block (4 float32 or 2 float64 elements), grid-stride over the
// blocks; the step is read on the device (the rng/step variable changes every run, and a CUDA
// graph replays the launch with the same arguments).  y = offset + scale · v is rounded as the
// CPU rounds it (__dmul_rn/__dadd_rn: no FMA), then once to T.  A full block is stored with one
// 16-byte store when the output is 16-byte aligned.
//
// Bits: uniforms are bit-identical to the CPU's (integer math and exact scalings).  Normals use
// log, sqrt, cos and sin in double: sqrt is correctly rounded on both sides, but the device's
// log/cos/sin (CUDA: <= 1-2 ulp) may differ from glibc's in the last double ulp; a float32 normal
// is rounded from that double, so it is the CPU's bit for bit unless the double falls within
// ~2 ulp of a float32 rounding boundary (about 2^-28 of the draws); a float64 normal agrees within
// a few ulps.
#include "common.cuh"
#include "../cpu/random_math.h"

namespace graphc {
namespace cuda {
namespace {

template <class T, int K> struct Vec;
template <> struct Vec<float, 4> { using type = float4; };
template <> struct Vec<double, 2> { using type = double2; };

template <class T, int K, bool kNormal>
__global__ void fill_blocks(T* __restrict__ y, const int64_t* __restrict__ pstep, int64_t n, uint64_t seed,
                            double offset, double scale, bool aligned) {
  const uint64_t step = static_cast<uint64_t>(*pstep);
  const int64_t blocks = (n + K - 1) / K;
  GRAPHC_GRID_STRIDE(blk, blocks) {
    const philox::Words w = philox::stream_block(seed, step, static_cast<uint64_t>(blk));
    double v[K];
    if constexpr (kNormal) {
      if constexpr (K == 4) random_math::normal_f32(w, v);
      else random_math::normal_f64(w, v);
    } else {
      if constexpr (K == 4) random_math::uniform_f32(w, v);
      else random_math::uniform_f64(w, v);
    }
    T out[K];
    for (int j = 0; j < K; ++j) out[j] = static_cast<T>(__dadd_rn(offset, __dmul_rn(scale, v[j])));
    const int64_t base = blk * K;
    if (aligned && base + K <= n) {
      using V = typename Vec<T, K>::type;
      V packed;
      static_assert(sizeof(V) == sizeof(out), "one block is one vector");
      memcpy(&packed, out, sizeof(V));
      *reinterpret_cast<V*>(y + base) = packed;
    } else {
      for (int j = 0; j < K && base + j < n; ++j) y[base + j] = out[j];
    }
  }
}

template <class T, int K, bool kNormal>
Kernel fill_kernel(const KernelArgs& args, T* py, const int64_t* pstep, int64_t n, uint64_t seed, double offset,
                   double scale) {
  if (dry(args)) return no_op_kernel();
  cudaStream_t s = stream_of(args);
  const bool aligned = reinterpret_cast<uintptr_t>(py) % 16 == 0;
  const unsigned grid = blocks_for((n + K - 1) / K);
  return [=]() {
    fill_blocks<T, K, kNormal><<<grid, kThreads, 0, s>>>(py, pstep, n, seed, offset, scale, aligned);
    GRAPHC_CUDA_LAUNCH_CHECK(kNormal ? "random_normal" : "random_uniform");
  };
}

// As cpu::random_kernel: the checks, then the fill for the drawn dtype.
Kernel random_kernel(const KernelArgs& args, bool normal, int64_t seed, const std::vector<int64_t>& shape, DType dtype,
                     double offset, double scale) {
  const int step_input = static_cast<int>(args.in.size()) - 1;
  if (seed < 0) args.fail("seed must be in [0, 2**63), got " + std::to_string(seed));
  if (dtype != DType::F32 && dtype != DType::F64) args.fail("attr dtype must be float32 or float64");
  for (int64_t d : shape) {
    if (d < 0) args.fail("attr shape has a negative size " + std::to_string(d));
  }
  const TensorRef& step = args.in[step_input];
  const std::string step_name = "input " + std::to_string(step_input) + " (step)";
  cpu::expect_dtype(args, step, DType::I64, step_name);
  cpu::expect_dims(args, step, {}, step_name);
  cpu::expect_dtype(args, args.out[0], dtype, "output");
  cpu::expect_dims(args, args.out[0], shape, "output");
  const int64_t n = numel_of(args.out[0]);
  if (n == 0) return no_op_kernel();
  const int64_t* pstep = step.as<const int64_t>();
  const uint64_t key = static_cast<uint64_t>(seed);
  using random_math::kPerBlockF32;
  using random_math::kPerBlockF64;
  if (dtype == DType::F32) {
    float* py = args.out[0].as<float>();
    return normal ? fill_kernel<float, kPerBlockF32, true>(args, py, pstep, n, key, offset, scale)
                  : fill_kernel<float, kPerBlockF32, false>(args, py, pstep, n, key, offset, scale);
  }
  double* py = args.out[0].as<double>();
  return normal ? fill_kernel<double, kPerBlockF64, true>(args, py, pstep, n, key, offset, scale)
                : fill_kernel<double, kPerBlockF64, false>(args, py, pstep, n, key, offset, scale);
}

double uniform_scale(const KernelArgs& args, double minval, double maxval) {
  const double scale = maxval - minval;
  if (!(std::isfinite(minval) && std::isfinite(maxval) && minval <= maxval && std::isfinite(scale))) {
    args.fail("expects finite minval <= maxval with a finite maxval - minval, got minval=" + std::to_string(minval) +
              ", maxval=" + std::to_string(maxval));
  }
  return scale;
}

void check_normal(const KernelArgs& args, double mean, double stddev) {
  if (!(std::isfinite(mean) && std::isfinite(stddev) && stddev >= 0.0)) {
    args.fail("expects a finite mean and a finite stddev >= 0, got mean=" + std::to_string(mean) +
              ", stddev=" + std::to_string(stddev));
  }
}

DType like_dtype(const KernelArgs& args, bool has_dtype, DType dtype) {
  if (has_dtype) return dtype;
  const DType x = args.in[0].dtype;
  return x == DType::F32 || x == DType::F64 ? x : DType::F32;
}

Kernel random_uniform_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const attrs::RandomUniform attr(args);
  const double scale = uniform_scale(args, attr.minval, attr.maxval);
  return random_kernel(args, false, attr.seed, attr.shape, attr.dtype, attr.minval, scale);
}

Kernel random_normal_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const attrs::RandomNormal attr(args);
  check_normal(args, attr.mean, attr.stddev);
  return random_kernel(args, true, attr.seed, attr.shape, attr.dtype, attr.mean, attr.stddev);
}

Kernel random_uniform_like_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::RandomUniformLike attr(args);
  const double scale = uniform_scale(args, attr.minval, attr.maxval);
  return random_kernel(args, false, attr.seed, args.in[0].dims, like_dtype(args, attr.has_dtype, attr.dtype),
                       attr.minval, scale);
}

Kernel random_normal_like_kernel(const KernelArgs& args) {
  args.expect_arity(2, 1);
  const attrs::RandomNormalLike attr(args);
  check_normal(args, attr.mean, attr.stddev);
  return random_kernel(args, true, attr.seed, args.in[0].dims, like_dtype(args, attr.has_dtype, attr.dtype),
                       attr.mean, attr.stddev);
}

}  // namespace

void register_random_kernels(KernelRegistry& r) {
  // dispatched on input 0 (the int64 step; a _like op's x, never read): the schema's dtypes
  for (DType t : cpu::schema_dtypes("random_uniform")) add_kernel(r, "random_uniform", t, random_uniform_kernel);
  for (DType t : cpu::schema_dtypes("random_normal")) add_kernel(r, "random_normal", t, random_normal_kernel);
  for (DType t : cpu::schema_dtypes("random_uniform_like")) {
    add_kernel(r, "random_uniform_like", t, random_uniform_like_kernel);
  }
  for (DType t : cpu::schema_dtypes("random_normal_like")) {
    add_kernel(r, "random_normal_like", t, random_normal_like_kernel);
  }
}

}  // namespace cuda
}  // namespace graphc
