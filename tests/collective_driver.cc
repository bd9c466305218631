// collective_driver.cc — runs the CPU allreduce_start / allreduce_wait kernels
// (runtime/cpu/collective.cc) against a fake communicator, without MPI and without the Cython
// wrapper; tests/test_collective_ops.py compiles it with the system g++ and runs one case per call:
//
//     collective_driver CASE
//
// The fake communicator (runtime/comm_abi.h) logs every call as one line on stdout and plays a
// world of `size` ranks holding the same data: allreduce_wait multiplies the range that
// allreduce_start was given by size (nothing changes before the wait, so a test sees whether a
// step reads the sum too early).  The driver prints the bucket's values after each stage and a
// thrown exception as "threw <kind>: <message>".
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "../runtime/comm_abi.h"
#include "../runtime/errors.h"
#include "../runtime/kernel_registry.h"
#include "../runtime/op_schema.h"

using namespace graphc;

namespace {

struct Fake {
  int size = 2;
  int fail_start = 0, fail_wait = 0, fail_prepare = 0;  // return codes (0: succeed)
  void* data = nullptr;
  uint64_t count = 0;
  int dtype = 0;
  bool pending = false;
};

void say_error(char* err, size_t errlen, const char* msg) { std::snprintf(err, errlen, "%s", msg); }

int fake_prepare(void* self, int slot, uint64_t nbytes, void* stream, char* err, size_t errlen) {
  Fake* f = static_cast<Fake*>(self);
  std::printf("prepare slot=%d nbytes=%llu stream=%s\n", slot, static_cast<unsigned long long>(nbytes),
              stream ? "set" : "null");
  if (f->fail_prepare) say_error(err, errlen, "rank 1: prepare of bucket 3 failed: out of scratch");
  return f->fail_prepare;
}

int fake_start(void* self, int slot, void* data, uint64_t count, int dtype, void* stream, char* err,
               size_t errlen) {
  Fake* f = static_cast<Fake*>(self);
  std::printf("start slot=%d count=%llu dtype=%d stream=%s\n", slot, static_cast<unsigned long long>(count), dtype,
              stream ? "set" : "null");
  if (f->fail_start) {
    say_error(err, errlen, "rank 1: allreduce of bucket 3 (96 bytes) did not complete within 60 s: peer gone");
    return f->fail_start;
  }
  f->data = data;
  f->count = count;
  f->dtype = dtype;
  f->pending = true;
  return 0;
}

int fake_wait(void* self, int slot, void* stream, char* err, size_t errlen) {
  Fake* f = static_cast<Fake*>(self);
  std::printf("wait slot=%d stream=%s pending=%d\n", slot, stream ? "set" : "null", f->pending ? 1 : 0);
  if (f->fail_wait) {
    say_error(err, errlen, "");  // a communicator that says nothing: the kernel words the failure itself
    return f->fail_wait;
  }
  if (f->pending) {
    for (uint64_t i = 0; i < f->count; ++i) {
      if (f->dtype == 1) static_cast<float*>(f->data)[i] *= static_cast<float>(f->size);
      else static_cast<double*>(f->data)[i] *= static_cast<double>(f->size);
    }
  }
  f->pending = false;
  return 0;
}

int fake_broadcast(void*, void*, uint64_t, int, char*, size_t) { return 0; }
int fake_allgather(void*, const void*, uint64_t, void*, char*, size_t) { return 0; }
int fake_barrier(void*, char*, size_t) { return 0; }

// A bucket of float members in one 64-byte aligned buffer, members at `offsets` (bytes).
struct Bucket {
  std::vector<double> storage;  // 8-byte items: aligned for either dtype
  char* base = nullptr;
  DType dtype = DType::F32;
  std::vector<uint64_t> offsets;
  std::vector<int64_t> sizes;

