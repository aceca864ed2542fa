// Loop: one io_uring and everything that runs on it, owned by one worker thread.
//
// Every submitted operation names a Completion in its user_data; the loop copies a
// batch of CQEs out of the ring, advances it, then calls each Completion. A Completion
// must outlive every CQE of its operation (for multishot operations, until a CQE
// without IORING_CQE_F_MORE). user_data 0 marks a CQE nobody waits for (linked
// timeouts, fire-and-forget cancels).
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_set>
#include <vector>

#include "ztunnel/core/result.h"
#include "ztunnel/io/fd.h"

namespace zt::io {

class BufferRing;
class StackPool;

/// Completion receives the CQEs of one submitted operation, on the loop thread.
class Completion {
 public:
  /// OnComplete runs once per CQE; for multishot operations `flags & IORING_CQE_F_MORE`
  /// says more CQEs will follow. It may delete its owner only when no CQE is pending.
  virtual void OnComplete(int32_t res, uint32_t flags) = 0;

 protected:
  ~Completion() = default;
};

/// OrphanableCompletion is a Completion whose owner may be destroyed while its
/// operation is still in flight: the owner hands it to Loop::Orphan, and the loop
/// keeps it (and frees it at loop exit if its last CQE never came). The completion
/// itself calls Loop::Reap at its last CQE.
class OrphanableCompletion : public Completion {
 public:
  virtual ~OrphanableCompletion() = default;
};

/// MemberCompletion forwards CQEs to a member function of its owner: how an object
/// with several kinds of operation in flight gives each one its own Completion.
template <typename T, void (T::*Method)(int32_t, uint32_t)>
class MemberCompletion final : public Completion {
 public:
  explicit MemberCompletion(T* owner) : owner_(owner) {}
  void OnComplete(int32_t res, uint32_t flags) override { (owner_->*Method)(res, flags); }

 private:
  T* owner_;
};

/// LoopOptions size the ring and its provided receive buffers.
struct LoopOptions {
  unsigned entries = 1024;           // SQ entries; the CQ gets 4x
  unsigned buffer_count = 256;       // provided receive buffers (power of two)
  unsigned buffer_size = 32 * 1024;  // 256 x 32 KiB: at most 8 MiB resident per worker
  size_t fiber_stack_size = 64 * 1024;
};

/// Loop is not thread-safe except for Post(): everything else runs on its own thread.
class Loop {
 public:
  /// Create sets up the ring (on the calling thread, which becomes its only submitter).
  static Result<std::unique_ptr<Loop>> Create(const LoopOptions& options);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /// Current is the loop running on this thread, or null.
  static Loop* Current();

  /// Prepare returns an SQE whose CQEs go to `completion` (null: ignored). It never
  /// fails: when the submission queue is full it is submitted first.
  io_uring_sqe* Prepare(Completion* completion);
  /// Reserve makes sure `n` SQEs can be prepared without a submit in between, so a
  /// linked chain (op + linked timeout) is never split.
  void Reserve(unsigned n);
  /// CancelOp asks the kernel to cancel the operation(s) of `completion`; their CQEs
  /// still arrive (with -ECANCELED or their real result). Fire-and-forget.
  void CancelOp(Completion* completion);
  /// CancelFd cancels every operation on `fd`. Fire-and-forget.
  void CancelFd(int fd);
  /// Orphan takes ownership of `c`, whose operation is still in flight and whose owner
  /// is going away; `c` must call Reap at its last CQE.
  void Orphan(OrphanableCompletion* c);
  /// Reap frees an orphaned completion (called by it, at its last CQE).
  void Reap(OrphanableCompletion* c);

  /// Run processes completions until Stop() is called.
  void Run();
  /// Stop makes Run return after the current batch; call on the loop thread.
  void Stop();
  /// Post runs fn on the loop thread soon, in posting order. Safe from any thread;
  /// lock-free (a worker posting to another never waits).
  void Post(std::function<void()> fn);
  /// Defer runs fn on the loop thread after the current batch of completions; it is how
  /// code avoids re-entering an object from inside one of its own callbacks.
  void Defer(std::function<void()> fn);

  BufferRing& buffers() { return *buffers_; }
  StackPool& stacks() { return *stacks_; }
  io_uring* ring() { return &ring_; }

 private:
  class Waker;
  Loop() = default;
  void RunDeferred();

  io_uring ring_{};
  bool ring_ready_ = false;
  bool stopped_ = false;
  std::unique_ptr<BufferRing> buffers_;
  std::unique_ptr<StackPool> stacks_;
  std::unique_ptr<Waker> waker_;
  std::vector<std::function<void()>> deferred_;
  // Completions whose owners died with their operation in flight (see Orphan).
  std::unordered_set<OrphanableCompletion*> orphans_;
  struct PostedTask {
    std::function<void()> fn;
    PostedTask* next;
  };
  // RunPosted runs every task posted so far, oldest first (on the loop thread).
  void RunPosted();
  std::atomic<PostedTask*> posted_{nullptr};  // newest first
  std::atomic<bool> wake_pending_{false};
};

}  // namespace zt::io
