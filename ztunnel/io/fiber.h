// Fiber: a Boost.Context fiber on a pooled stack, resumed by io_uring completions.
// Fibers carry connection set-up and protocol flows written as straight-line code;
// the steady-state byte relay uses plain completion handlers instead (no stack per
// idle connection).
#pragma once

#include <boost/context/fiber.hpp>
#include <functional>

namespace zt::io {

class Loop;

/// Fiber runs on one loop thread. It deletes itself when its function returns.
class Fiber {
 public:
  /// Spawn starts fn on a new fiber right away; it returns when fn first suspends or ends.
  /// It returns false, without running fn, when no stack can be mapped (memory limit).
  [[nodiscard]] static bool Spawn(Loop& loop, std::function<void()> fn);
  /// Current is the fiber running on this thread, or null on the loop's own stack.
  static Fiber* Current();

  /// Suspend gives control back to whoever resumed this fiber. Call only from inside it.
  void Suspend();
  /// Resume continues the fiber until it suspends again or ends (then it is deleted).
  void Resume();

 private:
  explicit Fiber(std::function<void()> fn) : fn_(std::move(fn)) {}
  ~Fiber() = default;

  boost::context::fiber self_;    // how to continue this fiber; set while suspended
  boost::context::fiber caller_;  // how to go back; set while running
  std::function<void()> fn_;
  Fiber* outer_ = nullptr;  // the fiber that was current before Resume
};

}  // namespace zt::io
