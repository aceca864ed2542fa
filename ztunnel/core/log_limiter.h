// LogLimiter: at most one line per period for something that can happen thousands of
// times a second under attack or overload (accept failures, refused handshakes), with
// the number of lines it held back, so the log stays readable and cheap.
#pragma once

#include <chrono>
#include <cstdint>

namespace zt::log {

/// LogLimiter is used on one thread (one per worker or per owner); not thread-safe.
class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  /// LogLimiter lets one line through per `period`.
  explicit LogLimiter(Clock::duration period = std::chrono::seconds(5)) : period_(period) {}
  /// Allow says whether a line may be written now; when it returns true, `*suppressed`
  /// is how many lines were held back since the last one let through.
  bool Allow(uint64_t* suppressed, Clock::time_point now = Clock::now()) {
    if (allowed_once_ && now - last_ < period_) {
      ++held_;
      return false;
    }
    allowed_once_ = true;
    last_ = now;
    *suppressed = held_;
    held_ = 0;
    return true;
  }

 private:
  Clock::duration period_;
  Clock::time_point last_{};
  bool allowed_once_ = false;
  uint64_t held_ = 0;
};

}  // namespace zt::log
