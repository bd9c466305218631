// dropout.cu — the CUDA twin of runtime/cpu/dropout.cc: dropout_train, y = x · (keep ? 1/(1-p) : 0)
// with the Philox mask of philox.h (GRAPHC_HD, shared with the CPU): bit-identical masks and
// values (one product per item, no FMA possible).
//
// Kernel: one thread per Philox block of 4 items, grid-stride over the blocks; the step is read
// on the device (it changes every run; a CUDA graph replays the same arguments).  float32 with
// 16-byte aligned x and y: one float4 load and store per full block.
#include "common.cuh"
#include "../cpu/philox.h"
#include "../cpu/random_checks.h"

namespace graphc {
namespace cuda {
namespace {

template <class T>
__global__ void dropout_blocks(const T* x, T* y, const int64_t* __restrict__ pstep,
                               int64_t n, uint64_t seed, uint32_t threshold, T scale, bool vec4) {
  const uint64_t step = static_cast<uint64_t>(*pstep);
  const int64_t blocks = (n + 3) / 4;
  GRAPHC_GRID_STRIDE(blk, blocks) {
    const philox::Words r = philox::dropout_block(seed, step, static_cast<uint64_t>(blk));
    const int64_t base = blk * 4;
    if constexpr (std::is_same_v<T, float>) {
      if (vec4 && base + 4 <= n) {
        float4 v = *reinterpret_cast<const float4*>(x + base);
        v.x *= philox::keep(r.w[0], threshold) ? scale : 0.0f;
        v.y *= philox::keep(r.w[1], threshold) ? scale : 0.0f;
        v.z *= philox::keep(r.w[2], threshold) ? scale : 0.0f;
        v.w *= philox::keep(r.w[3], threshold) ? scale : 0.0f;
        *reinterpret_cast<float4*>(y + base) = v;
        continue;
      }
    }
    for (int j = 0; j < 4 && base + j < n; ++j) y[base + j] = x[base + j] * (philox::keep(r.w[j], threshold) ? scale : T(0));
  }
}

template <class T> Kernel dropout_train_kernel(const KernelArgs& args) {
  const attrs::DropoutTrain attr = cpu::dropout_train_check(args);
  const TensorRef &x = args.in[0], &step = args.in[1];
  const int64_t n = numel_of(x);
  if (n == 0) return no_op_kernel();
  const T* px = x.as<const T>();
  const int64_t* pstep = step.as<const int64_t>();
  T* py = args.out[0].as<T>();
  const uint64_t seed = static_cast<uint64_t>(attr.seed);
  const uint32_t threshold = philox::keep_threshold(attr.p);
  const T scale = static_cast<T>(1.0 / (1.0 - attr.p));  // rounded once, as the reference
  if (dry(args)) return no_op_kernel();
  const bool vec4 = reinterpret_cast<uintptr_t>(px) % 16 == 0 && reinterpret_cast<uintptr_t>(py) % 16 == 0;
  cudaStream_t s = stream_of(args);
  const unsigned grid = blocks_for((n + 3) / 4);
  return [=]() {
    dropout_blocks<T><<<grid, kThreads, 0, s>>>(px, py, pstep, n, seed, threshold, scale, vec4);
    GRAPHC_CUDA_LAUNCH_CHECK("dropout_train");
  };
}

}  // namespace

void register_dropout_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "dropout_train", [](auto tag, const KernelArgs& a) {
    return dropout_train_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
