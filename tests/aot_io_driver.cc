// aot_io_driver.cc — a standalone driver for the AOT artifact's I/O (runtime/aot/sha256,
// weights_file, npz), compiled by tests/test_aot_io.py with the system g++ against those files
// only (no Python, no kernels).  Specs are tab-separated text files the test writes; dims are
// comma-separated ("-" for a 0-d tensor).
//
//   aot_io_driver sha256 FILE CHUNK
//       prints the sha256 (hex) of FILE's bytes, fed to Sha256::update in CHUNK-byte pieces.
//   aot_io_driver weights SPEC IMAGE OUTDIR
//       SPEC: first line "plan_sha256 state_bytes constant_bytes n_persistent n_constants", then
//       one line per tensor "name kind dtype dims offset nbytes sha256 zero_init" (persistent,
//       then constants): a ModelTable built from it.  Loads IMAGE with load_weights into state
//       and constant memory that start filled with 0xA5; writes OUTDIR/state.bin and
//       OUTDIR/constants.bin.
//   aot_io_driver npz-write PATH SPEC [zip64]
//       SPEC lines "name dtype dims datafile": write_npz_atomic(PATH, those tensors).
//   aot_io_driver npz-read PATH SPEC OUTDIR
//       SPEC lines "name dtype dims": read_npz(PATH) into buffers filled with 0xA5; writes
//       OUTDIR/<line index>.bin.
//   aot_io_driver weights-fuzz SPEC IMAGE N SEED
//   aot_io_driver npz-fuzz PATH SPEC N SEED
//       N damaged copies of the image / checkpoint (bytes flipped, set to 0x00/0xFF, runs of them,
//       the end cut off), each loaded in-process: every one must either load or fail with
//       kWeights / kCheckpoint and leave the destination untouched.  Prints "ok LOADED REFUSED".
// Exit status: 0 ok; 10 + the aot::Status of an aot::Error (message on stderr); 2 usage or a
// bad spec; 99 when a failed load changed the destination memory (all-or-nothing broken).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "aot/npz.h"
#include "aot/sha256.h"
#include "aot/tables.h"
#include "aot/weights_file.h"

namespace aot = graphc::aot;

namespace {

constexpr unsigned char kFill = 0xA5;

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "aot_io_driver: %s\n", why.c_str());
  std::exit(2);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) usage("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const void* p, size_t n) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (n > 0 && std::fwrite(p, 1, n, f) != n) || std::fclose(f) != 0) usage("cannot write " + path);
}

std::vector<std::vector<std::string>> spec_lines(const std::string& path) {
  std::ifstream f(path);
  if (!f) usage("cannot read spec " + path);
  std::vector<std::vector<std::string>> out;
  std::string line;
  while (std::getline(f, line)) {
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) fields.push_back(field);
    out.push_back(fields);
  }
  return out;
}

std::vector<int64_t> parse_dims(const std::string& s) {
  std::vector<int64_t> dims;
  if (s == "-") return dims;
  std::stringstream ss(s);
  std::string d;
  while (std::getline(ss, d, ',')) dims.push_back(std::stoll(d));
  return dims;
}

uint64_t count_of(const std::vector<int64_t>& dims) {
  uint64_t n = 1;
  for (int64_t d : dims) n *= uint64_t(d);
  return n;
}

// A 64-byte aligned block filled with kFill.
struct Block {
  explicit Block(size_t n) : bytes(n + 64, kFill) {
    p = bytes.data() + (64 - reinterpret_cast<uintptr_t>(bytes.data()) % 64) % 64;
    size = n;
  }
  bool untouched() const {
    for (size_t i = 0; i < size; ++i) {
      if (p[i] != kFill) return false;
    }
    return true;
  }
  std::vector<uint8_t> bytes;
  uint8_t* p;
  size_t size;
};

bool same(const Block& a, const Block& b) { return a.size == b.size && std::memcmp(a.p, b.p, a.size) == 0; }

