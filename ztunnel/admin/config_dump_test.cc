#include "ztunnel/admin/config_dump.h"

#include <catch2/catch.hpp>

namespace zt::admin {
namespace {

TEST_CASE("The config dump lists workloads, services, policies, certs and pods", "[admin]") {
  state::Workload w;
  w.uid = "shop/web-1";
  w.name = "web-1";
  w.namespace_name = "shop";
  w.service_account = "web";
  w.node = "node-a";
  w.protocol = state::Protocol::kHbone;
  w.ips = {*IpAddr::Parse("10.0.0.1")};
  w.services["shop/web.shop.svc.cluster.local"] = {{80, 8080}};
  state::Service s;
  s.name = "web";
  s.namespace_name = "shop";
  s.hostname = "web.shop.svc.cluster.local";
  s.vips = {{"", *IpAddr::Parse("10.96.0.10")}};
  s.ports = {{80, 8080}};
  state::Policy p;
  p.name = "deny-\"quoted\"";
  p.namespace_name = "shop";
  p.action = state::PolicyAction::kDeny;
  std::string error;
  auto st = state::State::Build({w}, {s}, {p}, &error);
  REQUIRE(st != nullptr);
  const std::string json = ConfigDumpJson(
      *st, {{"spiffe://cluster.local/ns/shop/sa/web", "valid", "2026-11-29T03:00:00Z", 0, ""}},
      {{"uid-1", "web-1", "shop", "serving", ""}});
  CHECK(json.find(R"("uid":"shop/web-1","name":"web-1","namespace":"shop","serviceAccount":"web",)"
                  R"("node":"node-a","protocol":"HBONE","workloadIps":["10.0.0.1"],)"
                  R"("services":["shop/web.shop.svc.cluster.local"])") != std::string::npos);
  CHECK(json.find(R"("hostname":"web.shop.svc.cluster.local","vips":["10.96.0.10"],)"
                  R"("ports":{"80":8080})") != std::string::npos);
  CHECK(json.find(R"("name":"deny-\"quoted\"","namespace":"shop","scope":"Namespace",)"
                  R"("action":"Deny","dryRun":false,"rules":0)") != std::string::npos);
  CHECK(json.find(R"("identity":"spiffe://cluster.local/ns/shop/sa/web","state":"valid",)"
                  R"("expiration":"2026-11-29T03:00:00Z")") != std::string::npos);
  CHECK(json.find(R"("uid":"uid-1","name":"web-1","namespace":"shop","state":"serving")") !=
        std::string::npos);
}

}  // namespace
}  // namespace zt::admin
