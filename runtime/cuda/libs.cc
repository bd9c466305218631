// libs.cc — dlopen + dlsym of cuBLASLt, cuDNN and NCCL (libs.h).
#include "libs.h"

#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../device.h"
#include "../errors.h"
#include "cublaslt_api.h"
#include "cudnn_api.h"
#ifdef GRAPHC_HAVE_NCCL
#include "nccl_api.h"
#endif

namespace graphc {
namespace cuda {

namespace {

const char* const kInstallHint = "pip install \"graphc[cuda]\"";

std::string last_dlerror() {
  const char* e = dlerror();
  return e != nullptr ? std::string(e) : std::string("unknown dlopen error");
}

// The file a handle from dlopen(soname) came from, or the soname when the loader cannot say.
std::string loaded_path(void* handle, const std::string& soname) {
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr && map->l_name[0]) {
    return map->l_name;
  }
  return soname;
}

// dlopen of `soname`: first in each of cuda_library_dirs(), then the system's path.  Returns
// the handle (nullptr when none loaded), the file in *path, and what was tried in *tried.
void* open_library(const std::string& soname, std::string* path, std::string* tried) {
  std::vector<std::string> parts;
  for (const std::string& dir : cuda_library_dirs()) {
    if (dir.empty()) continue;
    const std::string file = dir + (dir.back() == '/' ? "" : "/") + soname;
    if (access(file.c_str(), F_OK) != 0) {
      parts.push_back(file + " (no such file)");
      continue;
    }
    void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h != nullptr) {
      *path = file;
      return h;
    }
    parts.push_back(file + " (" + last_dlerror() + ")");
  }
  void* h = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h != nullptr) {
    *path = loaded_path(h, soname);
    return h;
  }
  parts.push_back("the system library path (" + last_dlerror() + ")");
  tried->clear();
  for (size_t i = 0; i < parts.size(); ++i) *tried += (i ? ", " : "") + parts[i];
  return nullptr;
}

// Fills every member of `api` (an X-macro list) from `handle`; the first missing symbol's name
// in *missing_symbol otherwise.
template <class Api> bool bind_symbols(void* handle, Api* api, std::string* missing_symbol);

template <> bool bind_symbols(void* handle, CublasLtApi* api, std::string* missing_symbol) {
#define GRAPHC_BIND(name)                                                   \
  api->name = reinterpret_cast<decltype(api->name)>(dlsym(handle, #name)); \
  if (api->name == nullptr) {                                               \
    *missing_symbol = #name;                                                \
    return false;                                                           \
  }
  GRAPHC_CUBLASLT_FUNCS(GRAPHC_BIND)
  return true;
}

template <> bool bind_symbols(void* handle, CudnnApi* api, std::string* missing_symbol) {
  GRAPHC_CUDNN_FUNCS(GRAPHC_BIND)
  return true;
}

#ifdef GRAPHC_HAVE_NCCL
template <> bool bind_symbols(void* handle, NcclApi* api, std::string* missing_symbol) {
  GRAPHC_NCCL_FUNCS(GRAPHC_BIND)
  return true;
}
#endif
#undef GRAPHC_BIND

// One library: loaded once, then kept (with its handle) for the process's life.
template <class Api> struct Loader {
  std::mutex mutex;
  std::unique_ptr<Api> api;
  LoadedLibrary info;

  // nullptr with *why (the full message) when the library cannot be used.
  const Api* load(const char* title, const std::string& soname, int major, size_t (*version_of)(const Api&),
                  const char* consequence, LoadedLibrary* out, std::string* why) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!api) {
      std::string path, tried;
      void* h = open_library(soname, &path, &tried);
      if (h == nullptr) {
        *why = std::string(title) + " (" + soname + ") was not found; searched " + tried + consequence +
               ". Install NVIDIA's CUDA libraries with: " + kInstallHint;
        return nullptr;
      }
      auto a = std::make_unique<Api>();
      std::string missing;
      if (!bind_symbols(h, a.get(), &missing)) {
        dlclose(h);
        *why = std::string(title) + " at " + path + " has no function " + missing + " (an unsupported version)" +
               consequence + ". Install the version graphc was built with: " + kInstallHint;
        return nullptr;
      }
      const size_t v = version_of(*a);
      if (static_cast<int>(v / 10000) != major) {
        dlclose(h);
        *why = std::string(title) + " at " + path + " is version " + std::to_string(v) + ", graphc was built for major " +
               "version " + std::to_string(major) + consequence + ". Install the matching one with: " + kInstallHint;
        return nullptr;
      }
      info.path = path;
      info.version = v;
      api = std::move(a);
    }
    if (out != nullptr) *out = info;
    return api.get();
  }
};

size_t cublaslt_version(const CublasLtApi& a) { return a.cublasLtGetVersion(); }
size_t cudnn_version(const CudnnApi& a) { return a.cudnnGetVersion(); }
#ifdef GRAPHC_HAVE_NCCL
// NCCL_VERSION_CODE numbering (2.32.3 → 23203): the major version is v / 10000 as for the others.
size_t nccl_version(const NcclApi& a) {
  int v = 0;
  return a.ncclGetVersion(&v) == ncclSuccess && v > 0 ? static_cast<size_t>(v) : 0;
}
#endif

Loader<CublasLtApi>& cublaslt_loader() {
  static Loader<CublasLtApi> l;
  return l;
}
Loader<CudnnApi>& cudnn_loader() {
  static Loader<CudnnApi> l;
  return l;
}
#ifdef GRAPHC_HAVE_NCCL
Loader<NcclApi>& nccl_loader() {
  static Loader<NcclApi> l;
  return l;
}
#endif

}  // namespace

const CublasLtApi& load_cublaslt(LoadedLibrary* info) {
  std::string why;
  const CublasLtApi* api = cublaslt_loader().load("cuBLASLt", "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR),
                                                  CUBLAS_VER_MAJOR, cublaslt_version, "", info, &why);
  if (api == nullptr) throw DeviceUnavailable("device 'cuda' is not available: " + why);
  return *api;
}

const CudnnApi* load_cudnn(LoadedLibrary* info, std::string* missing) {
  std::string why;
  const CudnnApi* api = cudnn_loader().load("cuDNN", "libcudnn.so." + std::to_string(CUDNN_MAJOR), CUDNN_MAJOR,
                                            cudnn_version, " (convolutions use graphc's own kernels without it)",
                                            info, &why);
  if (api == nullptr && missing != nullptr) *missing = why;
  return api;
}

#ifdef GRAPHC_HAVE_NCCL
const NcclApi* load_nccl(LoadedLibrary* info, std::string* missing) {
  std::string why;
  const NcclApi* api = nccl_loader().load("NCCL", "libnccl.so." + std::to_string(NCCL_MAJOR), NCCL_MAJOR, nccl_version,
                                          " (data-parallel training on device 'cuda' needs it: the nvidia-nccl-cu13 "
                                          "wheel, NCCL 2.14 or later)",
                                          info, &why);
  if (api == nullptr && missing != nullptr) *missing = why;
  return api;
}
#endif

}  // namespace cuda
}  // namespace graphc