int fail_with(const aot::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 10 + int(e.status);
}

int cmd_sha256(int argc, char** argv) {
  if (argc != 4) usage("sha256 FILE CHUNK");
  const std::vector<uint8_t> data = read_file(argv[2]);
  const size_t chunk = std::strtoull(argv[3], nullptr, 10);
  if (chunk == 0) usage("CHUNK must be positive");
  aot::Sha256 h;
  for (size_t pos = 0; pos < data.size(); pos += chunk) {
    h.update(data.data() + pos, data.size() - pos < chunk ? data.size() - pos : chunk);
  }
  uint8_t digest[32];
  h.final(digest);
  const std::string once = aot::sha256_hex(data.data(), data.size());
  if (once != aot::digest_hex(digest)) usage("sha256_hex and the chunked Sha256 disagree");
  std::printf("%s\n", once.c_str());
  return 0;
}

// The ModelTable of a weights spec, with the storage its pointers point into.
struct SpecModel {
  std::vector<std::string> names, shas;
  std::vector<std::vector<int64_t>> dims;
  std::vector<aot::TensorTable> tables;
  std::string plan;
  aot::ModelTable m{};
};

void build_model(const char* spec, SpecModel* sm) {
  const auto lines = spec_lines(spec);
  if (lines.empty() || lines[0].size() != 5) usage("bad spec header");
  sm->plan = lines[0][0];
  const uint64_t state_bytes = std::stoull(lines[0][1]), constant_bytes = std::stoull(lines[0][2]);
  const int n_persistent = std::stoi(lines[0][3]), n_constants = std::stoi(lines[0][4]);
  if (int(lines.size()) != 1 + n_persistent + n_constants) usage("spec line count");
  auto& names = sm->names;
  auto& shas = sm->shas;
  auto& dims = sm->dims;
  auto& tables = sm->tables;
  names.reserve(lines.size());
  shas.reserve(lines.size());
  dims.reserve(lines.size());
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto& f = lines[i];
    if (f.size() != 8) usage("bad tensor line " + std::to_string(i));
    names.push_back(f[0]);
    dims.push_back(parse_dims(f[3]));
    shas.push_back(f[6]);
    aot::TensorTable t{};
    t.name = names.back().c_str();
    t.kind = std::stoi(f[1]);
    t.dtype = std::stoi(f[2]);
    t.ndim = int32_t(dims.back().size());
    t.dims = dims.back().data();
    t.offset = std::stoull(f[4]);
    t.nbytes = std::stoull(f[5]);
    t.sha256 = shas.back().c_str();
    t.zero_init = std::stoi(f[7]);
    tables.push_back(t);
  }
  aot::ModelTable& m = sm->m;
  m.abi_version = aot::kAbiVersion;
  m.name = "io_test";
  m.plan_sha256 = sm->plan.c_str();
  m.state_bytes = state_bytes;
  m.constant_bytes = constant_bytes;
  m.n_persistent = n_persistent;
  m.persistent = tables.data();
  m.n_constants = n_constants;
  m.constants = tables.data() + n_persistent;
}

// One damaged copy of `good` (deterministic in rng).
std::vector<uint8_t> damage(const std::vector<uint8_t>& good, std::mt19937_64& rng) {
  std::vector<uint8_t> d = good;
  if (d.empty()) return d;
  const int kind = int(rng() % 5);
  const size_t at = size_t(rng() % d.size());
  if (kind == 0) {
    d[at] ^= uint8_t(1u << (rng() % 8));
  } else if (kind == 1 || kind == 2) {  // a run of 0x00 or 0xFF (sizes, offsets, counts)
    const size_t len = 1 + size_t(rng() % 8);
    for (size_t i = at; i < d.size() && i < at + len; ++i) d[i] = kind == 1 ? 0x00 : 0xFF;
  } else if (kind == 3) {
    d.resize(at);
  } else {
    for (int i = 0; i < 3; ++i) d[size_t(rng() % d.size())] = uint8_t(rng());
  }
  return d;
}

