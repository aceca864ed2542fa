#include "ztunnel/io/ops.h"

#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cerrno>

#include "ztunnel/io/fiber.h"

namespace zt::io {
namespace {

__kernel_timespec ToTimespec(std::chrono::nanoseconds d) {
  if (d.count() < 0) d = std::chrono::nanoseconds(0);
  __kernel_timespec ts{};
  ts.tv_sec = d.count() / 1'000'000'000;
  ts.tv_nsec = d.count() % 1'000'000'000;
  return ts;
}

Error FromCqe(int32_t res) {
  if (res == -ECANCELED) return Error{Errc::kCancelled, ECANCELED};
  if (res == -ETIME) return Error{Errc::kTimeout, ETIME};
  return Error::FromErrno(-res);
}

}  // namespace

FiberOp::FiberOp() : fiber_(Fiber::Current()) { assert(fiber_ != nullptr); }

void FiberOp::OnComplete(int32_t res, uint32_t flags) {
  res_ = res;
  flags_ = flags;
  done_ = true;
  // Resume last: the fiber may finish and free the stack this object lives on.
  fiber_->Resume();
}

int32_t FiberOp::Wait() {
  while (!done_) fiber_->Suspend();
  return res_;
}

Result<UniqueFd> Accept(Loop& loop, int listen_fd) {
  FiberOp op;
  io_uring_prep_accept(loop.Prepare(&op), listen_fd, nullptr, nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
  const int32_t res = op.Wait();
  if (res < 0) return FromCqe(res);
  return UniqueFd(res);
}

Status Connect(Loop& loop, int fd, const SocketAddress& addr, std::chrono::milliseconds timeout) {
  FiberOp op;
  __kernel_timespec ts = ToTimespec(timeout);
  loop.Reserve(2);
  io_uring_sqe* sqe = loop.Prepare(&op);
  io_uring_prep_connect(sqe, fd, addr.sa(), addr.len());
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_prep_link_timeout(loop.Prepare(nullptr), &ts, 0);
  const int32_t res = op.Wait();
  if (res == -ECANCELED) return Error{Errc::kTimeout, ETIMEDOUT};
  if (res < 0) return FromCqe(res);
  return Status::Ok();
}

Result<size_t> Recv(Loop& loop, int fd, std::span<char> buf) {
  FiberOp op;
  io_uring_prep_recv(loop.Prepare(&op), fd, buf.data(), buf.size(), 0);
  const int32_t res = op.Wait();
  if (res < 0) return FromCqe(res);
  return static_cast<size_t>(res);
}

Status SendAll(Loop& loop, int fd, std::span<const char> data) {
  while (!data.empty()) {
    FiberOp op;
    io_uring_prep_send(loop.Prepare(&op), fd, data.data(), data.size(), MSG_NOSIGNAL);
    const int32_t res = op.Wait();
    if (res < 0) return FromCqe(res);
    data = data.subspan(static_cast<size_t>(res));
  }
  return Status::Ok();
}

Status Close(Loop& loop, UniqueFd fd) {
  FiberOp op;
  io_uring_prep_close(loop.Prepare(&op), fd.release());
  const int32_t res = op.Wait();
  if (res < 0) return FromCqe(res);
  return Status::Ok();
}

void Sleep(Loop& loop, std::chrono::nanoseconds duration) {
  FiberOp op;
  __kernel_timespec ts = ToTimespec(duration);
  io_uring_prep_timeout(loop.Prepare(&op), &ts, 0, 0);
  op.Wait();
}

Result<int> CancelFdAndWait(Loop& loop, int fd) {
  FiberOp op;
  io_uring_prep_cancel_fd(loop.Prepare(&op), fd, IORING_ASYNC_CANCEL_ALL);
  const int32_t res = op.Wait();
  if (res == -ENOENT) return 0;
  if (res < 0) return FromCqe(res);
  return static_cast<int>(res);
}

// --- MultishotAccept -------------------------------------------------------------

MultishotAccept::MultishotAccept(Loop& loop, int listen_fd, size_t max_queued)
    : loop_(loop), fd_(listen_fd), max_queued_(std::max<size_t>(max_queued, 2)) {
  Arm();
}

MultishotAccept::~MultishotAccept() {
  assert(!armed_ && "destroying an armed MultishotAccept: call Stop() and wait");
  for (int32_t r : ready_) {
    if (r >= 0) ::close(r);
  }
}

void MultishotAccept::Arm() {
  io_uring_prep_multishot_accept(loop_.Prepare(this), fd_, nullptr, nullptr,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
  armed_ = true;
  paused_ = false;
}

namespace {

// ResourceExhausted is an accept failure that says the process or the system is out
// of file descriptors or memory: retrying at once fails the same way.
bool ResourceExhausted(int32_t res) {
  return res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS;
}

}  // namespace

void MultishotAccept::OnComplete(int32_t res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) {
    armed_ = false;
    // The kernel ends a multishot accept on errors; re-arm unless stopping, the socket
    // no longer listens (EINVAL after shutdown, EBADF after close), or resources ran
    // out: re-arming then only fails again at once, so Next() re-arms when the caller
    // asks for the next connection, after its back-off.
    // A pause (the queue is full) ends the same way: Next() re-arms.
    if (!stopped_ && !paused_ && res != -ECANCELED && res != -EINVAL && res != -EBADF &&
        !ResourceExhausted(res)) {
      Arm();
    }
  }
  if (res == -ECANCELED && (stopped_ || paused_)) {
    // no fd; a stop wakes the waiter below, a pause ends quietly
  } else if (res < 0 && !ready_.empty() && ready_.back() < 0) {
    // At most one pending error: a burst of failures must not grow the queue.
  } else {
    ready_.push_back(res);
    // A consumer slower than the kernel must not turn the whole flood into open fds
    // here: stop accepting until it catches up. What the kernel posts before the
    // cancel lands (at most what the listen backlog held) is still queued.
    if (armed_ && !paused_ && !stopped_ && ready_.size() >= max_queued_) {
      paused_ = true;
      loop_.CancelOp(this);
    }
  }
  if (waiter_ != nullptr) std::exchange(waiter_, nullptr)->Resume();
}

Result<UniqueFd> MultishotAccept::Next() {
  while (ready_.empty()) {
    // After Stop, wait for the final CQE so the caller may destroy this object.
    if (stopped_ && !armed_) return Error{Errc::kCancelled};
    if (!stopped_ && !armed_) Arm();  // after a resource error: the caller backed off
    waiter_ = Fiber::Current();
    waiter_->Suspend();
  }
  const int32_t res = ready_.front();
  ready_.pop_front();
  // Resume a paused accept once the cancel has landed and half the queue is taken.
  if (paused_ && !armed_ && !stopped_ && ready_.size() <= max_queued_ / 2) Arm();
  if (res < 0) return FromCqe(res);
  return UniqueFd(res);
}

void MultishotAccept::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (armed_) {
    loop_.CancelOp(this);  // the final CQE wakes the waiter
  } else if (waiter_ != nullptr) {
    Fiber* waiter = std::exchange(waiter_, nullptr);
    loop_.Defer([waiter] { waiter->Resume(); });
  }
}

// --- MultishotRecv ---------------------------------------------------------------

MultishotRecv::MultishotRecv(Loop& loop, int fd) : loop_(loop), fd_(fd) { Arm(); }

MultishotRecv::~MultishotRecv() {
  assert(!armed_ && "destroying an armed MultishotRecv: call Stop() and wait");
  loop_.buffers().CancelWait(this);
}

void MultishotRecv::Arm() {
  io_uring_sqe* sqe = loop_.Prepare(this);
  io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = loop_.buffers().group();
  armed_ = true;
}

void MultishotRecv::OnComplete(int32_t res, uint32_t flags) {
  const bool more = flags & IORING_CQE_F_MORE;
  if (!more) armed_ = false;
  if (res > 0) {
    ready_.push_back(loop_.buffers().Claim(flags, static_cast<uint32_t>(res)));
    if (!more && !stopped_) Arm();
  } else if (res == 0) {
    eof_ = true;
  } else if (res == -ENOBUFS) {
    if (!stopped_) loop_.buffers().Wait(this);
  } else if (res != -ECANCELED || !stopped_) {
    error_ = -res;
  }
  WakeWaiter();
}

void MultishotRecv::OnBuffersAvailable() {
  if (!stopped_ && !armed_) Arm();
}

void MultishotRecv::WakeWaiter() {
  if (waiter_ != nullptr) std::exchange(waiter_, nullptr)->Resume();
}

Result<ProvidedBuffer> MultishotRecv::Next() {
  for (;;) {
    if (!ready_.empty()) {
      ProvidedBuffer out = std::move(ready_.front());
      ready_.pop_front();
      return out;
    }
    if (eof_) return ProvidedBuffer();
    if (error_ != 0) return FromCqe(-error_);
    if (stopped_ && !armed_) return Error{Errc::kCancelled};
    waiter_ = Fiber::Current();
    waiter_->Suspend();
  }
}

void MultishotRecv::Stop() {
  if (stopped_) return;
  stopped_ = true;
  loop_.buffers().CancelWait(this);
  if (armed_) {
    loop_.CancelOp(this);  // the final CQE wakes the waiter
  } else if (waiter_ != nullptr) {
    Fiber* waiter = std::exchange(waiter_, nullptr);
    loop_.Defer([waiter] { waiter->Resume(); });
  }
}

// --- Timer -----------------------------------------------------------------------

// Op is what the kernel's timeout completes into. It outlives its Timer when the Timer
// is destroyed while pending (then the loop owns it) or from inside its callback.
class Timer::Op final : public OrphanableCompletion {
 public:
  explicit Op(Loop& loop, Timer* owner) : loop_(loop), owner_(owner) {}

