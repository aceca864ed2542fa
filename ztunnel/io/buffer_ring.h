// BufferRing: a provided-buffer ring (IORING_REGISTER_PBUF_RING). Receives pick a
// buffer only when data arrives, so an idle connection holds no receive buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "ztunnel/core/result.h"

struct io_uring_buf_ring;

namespace zt::io {

class Loop;
class BufferRing;
class Completion;

/// BufferWaiter is told when buffers come back after a receive failed with -ENOBUFS.
class BufferWaiter {
 public:
  /// OnBuffersAvailable runs from Loop::Defer, never inside BufferRing::Return.
  virtual void OnBuffersAvailable() = 0;

 protected:
  ~BufferWaiter() = default;

 private:
  friend class BufferRing;
  BufferWaiter* next_waiter_ = nullptr;
  BufferWaiter* prev_waiter_ = nullptr;
  bool waiting_ = false;
};

/// ProvidedBuffer owns one buffer the kernel filled; destroying it gives the buffer back.
class ProvidedBuffer {
 public:
  ProvidedBuffer() = default;
  ProvidedBuffer(BufferRing* ring, uint16_t id, uint32_t size)
      : ring_(ring), id_(id), size_(size) {}
  ProvidedBuffer(ProvidedBuffer&& other) noexcept
      : ring_(std::exchange(other.ring_, nullptr)),
        id_(other.id_),
        size_(other.size_),
        offset_(other.offset_) {}
  ProvidedBuffer& operator=(ProvidedBuffer&& other) noexcept;
  ProvidedBuffer(const ProvidedBuffer&) = delete;
  ProvidedBuffer& operator=(const ProvidedBuffer&) = delete;
  ~ProvidedBuffer() { Release(); }

  /// data is the unconsumed bytes.
  std::span<const char> data() const;
  /// Consume drops `n` bytes from the front (after a short send).
  void Consume(uint32_t n) { offset_ += n; }
  bool empty() const { return offset_ >= size_; }
  explicit operator bool() const { return ring_ != nullptr; }
  /// Release hands the buffer back to the kernel now.
  void Release();

 private:
  BufferRing* ring_ = nullptr;
  uint16_t id_ = 0;
  uint32_t size_ = 0;
  uint32_t offset_ = 0;
};

/// BufferRing lives on one Loop and is used only from its thread.
class BufferRing {
 public:
  /// Create registers `count` (a power of two, ≤ 32768) buffers of `size` bytes as group
  /// `group` on the loop's ring.
  static Result<std::unique_ptr<BufferRing>> Create(Loop& loop, uint16_t group, uint32_t count,
                                                    uint32_t size);
  ~BufferRing();

  uint16_t group() const { return group_; }
  uint32_t buffer_size() const { return size_; }
  uint32_t count() const { return count_; }
  /// in_use counts buffers the kernel filled and the program has not given back.
  uint32_t in_use() const { return in_use_; }

  /// PrepareRecv queues a single-shot receive on `fd` that takes a buffer from this ring
  /// only when data arrives (so an idle socket holds none); its CQE goes to `done`.
  void PrepareRecv(Completion* done, int fd);
  /// Claim takes ownership of the buffer named by a CQE (IORING_CQE_F_BUFFER in flags)
  /// holding `len` bytes.
  ProvidedBuffer Claim(uint32_t cqe_flags, uint32_t len);
  /// Wait registers `waiter` to hear when buffers come back; CancelWait removes it.
  void Wait(BufferWaiter* waiter);
  void CancelWait(BufferWaiter* waiter);

 private:
  friend class ProvidedBuffer;
  BufferRing(Loop& loop, uint16_t group, uint32_t count, uint32_t size)
      : loop_(loop), group_(group), count_(count), size_(size) {}
  char* Data(uint16_t id) const { return base_ + static_cast<size_t>(id) * size_; }
  void Return(uint16_t id);
  void WakeOne();

  Loop& loop_;
  uint16_t group_;
  uint32_t count_;
  uint32_t size_;
  uint32_t in_use_ = 0;
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  char* base_ = nullptr;
  size_t base_bytes_ = 0;
  bool registered_ = false;
  BufferWaiter* waiters_head_ = nullptr;
  BufferWaiter* waiters_tail_ = nullptr;
  bool wake_scheduled_ = false;
};

}  // namespace zt::io
