// collective_checks.h — the validation of allreduce_start / allreduce_wait steps and the calls
// into the communicator (runtime/comm_abi.h), shared by runtime/cpu/collective.cc and
// runtime/cuda/collective.cu: both devices accept exactly the same steps with the same messages.
// Host code only.
//
// A step reduces one gradient bucket in place: its inputs are laid out back to back in one arena
// range, in input order, each member at a 64-byte aligned offset (the op's `contiguous_inputs`),
// and output k is input k's bytes (`alias`).  The kernel hands the communicator the whole range
// [ptr(first member), ptr(last member) + nbytes(last member)) as one buffer: the alignment padding
// between members (at most 63 bytes each) is summed too, and never read.
#pragma once

#include <cstdint>
#include <string>

#include "../comm.h"  // comm_is_trivial, comm_prepare, comm_allreduce_start/wait (CommFailure)
#include "common.h"

namespace graphc {
namespace cpu {

// The largest gap between two members of a bucket: each member starts at the next 64-byte
// aligned offset after the previous one ends.
constexpr uint64_t kBucketAlign = 64;

struct BucketRange {
  int slot = 0;            // attr bucket: the communicator's slot
  void* data = nullptr;    // the first non-empty member (nullptr: every member is empty)
  uint64_t count = 0;      // elements of dtype in the range, padding included
  uint64_t nbytes = 0;     // count * itemsize
  DType dtype = DType::Invalid;
  bool empty() const { return count == 0; }
};

// Validates a collective step: arity (n inputs, n outputs, n >= 1), one float dtype, output k
// of input k's dtype, dims and bytes (in place), the members contiguous in input order.
// Empty members are skipped (they have no bytes to reduce).
inline BucketRange bucket_check(const KernelArgs& a) {
  const size_t n = a.in.size();
  if (n == 0) a.fail("expects at least one input (the bucket's gradients)");
  if (a.out.size() != n) {
    a.fail("expects one output per input, got " + std::to_string(n) + " inputs and " +
           std::to_string(a.out.size()) + " outputs");
  }
  BucketRange r;
  const int64_t slot = a.attr_int("bucket");
  if (slot < 0 || slot > INT32_MAX) a.fail("attr bucket must be in [0, 2^31), got " + std::to_string(slot));
  r.slot = static_cast<int>(slot);
  r.dtype = a.in[0].dtype;
  if (r.dtype != DType::F32 && r.dtype != DType::F64) a.fail("expects float32 or float64 gradients");
  const uint64_t item = dtype_size(r.dtype);
  const char* first = nullptr;  // the first non-empty member
  const char* end = nullptr;    // one past the last non-empty member seen so far
  size_t prev = 0;              // that member's index
  for (size_t k = 0; k < n; ++k) {
    const TensorRef &x = a.in[k], &y = a.out[k];
    const std::string which = std::to_string(k);
    if (x.dtype != r.dtype) a.fail("expects every input of one dtype (input 0's), input " + which + " differs");
    expect_dtype(a, y, x.dtype, "output " + which);
    expect_dims(a, y, x.dims, "output " + which);
    if (y.data != x.data) {
      a.fail("output " + which + " must be input " + which + "'s bytes (the sum is in place: a view, alias_of " +
             "the input), got another address");
    }
    const int64_t numel = numel_of(x);
    if (numel == 0) continue;
    const char* p = static_cast<const char*>(x.data);
    if (p == nullptr) a.fail("input " + which + " has no storage");
    if (first == nullptr) {
      first = p;
    } else {
      // the next member starts where the previous one ends, rounded up to the alignment
      if (p < end || static_cast<uint64_t>(p - end) >= kBucketAlign || static_cast<uint64_t>(p - first) % item) {
        a.fail("input " + which + " does not follow input " + std::to_string(prev) +
               " in the bucket's range (contiguous_inputs: members back to back, each at the next " +
               std::to_string(kBucketAlign) + "-byte aligned offset)");
      }
    }
    end = p + static_cast<uint64_t>(numel) * item;
    prev = k;
  }
  if (first != nullptr) {
    r.data = const_cast<char*>(first);
    r.nbytes = static_cast<uint64_t>(end - first);
    r.count = r.nbytes / item;
  }
  return r;
}

// Whether the step has anything to do: a communicator of more than one process (nullptr: a world
// of one, or a dry prepare) and bytes to reduce.
inline bool comm_active(const KernelArgs& a, const BucketRange& r) {
  return !comm_is_trivial(a.ctx.comm) && a.ctx.device != nullptr && !r.empty();
}

// The communicator calls (runtime/comm.h: CommFailure with the communicator's message on a nonzero
// return).  prepare: at plan load, the slot's byte count (deterministic mode allocates its scratch
// before the first run).  `stream`: nullptr for host memory, else the plan's device stream.
inline void bucket_prepare(const KernelArgs& a, const BucketRange& r, void* stream) {
  comm_prepare(a.ctx.comm, r.slot, r.nbytes, stream);
}

inline void bucket_start(const graphc_comm* c, const BucketRange& r, void* stream) {
  comm_allreduce_start(c, r.slot, r.data, r.count, static_cast<int>(r.dtype), stream);
}

inline void bucket_wait(const graphc_comm* c, const BucketRange& r, void* stream) {
  comm_allreduce_wait(c, r.slot, stream);
}

}  // namespace cpu
}  // namespace graphc
