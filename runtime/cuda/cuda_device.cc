// cuda_device.cc — CudaDevice (cuda_device.h): opening a GPU with clear reasons when it cannot
// be, the pooled allocator, the stream, pinned staging, graph capture and the sticky-error
// state.  Host code, compiled by the C++ compiler in a CUDA build.
#include "cuda_device.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "../errors.h"
#include "cublaslt_api.h"
#include "cudnn_api.h"
#include "libs.h"

namespace graphc {
namespace cuda {

namespace {

// A sticky error leaves the process's CUDA context unusable: every device of the process
// refuses work from then on (a new process is the only way back).
std::atomic<bool> g_faulted{false};
std::mutex g_fault_mutex;
std::string g_fault;  // the first sticky error's message

const char* const kNewProcess = "the CUDA device failed: this Session can no longer be used; create a new process";

std::string error_text(cudaError_t e) {
  return std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

std::string version_text(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

struct GpuFacts {
  std::string name;
  int major = 0, minor = 0, sm_count = 0;
  size_t smem_optin = 0, total_memory = 0;
};

// The driver and GPU `ordinal`, or DeviceUnavailable saying what is missing.
GpuFacts probe_gpu(int ordinal) {
  const std::string head = "device 'cuda' is not available: ";
  // cudart (linked statically) loads the driver itself, but only says "insufficient driver"
  // when there is none at all; look first, to say which.
  // Looked up once (the handle is kept: the CUDA runtime uses the same library).
  static const std::string no_driver = [] {
    if (dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL) != nullptr) return std::string();
    const char* why = dlerror();
    return std::string(why ? why : "dlopen failed");
  }();
  if (!no_driver.empty()) {
    throw DeviceUnavailable(head + "no NVIDIA driver (libcuda.so.1) was found (" + no_driver +
                            "); install the NVIDIA driver on a machine with an NVIDIA GPU, or use device 'cpu'");
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  cudaGetLastError();  // not sticky: clear it
  if (e == cudaErrorInsufficientDriver) {
    int dv = 0;
    cudaDriverGetVersion(&dv);
    throw DeviceUnavailable(head + "the NVIDIA driver supports CUDA " + version_text(dv) +
                            ", graphc's CUDA runtime needs " + version_text(CUDART_VERSION) + " (" + error_text(e) +
                            "); update the NVIDIA driver");
  }
  if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    throw DeviceUnavailable(head + "no CUDA GPU is visible (" +
                            (e == cudaSuccess ? std::string("cudaGetDeviceCount found 0") : error_text(e)) + ")" +
                            (visible ? std::string(" with CUDA_VISIBLE_DEVICES='") + visible + "'" : std::string()));
  }
  if (e != cudaSuccess) throw DeviceUnavailable(head + "cudaGetDeviceCount failed: " + error_text(e));
  if (ordinal < 0 || ordinal >= n) {
    throw DeviceUnavailable(head + "GPU " + std::to_string(ordinal) + " does not exist (" + std::to_string(n) +
                            " visible)");
  }
  cudaDeviceProp p{};
  e = cudaGetDeviceProperties(&p, ordinal);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw DeviceUnavailable(head + "cudaGetDeviceProperties failed: " + error_text(e));
  }
  GpuFacts f;
  f.name = p.name;
  f.major = p.major;
  f.minor = p.minor;
  f.sm_count = p.multiProcessorCount;
  f.smem_optin = p.sharedMemPerBlockOptin;
  f.total_memory = p.totalGlobalMem;
  if (p.major < 8) {
    throw DeviceUnavailable(head + "GPU '" + f.name + "' has compute capability " + std::to_string(p.major) + "." +
                            std::to_string(p.minor) + "; graphc's CUDA kernels need 8.0 or later (built for sm_80 "
                            "and sm_90)");
  }
  return f;
}

size_t round256(size_t n) { return n == 0 ? 256 : (n + 255) / 256 * 256; }

}  // namespace

bool is_sticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
      return true;
    default:
      return false;
  }
}

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  const std::string msg = std::string(what) + ": " + error_text(e);
  if (is_sticky(e)) {
    {
      std::lock_guard<std::mutex> lock(g_fault_mutex);
      if (!g_faulted.load()) g_fault = msg;
      g_faulted.store(true);
    }
    throw DeviceFault(msg + "; " + kNewProcess);
  }
  cudaGetLastError();  // a non-sticky error is also the thread's last error: clear it
  if (e == cudaErrorMemoryAllocation) throw ResourceError("out of memory on device 'cuda': " + msg);
  throw std::runtime_error(msg);
}