  void Start(std::chrono::nanoseconds delay, std::function<void(bool)> fn) {
    assert(!pending_ && "Timer::Start on a pending timer");
    fn_ = std::move(fn);
    ts_ = ToTimespec(delay);
    io_uring_prep_timeout(loop_.Prepare(this), &ts_, 0, 0);
    pending_ = true;
  }
  void Cancel() {
    if (pending_) loop_.CancelOp(this);
  }
  bool pending() const { return pending_; }

  // Detach is the Timer going away: from now on nothing is called back, and the op
  // frees itself once the kernel is done with it.
  void Detach() {
    owner_ = nullptr;
    fn_ = nullptr;
    if (pending_) {
      loop_.CancelOp(this);
      loop_.Orphan(this);
    } else if (!running_) {
      delete this;
    }
    // else: inside our own callback; OnComplete frees us when it returns.
  }

  void OnComplete(int32_t res, uint32_t /*flags*/) override {
    pending_ = false;
    if (owner_ == nullptr) return loop_.Reap(this);  // orphaned: nobody to tell
    auto fn = std::move(fn_);
    fn_ = nullptr;
    running_ = true;
    if (fn) fn(res == -ETIME);  // may restart the timer, or destroy it
    running_ = false;
    // Destroyed from inside the callback: if it restarted first, Detach orphaned us
    // and the next CQE reaps; otherwise nothing refers to us any more.
    if (owner_ == nullptr && !pending_) delete this;
  }

 private:
  Loop& loop_;
  Timer* owner_;
  __kernel_timespec ts_{};
  std::function<void(bool)> fn_;
  bool pending_ = false;
  bool running_ = false;
};

Timer::Timer(Loop& loop) : op_(new Op(loop, this)) {}

Timer::~Timer() { op_->Detach(); }

void Timer::Start(std::chrono::nanoseconds delay, std::function<void(bool)> fn) {
  op_->Start(delay, std::move(fn));
}

void Timer::Cancel() { op_->Cancel(); }

bool Timer::pending() const { return op_->pending(); }

}  // namespace zt::io
