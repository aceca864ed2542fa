#include "ztunnel/core/drain.h"

#include <atomic>
#include <vector>

namespace zt {
namespace internal {

struct DrainState {
  mutable std::mutex mu;
  std::condition_variable released;
  std::atomic<bool> started{false};
  DrainClock::time_point deadline{};
  size_t watchers = 0;
  uint64_t next_id = 1;
  std::map<uint64_t, std::function<void()>> subscribers;
};

}  // namespace internal

DrainWatcher::DrainWatcher(std::shared_ptr<internal::DrainState> state) : state_(std::move(state)) {
  std::lock_guard lock(state_->mu);
  ++state_->watchers;
}

DrainWatcher::DrainWatcher(const DrainWatcher& other) : DrainWatcher(other.state_) {}

DrainWatcher& DrainWatcher::operator=(const DrainWatcher& other) {
  if (this != &other) {
    Release();
    state_ = other.state_;
    if (state_) {
      std::lock_guard lock(state_->mu);
      ++state_->watchers;
    }
  }
  return *this;
}

DrainWatcher::DrainWatcher(DrainWatcher&& other) noexcept : state_(std::move(other.state_)) {}

DrainWatcher& DrainWatcher::operator=(DrainWatcher&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
  }
  return *this;
}

DrainWatcher::~DrainWatcher() { Release(); }

void DrainWatcher::Release() {
  if (!state_) return;
  {
    std::lock_guard lock(state_->mu);
    --state_->watchers;
  }
  state_->released.notify_all();
  state_.reset();
}

bool DrainWatcher::draining() const { return state_->started.load(std::memory_order_acquire); }

DrainClock::time_point DrainWatcher::deadline() const {
  std::lock_guard lock(state_->mu);
  return state_->deadline;
}

uint64_t DrainWatcher::Subscribe(std::function<void()> fn) const {
  std::unique_lock lock(state_->mu);
  const uint64_t id = state_->next_id++;
  if (state_->started.load(std::memory_order_acquire)) {
    lock.unlock();
    fn();
    return id;
  }
  state_->subscribers.emplace(id, std::move(fn));
  return id;
}

void DrainWatcher::Unsubscribe(uint64_t id) const {
  std::lock_guard lock(state_->mu);
  state_->subscribers.erase(id);
}

DrainTrigger::DrainTrigger() : state_(std::make_shared<internal::DrainState>()) {}
DrainTrigger::~DrainTrigger() = default;

DrainWatcher DrainTrigger::Watcher() const { return DrainWatcher(state_); }

bool DrainTrigger::Start(DrainClock::duration grace) {
  std::vector<std::function<void()>> to_run;
  {
    std::lock_guard lock(state_->mu);
    if (state_->started.load(std::memory_order_relaxed)) return false;
    state_->deadline = DrainClock::now() + grace;
    state_->started.store(true, std::memory_order_release);
    for (auto& [id, fn] : state_->subscribers) to_run.push_back(std::move(fn));
    state_->subscribers.clear();
  }
  // Run callbacks outside the lock: they may take other locks or release watchers.
  for (auto& fn : to_run) fn();
  return true;
}

bool DrainTrigger::draining() const { return state_->started.load(std::memory_order_acquire); }

bool DrainTrigger::WaitReleased(DrainClock::time_point until) const {
  std::unique_lock lock(state_->mu);
  return state_->released.wait_until(lock, until, [&] { return state_->watchers == 0; });
}

size_t DrainTrigger::watchers() const {
  std::lock_guard lock(state_->mu);
  return state_->watchers;
}

}  // namespace zt
