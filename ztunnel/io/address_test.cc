#include "ztunnel/io/address.h"

#include <catch2/catch.hpp>

namespace zt::io {
namespace {

TEST_CASE("SocketAddress parses and prints IPv4 and IPv6", "[io]") {
  auto v4 = SocketAddress::Parse("10.0.2.5:8080");
  REQUIRE(v4);
  CHECK(v4->family() == AF_INET);
  CHECK(v4->port() == 8080);
  CHECK(v4->ToString() == "10.0.2.5:8080");
  CHECK(v4->IpString() == "10.0.2.5");
  auto v6 = SocketAddress::Parse("[fd00::1]:15008");
  REQUIRE(v6);
  CHECK(v6->family() == AF_INET6);
  CHECK(v6->ToString() == "[fd00::1]:15008");
  CHECK(SocketAddress::Parse("127.0.0.1:1")->IsLoopback());
  CHECK(SocketAddress::Parse("[::1]:1")->IsLoopback());
  CHECK(SocketAddress::Parse("0.0.0.0:1")->IsUnspecified());
  CHECK_FALSE(SocketAddress::Parse("10.0.0.1:1")->IsLoopback());
}

TEST_CASE("SocketAddress rejects malformed text", "[io]") {
  for (const char* bad :
       {"", "10.0.0.1", "10.0.0.1:", "10.0.0.1:65536", "10.0.0.300:80", "fd00::1:80", "[fd00::1]80",
        "[fd00::1]:", "host:80", ":80", "10.0.0.1:8x"}) {
    INFO(bad);
    CHECK_FALSE(SocketAddress::Parse(bad).has_value());
  }
}

TEST_CASE("SocketAddress compares by family, address and port", "[io]") {
  CHECK(*SocketAddress::Parse("1.2.3.4:5") == *SocketAddress::Parse("1.2.3.4:5"));
  CHECK_FALSE(*SocketAddress::Parse("1.2.3.4:5") == *SocketAddress::Parse("1.2.3.4:6"));
  auto a = SocketAddress::Loopback4(0);
  a.set_port(99);
  CHECK(a.ToString() == "127.0.0.1:99");
}

}  // namespace
}  // namespace zt::io
