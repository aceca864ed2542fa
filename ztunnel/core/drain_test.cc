#include "ztunnel/core/drain.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

namespace zt {
namespace {

using namespace std::chrono_literals;

TEST_CASE("Drain runs subscribers once and sets the deadline", "[core]") {
  DrainTrigger trigger;
  DrainWatcher watcher = trigger.Watcher();
  int calls = 0;
  watcher.Subscribe([&] { ++calls; });
  CHECK_FALSE(watcher.draining());
  const auto before = DrainClock::now();
  CHECK(trigger.Start(5s));
  CHECK_FALSE(trigger.Start(1s));  // second start is ignored
  CHECK(watcher.draining());
  CHECK(calls == 1);
  CHECK(watcher.deadline() >= before + 5s);
  // Subscribing after the start runs the callback at once.
  watcher.Subscribe([&] { ++calls; });
  CHECK(calls == 2);
}

TEST_CASE("Unsubscribed callbacks do not run", "[core]") {
  DrainTrigger trigger;
  DrainWatcher watcher = trigger.Watcher();
  bool ran = false;
  const uint64_t id = watcher.Subscribe([&] { ran = true; });
  watcher.Unsubscribe(id);
  trigger.Start(1s);
  CHECK_FALSE(ran);
}

TEST_CASE("WaitReleased waits for every watcher copy", "[core]") {
  DrainTrigger trigger;
  auto w1 = std::make_unique<DrainWatcher>(trigger.Watcher());
  auto w2 = std::make_unique<DrainWatcher>(*w1);
  CHECK(trigger.watchers() == 2);
  trigger.Start(10s);
  CHECK_FALSE(trigger.WaitReleased(DrainClock::now() + 10ms));
  w1.reset();
  CHECK(trigger.watchers() == 1);
  std::thread t([&] { w2.reset(); });
  CHECK(trigger.WaitReleased(DrainClock::now() + 10s));
  t.join();
  CHECK(trigger.watchers() == 0);
}

TEST_CASE("Moved-from watchers do not count", "[core]") {
  DrainTrigger trigger;
  DrainWatcher a = trigger.Watcher();
  DrainWatcher b = std::move(a);
  CHECK(trigger.watchers() == 1);
  DrainWatcher c = trigger.Watcher();
  c = std::move(b);
  CHECK(trigger.watchers() == 1);
}

}  // namespace
}  // namespace zt
