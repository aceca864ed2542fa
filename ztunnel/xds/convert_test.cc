#include "ztunnel/xds/convert.h"

#include <catch2/catch.hpp>

namespace zt::xds {
namespace {

std::string Bytes(std::initializer_list<uint8_t> b) { return std::string(b.begin(), b.end()); }

TEST_CASE("An xDS workload becomes a state workload", "[xds]") {
  istio::workload::Workload in;
  in.set_uid("Kubernetes//Pod/ns1/web-0");
  in.set_name("web-0");
  in.set_namespace_("ns1");
  in.set_service_account("web");
  in.set_node("node-a");
  in.set_tunnel_protocol(istio::workload::HBONE);
  in.set_workload_type(istio::workload::POD);
  in.set_canonical_name("web");
  in.mutable_locality()->set_region("eu");
  in.add_addresses(Bytes({10, 0, 0, 7}));
  in.add_authorization_policies("ns1/allow-web");
  auto& ports = (*in.mutable_services())["ns1/web.ns1.svc.cluster.local"];
  auto* port = ports.add_ports();
  port->set_service_port(80);
  port->set_target_port(8080);
  state::Workload w;
  std::string error;
  REQUIRE(ToWorkload(in, &w, &error));
  CHECK(w.uid == "Kubernetes//Pod/ns1/web-0");
  CHECK(w.protocol == state::Protocol::kHbone);
  CHECK(w.workload_type == "pod");
  CHECK(w.region == "eu");
  REQUIRE(w.ips.size() == 1);
  CHECK(w.ips[0].ToString() == "10.0.0.7");
  CHECK(w.authorization_policies == std::vector<std::string>{"ns1/allow-web"});
  CHECK(w.services.at("ns1/web.ns1.svc.cluster.local").at(80) == 8080);

  in.add_addresses(Bytes({1, 2, 3}));
  CHECK_FALSE(ToWorkload(in, &w, &error));
  CHECK(error ==
        "workload Kubernetes//Pod/ns1/web-0: addresses[1] is 3 bytes (0x010203), not an IPv4 or "
        "IPv6 address");
}

TEST_CASE("An xDS service becomes a state service, and CIDR addresses are not VIPs", "[xds]") {
  istio::workload::Service in;
  in.set_name("web");
  in.set_namespace_("ns1");
  in.set_hostname("web.ns1.svc.cluster.local");
  auto* vip = in.add_addresses();
  vip->set_address(Bytes({10, 96, 0, 10}));
  auto* cidr = in.add_addresses();
  cidr->set_address(Bytes({10, 97, 0, 0}));
  cidr->set_length(16);
  auto* port = in.add_ports();
  port->set_service_port(80);
  port->set_target_port(8080);
  in.add_subject_alt_names("spiffe://cluster.local/ns/ns1/sa/web");
  state::Service s;
  std::string error;
  REQUIRE(ToService(in, &s, &error));
  CHECK(ServiceResourceName(in) == "ns1/web.ns1.svc.cluster.local");
  REQUIRE(s.vips.size() == 1);
  CHECK(s.vips[0].ip.ToString() == "10.96.0.10");
  CHECK(s.ports.at(80) == 8080);
  port->set_service_port(70000);
  CHECK_FALSE(ToService(in, &s, &error));
  CHECK(error == "service ns1/web.ns1.svc.cluster.local: ports[0] is not a TCP port");
}

TEST_CASE("An xDS authorization becomes a policy, and what we cannot enforce is refused", "[xds]") {
  istio::security::Authorization in;
  in.set_name("allow-web");
  in.set_namespace_("ns1");
  in.set_scope(istio::security::WORKLOAD_SELECTOR);
  in.set_action(istio::security::DENY);
  auto* match = in.add_rules()->add_clauses()->add_matches();
  match->add_principals()->set_prefix("cluster.local/ns/ns2/");
  match->add_not_namespaces()->mutable_presence();
  auto* ip = match->add_source_ips();
  ip->set_address(Bytes({10, 1, 2, 3}));
  ip->set_length(16);
  match->add_destination_ports(8080);
  auto* sa = match->add_service_accounts();
  sa->set_namespace_("ns2");
  sa->set_serviceaccount("client");
  state::Policy p;
  std::string error;
  REQUIRE(ToPolicy(in, &p, &error));
  CHECK(p.Key() == "ns1/allow-web");
  CHECK(p.scope == state::PolicyScope::kWorkloadSelector);
  CHECK(p.action == state::PolicyAction::kDeny);
  REQUIRE(p.rules.size() == 1);
  const state::Match& m = p.rules[0][0][0];
  CHECK(m.principals[0].kind == state::StringMatch::Kind::kPrefix);
  CHECK(m.not_namespaces[0].kind == state::StringMatch::Kind::kPresence);
  CHECK(m.source_ips[0].ToString() == "10.1.0.0/16");  // host bits cleared
  CHECK(m.destination_ports == std::vector<uint16_t>{8080});
  CHECK(m.service_accounts[0].service_account == "client");

  in.set_action(static_cast<istio::security::Action>(7));
  CHECK_FALSE(ToPolicy(in, &p, &error));
  CHECK(error == "policy ns1/allow-web: unknown action 7");
  in.set_action(istio::security::ALLOW);
  match->add_destination_ports(70000);
  CHECK_FALSE(ToPolicy(in, &p, &error));
  CHECK(error ==
        "policy ns1/allow-web: rules[0].clauses[0].matches[0].destination_ports[1] = 70000 is not "
        "a TCP port");
}

}  // namespace
}  // namespace zt::xds
