// errors.h — the runtime's exception types, beyond the two standard ones.
//
// std::invalid_argument: the plan (or a call's arguments) is wrong.
// std::runtime_error:    something failed while running (a kernel's check on data).
// ResourceError:         the plan needs more memory than allowed, or an allocation failed.
// DeviceUnavailable:     the requested device cannot be used (not built, no driver, no GPU,
//                        unknown name); the message says which.
// CommFailure:          a collective of a data-parallel plan failed (runtime/comm_abi.h).
// The Cython wrapper maps the last three to graphc.errors.ResourceError / DeviceError /
// CommError.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

namespace graphc {

class ResourceError : public std::runtime_error {
 public:
  explicit ResourceError(const std::string& what) : std::runtime_error(what) {}
};

class DeviceUnavailable : public std::runtime_error {
 public:
  explicit DeviceUnavailable(const std::string& what) : std::runtime_error(what) {}
};

// The device failed in a way that leaves it unusable (a CUDA sticky error: illegal address,
// launch failure): every later call on the session raises it again.  Mapped like
// DeviceUnavailable, to graphc.errors.DeviceError.
class DeviceFault : public DeviceUnavailable {
 public:
  explicit DeviceFault(const std::string& what) : DeviceUnavailable(what) {}
};

// A collective failed (a peer rank died, the wait timed out, the launcher is tearing the job
// down): the communicator is broken for good (comm_abi.h: its errors are sticky), so the
// executor that saw it refuses further runs.  `code` is the communicator's return code
// (GRAPHC_COMM_ERROR, _TIMEOUT, _ABORTED, _UNSUPPORTED).  Mapped to graphc.errors.CommError.
class CommFailure : public std::runtime_error {
 public:
  explicit CommFailure(const std::string& what, int code = 1) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace graphc

namespace graphc {

// What the exception being handled is, for the Cython wrapper's translation to
// graphc.errors: call only inside a catch block.  Fills `what` with its message.
enum class ErrorKind : int { Invalid = 1, Resource = 2, Device = 3, Runtime = 4, Comm = 5 };

inline ErrorKind classify_current_exception(std::string* what) noexcept {
  try {
    throw;
  } catch (const CommFailure& e) {
    *what = e.what();
    return ErrorKind::Comm;
  } catch (const DeviceUnavailable& e) {
    *what = e.what();
    return ErrorKind::Device;
  } catch (const ResourceError& e) {
    *what = e.what();
    return ErrorKind::Resource;
  } catch (const std::bad_alloc&) {
    *what = "out of memory (std::bad_alloc)";
    return ErrorKind::Resource;
  } catch (const std::invalid_argument& e) {
    *what = e.what();
    return ErrorKind::Invalid;
  } catch (const std::exception& e) {
    *what = e.what();
    return ErrorKind::Runtime;
  } catch (...) {
    *what = "unknown C++ exception";
    return ErrorKind::Runtime;
  }
}

}  // namespace graphc

namespace graphc {

// The Cython wrapper installs a hook that turns the exception being handled into a
// Python exception (via classify_current_exception); its .pxd files name
// raise_current_exception as the `except +` handler of every throwing declaration.
// The C++ runtime itself never calls it.
using ExceptionHook = void (*)();

inline ExceptionHook& exception_hook() {
  static ExceptionHook hook = nullptr;
  return hook;
}

inline void set_exception_hook(ExceptionHook hook) { exception_hook() = hook; }

inline void raise_current_exception() {
  if (exception_hook() != nullptr) exception_hook()();
}

}  // namespace graphc
