#include "ztunnel/io/loop.h"

#include <catch2/catch.hpp>
#include <future>
#include <thread>
#include <vector>

#include "ztunnel/io/testing.h"

namespace zt::io {
namespace {

using testing::LoopThread;

TEST_CASE("Post from many threads runs every task once, each thread's in order", "[io]") {
  LoopThread lt;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  // Written only on the loop thread; read after the last task ran.
  std::vector<std::vector<int>> seen(kThreads);
  std::promise<void> all_done;
  int remaining = kThreads * kPerThread;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        lt.loop().Post([&, t, i] {
          seen[static_cast<size_t>(t)].push_back(i);
          if (--remaining == 0) all_done.set_value();
        });
      }
    });
  }
  for (auto& p : producers) p.join();
  REQUIRE(all_done.get_future().wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  for (int t = 0; t < kThreads; ++t) {
    const auto& s = seen[static_cast<size_t>(t)];
    REQUIRE(s.size() == static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) REQUIRE(s[static_cast<size_t>(i)] == i);
  }
}

TEST_CASE("A task posted from inside a posted task runs too", "[io]") {
  LoopThread lt;
  std::promise<int> done;
  lt.loop().Post([&] { lt.loop().Post([&] { done.set_value(7); }); });
  auto f = done.get_future();
  REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  REQUIRE(f.get() == 7);
}

}  // namespace
}  // namespace zt::io
