// Drain: a trigger that starts a graceful shutdown with a deadline, and watchers
// that keep it from completing while they still have live work (after istio/ztunnel's
// src/drain.rs). One trigger serves the whole process; later, one per pod.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace zt {

/// DrainClock is the clock drain deadlines are measured on.
using DrainClock = std::chrono::steady_clock;

namespace internal {
struct DrainState;
}

/// DrainWatcher is a handle held by work that must finish (or hit the deadline) before
/// the drain completes. Copies count separately; dropping the last one releases it.
class DrainWatcher {
 public:
  DrainWatcher(const DrainWatcher& other);
  DrainWatcher& operator=(const DrainWatcher& other);
  DrainWatcher(DrainWatcher&& other) noexcept;
  DrainWatcher& operator=(DrainWatcher&& other) noexcept;
  ~DrainWatcher();

  /// draining is true once the trigger has started the drain.
  bool draining() const;
  /// deadline is when remaining work must be closed; meaningful only while draining.
  DrainClock::time_point deadline() const;
  /// Subscribe runs fn once when the drain starts (at once if it already has), on the
  /// thread that starts it. fn must stay callable until Unsubscribe or the trigger dies.
  uint64_t Subscribe(std::function<void()> fn) const;
  /// Unsubscribe removes a callback registered with Subscribe.
  void Unsubscribe(uint64_t id) const;

 private:
  friend class DrainTrigger;
  explicit DrainWatcher(std::shared_ptr<internal::DrainState> state);
  void Release();
  std::shared_ptr<internal::DrainState> state_;
};

/// DrainTrigger starts a drain and waits for every watcher to be released. Thread-safe.
class DrainTrigger {
 public:
  DrainTrigger();
  ~DrainTrigger();
  DrainTrigger(const DrainTrigger&) = delete;
  DrainTrigger& operator=(const DrainTrigger&) = delete;

  /// Watcher hands out a new watcher.
  DrainWatcher Watcher() const;
  /// Start begins the drain with the given grace period; later calls do nothing and
  /// return false.
  bool Start(DrainClock::duration grace);
  /// draining is true once Start has been called.
  bool draining() const;
  /// WaitReleased blocks until every watcher is gone or `until` passes; true if all left.
  bool WaitReleased(DrainClock::time_point until) const;
  /// watchers counts the live watchers.
  size_t watchers() const;

 private:
  std::shared_ptr<internal::DrainState> state_;
};

}  // namespace zt
