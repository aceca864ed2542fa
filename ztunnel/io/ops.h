// Awaitable io_uring operations for code running on a Fiber. Each call submits one
// operation, suspends the fiber, and returns the result when the CQE arrives. Buffers
// and addresses passed in must stay alive until the call returns (they do: they live
// on the fiber's stack or in its owner).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <span>

#include "ztunnel/core/result.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/buffer_ring.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/io/loop.h"

namespace zt::io {

class Fiber;

/// FiberOp is the Completion behind every single-shot awaitable: it stores the
/// result and resumes the waiting fiber.
class FiberOp final : public Completion {
 public:
  FiberOp();
  void OnComplete(int32_t res, uint32_t flags) override;
  /// Wait suspends the current fiber until OnComplete ran; returns the CQE result.
  int32_t Wait();
  uint32_t flags() const { return flags_; }

 private:
  Fiber* fiber_;
  int32_t res_ = 0;
  uint32_t flags_ = 0;
  bool done_ = false;
};

/// Accept waits for one connection on `listen_fd`.
Result<UniqueFd> Accept(Loop& loop, int listen_fd);
/// Connect connects `fd` to `addr`; kTimeout if it takes longer than `timeout`
/// (a linked timeout, so the kernel cancels the connect itself).
Status Connect(Loop& loop, int fd, const SocketAddress& addr, std::chrono::milliseconds timeout);
/// Recv reads up to buf.size() bytes into `buf`; 0 means the peer sent FIN.
Result<size_t> Recv(Loop& loop, int fd, std::span<char> buf);
/// SendAll writes all of `data`, resubmitting after short sends.
Status SendAll(Loop& loop, int fd, std::span<const char> data);
/// Close closes `fd` through the ring (after its operations were cancelled).
Status Close(Loop& loop, UniqueFd fd);
/// Sleep suspends the fiber for `duration`.
void Sleep(Loop& loop, std::chrono::nanoseconds duration);
/// CancelAndWait cancels every operation on `fd` and returns how many were found.
Result<int> CancelFdAndWait(Loop& loop, int fd);

/// MultishotAccept keeps one multishot accept armed on a listener; Next() awaits the
/// next connection. Stop() cancels it: Next() returns kCancelled once the kernel has
/// released the operation, after which the object may be destroyed. When accepting
/// fails for want of file descriptors or memory (EMFILE, ENFILE, ENOMEM, ENOBUFS) it
/// is not re-armed until the next Next(), so the caller can back off first, and at
/// most one error waits in its queue. At most `max_queued` accepted connections wait
/// for Next(): past that the accept is cancelled, the kernel's listen backlog holds new
/// connections (pushing back on clients), and Next() re-arms once half are taken.
class MultishotAccept final : public Completion {
 public:
  /// kDefaultMaxQueued bounds the fds a slow consumer can leave waiting per listener.
  static constexpr size_t kDefaultMaxQueued = 256;
  MultishotAccept(Loop& loop, int listen_fd, size_t max_queued = kDefaultMaxQueued);
  ~MultishotAccept();
  /// Next suspends the current fiber until a connection (or an error) arrives.
  Result<UniqueFd> Next();
  /// Stop cancels the accept; safe to call from any code on the loop thread.
  void Stop();
  /// armed is true while the kernel still holds the operation (the object must live).
  bool armed() const { return armed_; }
  /// queued is how many accepted connections (or errors) wait for Next().
  size_t queued() const { return ready_.size(); }
  void OnComplete(int32_t res, uint32_t flags) override;

 private:
  void Arm();
  Loop& loop_;
  int fd_;
  size_t max_queued_;
  bool armed_ = false;
  bool stopped_ = false;
  bool paused_ = false;        // cancelled because the queue is full; Next() re-arms
  std::deque<int32_t> ready_;  // accepted fds or negative errnos
  Fiber* waiter_ = nullptr;
};

/// MultishotRecv keeps one multishot receive armed on a socket, filling buffers from
/// the loop's provided-buffer ring. Next() awaits the next filled buffer; an empty
/// buffer means EOF. When the ring runs dry it waits for buffers and re-arms.
class MultishotRecv final : public Completion, public BufferWaiter {
 public:
  MultishotRecv(Loop& loop, int fd);
  ~MultishotRecv();
  /// Next returns the next chunk; an empty ProvidedBuffer means the peer sent FIN.
  Result<ProvidedBuffer> Next();
  /// Stop cancels the receive; Next() then returns kCancelled.
  void Stop();
  bool armed() const { return armed_; }
  void OnComplete(int32_t res, uint32_t flags) override;
  void OnBuffersAvailable() override;

 private:
  void Arm();
  void WakeWaiter();
  Loop& loop_;
  int fd_;
  bool armed_ = false;
  bool stopped_ = false;
  bool eof_ = false;
  int error_ = 0;
  std::deque<ProvidedBuffer> ready_;
  Fiber* waiter_ = nullptr;
};

/// Timer calls a function after a delay, on the loop thread. Cancel() stops it.
/// Destroying a Timer is always safe, also while it is pending or from inside its own
/// callback: the kernel's operation completes into a separate object that the loop
/// keeps until its CQE arrives, and the callback of a destroyed Timer never runs.
class Timer {
 public:
  explicit Timer(Loop& loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  /// Start arms the timer, which must not be pending; `fn` runs with true if it fired,
  /// false if it was cancelled.
  void Start(std::chrono::nanoseconds delay, std::function<void(bool fired)> fn);
  /// Cancel asks the kernel to stop the timer; `fn(false)` runs when it has.
  void Cancel();
  bool pending() const;

 private:
  class Op;
  Op* op_;  // owned by this Timer, or by the loop once this Timer died with it pending
};

}  // namespace zt::io
