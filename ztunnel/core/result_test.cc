#include "ztunnel/core/result.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <memory>

namespace zt {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Error{Errc::kInvalidArgument};
  return x / 2;
}

TEST_CASE("Result holds a value or an error", "[core]") {
  auto good = Half(8);
  REQUIRE(good.ok());
  CHECK(*good == 4);
  auto bad = Half(3);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::kInvalidArgument);
}

TEST_CASE("Result carries move-only values", "[core]") {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(7));
  REQUIRE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  CHECK(*p == 7);
}

TEST_CASE("Error message names the code and the errno", "[core]") {
  CHECK(Error::FromErrno(ECONNREFUSED).Message() == "system error: Connection refused");
  CHECK(Error{Errc::kTimeout}.Message() == "timeout");
  CHECK(Error{Errc::kLoop}.Message() == "proxy loop");
}

TEST_CASE("Status defaults to ok and keeps its error", "[core]") {
  Status ok;
  CHECK(ok.ok());
  Status bad = Error::FromErrno(EPIPE);
  CHECK_FALSE(bad.ok());
  CHECK(bad.error().sys == EPIPE);
}

}  // namespace
}  // namespace zt
