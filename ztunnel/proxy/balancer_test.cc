#include "ztunnel/proxy/balancer.h"

#include <catch2/catch.hpp>

namespace zt::proxy {
namespace {

TEST_CASE("Balancer picks the least-loaded joined worker, itself on a tie", "[proxy]") {
  Balancer b(3);
  // Loop pointers are only compared with null here; nothing is posted.
  auto* fake = reinterpret_cast<io::Loop*>(0x1);
  b.Join(
      0, fake, [](int, Listener) {}, [] {});
  b.Join(
      1, fake, [](int, Listener) {}, [] {});
  CHECK(b.Pick(0) == 0);  // tie: stay
  b.Acquire(0);
  CHECK(b.Pick(0) == 1);  // worker 2 never joined: not eligible
  b.Acquire(1);
  b.Acquire(1);
  CHECK(b.Pick(1) == 0);
  b.Release(1);
  b.Release(1);
  CHECK(b.load(1) == 0);
  CHECK(b.Pick(0) == 1);
}

TEST_CASE("Balancer counts workers that still accept", "[proxy]") {
  Balancer b(2);
  CHECK(b.accepting() == 2);
  b.StoppedAccepting();
  CHECK(b.accepting() == 1);
  b.StoppedAccepting();  // the last one: would post rechecks to joined loops (none here)
  CHECK(b.accepting() == 0);
}

}  // namespace
}  // namespace zt::proxy