int cmd_weights_fuzz(int argc, char** argv) {
  if (argc != 6) usage("weights-fuzz SPEC IMAGE N SEED");
  SpecModel sm;
  build_model(argv[2], &sm);
  const std::vector<uint8_t> good = read_file(argv[3]);
  const long n = std::atol(argv[4]);
  std::mt19937_64 rng(std::strtoull(argv[5], nullptr, 10));
  Block ref_state(sm.m.state_bytes), ref_constants(sm.m.constant_bytes);
  aot::load_weights(good.data(), good.size(), sm.m, ref_state.p, ref_constants.p);
  long loaded = 0, refused = 0;
  for (long i = 0; i < n; ++i) {
    const std::vector<uint8_t> bad = damage(good, rng);
    Block state(sm.m.state_bytes), constants(sm.m.constant_bytes);
    try {
      aot::load_weights(bad.data(), bad.size(), sm.m, state.p, constants.p);
      // a damaged copy that loads must have been damaged where it does not matter
      if (!same(state, ref_state) || !same(constants, ref_constants)) {
        std::fprintf(stderr, "damaged copy %ld loaded DIFFERENT values\n", i);
        return 99;
      }
      ++loaded;
    } catch (const aot::Error& e) {
      if (e.status != aot::kWeights || !state.untouched() || !constants.untouched()) {
        std::fprintf(stderr, "damaged copy %ld: status %d, memory %s: %s\n", i, int(e.status),
                     state.untouched() && constants.untouched() ? "untouched" : "CHANGED", e.what());
        return 99;
      }
      ++refused;
    }
  }
  std::printf("ok %ld %ld\n", loaded, refused);
  return 0;
}

int cmd_weights(int argc, char** argv) {
  if (argc != 5) usage("weights SPEC IMAGE OUTDIR");
  SpecModel sm;
  build_model(argv[2], &sm);
  const aot::ModelTable& m = sm.m;
  Block state(m.state_bytes), constants(m.constant_bytes);
  const std::vector<uint8_t> image = read_file(argv[3]);
  try {
    aot::load_weights(image.data(), image.size(), m, state.p, constants.p, "weights file 'test.weights'");
  } catch (const aot::Error& e) {
    if (!state.untouched() || !constants.untouched()) {
      std::fprintf(stderr, "load_weights failed AND changed memory: %s\n", e.what());
      return 99;
    }
    return fail_with(e);
  }
  const std::string out = argv[4];
  write_file(out + "/state.bin", state.p, state.size);
  write_file(out + "/constants.bin", constants.p, constants.size);
  return 0;
}

int cmd_npz_write(int argc, char** argv) {
  if (argc != 4 && argc != 5) usage("npz-write PATH SPEC [zip64]");
  const bool zip64 = argc == 5 && std::string(argv[4]) == "zip64";
  const auto lines = spec_lines(argv[3]);
  std::vector<std::vector<uint8_t>> data;
  data.reserve(lines.size());
  std::vector<aot::NpzTensor> tensors;
  for (const auto& f : lines) {
    if (f.size() != 4) usage("bad npz-write line");
    data.push_back(read_file(f[3]));
    tensors.push_back(aot::NpzTensor{f[0], std::stoi(f[1]), parse_dims(f[2]), data.back().data(),
                                     data.back().size()});
  }
  try {
    aot::write_npz_atomic(argv[2], tensors, zip64);
  } catch (const aot::Error& e) {
    return fail_with(e);
  }
  return 0;
}

