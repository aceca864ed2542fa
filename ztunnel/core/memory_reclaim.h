// MemoryReclaimer: gives freed heap memory back to the kernel after a burst. glibc keeps
// memory a flood of connections freed (TLS sessions, HTTP/2 sessions, buffers) in its
// arenas, so without this the node's RSS after an attack stays at its peak for good.
// malloc_trim(0) releases the free pages inside every arena too, not only at the top.
#pragma once

#include <chrono>
#include <cstddef>

namespace zt {

/// MemoryReclaimer runs on a control thread (never on a worker: a trim holds each
/// arena's lock while it walks it). Not thread-safe.
class MemoryReclaimer {
 public:
  using Clock = std::chrono::steady_clock;
  /// MemoryReclaimer trims at most once per `period`, and only when the resident set
  /// has grown by more than `slack` bytes since the last trim.
  explicit MemoryReclaimer(size_t slack = size_t{4} << 20,
                           Clock::duration period = std::chrono::seconds(5));
  /// Tick trims if due; returns the bytes of RSS the trim gave back (0 if none ran).
  size_t Tick(Clock::time_point now = Clock::now());

 private:
  size_t slack_;
  Clock::duration period_;
  Clock::time_point last_{};
  size_t baseline_ = 0;  // RSS after the last trim
};

/// ResidentBytes is the process' resident set size.
size_t ResidentBytes();

}  // namespace zt
