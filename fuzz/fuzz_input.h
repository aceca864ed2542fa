// Helpers shared by the fuzz targets: a reader that turns the fuzzer's bytes into
// decisions, and CHECK, which aborts (a crash the fuzzer reports) when a target's
// invariant breaks. Header-only, no libFuzzer API: the same targets also build with
// g++ against replay_main.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

/// ZT_FUZZ_CHECK aborts with the condition's text when it does not hold: a broken
/// invariant is a crash, so libFuzzer saves the input.
#define ZT_FUZZ_CHECK(cond)                                                             \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

namespace zt::fuzz {

/// Input reads a fuzzer's bytes front to back; past the end it yields zeros and empty
/// strings, so every input is a valid program.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - at_; }
  bool empty() const { return at_ == size_; }

  /// Byte is the next byte, or 0 at the end.
  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  /// Below is a number in [0, n) (n <= 65536), read from one or two bytes.
  uint32_t Below(uint32_t n) {
    if (n <= 1) return 0;
    uint32_t v = Byte();
    if (n > 256) v = v << 8 | Byte();
    return v % n;
  }
  /// Bool is one bit's worth of decision (one byte).
  bool Bool() { return Byte() & 1; }
  /// U32 is four bytes, big-endian.
  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | Byte();
    return v;
  }
  /// Bytes takes up to n bytes.
  std::string_view Bytes(size_t n) {
    if (n > remaining()) n = remaining();
    std::string_view out(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return out;
  }
  /// String takes a length byte, then that many bytes (at most what is left).
  std::string_view String() { return Bytes(Byte()); }
  /// Rest takes everything left.
  std::string_view Rest() { return Bytes(remaining()); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

/// Rng is a small deterministic generator (splitmix64) for targets that take their
/// decisions from a seed at the front of the input and keep the rest as a byte stream
/// the mutator can edit without shifting every decision.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Below is a number in [0, n).
  uint64_t Below(uint64_t n) { return n <= 1 ? 0 : Next() % n; }
  /// OneIn is true about once in n calls.
  bool OneIn(uint64_t n) { return Below(n) == 0; }

 private:
  uint64_t state_;
};

}  // namespace zt::fuzz
