#include "ztunnel/core/ip_port.h"

#include <catch2/catch.hpp>

namespace zt {
namespace {

TEST_CASE("IpPort parses IP literals with ports and prints them canonically", "[core]") {
  auto v4 = IpPort::Parse("10.0.2.5:8080");
  REQUIRE(v4);
  CHECK_FALSE(v4->v6);
  CHECK(v4->port == 8080);
  CHECK(v4->ToString() == "10.0.2.5:8080");
  auto v6 = IpPort::Parse("[FD00:0::1]:15008");
  REQUIRE(v6);
  CHECK(v6->v6);
  CHECK(v6->ToString() == "[fd00::1]:15008");
  CHECK(IpPort::Parse("0.0.0.0:0")->port == 0);
}

TEST_CASE("IpPort rejects names, missing parts and bad ports", "[core]") {
  for (const char* bad : {"", "10.0.0.1", "10.0.0.1:", "10.0.0.1:65536", "10.0.0.300:80",
                          "fd00::1:80", "[fd00::1]80", "[fd00::1]:", "example.com:80", ":80",
                          "10.0.0.1:8x", "10.0.0.1:-1", "[10.0.0.1]:80", " 10.0.0.1:80"}) {
    INFO(bad);
    CHECK_FALSE(IpPort::Parse(bad).has_value());
  }
}

// Found by fuzz/hbone_request_fuzz.cc: inet_pton stops at a NUL, so "10.0.0.1\0junk"
// parsed as 10.0.0.1.
TEST_CASE("Address parsers refuse text with a NUL inside", "[core]") {
  using namespace std::string_view_literals;
  CHECK_FALSE(IpAddr::Parse("10.0.0.1\0junk"sv).has_value());
  CHECK_FALSE(IpAddr::Parse("fd00::\0"sv).has_value());
  CHECK_FALSE(IpPort::Parse("10.0.0.1\0:80"sv).has_value());
  CHECK_FALSE(IpPort::Parse("[fd00::1\0x]:80"sv).has_value());
  CHECK_FALSE(Cidr::Parse("10.0.0.0\0/8"sv).has_value());
  CHECK_FALSE(Cidr::Parse("fd00::\0/64"sv).has_value());
}

TEST_CASE("IpAddr parses bare addresses, compares and hashes by value", "[core]") {
  auto a = IpAddr::Parse("10.0.2.5");
  REQUIRE(a);
  CHECK_FALSE(a->v6);
  CHECK(a->ToString() == "10.0.2.5");
  CHECK(*a == IpPort::Parse("10.0.2.5:80")->ip());
  CHECK(std::hash<IpAddr>{}(*a) == std::hash<IpAddr>{}(IpPort::Parse("10.0.2.5:9")->ip()));
  auto b = IpAddr::Parse("FD00::1");
  REQUIRE(b);
  CHECK(b->v6);
  CHECK(b->ToString() == "fd00::1");
  CHECK(*a != *b);
  for (const char* bad : {"", "10.0.0.300", "10.0.0.1:80", "[fd00::1]", "host", " 10.0.0.1"}) {
    INFO(bad);
    CHECK_FALSE(IpAddr::Parse(bad).has_value());
  }
}

TEST_CASE("Cidr parses ranges, refuses host bits, and contains by prefix", "[core]") {
  auto c = Cidr::Parse("10.1.0.0/16");
  REQUIRE(c);
  CHECK(c->Contains(*IpAddr::Parse("10.1.255.7")));
  CHECK_FALSE(c->Contains(*IpAddr::Parse("10.2.0.1")));
  CHECK_FALSE(c->Contains(*IpAddr::Parse("::ffff:10.1.0.1")));  // other family
  auto one = Cidr::Parse("192.168.1.9");
  REQUIRE(one);
  CHECK(one->prefix == 32);
  CHECK(one->Contains(*IpAddr::Parse("192.168.1.9")));
  CHECK_FALSE(one->Contains(*IpAddr::Parse("192.168.1.8")));
  auto odd = Cidr::Parse("10.0.0.0/9");
  REQUIRE(odd);
  CHECK(odd->Contains(*IpAddr::Parse("10.127.0.1")));
  CHECK_FALSE(odd->Contains(*IpAddr::Parse("10.128.0.1")));
  auto v6 = Cidr::Parse("fd00::/8");
  REQUIRE(v6);
  CHECK(v6->Contains(*IpAddr::Parse("fd12::1")));
  CHECK(Cidr::Parse("0.0.0.0/0")->Contains(*IpAddr::Parse("8.8.8.8")));
  CHECK(v6->ToString() == "fd00::/8");
  for (const char* bad :
       {"10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "fd00::/129", "host/8", ""}) {
    INFO(bad);
    CHECK_FALSE(Cidr::Parse(bad).has_value());
  }
}

}  // namespace
}  // namespace zt
