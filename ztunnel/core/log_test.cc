#include "ztunnel/core/log.h"

#include <catch2/catch.hpp>

namespace zt::log {
namespace {

TEST_CASE("ParseLevel accepts every level name in any case", "[core]") {
  CHECK(ParseLevel("trace") == Level::kTrace);
  CHECK(ParseLevel("DEBUG") == Level::kDebug);
  CHECK(ParseLevel("Info") == Level::kInfo);
  CHECK(ParseLevel("warn") == Level::kWarn);
  CHECK(ParseLevel("warning") == Level::kWarn);
  CHECK(ParseLevel("error") == Level::kError);
  CHECK(ParseLevel("off") == Level::kOff);
  CHECK_FALSE(ParseLevel("verbose").has_value());
  CHECK_FALSE(ParseLevel("").has_value());
}

TEST_CASE("The level changes at run time and gates formatting", "[core]") {
  const Level saved = GetLevel();
  SetLevel(Level::kWarn);
  CHECK_FALSE(Enabled(Level::kInfo));
  CHECK(Enabled(Level::kWarn));
  CHECK(Enabled(Level::kError));
  SetLevel(Level::kTrace);
  CHECK(Enabled(Level::kTrace));
  SetLevel(Level::kOff);
  CHECK_FALSE(Enabled(Level::kError));
  SetLevel(saved);
}

}  // namespace
}  // namespace zt::log