int cmd_npz_read(int argc, char** argv) {
  if (argc != 5) usage("npz-read PATH SPEC OUTDIR");
  const auto lines = spec_lines(argv[3]);
  std::vector<Block> blocks;
  blocks.reserve(lines.size());
  std::vector<aot::NpzExpect> expect;
  for (const auto& f : lines) {
    if (f.size() != 3) usage("bad npz-read line");
    const std::vector<int64_t> dims = parse_dims(f[2]);
    const int32_t dtype = std::stoi(f[1]);
    const uint64_t nbytes = count_of(dims) * aot::dtype_bytes(dtype);
    blocks.emplace_back(nbytes);
    expect.push_back(aot::NpzExpect{f[0], dtype, dims, blocks.back().p, nbytes});
  }
  try {
    aot::read_npz(argv[2], expect);
  } catch (const aot::Error& e) {
    for (const Block& b : blocks) {
      if (!b.untouched()) {
        std::fprintf(stderr, "read_npz failed AND changed memory: %s\n", e.what());
        return 99;
      }
    }
    return fail_with(e);
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    write_file(std::string(argv[4]) + "/" + std::to_string(i) + ".bin", blocks[i].p, blocks[i].size);
  }
  return 0;
}

}  // namespace

int cmd_npz_fuzz(int argc, char** argv) {
  if (argc != 6) usage("npz-fuzz PATH SPEC N SEED");
  const std::vector<uint8_t> good = read_file(argv[2]);
  const auto lines = spec_lines(argv[3]);
  const long n = std::atol(argv[4]);
  std::mt19937_64 rng(std::strtoull(argv[5], nullptr, 10));
  auto make = [&](std::vector<Block>* blocks, std::vector<aot::NpzExpect>* expect) {
    blocks->reserve(lines.size());
    for (const auto& f : lines) {
      const std::vector<int64_t> dims = parse_dims(f[2]);
      const int32_t dtype = std::stoi(f[1]);
      const uint64_t nbytes = count_of(dims) * aot::dtype_bytes(dtype);
      blocks->emplace_back(nbytes);
      expect->push_back(aot::NpzExpect{f[0], dtype, dims, blocks->back().p, nbytes});
    }
  };
  std::vector<Block> ref;
  std::vector<aot::NpzExpect> ref_expect;
  make(&ref, &ref_expect);
  aot::read_npz_image(good.data(), good.size(), ref_expect, "checkpoint 'good'");
  long loaded = 0, refused = 0;
  for (long i = 0; i < n; ++i) {
    const std::vector<uint8_t> bad = damage(good, rng);
    std::vector<Block> blocks;
    std::vector<aot::NpzExpect> expect;
    make(&blocks, &expect);
    try {
      aot::read_npz_image(bad.data(), bad.size(), expect, "checkpoint 'fuzz'");
      for (size_t k = 0; k < blocks.size(); ++k) {
        if (!same(blocks[k], ref[k])) {
          std::fprintf(stderr, "damaged copy %ld loaded DIFFERENT values\n", i);
          return 99;
        }
      }
      ++loaded;
    } catch (const aot::Error& e) {
      bool untouched = true;
      for (const Block& b : blocks) untouched = untouched && b.untouched();
      if (e.status != aot::kCheckpoint || !untouched) {
        std::fprintf(stderr, "damaged copy %ld: status %d, memory %s: %s\n", i, int(e.status),
                     untouched ? "untouched" : "CHANGED", e.what());
        return 99;
      }
      ++refused;
    }
  }
  std::printf("ok %ld %ld\n", loaded, refused);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) usage("expected a command: sha256, weights, npz-write, npz-read");
  const std::string cmd = argv[1];
  if (cmd == "sha256") return cmd_sha256(argc, argv);
  if (cmd == "weights") return cmd_weights(argc, argv);
  if (cmd == "npz-write") return cmd_npz_write(argc, argv);
  if (cmd == "npz-read") return cmd_npz_read(argc, argv);
  if (cmd == "weights-fuzz") return cmd_weights_fuzz(argc, argv);
  if (cmd == "npz-fuzz") return cmd_npz_fuzz(argc, argv);
  usage("unknown command " + cmd);
}
