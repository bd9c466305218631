// device.h — where a session's memory lives and how bytes move to and from it.
//
// The executor, the arena, persistent storage and constants reach memory only through
// a Device, so a CUDA device can be added without touching them.  Pointers returned by
// allocate() are device pointers: only the device's own copy/memset functions (and the
// kernels registered for that device) may dereference them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"

namespace graphc {

constexpr size_t kAlignment = 64;

class Device {
 public:
  virtual ~Device() = default;
  // "cpu", "cuda", ...: the name kernels are registered under.
  virtual const std::string& name() const = 0;
  // A zero-filled block of nbytes (0 allowed: still a valid, unique pointer), aligned to
  // kAlignment.  Throws ResourceError when the memory cannot be had; never returns nullptr.
  virtual void* allocate(size_t nbytes) = 0;
  // Frees a block from allocate(); `nbytes` is the size it was allocated with.
  virtual void deallocate(void* ptr, size_t nbytes) noexcept = 0;
  virtual void copy_host_to_device(void* dst, const void* src, size_t nbytes) = 0;
  virtual void copy_device_to_host(void* dst, const void* src, size_t nbytes) = 0;
  virtual void copy_device_to_device(void* dst, const void* src, size_t nbytes) = 0;
  virtual void memset(void* dst, int byte, size_t nbytes) = 0;
  // Waits until every operation queued on the device has finished.
  virtual void synchronize() = 0;
  // The stream (cudaStream_t) or queue kernels are launched on; nullptr on CPU.
  virtual void* stream() const { return nullptr; }
  // A hint before the executor's allocations: about `nbytes` (arena + persistent store +
  // constants, each rounded to kAlignment) follow.  The CUDA device makes them one cudaMalloc.
  virtual void reserve(size_t nbytes) { (void)nbytes; }
};

// Host memory; every operation is synchronous.
class CpuDevice final : public Device {
 public:
  const std::string& name() const override;
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) noexcept override;
  void copy_host_to_device(void* dst, const void* src, size_t nbytes) override;
  void copy_device_to_host(void* dst, const void* src, size_t nbytes) override;
  void copy_device_to_device(void* dst, const void* src, size_t nbytes) override;
  void memset(void* dst, int byte, size_t nbytes) override;
  void synchronize() override {}
};

// The device called `name`.  Throws DeviceUnavailable saying why when it cannot be used:
// "cuda" on a build without CUDA (no GRAPHC_WITH_CUDA), or a name no build knows.
std::shared_ptr<Device> make_device(const std::string& name);

// Names of the devices this build has kernels for ("cpu" first).
std::vector<std::string> built_devices();

// Whether this build was compiled with the CUDA runtime (GRAPHC_WITH_CUDA).
bool cuda_built();

// The CUDA settings of the environment, read when a CUDA executor or device opens:
// GRAPHC_CUDA_GRAPHS (default 1: capture a run into a CUDA graph and replay it),
// GRAPHC_CUDA_SYNC (default 0; 1: synchronise and check after every step, no graph),
// GRAPHC_CUDA_TF32 (default 0; 1: TF32 tensor cores for float32 matmul and conv).  Each must
// be unset, empty, "0" or "1"; std::invalid_argument naming the variable otherwise.
struct CudaOptions {
  bool graphs = true;
  bool sync = false;
  bool tf32 = false;
};
CudaOptions cuda_options();

// "" when device 'cuda' can be opened (a CUDA build, a driver, a GPU of compute capability
// 8.0 or later, cuBLASLt), else why: DeviceUnavailable's message.  Never throws.
std::string cuda_status();

// Facts about GPU 0 and the loaded libraries ("name", "compute_capability", "sm_count",
// "memory_bytes", "driver_version", "runtime_version", "cublaslt_path", "cublaslt_version",
// "cudnn_path", "cudnn_version" or "cudnn_missing", "library_dirs"), in that order.
// DeviceUnavailable when device 'cuda' cannot be opened.
std::vector<std::pair<std::string, std::string>> cuda_info();

// The folders searched first for the CUDA libraries (libcublasLt.so.13, libcudnn.so.9), before
// the system's library path; graphc/_cuda_libs.py sets those of NVIDIA's wheels.  Takes
// effect for libraries not loaded yet (a library stays loaded once found).
void set_cuda_library_dirs(const std::vector<std::string>& dirs);
std::vector<std::string> cuda_library_dirs();

// Loads CUDA library `which` ("cublasLt" or "cudnn") as a CUDA device would (search order
// above, major version checked) without opening a device: {"path", "version"}.
// DeviceUnavailable naming the file, the folders searched and the fix; in a build without
// CUDA, that it is not built.  For tests and `graphc info`.
std::vector<std::pair<std::string, std::string>> cuda_load_library(const std::string& which);

// An owned block of device memory (move-only).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Device* device, size_t nbytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release() noexcept;
  Device* device_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace graphc
