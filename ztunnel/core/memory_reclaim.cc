#include "ztunnel/core/memory_reclaim.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>

namespace zt {

size_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long total = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &total, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<size_t>(resident) * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

MemoryReclaimer::MemoryReclaimer(size_t slack, Clock::duration period)
    : slack_(slack), period_(period), baseline_(ResidentBytes()) {}

size_t MemoryReclaimer::Tick(Clock::time_point now) {
  if (now - last_ < period_) return 0;
  last_ = now;
  const size_t before = ResidentBytes();
  if (before <= baseline_ + slack_) {
    // Shrunk on its own (or never grew): follow it down, so the next burst counts.
    if (before < baseline_) baseline_ = before;
    return 0;
  }
  ::malloc_trim(0);
  const size_t after = ResidentBytes();
  baseline_ = after;
  return before > after ? before - after : 0;
}

}  // namespace zt