std::string unavailable_reason(int ordinal) {
  if (g_faulted.load()) {
    std::lock_guard<std::mutex> lock(g_fault_mutex);
    return "device 'cuda' failed earlier in this process (" + g_fault + "); create a new process";
  }
  try {
    probe_gpu(ordinal);
    load_cublaslt(nullptr);
  } catch (const DeviceUnavailable& e) {
    return e.what();
  }
  return "";
}

std::vector<std::pair<std::string, std::string>> device_info(int ordinal) {
  const GpuFacts f = probe_gpu(ordinal);
  LoadedLibrary lt, dnn;
  load_cublaslt(&lt);
  std::string missing;
  const bool have_cudnn = load_cudnn(&dnn, &missing) != nullptr;
  int dv = 0, rv = 0;
  cudaDriverGetVersion(&dv);
  cudaRuntimeGetVersion(&rv);
  std::string dirs;
  for (const std::string& d : cuda_library_dirs()) dirs += (dirs.empty() ? "" : ":") + d;
  std::vector<std::pair<std::string, std::string>> out = {
      {"name", f.name},
      {"compute_capability", std::to_string(f.major) + "." + std::to_string(f.minor)},
      {"sm_count", std::to_string(f.sm_count)},
      {"memory_bytes", std::to_string(f.total_memory)},
      {"driver_version", version_text(dv)},
      {"runtime_version", version_text(rv)},
      {"cublaslt_path", lt.path},
      {"cublaslt_version", std::to_string(lt.version)},
  };
  if (have_cudnn) {
    out.push_back({"cudnn_path", dnn.path});
    out.push_back({"cudnn_version", std::to_string(dnn.version)});
  } else {
    out.push_back({"cudnn_missing", missing});
  }
  out.push_back({"library_dirs", dirs});
  return out;
}

// ---- CudaGraph -----------------------------------------------------------------------------

CudaGraph::~CudaGraph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  if (graph_ != nullptr) cudaGraphDestroy(graph_);
}

