#include "ztunnel/core/duration.h"

#include <catch2/catch.hpp>

namespace zt {
namespace {

using namespace std::chrono_literals;

TEST_CASE("ParseDuration reads units and bare seconds", "[core]") {
  CHECK(ParseDuration("10s") == 10s);
  CHECK(ParseDuration("500ms") == 500ms);
  CHECK(ParseDuration("2m") == 120s);
  CHECK(ParseDuration("1h") == 3600s);
  CHECK(ParseDuration("30") == 30s);
  CHECK(ParseDuration("0") == 0ms);
}

TEST_CASE("ParseDuration rejects malformed text", "[core]") {
  CHECK_FALSE(ParseDuration(""));
  CHECK_FALSE(ParseDuration("s"));
  CHECK_FALSE(ParseDuration("-1s"));
  CHECK_FALSE(ParseDuration("1.5s"));
  CHECK_FALSE(ParseDuration("10 s"));
  CHECK_FALSE(ParseDuration("10d"));
  CHECK_FALSE(ParseDuration("99999999999999999999s"));
}

TEST_CASE("ParseDuration refuses more than a year", "[core]") {
  // Regression (issue 15, defect 12): 9223372036854775807ms parsed, then overflowed
  // in the nanosecond timers ("drain timeout -6s").
  CHECK(ParseDuration("8760h") == kMaxDuration);
  CHECK(ParseDuration("31536000") == kMaxDuration);
  CHECK_FALSE(ParseDuration("8761h"));
  CHECK_FALSE(ParseDuration("31536001"));
  CHECK_FALSE(ParseDuration("9223372036854775807ms"));
  CHECK_FALSE(ParseDuration("9223372036854775807"));
  CHECK_FALSE(ParseDuration("99999999999999"));
}

TEST_CASE("FormatDuration round-trips", "[core]") {
  CHECK(FormatDuration(5s) == "5s");
  CHECK(FormatDuration(1500ms) == "1500ms");
  CHECK(ParseDuration(FormatDuration(1500ms)) == 1500ms);
}

}  // namespace
}  // namespace zt
