// weights_file.cc — see weights_file.h for the format and the guarantees.
#include "weights_file.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sha256.h"

namespace graphc {
namespace aot {

namespace {

// Problems listed in one message before "and N more" (graphc.checkpoint.LIST_LIMIT).
constexpr size_t kListLimit = 10;
// Bounds on a record's variable part: no plan has more dims; no name is longer.
constexpr uint32_t kMaxNdim = 64;
constexpr uint32_t kMaxNameBytes = 1u << 20;

uint32_t u32_at(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

uint64_t u64_at(const uint8_t* p) { return uint64_t(u32_at(p)) | (uint64_t(u32_at(p + 4)) << 32); }


const char* kind_name(int64_t kind) {
  switch (kind) {
    case kVariable: return "variable";
    case kOptimizerState: return "optimizer state";
    case kConstant: return "constant";
    default: return "unknown kind";
  }
}

// One record of the image, parsed (not yet checked against the tables).
struct Record {
  uint32_t kind, dtype, ndim, zero_init, reserved;
  uint64_t offset, nbytes;
  const uint8_t* sha256;
  std::vector<int64_t> dims;
  std::string name;
};

std::string tensor_text(int64_t dtype, const int64_t* dims, int32_t ndim) {
  return std::string(dtype_name(int32_t(dtype))) + " " + shape_text(dims, ndim);
}

}  // namespace

const char* dtype_name(int32_t dtype) noexcept {
  switch (dtype) {
    case 1: return "float32";
    case 2: return "float64";
    case 3: return "int32";
    case 4: return "int64";
    case 5: return "bool";
    default: return "invalid dtype";
  }
}

uint64_t dtype_bytes(int32_t dtype) noexcept {
  switch (dtype) {
    case 1: case 3: return 4;
    case 2: case 4: return 8;
    case 5: return 1;
    default: return 0;
  }
}

std::string shape_text(const int64_t* dims, int32_t ndim) {
  std::string s = "(";
  for (int32_t i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  if (ndim == 1) s += ",";
  return s + ")";
}

std::string joined(const std::vector<std::string>& problems) {
  std::string s;
  for (size_t i = 0; i < problems.size() && i < kListLimit; ++i) {
    if (i) s += "; ";
    s += problems[i];
  }
  if (problems.size() > kListLimit) s += "; and " + std::to_string(problems.size() - kListLimit) + " more";
  return s;
}

std::string quote(const char* s, size_t n) {
  constexpr size_t kLimit = 200;
  std::string q = "'";
  size_t i = 0;
  for (; i < n && q.size() < kLimit; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\'' || c == '\\') {
      q += '\\';
      q += char(c);
    } else if (c == '\n') {
      q += "\\n";
    } else if (c == '\t') {
      q += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      q += buf;
    } else {
      q += char(c);  // printable ASCII and UTF-8 bytes as they are
    }
  }
  q += "'";
  if (i < n) q += "\xe2\x80\xa6 (" + std::to_string(n) + " bytes)";
  return q;
}

void load_weights(const void* data, size_t nbytes, const ModelTable& m, uint8_t* state, uint8_t* constants,
                  const char* source) {
  const std::string where = source ? source : "weights";
  // what: " is ...", " has ...", or ": record 3 ..." after where
  auto fail = [&](const std::string& what) { throw Error(kWeights, where + what); };
  if (data == nullptr && nbytes > 0) throw Error(kArgument, where + ": null data pointer");
  const uint8_t* const p = static_cast<const uint8_t*>(data);

  // The header.
  if (nbytes < kWeightsHeaderBytes) {
    fail(" is " + std::to_string(nbytes) + " bytes, shorter than the 128-byte header of a graphc weights image");
  }
  if (std::memcmp(p, kWeightsMagic, 8) != 0) fail(" is not a graphc weights image (no 'GRAPHCW1' magic)");
  const uint32_t format = u32_at(p + 8);
  if (format != kWeightsFormat) {
    fail(" has format " + std::to_string(format) + "; this artifact reads format " + std::to_string(kWeightsFormat));
  }
  const std::string file_plan(reinterpret_cast<const char*>(p + 16), 64);
  const std::string want_plan = m.plan_sha256 ? m.plan_sha256 : "";
  if (file_plan != want_plan) {
    fail(" belongs to another plan (plan sha256 " + quote(file_plan) + " in the file, '" + want_plan +
         "' in this artifact)");
  }
  const uint64_t total = u64_at(p + 80);
  if (total != nbytes) {
    fail(total > nbytes ? " is truncated: the header says " + std::to_string(total) + " bytes, there are " +
                              std::to_string(nbytes)
                        : " has " + std::to_string(nbytes - total) + " bytes past the " + std::to_string(total) +
                              " its header declares");
  }
  const uint64_t table_offset = u64_at(p + 88);
  if (table_offset != kWeightsHeaderBytes) {
    fail(": its record table starts at " + std::to_string(table_offset) + ", expected 128");
  }
  const uint32_t count = u32_at(p + 12);
  const uint64_t want_count = uint64_t(m.n_persistent) + uint64_t(m.n_constants);
  if (count != want_count) {
    fail(" holds " + std::to_string(count) + " tensors, this artifact has " + std::to_string(want_count) + " (" +
         std::to_string(m.n_persistent) + " persistent, " + std::to_string(m.n_constants) + " constants)");
  }

  // The records: parse (bounds first), then compare with the tables.
  std::vector<Record> records(count);
  uint64_t pos = table_offset;
  for (uint32_t i = 0; i < count; ++i) {
    Record& r = records[i];
    if (nbytes - pos < kWeightsRecordFixedBytes) fail(": record " + std::to_string(i) + " runs past the end");
    const uint8_t* q = p + pos;
    r.kind = u32_at(q);
    r.dtype = u32_at(q + 4);
    r.ndim = u32_at(q + 8);
    const uint32_t name_len = u32_at(q + 12);
    r.offset = u64_at(q + 16);
    r.nbytes = u64_at(q + 24);
    r.sha256 = q + 32;
    r.zero_init = u32_at(q + 64);
    r.reserved = u32_at(q + 68);
    if (r.ndim > kMaxNdim) fail(": record " + std::to_string(i) + " claims " + std::to_string(r.ndim) + " dims");
    if (name_len > kMaxNameBytes) {
      fail(": record " + std::to_string(i) + " claims a " + std::to_string(name_len) + "-byte name");
    }
    const uint64_t var = uint64_t(r.ndim) * 8 + name_len;
    const uint64_t len = (kWeightsRecordFixedBytes + var + 7) / 8 * 8;
    if (nbytes - pos < len) fail(": record " + std::to_string(i) + " runs past the end");
    r.dims.resize(r.ndim);
    for (uint32_t d = 0; d < r.ndim; ++d) {
      r.dims[d] = static_cast<int64_t>(u64_at(q + kWeightsRecordFixedBytes + 8 * d));
    }
    r.name.assign(reinterpret_cast<const char*>(q + kWeightsRecordFixedBytes + 8 * r.ndim), name_len);
    pos += len;
  }
  const uint64_t table_end = pos;

  std::vector<std::string> problems;
  for (uint32_t i = 0; i < count; ++i) {
    const Record& r = records[i];
    const bool persistent = i < uint32_t(m.n_persistent);
    const TensorTable& t = persistent ? m.persistent[i] : m.constants[i - uint32_t(m.n_persistent)];
    const std::string name = t.name ? t.name : "";
    if (r.name != name) {
      problems.push_back("tensor " + std::to_string(i) + " is " + quote(r.name) + " in the file, " + quote(name) +
                         " in this artifact");
      continue;
    }
    const std::string q = quote(name);
    if (int64_t(r.kind) != t.kind) {
      problems.push_back(q + ": " + kind_name(r.kind) + " in the file, " + kind_name(t.kind) + " in this artifact");
      continue;
    }
    bool same_shape = int64_t(r.ndim) == t.ndim && int64_t(r.dtype) == t.dtype;
    for (uint32_t d = 0; same_shape && d < r.ndim; ++d) same_shape = r.dims[d] == t.dims[d];
    if (!same_shape) {
      problems.push_back(q + ": " + tensor_text(r.dtype, r.dims.data(), int32_t(r.ndim)) + " in the file, " +
                         tensor_text(t.dtype, t.dims, t.ndim) + " in this artifact");
      continue;
    }
    if (r.nbytes != t.nbytes) {
      problems.push_back(q + ": " + std::to_string(r.nbytes) + " bytes in the file, " + std::to_string(t.nbytes) +
                         " in this artifact");
      continue;
    }
    if ((r.zero_init != 0) != (t.zero_init != 0)) {
      problems.push_back(q + (r.zero_init ? ": all zeros in the file, not in this artifact"
                                          : ": all zeros in this artifact, not in the file"));
      continue;
    }
    if (r.reserved != 0) {
      problems.push_back(q + ": reserved field " + std::to_string(r.reserved) + ", expected 0");
      continue;
    }
    const std::string file_sha = digest_hex(r.sha256);
    if (t.sha256 == nullptr || file_sha != t.sha256) {
      problems.push_back(q + ": initial-value sha256 " + file_sha + " in the file, " +
                         (t.sha256 ? t.sha256 : "none") + " in this artifact");
      continue;
    }
    if (r.zero_init) continue;
    if (r.offset % kTensorAlignment != 0) {
      problems.push_back(q + ": data offset " + std::to_string(r.offset) + " is not a multiple of 64");
      continue;
    }
    if (r.offset < table_end || r.offset > nbytes || nbytes - r.offset < r.nbytes) {
      problems.push_back(q + ": " + std::to_string(r.nbytes) + " bytes at offset " + std::to_string(r.offset) +
                         " lie outside the data section [" + std::to_string(table_end) + ", " +
                         std::to_string(nbytes) + ")");
      continue;
    }
    if (sha256_hex(p + r.offset, r.nbytes) != file_sha) {
      problems.push_back(q + ": its bytes do not match their sha256 (the file is damaged)");
      continue;
    }
  }
  if (!problems.empty()) fail(" does not match this artifact: " + joined(problems));

  // The destination: the tables are trusted, but a wrong one must not write out of bounds.
  for (uint32_t i = 0; i < count; ++i) {
    const bool persistent = i < uint32_t(m.n_persistent);
    const TensorTable& t = persistent ? m.persistent[i] : m.constants[i - uint32_t(m.n_persistent)];
    const uint64_t limit = persistent ? m.state_bytes : m.constant_bytes;
    uint8_t* const base = persistent ? state : constants;
    if (t.nbytes > 0 && base == nullptr) {
      throw Error(kArgument, where + ": null " + (persistent ? "state" : "constant") + " memory");
    }
    if (t.offset > limit || limit - t.offset < t.nbytes) {
      throw Error(kArgument, where + ": the artifact's tables place " + quote(t.name ? t.name : "") + " (" +
                                 std::to_string(t.nbytes) + " bytes at " + std::to_string(t.offset) +
                                 ") outside its " + std::to_string(limit) + "-byte memory");
    }
  }
  for (uint32_t i = 0; i < count; ++i) {
    const bool persistent = i < uint32_t(m.n_persistent);
    const TensorTable& t = persistent ? m.persistent[i] : m.constants[i - uint32_t(m.n_persistent)];
    if (t.nbytes == 0) continue;
    uint8_t* const dst = (persistent ? state : constants) + t.offset;
    if (records[i].zero_init) {
      std::memset(dst, 0, t.nbytes);
    } else {
      std::memcpy(dst, p + records[i].offset, t.nbytes);
    }
  }
}

}  // namespace aot
}  // namespace graphc