void CudaGraph::launch(cudaStream_t stream) { check(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch"); }

// ---- CudaDevice ----------------------------------------------------------------------------

CudaDevice::CudaDevice(int ordinal) : ordinal_(ordinal) {
  if (g_faulted.load()) check_usable();
  const GpuFacts f = probe_gpu(ordinal);
  gpu_name_ = f.name;
  cc_major_ = f.major;
  cc_minor_ = f.minor;
  sm_count_ = f.sm_count;
  max_smem_optin_ = f.smem_optin;
  total_memory_ = f.total_memory;
  LoadedLibrary lt;
  cublaslt_ = std::make_unique<CublasLtApi>(load_cublaslt(&lt));  // DeviceUnavailable with the fix
  cublaslt_path_ = lt.path;
  cublaslt_version_ = lt.version;
  LoadedLibrary dnn;
  if (const CudnnApi* api = load_cudnn(&dnn, &cudnn_missing_)) {
    cudnn_ = std::make_unique<CudnnApi>(*api);
    cudnn_path_ = dnn.path;
    cudnn_version_ = dnn.version;
  }
  allow_tf32_ = cuda_options().tf32;
  try {
    GRAPHC_CUDA_CHECK(cudaSetDevice(ordinal_));
    GRAPHC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cublasLtHandle_t lt_handle = nullptr;
    cublasStatus_t st = cublaslt_->cublasLtCreate(&lt_handle);
    if (st != CUBLAS_STATUS_SUCCESS) {
      throw DeviceUnavailable("device 'cuda' is not available: cublasLtCreate failed: " +
                              std::string(cublaslt_->cublasLtGetStatusString(st)));
    }
    lt_handle_ = lt_handle;
    if (cudnn_) {
      cudnnHandle_t h = nullptr;
      cudnnStatus_t ds = cudnn_->cudnnCreate(&h);
      if (ds == CUDNN_STATUS_SUCCESS) ds = cudnn_->cudnnSetStream(h, stream_);
      if (ds != CUDNN_STATUS_SUCCESS) {
        cudnn_missing_ = std::string("cuDNN at ") + cudnn_path_ + " could not start: " + cudnn_->cudnnGetErrorString(ds) +
                         " (convolutions use graphc's own kernels without it)";
        if (h != nullptr) cudnn_->cudnnDestroy(h);
        cudnn_.reset();
      } else {
        cudnn_handle_ = h;
      }
    }
  } catch (...) {
    if (lt_handle_ != nullptr) cublaslt_->cublasLtDestroy(static_cast<cublasLtHandle_t>(lt_handle_));
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    lt_handle_ = nullptr;
    stream_ = nullptr;
    throw;
  }
}

CudaDevice::~CudaDevice() {
  // Errors are ignored here: after a sticky fault every call fails, and a destructor must not throw.
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (cudnn_handle_ != nullptr && cudnn_) cudnn_->cudnnDestroy(static_cast<cudnnHandle_t>(cudnn_handle_));
  if (lt_handle_ != nullptr) cublaslt_->cublasLtDestroy(static_cast<cublasLtHandle_t>(lt_handle_));
  if (pool_ != nullptr) cudaFree(pool_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  cudaGetLastError();
}

const std::string& CudaDevice::name() const {
  static const std::string n = "cuda";
  return n;
}

std::string CudaDevice::describe() const {
  std::string s = "GPU " + std::to_string(ordinal_) + " '" + gpu_name_ + "' (compute capability " +
                  std::to_string(cc_major_) + "." + std::to_string(cc_minor_) + ", " + std::to_string(sm_count_) +
                  " SMs), cuBLASLt " + std::to_string(cublaslt_version_) + " (" + cublaslt_path_ + ")";
  if (cudnn_) {
    s += ", cuDNN " + std::to_string(cudnn_version_) + " (" + cudnn_path_ + ")";
  } else {
    s += ", no cuDNN: " + cudnn_missing_;
  }
  return s;
}

void CudaDevice::check_usable() const {
  if (!g_faulted.load()) return;
  std::lock_guard<std::mutex> lock(g_fault_mutex);
  throw DeviceFault("device 'cuda' failed earlier (" + g_fault + "); " + kNewProcess);
}

void CudaDevice::reserve(size_t nbytes) {
  check_usable();
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (pool_ != nullptr && (pool_live_ != 0 || nbytes <= pool_size_)) return;  // a hint: blocks that do not fit get their own
  if (pool_ != nullptr) {
    cudaFree(pool_);
    pool_ = nullptr;
    pool_size_ = pool_used_ = 0;
  }
  const size_t n = round256(nbytes);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, n);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaGetLastError();
    throw ResourceError("out of memory: the plan needs " + std::to_string(nbytes) + " bytes on device 'cuda', GPU '" +
                        gpu_name_ + "' has " + std::to_string(free_b) + " free of " + std::to_string(total_b));
  }
  check(e, "cudaMalloc (the memory pool)");
  pool_ = static_cast<uint8_t*>(p);
  pool_size_ = n;
  pool_used_ = 0;
}

void* CudaDevice::allocate(size_t nbytes) {
  check_usable();
  const size_t n = round256(nbytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (pool_ != nullptr && n <= pool_size_ - pool_used_) {
      p = pool_ + pool_used_;
      pool_used_ += n;
      ++pool_live_;
    }
  }
  if (p == nullptr) {
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw ResourceError("out of memory: cannot allocate " + std::to_string(nbytes) + " bytes on device 'cuda' (GPU '" +
                          gpu_name_ + "')");
    }
    check(e, "cudaMalloc");
  }
  // Zero-filled as Device promises; ordered before everything later on the stream (uploads
  // and kernels), so no wait is needed here.
  check(cudaMemsetAsync(p, 0, n, stream_), "cudaMemsetAsync (a new block)");
  return p;
}

