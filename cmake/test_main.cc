// The one Catch2 main shared by every unit-test binary. Logs are quiet (warn) unless
// ZTUNNEL_LOG_LEVEL asks for more while debugging a test.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdlib>

#include "ztunnel/core/log.h"

int main(int argc, char* argv[]) {
  zt::log::SetLevel(zt::log::Level::kWarn);
  if (const char* level = std::getenv("ZTUNNEL_LOG_LEVEL")) {
    if (auto parsed = zt::log::ParseLevel(level)) zt::log::SetLevel(*parsed);
  }
  return Catch::Session().run(argc, argv);
}
