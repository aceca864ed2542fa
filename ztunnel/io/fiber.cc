#include "ztunnel/io/fiber.h"

#include <exception>
#include <memory>
#include <new>

#include "ztunnel/core/log.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/stack_pool.h"

namespace zt::io {
namespace {
thread_local Fiber* t_current_fiber = nullptr;
}  // namespace

bool Fiber::Spawn(Loop& loop, std::function<void()> fn) {
  auto* fiber = new Fiber(std::move(fn));
  try {
    fiber->self_ = boost::context::fiber(
        std::allocator_arg, PooledStack{&loop.stacks()}, [fiber](boost::context::fiber&& caller) {
          fiber->caller_ = std::move(caller);
          try {
            fiber->fn_();
          } catch (const std::exception& e) {
            // Data-path code returns errors; an exception here is a bug, but it must not
            // unwind through the context switch.
            ZT_ERROR("io", "fiber ended with an exception: {}", e.what());
          }
          fiber->fn_ = nullptr;  // destroy captures while the stack is still ours
          return std::move(fiber->caller_);
        });
  } catch (const std::bad_alloc&) {
    // The only exception here: StackPool could not map a stack.
    delete fiber;
    return false;
  }
  fiber->Resume();
  return true;
}

Fiber* Fiber::Current() { return t_current_fiber; }

void Fiber::Suspend() { caller_ = std::move(caller_).resume(); }

void Fiber::Resume() {
  outer_ = t_current_fiber;
  t_current_fiber = this;
  self_ = std::move(self_).resume();
  t_current_fiber = outer_;
  if (!self_) delete this;  // the function returned; its stack is back in the pool
}

}  // namespace zt::io
