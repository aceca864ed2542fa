#include "ztunnel/io/loop.h"

#include <poll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstdlib>

#include "ztunnel/core/log.h"
#include "ztunnel/io/buffer_ring.h"
#include "ztunnel/io/stack_pool.h"

namespace zt::io {
namespace {

thread_local Loop* t_current = nullptr;
constexpr unsigned kCqeBatch = 256;

}  // namespace

// Waker turns writes to an eventfd (from any thread) into a completion on the loop.
class Loop::Waker final : public Completion {
 public:
  Waker(Loop* loop, UniqueFd fd) : loop_(loop), fd_(std::move(fd)) {}
  void Arm() { io_uring_prep_poll_multishot(loop_->Prepare(this), fd_.get(), POLLIN); }
  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));
  }
  void OnComplete(int32_t /*res*/, uint32_t flags) override {
    uint64_t value;
    [[maybe_unused]] ssize_t n = ::read(fd_.get(), &value, sizeof(value));
    loop_->RunPosted();
    if (!(flags & IORING_CQE_F_MORE) && !loop_->stopped_) Arm();
  }

 private:
  Loop* loop_;
  UniqueFd fd_;
};

Result<std::unique_ptr<Loop>> Loop::Create(const LoopOptions& options) {
  std::unique_ptr<Loop> loop(new Loop());
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                 IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  params.cq_entries = options.entries * 4;
  int rc = io_uring_queue_init_params(options.entries, &loop->ring_, &params);
  if (rc == -EINVAL) {
    // Older kernels lack the task-run flags; they are an optimisation only.
    params = {};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = options.entries * 4;
    rc = io_uring_queue_init_params(options.entries, &loop->ring_, &params);
  }
  if (rc < 0) return Error{Errc::kUnavailable, -rc};
  loop->ring_ready_ = true;

  auto buffers = BufferRing::Create(*loop, /*group=*/0, options.buffer_count, options.buffer_size);
  if (!buffers) return buffers.error();
  loop->buffers_ = std::move(buffers).value();
  loop->stacks_ = std::make_unique<StackPool>(options.fiber_stack_size);

  const int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return Error::FromErrno(errno);
  loop->waker_ = std::make_unique<Waker>(loop.get(), UniqueFd(efd));
  loop->waker_->Arm();
  return loop;
}

Loop::~Loop() {
  // Tasks posted after the last run are dropped, as they were before: never run.
  for (PostedTask* t = posted_.exchange(nullptr); t != nullptr;) {
    std::unique_ptr<PostedTask> task(t);
    t = t->next;
  }
  // The buffer ring must be unregistered while the ring still exists.
  buffers_.reset();
  if (ring_ready_) io_uring_queue_exit(&ring_);
  // The ring is gone, so no CQE can reach these any more.
  for (OrphanableCompletion* c : orphans_) delete c;
}

Loop* Loop::Current() { return t_current; }

io_uring_sqe* Loop::Prepare(Completion* completion) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_sqe_set_data(sqe, completion);
  return sqe;
}

void Loop::Reserve(unsigned n) {
  if (io_uring_sq_space_left(&ring_) < n) io_uring_submit(&ring_);
}

void Loop::CancelOp(Completion* completion) {
  io_uring_prep_cancel(Prepare(nullptr), completion, IORING_ASYNC_CANCEL_ALL);
}

void Loop::CancelFd(int fd) {
  io_uring_prep_cancel_fd(Prepare(nullptr), fd, IORING_ASYNC_CANCEL_ALL);
}

void Loop::Orphan(OrphanableCompletion* c) { orphans_.insert(c); }

void Loop::Reap(OrphanableCompletion* c) {
  orphans_.erase(c);
  delete c;
}

void Loop::Run() {
  Loop* previous = t_current;
  t_current = this;
  stopped_ = false;
  io_uring_cqe* cqes[kCqeBatch];
  struct Event {
    Completion* completion;
    int32_t res;
    uint32_t flags;
  };
  Event events[kCqeBatch];
  while (!stopped_) {
    const int rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
      ZT_ERROR("io", "io_uring_submit_and_wait failed: {}", Error::FromErrno(-rc).Message());
      std::abort();
    }
    for (;;) {
      const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kCqeBatch);
      if (n == 0) break;
      // Copy out and advance first: handlers may submit and complete inline.
      for (unsigned i = 0; i < n; ++i) {
        events[i] = {static_cast<Completion*>(io_uring_cqe_get_data(cqes[i])), cqes[i]->res,
                     cqes[i]->flags};
      }
      io_uring_cq_advance(&ring_, n);
      for (unsigned i = 0; i < n; ++i) {
        if (events[i].completion != nullptr) {
          events[i].completion->OnComplete(events[i].res, events[i].flags);
        }
      }
      RunDeferred();
    }
    RunDeferred();
  }
  t_current = previous;
}

void Loop::RunDeferred() {
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> tasks;
    tasks.swap(deferred_);
    for (auto& task : tasks) task();
  }
}

void Loop::Stop() { stopped_ = true; }

// Posted tasks form a lock-free stack (Treiber): producers push with a CAS, the loop
// takes the whole stack with one exchange and runs it oldest first. The eventfd is
// written only by the producer that finds no wake-up pending, so a burst of posts
// costs one write(2) and one CQE. Neither side ever waits on the other.
void Loop::Post(std::function<void()> fn) {
  auto* node = new PostedTask{std::move(fn), posted_.load(std::memory_order_relaxed)};
  while (!posted_.compare_exchange_weak(node->next, node, std::memory_order_release,
                                        std::memory_order_relaxed)) {
  }
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) waker_->Wake();
}

void Loop::RunPosted() {
  // Clear the flag before taking the stack: a post that lands after the exchange
  // then sees no wake-up pending and writes the eventfd again.
  wake_pending_.store(false, std::memory_order_release);
  PostedTask* stack = posted_.exchange(nullptr, std::memory_order_acquire);
  PostedTask* fifo = nullptr;
  while (stack != nullptr) {
    PostedTask* next = stack->next;
    stack->next = fifo;
    fifo = stack;
    stack = next;
  }
  while (fifo != nullptr) {
    std::unique_ptr<PostedTask> task(fifo);
    fifo = fifo->next;
    task->fn();
  }
}

void Loop::Defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }

}  // namespace zt::io
