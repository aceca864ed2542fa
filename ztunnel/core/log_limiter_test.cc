#include "ztunnel/core/log_limiter.h"

#include <catch2/catch.hpp>

namespace zt::log {
namespace {

using namespace std::chrono_literals;

TEST_CASE("LogLimiter lets one line through per period and counts the rest", "[core]") {
  LogLimiter limiter(5s);
  const auto t0 = LogLimiter::Clock::time_point{} + 100s;
  uint64_t held = 99;
  CHECK(limiter.Allow(&held, t0));
  CHECK(held == 0);
  for (int i = 0; i < 1000; ++i) CHECK_FALSE(limiter.Allow(&held, t0 + 1s));
  CHECK_FALSE(limiter.Allow(&held, t0 + 4999ms));
  CHECK(limiter.Allow(&held, t0 + 5s));
  CHECK(held == 1001);
  CHECK(limiter.Allow(&held, t0 + 11s));
  CHECK(held == 0);
}

}  // namespace
}  // namespace zt::log
