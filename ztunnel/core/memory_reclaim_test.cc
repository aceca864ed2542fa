#include "ztunnel/core/memory_reclaim.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <vector>

namespace zt {
namespace {

TEST_CASE("MemoryReclaimer gives a freed burst of small allocations back", "[core]") {
  MemoryReclaimer reclaimer(size_t{1} << 20, std::chrono::seconds(0));
  const size_t base = ResidentBytes();
  REQUIRE(base > 0);
  {
    // 64 MiB in 16 KiB blocks (below the mmap threshold, so they live in the heap),
    // touched, then freed except every 64th: fragmentation that keeps the heap top
    // in use, as long-lived connections do after a flood.
    std::vector<std::unique_ptr<char[]>> blocks;
    std::vector<std::unique_ptr<char[]>> keep;
    for (int i = 0; i < 4096; ++i) {
      blocks.emplace_back(new char[16 << 10]);
      std::memset(blocks.back().get(), 1, 16 << 10);
      if (i % 64 == 63) keep.push_back(std::move(blocks.back()));
    }
    blocks.clear();
    const size_t peak = ResidentBytes();
    REQUIRE(peak > base + (32 << 20));
    const size_t freed = reclaimer.Tick();
    CHECK(freed > size_t{32} << 20);
    CHECK(ResidentBytes() < peak - (32 << 20));
  }
}

TEST_CASE("MemoryReclaimer trims at most once per period", "[core]") {
  MemoryReclaimer reclaimer(0, std::chrono::seconds(5));
  const auto t0 = MemoryReclaimer::Clock::now();
  (void)reclaimer.Tick(t0);
  std::vector<std::unique_ptr<char[]>> blocks;
  for (int i = 0; i < 512; ++i) {
    blocks.emplace_back(new char[16 << 10]);
    std::memset(blocks.back().get(), 1, 16 << 10);
  }
  blocks.resize(1);
  CHECK(reclaimer.Tick(t0 + std::chrono::seconds(1)) == 0);  // not due yet
}

}  // namespace
}  // namespace zt
