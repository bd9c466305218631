#include "device.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <utility>

#ifdef GRAPHC_WITH_CUDA
#include "cuda/cuda_device.h"
#include "cuda/libs.h"
#endif

namespace graphc {

namespace {

// Blocks this large come from mmap: zero pages the kernel hands out lazily, so a big
// arena costs no time (and no resident memory) until the plan touches it.
constexpr size_t kMmapThreshold = size_t(1) << 20;

[[noreturn]] void out_of_memory(const std::string& device, size_t nbytes) {
  throw ResourceError("out of memory: cannot allocate " + std::to_string(nbytes) + " bytes on " + device);
}

}  // namespace

const std::string& CpuDevice::name() const {
  static const std::string n = "cpu";
  return n;
}

void* CpuDevice::allocate(size_t nbytes) {
  if (nbytes > SIZE_MAX / 2) out_of_memory(name(), nbytes);
  size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  if (rounded >= kMmapThreshold) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) out_of_memory(name(), nbytes);
    return p;
  }
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) out_of_memory(name(), nbytes);
  std::memset(p, 0, rounded);
  return p;
}

void CpuDevice::deallocate(void* ptr, size_t nbytes) noexcept {
  if (ptr == nullptr) return;
  size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  if (rounded >= kMmapThreshold) {
    munmap(ptr, rounded);
  } else {
    std::free(ptr);
  }
}

void CpuDevice::copy_host_to_device(void* dst, const void* src, size_t nbytes) {
  if (nbytes) std::memcpy(dst, src, nbytes);
}

void CpuDevice::copy_device_to_host(void* dst, const void* src, size_t nbytes) {
  if (nbytes) std::memcpy(dst, src, nbytes);
}

void CpuDevice::copy_device_to_device(void* dst, const void* src, size_t nbytes) {
  if (nbytes && dst != src) std::memmove(dst, src, nbytes);
}

void CpuDevice::memset(void* dst, int byte, size_t nbytes) {
  if (nbytes) std::memset(dst, byte, nbytes);
}

bool cuda_built() {
#ifdef GRAPHC_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<std::string> built_devices() {
  std::vector<std::string> names{"cpu"};
  if (cuda_built()) names.push_back("cuda");
  return names;
}

namespace {
const char* const kNotBuilt =
    "device 'cuda' is not available: this graphc was not built with CUDA (nvcc was not found at build time); "
    "use device 'cpu'";

bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || v[0] == '\0') return fallback;
  if (std::strcmp(v, "0") == 0) return false;
  if (std::strcmp(v, "1") == 0) return true;
  std::string shown(v);
  if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
  throw std::invalid_argument(std::string(name) + " must be 0 or 1 (or unset), got '" + shown + "'");
}

std::mutex g_dirs_mutex;
std::vector<std::string>& library_dirs_storage() {
  static std::vector<std::string> dirs;
  return dirs;
}
}  // namespace

CudaOptions cuda_options() {
  CudaOptions o;
  o.graphs = env_flag("GRAPHC_CUDA_GRAPHS", true);
  o.sync = env_flag("GRAPHC_CUDA_SYNC", false);
  o.tf32 = env_flag("GRAPHC_CUDA_TF32", false);
  return o;
}

void set_cuda_library_dirs(const std::vector<std::string>& dirs) {
  std::lock_guard<std::mutex> lock(g_dirs_mutex);
  library_dirs_storage() = dirs;
}

std::vector<std::string> cuda_library_dirs() {
  std::lock_guard<std::mutex> lock(g_dirs_mutex);
  return library_dirs_storage();
}

#ifdef GRAPHC_WITH_CUDA

std::string cuda_status() {
  try {
    return cuda::unavailable_reason(0);
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::vector<std::pair<std::string, std::string>> cuda_info() { return cuda::device_info(0); }

std::vector<std::pair<std::string, std::string>> cuda_load_library(const std::string& which) {
  cuda::LoadedLibrary lib;
  if (which == "cublasLt") {
    cuda::load_cublaslt(&lib);
  } else if (which == "cudnn") {
    std::string missing;
    if (cuda::load_cudnn(&lib, &missing) == nullptr) throw DeviceUnavailable(missing);
  } else {
    throw std::invalid_argument("unknown CUDA library '" + which.substr(0, 64) + "' (cublasLt, cudnn)");
  }
  return {{"path", lib.path}, {"version", std::to_string(lib.version)}};
}

#else

std::string cuda_status() { return kNotBuilt; }
std::vector<std::pair<std::string, std::string>> cuda_info() { throw DeviceUnavailable(kNotBuilt); }
std::vector<std::pair<std::string, std::string>> cuda_load_library(const std::string& which) {
  if (which != "cublasLt" && which != "cudnn") {
    throw std::invalid_argument("unknown CUDA library '" + which.substr(0, 64) + "' (cublasLt, cudnn)");
  }
  throw DeviceUnavailable(kNotBuilt);
}

#endif

std::shared_ptr<Device> make_device(const std::string& name) {
  if (name == "cpu") return std::make_shared<CpuDevice>();
  if (name == "cuda") {
#ifdef GRAPHC_WITH_CUDA
    return std::make_shared<cuda::CudaDevice>(0);
#else
    throw DeviceUnavailable(kNotBuilt);
#endif
  }
  std::string shown = name.size() > 64 ? name.substr(0, 64) + "..." : name;
  throw DeviceUnavailable("unknown device '" + shown + "'; this build has: cpu" +
                          std::string(cuda_built() ? ", cuda" : ""));
}

DeviceBuffer::DeviceBuffer(Device* device, size_t nbytes)
    : device_(device), data_(static_cast<uint8_t*>(device->allocate(nbytes))), size_(nbytes) {}

DeviceBuffer::~DeviceBuffer() { release(); }

void DeviceBuffer::release() noexcept {
  if (device_ != nullptr && data_ != nullptr) device_->deallocate(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : device_(std::exchange(other.device_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    device_ = std::exchange(other.device_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace graphc
