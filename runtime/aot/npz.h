// npz.h — checkpoints of an AOT artifact in exactly the format of Session.save_checkpoint
// (graphc/checkpoint.py): a numpy .npz archive, one "<name>.npy" member per persistent tensor
// plus the marker "__graphc_checkpoint_version__" (int64, 0-d, = 1).  So a model trained in C
// resumes in Python (graphc.checkpoint.load, np.load) and the other way round.
//
// Writing: a zip of stored members with .npy format 1.0 headers, zip64 records only where a size
// or an offset needs them; written to "<path>.tmp-<pid>" in the same folder, flushed and fsynced,
// then renamed over path (a crash mid-write leaves the old checkpoint intact).
//
// Reading treats the file as untrusted and is all or nothing, with the checks of
// graphc/checkpoint.py: the zip structure (end of central directory, zip64 when present, every
// member inside the file, local and central names equal), stored members only (deflated ones are
// refused with a message saying so: numpy.savez stores, savez_compressed deflates), the marker,
// exactly the expected names, each .npy header (magic, version 1.0 or 2.0, at most 10000 bytes,
// descr '<f4' '<f8' '<i4' '<i8' '|b1' or their big-endian twins, fortran_order, shape ==
// expected), the member's size, its CRC-32 and, for bool, bytes 0 or 1 — all before the first
// byte of any destination is written.  Big-endian members are byte-swapped exactly and
// fortran-ordered ones transposed to C order while copying.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tables.h"

namespace graphc {
namespace aot {

constexpr char kCheckpointMarker[] = "__graphc_checkpoint_version__";
constexpr int64_t kCheckpointVersion = 1;
// numpy's default bound on a .npy header (graphc.checkpoint.MAX_HEADER_BYTES).
constexpr uint64_t kMaxNpyHeaderBytes = 10000;
// The marker is one integer: its member is ~136 bytes (graphc.checkpoint.MAX_MARKER_BYTES).
constexpr uint64_t kMaxMarkerBytes = 4096;

// A tensor to save: `nbytes` bytes at `data`, C order, native byte order.
struct NpzTensor {
  std::string name;
  int32_t dtype;  // graphc::DType
  std::vector<int64_t> dims;
  const void* data;
  uint64_t nbytes;
};

// Writes the checkpoint (the tensors in order, then the marker) to `path` atomically.
// force_zip64: write zip64 records even for small members (numpy writes zip64 local headers; the
// tests use it to exercise the zip64 paths).  Throws Error: kArgument for a bad tensor (unknown
// dtype, nbytes that do not match the dims, a duplicate name or the marker's name, a null data
// pointer of a non-empty tensor), kIo when the file cannot be written (the old file survives).
void write_npz_atomic(const std::string& path, const std::vector<NpzTensor>& tensors, bool force_zip64 = false);

// A tensor to load into `dst` (`nbytes` bytes, C order, native byte order).
struct NpzExpect {
  std::string name;
  int32_t dtype;  // graphc::DType
  std::vector<int64_t> dims;
  void* dst;
  uint64_t nbytes;
};

// Reads the checkpoint at `path` into the expected tensors (strict: exactly these names plus the
// marker).  Throws Error: kIo when the file cannot be opened or read, kNoMemory when its bytes do
// not fit in memory, kCheckpoint for a file that is not a graphc checkpoint, is damaged, or does
// not match `expect` (the message lists the differences like graphc.checkpoint: "missing variable
// 'w'; unexpected variable 'v'"), kArgument for a bad `expect`.  No dst is written unless every
// check passed.
void read_npz(const std::string& path, const std::vector<NpzExpect>& expect);

// The same checks and copies over an archive already in memory; `where` starts the messages
// ("checkpoint 'a.npz'").
void read_npz_image(const void* data, size_t nbytes, const std::vector<NpzExpect>& expect, const std::string& where);

// zlib's CRC-32 (the zip checksum) of n bytes, continuing from `crc` (0 to start).
uint32_t crc32(uint32_t crc, const void* p, size_t n) noexcept;

}  // namespace aot
}  // namespace graphc
