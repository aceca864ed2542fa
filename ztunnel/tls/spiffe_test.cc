#include "ztunnel/tls/spiffe.h"

#include <catch2/catch.hpp>
#include <string>

namespace zt::tls {
namespace {

TEST_CASE("SpiffeId parses Istio identities and renders them back", "[tls]") {
  auto id = SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/productpage");
  REQUIRE(id.ok());
  CHECK(id->trust_domain == "cluster.local");
  CHECK(id->ns == "default");
  CHECK(id->service_account == "productpage");
  CHECK(id->ToString() == "spiffe://cluster.local/ns/default/sa/productpage");
  CHECK(id->Principal() == "cluster.local/ns/default/sa/productpage");
}

TEST_CASE("SpiffeId::Make applies Istio's defaults", "[tls]") {
  CHECK(SpiffeId::Make("", "bookinfo", "").ToString() ==
        "spiffe://cluster.local/ns/bookinfo/sa/default");
  CHECK(SpiffeId::Make("example.org", "a", "b").ToString() == "spiffe://example.org/ns/a/sa/b");
}

TEST_CASE("SpiffeId rejects malformed identities with a reason", "[tls]") {
  const std::string with_nul("spiffe://cluster.local/ns/a\0b/sa/c", 35);
  const std::pair<std::string, std::string> cases[] = {
      {"https://cluster.local/ns/a/sa/b", "scheme is not spiffe://"},
      {"SPIFFE://cluster.local/ns/a/sa/b", "scheme is not spiffe://"},
      {with_nul, "contains a NUL byte"},
      {"spiffe:///ns/a/sa/b", "empty trust domain"},
      {"spiffe://Cluster.Local/ns/a/sa/b", "trust domain has a character outside [a-z0-9._-]"},
      {"spiffe://cluster.local", "no path: expected /ns/<ns>/sa/<sa>"},
      {"spiffe://cluster.local/ns/a", "path is not /ns/<namespace>/sa/<service-account>"},
      {"spiffe://cluster.local/ns/a/sa", "path is not /ns/<namespace>/sa/<service-account>"},
      {"spiffe://cluster.local/sa/b/ns/a", "path is not /ns/<namespace>/sa/<service-account>"},
      {"spiffe://cluster.local/ns/a/sa/b/extra",
       "path is not /ns/<namespace>/sa/<service-account>"},
      {"spiffe://cluster.local/ns//sa/b", "empty path segment"},
      {"spiffe://cluster.local/ns/a/sa/b/", "empty path segment"},
      {"spiffe://cluster.local/ns/../sa/b", "dot segment in path"},
      {"spiffe://cluster.local/ns/a b/sa/b", "path has a character outside [A-Za-z0-9._-]"},
      {"spiffe://cluster.local/ns/a%2f/sa/b", "path has a character outside [A-Za-z0-9._-]"},
      {"spiffe://cluster.local/ns/a/sa/" + std::string(2100, 'x'), "longer than 2048 bytes"},
  };
  for (const auto& [uri, why] : cases) {
    INFO(uri);
    std::string reason;
    auto id = SpiffeId::Parse(uri, &reason);
    CHECK_FALSE(id.ok());
    CHECK(reason == why);
  }
}

}  // namespace
}  // namespace zt::tls
