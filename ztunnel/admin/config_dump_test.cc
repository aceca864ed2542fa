#include "ztunnel/admin/config_dump.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "ztunnel/tls/testing.h"

namespace zt::admin {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::shared_ptr<const state::State> ShopState() {
  state::Workload w;
  w.uid = "shop/web-1";
  w.name = "web-1";
  w.namespace_name = "shop";
  w.service_account = "web";
  w.node = "node-a";
  w.cluster_id = "c1";
  w.canonical_name = "web";
  w.region = "r1";
  w.protocol = state::Protocol::kHbone;
  w.ips = {*IpAddr::Parse("10.0.0.1")};
  w.services["shop/web.shop.svc.cluster.local"] = {{80, 8080}};
  state::Service s;
  s.name = "web";
  s.namespace_name = "shop";
  s.hostname = "web.shop.svc.cluster.local";
  s.vips = {{"", *IpAddr::Parse("10.96.0.10")}, {"net2", *IpAddr::Parse("fd00::a")}};
  s.ports = {{80, 8080}, {443, 0}};
  state::Policy p;
  p.name = "deny-\"quoted\"";
  p.namespace_name = "shop";
  p.action = state::PolicyAction::kDeny;
  state::Match from;
  from.principals = {{state::StringMatch::Kind::kExact, "cluster.local/ns/a/sa/b"}};
  from.not_namespaces = {{state::StringMatch::Kind::kPresence, ""}};
  from.service_accounts = {{"a", "b"}};
  from.source_ips = {*Cidr::Parse("10.1.0.0/16")};
  state::Match to;
  to.destination_ports = {8080};
  p.rules = {{{from}, {to}}};
  std::string error;
  auto st = state::State::Build({w}, {s}, {p}, &error);
  REQUIRE(st != nullptr);
  return st;
}

TEST_CASE("The config dump has Istio's ztunnel shape for workloads, services, policies",
          "[admin]") {
  const json dump = json::parse(ConfigDumpJson(*ShopState(), {}, {}));
  const json& w = dump["workloads"].at(0);
  CHECK(w["uid"] == "shop/web-1");
  CHECK(w["name"] == "web-1");
  CHECK(w["namespace"] == "shop");
  CHECK(w["serviceAccount"] == "web");
  CHECK(w["node"] == "node-a");
  CHECK(w["protocol"] == "HBONE");
  CHECK(w["workloadIps"] == json::array({"10.0.0.1"}));
  CHECK(w["services"] == json::array({"shop/web.shop.svc.cluster.local"}));
  CHECK(w["status"] == "Healthy");
  CHECK(w["clusterId"] == "c1");
  CHECK(w["canonicalName"] == "web");
  CHECK(w["workloadType"] == "deployment");
  CHECK(w["locality"]["region"] == "r1");
  CHECK(w["capacity"] == 1);

  const json& s = dump["services"].at(0);
  CHECK(s["hostname"] == "web.shop.svc.cluster.local");
  // Every address is "network/ip", the default network empty (istioctl cuts at '/').
  CHECK(s["vips"] == json::array({"/10.96.0.10", "net2/fd00::a"}));
  CHECK(s["ports"] == json({{"80", 8080}, {"443", 443}}));
  CHECK(s["endpoints"]["shop/web-1"] == json({{"workloadUid", "shop/web-1"},
                                              {"service", "shop/web.shop.svc.cluster.local"},
                                              {"port", {{"80", 8080}}},
                                              {"status", "Healthy"}}));

  // rules: a list of rules, each a list of clauses, each a list of matches.
  const json& p = dump["policies"].at(0);
  CHECK(p["name"] == "deny-\"quoted\"");
  CHECK(p["scope"] == "Namespace");
  CHECK(p["action"] == "Deny");
  CHECK(p["dryRun"] == false);
  REQUIRE(p["rules"].size() == 1);
  REQUIRE(p["rules"][0].size() == 2);
  CHECK(p["rules"][0][0][0] ==
        json({{"notNamespaces", {{{"Presence", json::array()}}}},
              {"serviceAccounts", {{{"namespace", "a"}, {"serviceAccount", "b"}}}},
              {"principals", {{{"Exact", "cluster.local/ns/a/sa/b"}}}},
              {"sourceIps", {"10.1.0.0/16"}}}));
  CHECK(p["rules"][0][1][0] == json({{"destinationPorts", {8080}}}));
}

TEST_CASE("The config dump shows certificate chains and enrolled pods as Istio's does", "[admin]") {
  auto ca = tls::testing::TestCa::Make();
  auto cert = std::make_shared<identity::WorkloadCert>();
  cert->credentials =
      ca.IssueUris({"spiffe://cluster.local/ns/shop/sa/web"}, std::chrono::system_clock::now() - 1h,
                   std::chrono::system_clock::now() + 23h);
  cert->credentials.chain.push_back(ca.cert);  // a CA may send its root along
  cert->roots = {ca.cert};
  std::map<std::string, identity::CertEntry> entries;
  entries["spiffe://cluster.local/ns/shop/sa/web"] = {cert, {}};
  identity::CertEntry failing;
  failing.status.failures = 2;
  failing.status.last_error = "CA: connection refused";
  entries["spiffe://cluster.local/ns/shop/sa/new"] = failing;
  entries["spiffe://cluster.local/ns/shop/sa/wait"] = {};
  const auto certs = SummarizeCerts(identity::CertSet(std::move(entries)));
  const json dump = json::parse(
      ConfigDumpJson(*ShopState(), certs,
                     {{"uid-1", "web-1", "shop", "web", true, ""},
                      {"uid-2", "web-2", "shop", "web", false, "no workload with this uid yet"}}));

  const json& c = dump["certificates"];
  REQUIRE(c.size() == 3);
  CHECK(c[0]["identity"] == "spiffe://cluster.local/ns/shop/sa/new");
  CHECK(c[0]["state"] == "Unavailable: CA: connection refused");
  CHECK(c[0]["certChain"].empty());
  CHECK(c[1]["state"] == "Initializing");  // ".../sa/wait"
  const json& web = c[2];
  CHECK(web["state"] == "Available");
  // The leaf only: the root the CA sent along is under rootCerts.
  REQUIRE(web["certChain"].size() == 1);
  REQUIRE(web["rootCerts"].size() == 1);
  const json& leaf = web["certChain"][0];
  CHECK(leaf["pem"] == tls::Base64Encode(cert->credentials.chain[0].ToPem()));
  CHECK(leaf["serialNumber"] == cert->credentials.chain[0].SerialDecimal());
  CHECK(leaf["serialNumber"].get<std::string>().find_first_not_of("0123456789") ==
        std::string::npos);
  CHECK(leaf["expirationTime"].get<std::string>().size() == 20);  // 2026-11-29T03:00:00Z
  CHECK(web["rootCerts"][0]["pem"] == tls::Base64Encode(ca.cert.ToPem()));

  const json& pods = dump["workloadState"];
  CHECK(pods["uid-1"] ==
        json({{"state", "Up"},
              {"info", {{"name", "web-1"}, {"namespace", "shop"}, {"serviceAccount", "web"}}}}));
  CHECK(pods["uid-2"]["state"] == "Pending");
  CHECK(pods["uid-2"]["error"] == "no workload with this uid yet");
}

TEST_CASE("Bytes that are not UTF-8 leave the config dump valid JSON", "[admin]") {
  state::Workload w;
  w.uid = "bad\xff\xfe";
  w.name = "n";
  w.namespace_name = "ns";
  std::string error;
  auto st = state::State::Build({w}, &error);
  REQUIRE(st != nullptr);
  const json dump = json::parse(ConfigDumpJson(*st, {}, {}));
  CHECK(dump["workloads"][0]["uid"] == "bad\xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace zt::admin
