#include "ztunnel/proxy/balancer.h"

namespace zt::proxy {

Balancer::Balancer(int workers) : slots_(static_cast<size_t>(workers)), accepting_(workers) {}

void Balancer::Join(int index, io::Loop* loop, HandFn serve, std::function<void()> recheck) {
  Slot& slot = slots_[static_cast<size_t>(index)];
  slot.serve = std::move(serve);
  slot.recheck = std::move(recheck);
  slot.loop.store(loop, std::memory_order_release);
}

int Balancer::Pick(int self) const {
  int best = self;
  int64_t best_load = load(self);
  for (int i = 0; i < size(); ++i) {
    if (i == self ||
        slots_[static_cast<size_t>(i)].loop.load(std::memory_order_acquire) == nullptr) {
      continue;
    }
    if (const int64_t l = load(i); l < best_load) {
      best = i;
      best_load = l;
    }
  }
  return best;
}

void Balancer::Acquire(int index) { slots_[static_cast<size_t>(index)].load.fetch_add(1); }

void Balancer::Release(int index) { slots_[static_cast<size_t>(index)].load.fetch_sub(1); }

int64_t Balancer::load(int index) const {
  return slots_[static_cast<size_t>(index)].load.load(std::memory_order_relaxed);
}

void Balancer::Hand(int target, int fd, Listener listener) {
  Slot& slot = slots_[static_cast<size_t>(target)];
  io::Loop* loop = slot.loop.load(std::memory_order_acquire);
  loop->Post([serve = &slot.serve, fd, listener] { (*serve)(fd, listener); });
}

void Balancer::StoppedAccepting() {
  if (accepting_.fetch_sub(1) != 1) return;
  for (Slot& slot : slots_) {
    if (io::Loop* loop = slot.loop.load(std::memory_order_acquire)) loop->Post(slot.recheck);
  }
}

}  // namespace zt::proxy
