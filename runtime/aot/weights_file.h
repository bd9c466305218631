// weights_file.h — the weights image of an AOT artifact (graphc compile --emit c): reading it
// into the caller's state and constant memory, checked against the artifact's tables.
//
// Format (little-endian; the writer is graphc/aot/weights.py, which documents the same layout):
//   header, 128 bytes:
//     char[8]  magic "GRAPHCW1"
//     u32      format (1)
//     u32      count: records that follow (the persistent tensors, then the constants)
//     char[64] plan sha256, lowercase hex (ModelTable::plan_sha256)
//     u64      data_bytes_total: the size of the whole image in bytes
//     u64      table_offset (128)
//     zero padding to 128
//   then `count` records, each:
//     u32 kind (TensorKind) | u32 dtype | u32 ndim | u32 name_len
//     u64 offset: where its bytes start in the image, a multiple of 64 (0 when zero_init)
//     u64 nbytes | u8 sha256[32] of its initial bytes | u32 zero_init | u32 reserved (0)
//     i64 dims[ndim] | name bytes | zero padding to a multiple of 8
//   then the data: each tensor that is not zero_init at its 64-aligned offset.
//
// The image is untrusted: it may be another artifact's, truncated, or damaged.  Loading is all
// or nothing: the header, every record against the tables (name, kind, dtype, dims, bytes,
// zero_init, sha256), the bounds and alignment of every tensor, and the sha256 of every
// tensor's bytes are checked before the first byte is copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tables.h"

namespace graphc {
namespace aot {

constexpr char kWeightsMagic[8] = {'G', 'R', 'A', 'P', 'H', 'C', 'W', '1'};
constexpr uint32_t kWeightsFormat = 1;
constexpr uint64_t kWeightsHeaderBytes = 128;
constexpr uint64_t kWeightsRecordFixedBytes = 72;  // a record before its dims and name

// Checks the image `data` (nbytes) against `m` and then copies every tensor into `state`
// (persistent tensors, at TensorTable::offset) and `constants`; zero_init tensors are set to
// zero.  `source` names the image in messages ("weights file 'mlp.weights'", "embedded weights").
// Throws aot::Error: kWeights for an image that is not this artifact's or is damaged (the
// message names the tensor and the difference), kArgument for null pointers.  When it throws,
// state and constants are untouched.
void load_weights(const void* data, size_t nbytes, const ModelTable& m, uint8_t* state, uint8_t* constants,
                  const char* source = "weights");

// Message helpers shared with npz.cc (and usable by the AOT runtime):
// "float32", "int64", ... for a graphc::DType number ("dtype 9" for another).
const char* dtype_name(int32_t dtype) noexcept;
// Bytes of one element of a graphc::DType number, 0 for an invalid one.
uint64_t dtype_bytes(int32_t dtype) noexcept;
// Python's tuple spelling: "()", "(5,)", "(784, 512)".
std::string shape_text(const int64_t* dims, int32_t ndim);
// A name quoted like Python's repr(), control bytes escaped, cut after about 200 characters.
std::string quote(const char* s, size_t n);
inline std::string quote(const std::string& s) { return quote(s.data(), s.size()); }
// Problems "; "-joined, at most 10 of them, then "; and N more" (graphc/checkpoint.py's _problems).
std::string joined(const std::vector<std::string>& problems);

}  // namespace aot
}  // namespace graphc
