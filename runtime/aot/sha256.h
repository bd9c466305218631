// sha256.h — SHA-256 (FIPS 180-4) for the AOT artifact: the weights image carries one digest
// per tensor (weights_file.h) and the artifact's tables the digest of each tensor's initial
// bytes, so a weights file from another model or a damaged one is refused before it is used.
// Plain C++17, no dependency: the artifact links no crypto library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace graphc {
namespace aot {

class Sha256 {
 public:
  Sha256() noexcept;
  // Feed n more bytes (any split of the message gives the same digest).
  void update(const void* p, size_t n) noexcept;
  // The digest of everything fed so far; the object then starts over, as if new.
  void final(uint8_t out[32]) noexcept;
  void reset() noexcept;

 private:
  void block(const uint8_t* p) noexcept;
  uint32_t h_[8];
  uint8_t buf_[64];
  uint64_t total_ = 0;  // bytes fed
  size_t used_ = 0;     // bytes waiting in buf_
};

// The lowercase hex spelling of a digest (64 characters).
std::string digest_hex(const uint8_t digest[32]);
// sha256 of n bytes at p, as 64 lowercase hex digits.
std::string sha256_hex(const void* p, size_t n);

}  // namespace aot
}  // namespace graphc