  Bucket(DType t, std::vector<uint64_t> offs, std::vector<int64_t> n) : dtype(t), offsets(offs), sizes(n) {
    storage.assign(1024, 0.0);
    base = reinterpret_cast<char*>(storage.data());
    base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
    const size_t item = t == DType::F32 ? 4 : 8;
    for (size_t b = 0; b < 4096; b += item) set(b, 1000.0);  // padding and everything else: 1000
    for (size_t k = 0; k < offs.size(); ++k)
      for (int64_t i = 0; i < n[k]; ++i) set(offs[k] + i * item, static_cast<double>(k * 100 + i));
  }
  void set(size_t byte, double v) {
    if (dtype == DType::F32) *reinterpret_cast<float*>(base + byte) = static_cast<float>(v);
    else *reinterpret_cast<double*>(base + byte) = v;
  }
  double get(size_t byte) const {
    if (dtype == DType::F32) return *reinterpret_cast<const float*>(base + byte);
    return *reinterpret_cast<const double*>(base + byte);
  }
  std::vector<TensorRef> refs() const {
    std::vector<TensorRef> out;
    for (size_t k = 0; k < offsets.size(); ++k) {
      TensorRef t;
      t.data = base + offsets[k];
      t.dtype = dtype;
      t.dims = {sizes[k]};
      out.push_back(t);
    }
    return out;
  }
  // Members' values, the first padding item after member 0 and the item after the last member.
  void print(const char* stage) const {
    const size_t item = dtype == DType::F32 ? 4 : 8;
    const size_t pad = offsets[0] + sizes[0] * item, after = offsets.back() + sizes.back() * item;
    std::printf("%s", stage);
    for (size_t k = 0; k < offsets.size(); ++k) {
      std::printf(" [");
      for (int64_t i = 0; i < sizes[k]; ++i) std::printf(i ? ",%g" : "%g", get(offsets[k] + i * item));
      std::printf("]");
    }
    std::printf(" pad=%g after=%g\n", get(pad), get(after));
  }
};

std::string kind_of(const std::exception& e) {
  if (auto* c = dynamic_cast<const CommFailure*>(&e)) return "CommFailure(code " + std::to_string(c->code()) + ")";
  if (dynamic_cast<const std::invalid_argument*>(&e)) return "invalid_argument";
  if (dynamic_cast<const std::runtime_error*>(&e)) return "runtime_error";
  return "exception";
}

// What the generated schema says about the collectives' properties (and an op without them).
int print_schema() {
  for (const char* op : {"allreduce_start", "allreduce_wait", "sgd_update"}) {
    const schema::OpInfo* info = schema::find_op(op);
    if (info == nullptr) {
      std::printf("%s missing\n", op);
      continue;
    }
    std::printf("%s alias_each=%d num_alias=%d contiguous=%d schedule=%d alias_input(0)=%d alias_input(5)=%d\n", op,
                info->alias_each ? 1 : 0, info->num_alias, info->contiguous_inputs ? 1 : 0,
                static_cast<int>(info->schedule), schema::alias_input(*info, 0), schema::alias_input(*info, 5));
  }
  return 0;
}

int run_case(const std::string& name) {
  if (name == "schema") return print_schema();
  KernelRegistry reg;
  register_collective_kernels(reg);
  Fake fake;
  graphc_comm comm{GRAPHC_COMM_ABI_VERSION, 0, 2, 0, "fake", &fake, fake_prepare, fake_start, fake_wait,
                   fake_broadcast, fake_allgather, fake_barrier};
  int device_token = 0;
  KernelContext ctx;
  ctx.device = reinterpret_cast<Device*>(&device_token);  // never dereferenced by these kernels
  ctx.comm = &comm;

  DType t = DType::F32;
  // f32: members of 5, 0 and 17 floats: 5 floats end at byte 20 -> next member at 64; the empty
  // member sits at 64 too (no bytes); 17 floats from 64 end at 132.
  std::vector<uint64_t> offs = {0, 64, 64};
  std::vector<int64_t> sizes = {5, 0, 17};
  int64_t slot = 3;
  bool same_out = true;
  std::vector<int> out_dtype_swap;
  if (name == "f64") {
    t = DType::F64;
    offs = {0, 64, 128};
    sizes = {3, 8, 1};  // 24 bytes -> 64; 64 bytes -> 128; ends at 136
  } else if (name == "gap") {
    offs = {0, 128, 128};  // 108 bytes of padding after member 0: not the next aligned offset
  } else if (name == "overlap") {
    offs = {0, 16, 16};
  } else if (name == "order") {
    offs = {64, 0, 0};
    sizes = {5, 0, 16};
  } else if (name == "not_in_place") {
    same_out = false;
  } else if (name == "no_comm") {
    ctx.comm = nullptr;
  } else if (name == "world_of_one") {
    comm.size = 1;
  } else if (name == "dry") {
    ctx.device = nullptr;
  } else if (name == "fail_start") {
    fake.fail_start = GRAPHC_COMM_TIMEOUT;
  } else if (name == "fail_wait") {
    fake.fail_wait = GRAPHC_COMM_ERROR;
  } else if (name == "fail_prepare") {
    fake.fail_prepare = GRAPHC_COMM_ERROR;
  } else if (name == "negative_bucket") {
    slot = -1;
  } else if (name == "all_empty") {
    sizes = {0, 0, 0};
    offs = {0, 0, 0};
  } else if (name != "f32" && name != "arity" && name != "mixed_dtype") {
    std::printf("unknown case %s\n", name.c_str());
    return 2;
  }
  Bucket bucket(t, offs, sizes);
  Bucket other(t, offs, sizes);
  StepDesc step;
  step.node = "data_parallel/allreduce_start_3";
  AttrValue bucket_attr;
  bucket_attr.kind = AttrValue::Int;
  bucket_attr.i = slot;
  step.attrs["bucket"] = bucket_attr;
  std::vector<TensorRef> in = bucket.refs();
  std::vector<TensorRef> out = same_out ? bucket.refs() : other.refs();
  if (name == "arity") out.pop_back();
  if (name == "mixed_dtype") {
    in[2].dtype = out[2].dtype = DType::F64;
    in[2].dims = out[2].dims = {8};
  }
  bucket.print("before");
  try {
    step.op = "allreduce_start";
    Kernel start = (*reg.find("allreduce_start", t))(KernelArgs(step, in, out, ctx));
    step.op = "allreduce_wait";
    step.node = "data_parallel/allreduce_wait_3";
    Kernel wait = (*reg.find("allreduce_wait", t))(KernelArgs(step, out, out, ctx));
    std::printf("prepared\n");
    for (int run = 0; run < 2; ++run) {
      start();
      bucket.print("started");
      wait();
      bucket.print("waited");
    }
  } catch (const std::exception& e) {
    std::printf("threw %s: %s\n", kind_of(e).c_str(), e.what());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: collective_driver CASE\n");
    return 2;
  }
  return run_case(argv[1]);
}
