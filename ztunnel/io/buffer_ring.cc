#include "ztunnel/io/buffer_ring.h"

#include <liburing.h>
#include <sys/mman.h>

#include <cerrno>

#include "ztunnel/io/loop.h"

namespace zt::io {

ProvidedBuffer& ProvidedBuffer::operator=(ProvidedBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    ring_ = std::exchange(other.ring_, nullptr);
    id_ = other.id_;
    size_ = other.size_;
    offset_ = other.offset_;
  }
  return *this;
}

std::span<const char> ProvidedBuffer::data() const {
  if (ring_ == nullptr) return {};
  return {ring_->Data(id_) + offset_, size_ - offset_};
}

void ProvidedBuffer::Release() {
  if (ring_ != nullptr) std::exchange(ring_, nullptr)->Return(id_);
}

Result<std::unique_ptr<BufferRing>> BufferRing::Create(Loop& loop, uint16_t group, uint32_t count,
                                                       uint32_t size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0 || size == 0) {
    return Error{Errc::kInvalidArgument};
  }
  std::unique_ptr<BufferRing> br(new BufferRing(loop, group, count, size));
  br->ring_bytes_ = count * sizeof(io_uring_buf);
  void* ring_mem =
      mmap(nullptr, br->ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (ring_mem == MAP_FAILED) return Error::FromErrno(errno);
  br->ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
  // Buffer memory is reserved, not touched: pages become resident only when used.
  br->base_bytes_ = static_cast<size_t>(count) * size;
  void* base = mmap(nullptr, br->base_bytes_, PROT_READ | PROT_WRITE,
                    MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return Error::FromErrno(errno);
  br->base_ = static_cast<char*>(base);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br->ring_);
  reg.ring_entries = count;
  reg.bgid = group;
  const int rc = io_uring_register_buf_ring(loop.ring(), &reg, 0);
  if (rc < 0) return Error{Errc::kUnavailable, -rc};
  br->registered_ = true;
  io_uring_buf_ring_init(br->ring_);
  const int mask = io_uring_buf_ring_mask(count);
  for (uint32_t i = 0; i < count; ++i) {
    io_uring_buf_ring_add(br->ring_, br->Data(static_cast<uint16_t>(i)), size,
                          static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br->ring_, static_cast<int>(count));
  return br;
}

BufferRing::~BufferRing() {
  if (registered_) io_uring_unregister_buf_ring(loop_.ring(), group_);
  if (base_ != nullptr) munmap(base_, base_bytes_);
  if (ring_ != nullptr) munmap(ring_, ring_bytes_);
}

void BufferRing::PrepareRecv(Completion* done, int fd) {
  io_uring_sqe* sqe = loop_.Prepare(done);
  // Length 0: the kernel uses the selected buffer's full size.
  io_uring_prep_recv(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = group_;
}

ProvidedBuffer BufferRing::Claim(uint32_t cqe_flags, uint32_t len) {
  const auto id = static_cast<uint16_t>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
  ++in_use_;
  return ProvidedBuffer(this, id, len);
}

void BufferRing::Return(uint16_t id) {
  io_uring_buf_ring_add(ring_, Data(id), size_, id, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(ring_, 1);
  --in_use_;
  if (waiters_head_ != nullptr && !wake_scheduled_) {
    wake_scheduled_ = true;
    loop_.Defer([this] { WakeOne(); });
  }
}

void BufferRing::WakeOne() {
  wake_scheduled_ = false;
  // Wake as many waiters as there are free buffers; each re-arms one receive.
  uint32_t free_buffers = count_ - in_use_;
  while (waiters_head_ != nullptr && free_buffers > 0) {
    BufferWaiter* waiter = waiters_head_;
    CancelWait(waiter);
    --free_buffers;
    waiter->OnBuffersAvailable();
  }
}

void BufferRing::Wait(BufferWaiter* waiter) {
  if (waiter->waiting_) return;
  waiter->waiting_ = true;
  waiter->next_waiter_ = nullptr;
  waiter->prev_waiter_ = waiters_tail_;
  if (waiters_tail_ != nullptr) {
    waiters_tail_->next_waiter_ = waiter;
  } else {
    waiters_head_ = waiter;
  }
  waiters_tail_ = waiter;
  // Buffers may already be free (returned before the receive failed): check soon.
  if (in_use_ < count_ && !wake_scheduled_) {
    wake_scheduled_ = true;
    loop_.Defer([this] { WakeOne(); });
  }
}

void BufferRing::CancelWait(BufferWaiter* waiter) {
  if (!waiter->waiting_) return;
  if (waiter->prev_waiter_ != nullptr) {
    waiter->prev_waiter_->next_waiter_ = waiter->next_waiter_;
  } else {
    waiters_head_ = waiter->next_waiter_;
  }
  if (waiter->next_waiter_ != nullptr) {
    waiter->next_waiter_->prev_waiter_ = waiter->prev_waiter_;
  } else {
    waiters_tail_ = waiter->prev_waiter_;
  }
  waiter->next_waiter_ = waiter->prev_waiter_ = nullptr;
  waiter->waiting_ = false;
}

}  // namespace zt::io
