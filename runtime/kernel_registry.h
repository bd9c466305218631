// kernel_registry.h — kernels keyed by (op name, dtype), one registry per device.
//
// A kernel is registered as a *factory*: at plan load the executor hands it the step
// (attrs) and the tensors it will read and write (pointers are fixed for the session's
// life), and the factory validates them, precomputes everything (broadcast strides,
// reduction extents, batch offsets) and returns the callable that run() invokes.
// The dispatch dtype is the dtype of input 0 (of output 0 for ops without inputs).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "comm_abi.h"
#include "plan.h"

namespace graphc {

struct TensorRef {
  void* data = nullptr;
  DType dtype = DType::Invalid;
  std::vector<int64_t> dims;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
  template <typename T> T* as() const { return static_cast<T*>(data); }
};

class Device;

// What a kernel may use besides its tensors.  Fixed for the session's life.
struct KernelContext {
  int threads = 1;
  Device* device = nullptr;  // the device the tensors live on; nullptr in a dry prepare (below)
  void* stream = nullptr;    // device->stream(): the stream/queue to launch on; nullptr on CPU
  // The step's index in its plan (-1 when unknown), for messages and device-side error reports.
  int64_t step_index = -1;
  // CUDA: the session's device-side error slot (cuda::ErrorSlot*, common.cuh), where a kernel
  // records a data error it cannot throw (an index out of range); the executor reads it after
  // each run and raises naming the step.  nullptr on CPU.
  void* error_slot = nullptr;
  // Data parallel (runtime/comm_abi.h): the communicator the plan's allreduce_start /
  // allreduce_wait steps call; nullptr for a world of one process (they do nothing) and in
  // a dry prepare.  Owned by the executor's caller, alive as long as the executor.
  const graphc_comm* comm = nullptr;
  // A dry prepare (Executor::prepare_only: the CUDA factories tested on a machine without a
  // GPU): device is nullptr, tensor pointers are fake, and the factory must validate and
  // precompute as usual but call no CUDA or library function; its kernel is never run.
};

using Kernel = std::function<void()>;

// Attr accessors with the step's name in every error.
class KernelArgs {
 public:
  KernelArgs(const StepDesc& step, std::vector<TensorRef> in, std::vector<TensorRef> out,
             KernelContext ctx)
      : step(step), in(std::move(in)), out(std::move(out)), ctx(ctx) {}

  const StepDesc& step;
  std::vector<TensorRef> in;
  std::vector<TensorRef> out;
  KernelContext ctx;
  // Per input (empty, or one entry per input): non-null when the input is a constant or a
  // persistent value (a variable).  *in_version[i] changes whenever the bytes may have changed:
  // from outside a run (Executor::write_persistent: set_variable, load_checkpoint), before each
  // step of a run that writes the value (an optimizer update), and when it is fed.  Versions come
  // from one process-wide counter and are never reused; they are read and bumped only under the
  // executor's run lock.  A kernel may cache data derived from such an input (packed weights,
  // shared between the steps that read the same weight) and rebuild it when the version moved.
  std::vector<const uint64_t*> in_version;
  // The step's planned workspaces (PlanStep.workspaces, in the order the op's registry
  // `workspace` function asked for them): scratch arena memory that is the kernel's alone
  // during its call, never allocated per call.  A factory checks their dtype and dims like
  // any tensor's (a plan may carry none: the kernel then refuses the step).
  std::vector<TensorRef> ws;

  // The version counter of input i when it is read-only across runs, else nullptr.
  const uint64_t* input_version(size_t i) const { return i < in_version.size() ? in_version[i] : nullptr; }

  bool has(const std::string& name) const { return step.attrs.count(name) != 0; }
  int64_t attr_int(const std::string& name) const;
  int64_t attr_int(const std::string& name, int64_t fallback) const;
  bool attr_bool(const std::string& name, bool fallback) const;
  double attr_float(const std::string& name) const;
  std::string attr_string(const std::string& name, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& name) const;
  std::vector<double> attr_floats(const std::string& name) const;
  DType attr_dtype(const std::string& name, DType fallback) const;

  // Throw std::invalid_argument unless the arity matches.
  void expect_arity(size_t n_in, size_t n_out) const;
  [[noreturn]] void fail(const std::string& msg) const;

 private:
  const AttrValue& get(const std::string& name) const;
};

using KernelFactory = std::function<Kernel(const KernelArgs&)>;

class KernelRegistry {
 public:
  void add(const std::string& op, DType dtype, KernelFactory factory);
  // nullptr when absent.
  const KernelFactory* find(const std::string& op, DType dtype) const;
  bool has_op(const std::string& op) const;
  std::vector<std::string> ops() const;
  // Every (op, dtype) key, sorted.
  std::vector<std::pair<std::string, DType>> keys() const;

  // The kernels of device `name` ("cpu", "cuda"), registered on first use.  Throws
  // DeviceUnavailable for a device this build has no kernels for.  Both are defined in
  // cpu/kernel_files.cc (with every kernel file), not in kernel_registry.cc.
  static const KernelRegistry& for_device(const std::string& name);
  // Same as for_device("cpu").
  static const KernelRegistry& cpu();

 private:
  std::map<std::pair<std::string, DType>, KernelFactory> kernels_;
};

// One per file under runtime/cpu/.
void register_elementwise_kernels(KernelRegistry& r);
void register_reduce_kernels(KernelRegistry& r);
void register_fused_reduce_kernels(KernelRegistry& r);  // cpu/fused_reduce.cc
void register_matmul_kernels(KernelRegistry& r);
void register_shape_kernels(KernelRegistry& r);
void register_nn_kernels(KernelRegistry& r);
void register_pad_kernels(KernelRegistry& r);  // cpu/pad.cc
void register_pool_kernels(KernelRegistry& r);  // cpu/pool.cc
void register_norm_kernels(KernelRegistry& r);  // cpu/norm.cc
void register_dropout_kernels(KernelRegistry& r);  // cpu/dropout.cc
void register_random_kernels(KernelRegistry& r);  // cpu/random.cc
void register_conv_kernels(KernelRegistry& r);  // cpu/conv.cc
void register_layer_norm_kernels(KernelRegistry& r);  // cpu/layer_norm.cc
void register_attention_kernels(KernelRegistry& r);  // cpu/attention.cc
void register_activation_kernels(KernelRegistry& r);  // cpu/activations.cc
void register_gather_kernels(KernelRegistry& r);  // cpu/gather.cc
void register_scan_kernels(KernelRegistry& r);  // cpu/scan.cc
void register_rnn_cell_kernels(KernelRegistry& r);  // cpu/rnn_cell.cc
void register_topk_kernels(KernelRegistry& r);  // cpu/topk.cc
void register_math_kernels(KernelRegistry& r);  // cpu/math.cc
void register_tensor_extra_kernels(KernelRegistry& r);  // cpu/tensor_extra.cc
void register_collective_kernels(KernelRegistry& r);  // cpu/collective.cc (data-parallel allreduce)

// The CPU kernel files (cpu/kernel_files.cc): one row per register_* function above, named
// after the file under runtime/cpu/ that defines it.  KernelRegistry::cpu() runs them all; an
// AOT artifact ships and runs only the rows its plan needs (graphc/aot/sources.py).
struct KernelFile {
  const char* source;         // "elementwise.cc"
  const char* register_name;  // "register_elementwise_kernels"
  void (*register_fn)(KernelRegistry& r);
};
const std::vector<KernelFile>& cpu_kernel_files();

std::string format_dims(const std::vector<int64_t>& dims);

}  // namespace graphc
