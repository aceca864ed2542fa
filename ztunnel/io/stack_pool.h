// StackPool: small fiber stacks with a guard page, reused instead of mapped anew.
#pragma once

#include <boost/context/stack_context.hpp>
#include <cstddef>
#include <vector>

namespace zt::io {

/// StackPool belongs to one loop thread. Each stack is an mmap with its lowest page
/// PROT_NONE, so an overflow faults instead of corrupting a neighbour.
class StackPool {
 public:
  /// `stack_size` is the usable size; at most `max_cached` free stacks are kept.
  explicit StackPool(size_t stack_size, size_t max_cached = 64);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  /// Allocate hands out a stack; it throws std::bad_alloc (Boost.Context's contract)
  /// when mmap fails, which Fiber::Spawn turns into a false return.
  boost::context::stack_context Allocate();
  void Deallocate(boost::context::stack_context& sctx) noexcept;

  /// live counts stacks handed out and not yet returned.
  size_t live() const { return live_; }
  /// cached counts free stacks kept for reuse.
  size_t cached() const { return free_.size(); }

 private:
  size_t stack_size_;
  size_t max_cached_;
  size_t page_size_;
  size_t live_ = 0;
  std::vector<void*> free_;  // base addresses (guard page first)
};

/// PooledStack is the allocator object Boost.Context copies into each fiber.
struct PooledStack {
  StackPool* pool;
  boost::context::stack_context allocate() { return pool->Allocate(); }
  void deallocate(boost::context::stack_context& sctx) noexcept { pool->Deallocate(sctx); }
};

}  // namespace zt::io
