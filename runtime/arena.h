// arena.h — 64-byte aligned byte buffers: the session's arena and persistent storage.
#pragma once

#include <cstddef>
#include <cstdint>

namespace graphc {

constexpr size_t kAlignment = 64;

// An owned, zero-initialised, 64-byte aligned block.  Size 0 is allowed (data() is
// still a valid aligned pointer, so kernels never see nullptr).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t nbytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// The one arena of a session: every ARENA value lives at data() + offset.
using Arena = AlignedBuffer;

}  // namespace graphc
