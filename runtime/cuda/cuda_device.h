// cuda_device.h — the CUDA Device: one GPU, one non-blocking stream, one pooled cudaMalloc,
// the dlopen'ed math libraries, and whole-run capture into a CUDA graph.
//
// Compiled only in a CUDA build (GRAPHC_WITH_CUDA).  Host code: includes cuda_runtime_api.h
// but no library header, so any file may include it.  Kernel files reach it through
// cuda::device_of(args) (common.cuh).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../device.h"

namespace graphc {
namespace cuda {

struct CublasLtApi;  // cublaslt_api.h
struct CudnnApi;     // cudnn_api.h

// Throws std::runtime_error("<what>: CUDA error <name> (<description>)") unless e == cudaSuccess;
// a sticky error (the context is lost: illegal address, launch failure, ...) throws
// DeviceFault instead, and the device refuses every later call (see CudaDevice::check_usable).
void check(cudaError_t e, const char* what);
// Whether `e` leaves the CUDA context unusable (cudaErrorIllegalAddress, cudaErrorLaunchFailure,
// cudaErrorHardwareStackError, cudaErrorIllegalInstruction, cudaErrorMisalignedAddress, ...).
bool is_sticky(cudaError_t e);

#define GRAPHC_CUDA_CHECK(expr) ::graphc::cuda::check((expr), #expr)
// After a kernel launch: reports a launch-configuration error at once (never synchronises).
#define GRAPHC_CUDA_LAUNCH_CHECK(what) ::graphc::cuda::check(cudaGetLastError(), (what))

// "" when CudaDevice(ordinal) can open: the driver loads, the GPU exists with compute
// capability >= 8.0 and cuBLASLt loads; else why (DeviceUnavailable's message).  Opens no
// stream or handle.  May throw only std::bad_alloc.
std::string unavailable_reason(int ordinal);
// Facts about GPU `ordinal` and the libraries (graphc::cuda_info, device.h); throws
// DeviceUnavailable as CudaDevice(ordinal) would.
std::vector<std::pair<std::string, std::string>> device_info(int ordinal);

// A captured run (cudaGraphExec_t) that is replayed with one launch.
class CudaGraph {
 public:
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  void launch(cudaStream_t stream);

 private:
  friend class CudaDevice;
  CudaGraph() = default;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

class CudaDevice final : public Device {
 public:
  // Opens device `ordinal`: checks the driver and the GPU (DeviceUnavailable naming what is
  // missing), loads cuBLASLt (required: DeviceUnavailable saying `pip install "graphc[cuda]"`)
  // and cuDNN (optional: conv falls back to graphc's implicit-GEMM kernel), creates the stream
  // and the library handles.
  explicit CudaDevice(int ordinal = 0);
  ~CudaDevice() override;

  const std::string& name() const override;
  // Sub-allocated from the pool reserve() made (256-byte aligned); a block that does not fit
  // gets a cudaMalloc of its own.  Zero-filled, as Device promises.
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) noexcept override;
  void copy_host_to_device(void* dst, const void* src, size_t nbytes) override;  // synchronous
  void copy_device_to_host(void* dst, const void* src, size_t nbytes) override;  // synchronous
  void copy_device_to_device(void* dst, const void* src, size_t nbytes) override;  // on the stream
  void memset(void* dst, int byte, size_t nbytes) override;                        // on the stream
  void synchronize() override;
  void* stream() const override { return stream_; }
  void reserve(size_t nbytes) override;

  cudaStream_t cuda_stream() const { return stream_; }
  int ordinal() const { return ordinal_; }
  int sm_count() const { return sm_count_; }
  int cc_major() const { return cc_major_; }
  int cc_minor() const { return cc_minor_; }
  size_t max_shared_per_block_optin() const { return max_smem_optin_; }
  size_t total_memory() const { return total_memory_; }
  // The GPU's name, compute capability and the loaded libraries' versions, for messages and info().
  std::string describe() const;

  // cuBLASLt: always loaded on a usable device.  `lt_handle()` is a cublasLtHandle_t.
  const CublasLtApi& cublaslt() const { return *cublaslt_; }
  void* lt_handle() const { return lt_handle_; }
  // cuDNN: nullptr when libcudnn could not be loaded (`cudnn_missing()` says why).
  const CudnnApi* cudnn() const { return cudnn_.get(); }
  void* cudnn_handle() const { return cudnn_handle_; }
  const std::string& cudnn_missing() const { return cudnn_missing_; }
  // TF32 for float32 matmul/conv: off unless GRAPHC_CUDA_TF32=1 (read when the device opens).
  bool allow_tf32() const { return allow_tf32_; }

  // Whole-run capture on the stream (thread-local mode).  end_capture() returns the
  // instantiated graph; abort_capture() ends a capture that failed and discards it.
  void begin_capture();
  std::unique_ptr<CudaGraph> end_capture();
  void abort_capture() noexcept;

  // Pinned host memory (cudaHostAlloc) for feed and fetch staging; freed with free_pinned.
  void* alloc_pinned(size_t nbytes);
  void free_pinned(void* ptr) noexcept;
  void copy_host_to_device_async(void* dst, const void* src, size_t nbytes);
  void copy_device_to_host_async(void* dst, const void* src, size_t nbytes);

  // Throws DeviceFault when an earlier sticky error left the context unusable.
  void check_usable() const;

 private:
  int ordinal_ = 0;
  int sm_count_ = 0, cc_major_ = 0, cc_minor_ = 0;
  size_t max_smem_optin_ = 0;
  size_t total_memory_ = 0;
  std::string gpu_name_;
  std::string cublaslt_path_, cudnn_path_;
  size_t cublaslt_version_ = 0, cudnn_version_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CublasLtApi> cublaslt_;
  std::unique_ptr<CudnnApi> cudnn_;
  std::string cudnn_missing_;
  void* lt_handle_ = nullptr;
  void* cudnn_handle_ = nullptr;
  bool allow_tf32_ = false;
  // The pool: one cudaMalloc made by reserve(), bump-allocated.
  std::mutex pool_mutex_;
  uint8_t* pool_ = nullptr;
  size_t pool_size_ = 0, pool_used_ = 0, pool_live_ = 0;
};

}  // namespace cuda
}  // namespace graphc