void CudaDevice::deallocate(void* ptr, size_t nbytes) noexcept {
  (void)nbytes;
  if (ptr == nullptr) return;
  auto* b = static_cast<uint8_t*>(ptr);
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (pool_ != nullptr && b >= pool_ && b < pool_ + pool_size_) {
    // Bump allocation: the space comes back when every block of the pool is free.  Work
    // still queued that uses it is ahead of any later use on the one stream.
    if (pool_live_ > 0 && --pool_live_ == 0) pool_used_ = 0;
    return;
  }
  cudaFree(ptr);  // synchronises the device; errors (after a fault) are ignored
  cudaGetLastError();
}

void CudaDevice::copy_host_to_device(void* dst, const void* src, size_t nbytes) {
  check_usable();
  if (nbytes == 0) return;
  check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (host to device)");
  synchronize();
}

void CudaDevice::copy_device_to_host(void* dst, const void* src, size_t nbytes) {
  check_usable();
  if (nbytes == 0) return;
  check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (device to host)");
  synchronize();
}

void CudaDevice::copy_device_to_device(void* dst, const void* src, size_t nbytes) {
  check_usable();
  if (nbytes == 0 || dst == src) return;
  check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync (device to device)");
}

void CudaDevice::memset(void* dst, int byte, size_t nbytes) {
  check_usable();
  if (nbytes == 0) return;
  check(cudaMemsetAsync(dst, byte, nbytes, stream_), "cudaMemsetAsync");
}

void CudaDevice::synchronize() {
  check_usable();
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

void CudaDevice::copy_host_to_device_async(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync (feed)");
}

void CudaDevice::copy_device_to_host_async(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync (fetch)");
}

void* CudaDevice::alloc_pinned(size_t nbytes) {
  check_usable();
  void* p = nullptr;
  cudaError_t e = cudaHostAlloc(&p, nbytes == 0 ? 64 : nbytes, cudaHostAllocDefault);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw ResourceError("out of memory: cannot allocate " + std::to_string(nbytes) + " bytes of pinned host memory");
  }
  check(e, "cudaHostAlloc");
  return p;
}

void CudaDevice::free_pinned(void* ptr) noexcept {
  if (ptr == nullptr) return;
  cudaFreeHost(ptr);
  cudaGetLastError();
}

void CudaDevice::begin_capture() {
  check_usable();
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
}

std::unique_ptr<CudaGraph> CudaDevice::end_capture() {
  cudaGraph_t g = nullptr;
  check(cudaStreamEndCapture(stream_, &g), "cudaStreamEndCapture");
  std::unique_ptr<CudaGraph> graph(new CudaGraph());
  graph->graph_ = g;
  check(cudaGraphInstantiate(&graph->exec_, g, 0), "cudaGraphInstantiate");
  check(cudaGraphUpload(graph->exec_, stream_), "cudaGraphUpload");
  return graph;
}

void CudaDevice::abort_capture() noexcept {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream_, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream_, &g);
    if (g != nullptr) cudaGraphDestroy(g);
  }
  cudaGetLastError();
}

}  // namespace cuda
}  // namespace graphc
