// Balancer: spreads accepted connections over the workers.
//
// All workers accept on the same listening socket, but the kernel wakes accept
// waiters exclusively, so one ring tends to win every connection. The accepting
// worker therefore hands each new connection to the worker with the fewest live
// ones (itself on a tie) by posting it to that worker's loop.
//
// Lifetime rule that makes the cross-thread hand-off safe: every loop joined here
// stays allocated until all workers have returned (the Worker objects outlive their
// threads), and a worker finishes draining only when no worker accepts any more and
// its own load is zero, so a handed connection is always served.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "ztunnel/io/loop.h"

namespace zt::proxy {

/// Listener says which listener accepted a connection, so the worker it is handed
/// to serves it the right way.
enum class Listener : uint8_t { kOutbound, kInboundHbone, kInboundPlaintext };

/// Balancer is shared by all workers; every method is thread-safe.
class Balancer {
 public:
  /// HandFn serves a connection handed over from another worker, on the target loop.
  using HandFn = std::function<void(int fd, Listener listener)>;

  explicit Balancer(int workers);

  /// Join makes worker `index` eligible. `loop`, `serve` and `recheck` must stay valid
  /// until every worker has returned; `recheck` runs on `loop` when the last worker
  /// stops accepting, so each can see whether its drain is complete.
  void Join(int index, io::Loop* loop, HandFn serve, std::function<void()> recheck);

  /// Pick returns the least-loaded joined worker, preferring `self` on a tie.
  int Pick(int self) const;
  /// Acquire counts one more connection for `index`; Release counts one less.
  void Acquire(int index);
  void Release(int index);
  /// load is the number of connections assigned to `index` and not yet ended.
  int64_t load(int index) const;
  /// Hand gives `fd` to worker `target`, whose load must already count it.
  void Hand(int target, int fd, Listener listener);

  /// StoppedAccepting records that one worker will accept no more connections; when it
  /// was the last, every joined worker's `recheck` is posted to its loop.
  void StoppedAccepting();
  /// accepting counts workers that may still accept (and so hand) connections.
  int accepting() const { return accepting_.load(); }
  int size() const { return static_cast<int>(slots_.size()); }

 private:
  struct Slot {
    std::atomic<io::Loop*> loop{nullptr};
    std::atomic<int64_t> load{0};
    HandFn serve;                   // written once in Join, before `loop` is published
    std::function<void()> recheck;  // likewise
  };
  std::vector<Slot> slots_;
  std::atomic<int> accepting_;
};

}  // namespace zt::proxy
