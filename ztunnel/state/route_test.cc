#include "ztunnel/state/route.h"

#include <catch2/catch.hpp>
#include <map>

namespace zt::state {
namespace {

Workload W(std::string uid, std::string ip, Protocol proto,
           std::map<std::string, std::map<uint16_t, uint16_t>> services = {}) {
  Workload w;
  w.uid = std::move(uid);
  w.name = w.uid;
  w.namespace_name = "default";
  w.ips = {*IpAddr::Parse(ip)};
  w.protocol = proto;
  w.services = std::move(services);
  return w;
}

std::shared_ptr<const State> Cluster() {
  Service echo;
  echo.name = "echo";
  echo.namespace_name = "default";
  echo.hostname = "echo.default.svc.cluster.local";
  echo.vips = {{"", *IpAddr::Parse("10.96.0.10")}};
  echo.ports = {{80, 8080}, {443, 0}};
  const std::string key = echo.Key();
  std::string error;
  auto s = State::Build(
      {W("e1", "10.0.0.1", Protocol::kHbone, {{key, {}}}),
       W("e2", "10.0.0.2", Protocol::kHbone, {{key, {{80, 9090}}}}),  // own target port
       W("e3", "10.0.0.3", Protocol::kTcp, {{key, {}}}),
       W("e4", "fd00::4", Protocol::kHbone, {{key, {}}}),  // no IPv4 address: skipped
       W("lone", "10.0.0.9", Protocol::kTcp)},
      {echo}, {}, &error);
  INFO(error);
  REQUIRE(s);
  return s;
}

TEST_CASE("A service VIP spreads round-robin over its endpoints and maps ports", "[route]") {
  auto s = Cluster();
  RoundRobin rr;
  std::map<std::string, int> seen;
  for (int i = 0; i < 30; ++i) {
    Route r = ResolveRoute(*s, "", *IpPort::Parse("10.96.0.10:80"), rr);
    REQUIRE(r.error.empty());
    REQUIRE(r.workload != nullptr);
    REQUIRE(r.service != nullptr);
    ++seen[r.workload->uid];
    if (r.workload->uid == "e1") CHECK(r.target.ToString() == "10.0.0.1:8080");  // service map
    if (r.workload->uid == "e2") CHECK(r.target.ToString() == "10.0.0.2:9090");  // its own
    if (r.workload->uid == "e3") CHECK(r.target.ToString() == "10.0.0.3:8080");
  }
  CHECK(seen == std::map<std::string, int>{{"e1", 10}, {"e2", 10}, {"e3", 10}});
  CHECK(s->FindServiceByKey("default/echo.default.svc.cluster.local") ==
        s->FindService("", *IpAddr::Parse("10.96.0.10")));
  CHECK(s->FindServiceByKey("default/nope") == nullptr);
  // Port 443 maps to itself (target 0), and e2 lists only port 80, so it is skipped.
  std::map<std::string, int> tls;
  for (int i = 0; i < 4; ++i) {
    Route r = ResolveRoute(*s, "", *IpPort::Parse("10.96.0.10:443"), rr);
    REQUIRE(r.workload != nullptr);
    CHECK(r.target.port == 443);
    ++tls[r.workload->uid];
  }
  CHECK(tls == std::map<std::string, int>{{"e1", 2}, {"e3", 2}});
}

TEST_CASE("Routes to workloads keep their protocol, unknown addresses pass through", "[route]") {
  auto s = Cluster();
  RoundRobin rr;
  Route hbone = ResolveRoute(*s, "", *IpPort::Parse("10.0.0.1:5000"), rr);
  REQUIRE(hbone.workload != nullptr);
  CHECK(hbone.workload->protocol == Protocol::kHbone);
  CHECK(hbone.service == nullptr);
  CHECK(hbone.target.ToString() == "10.0.0.1:5000");
  Route tcp = ResolveRoute(*s, "", *IpPort::Parse("10.0.0.9:5000"), rr);
  REQUIRE(tcp.workload != nullptr);
  CHECK(tcp.workload->protocol == Protocol::kTcp);
  Route unknown = ResolveRoute(*s, "", *IpPort::Parse("192.0.2.1:80"), rr);
  CHECK(unknown.workload == nullptr);
  CHECK(unknown.error.empty());
  CHECK(unknown.target.ToString() == "192.0.2.1:80");
  Route other_network = ResolveRoute(*s, "net2", *IpPort::Parse("10.0.0.1:80"), rr);
  CHECK(other_network.workload == nullptr);
}

TEST_CASE("A VIP port the service does not have, or without endpoints, is an error", "[route]") {
  auto s = Cluster();
  RoundRobin rr;
  CHECK(ResolveRoute(*s, "", *IpPort::Parse("10.96.0.10:81"), rr).error ==
        "service default/echo.default.svc.cluster.local has no port 81");
  Service empty;
  empty.name = "empty";
  empty.namespace_name = "default";
  empty.hostname = "empty";
  empty.vips = {{"", *IpAddr::Parse("10.96.0.11")}};
  std::string error;
  auto s2 = State::Build({}, {empty}, {}, &error);
  REQUIRE(s2);
  CHECK(ResolveRoute(*s2, "", *IpPort::Parse("10.96.0.11:80"), rr).error ==
        "service default/empty has no endpoint for port 80");
}

}  // namespace
}  // namespace zt::state
