#include "ztunnel/io/stack_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <new>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace zt::io {
namespace {

// Unpoison clears AddressSanitizer's record of a finished fiber's frames: without it a
// reused stack, or whatever mmap later puts at the same address, looks poisoned.
void Unpoison([[maybe_unused]] void* base, [[maybe_unused]] size_t size) {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(base, size);
#endif
}

}  // namespace

StackPool::StackPool(size_t stack_size, size_t max_cached)
    : max_cached_(max_cached), page_size_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
  stack_size_ = (stack_size + page_size_ - 1) / page_size_ * page_size_;
}

StackPool::~StackPool() {
  for (void* base : free_) {
    Unpoison(static_cast<char*>(base) + page_size_, stack_size_);
    munmap(base, stack_size_ + page_size_);
  }
}

boost::context::stack_context StackPool::Allocate() {
  void* base;
  if (!free_.empty()) {
    base = free_.back();
    free_.pop_back();
  } else {
    base = mmap(nullptr, stack_size_ + page_size_, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    mprotect(base, page_size_, PROT_NONE);  // guard page below the stack
  }
  ++live_;
  boost::context::stack_context sctx;
  sctx.size = stack_size_;
  sctx.sp = static_cast<char*>(base) + page_size_ + stack_size_;  // stacks grow down
  return sctx;
}

void StackPool::Deallocate(boost::context::stack_context& sctx) noexcept {
  void* base = static_cast<char*>(sctx.sp) - sctx.size - page_size_;
  --live_;
  Unpoison(static_cast<char*>(base) + page_size_, stack_size_);
  if (free_.size() < max_cached_) {
    free_.push_back(base);
  } else {
    munmap(base, stack_size_ + page_size_);
  }
}

}  // namespace zt::io
