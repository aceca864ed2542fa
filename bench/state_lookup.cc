// state_lookup: how fast the data path's lookups stay at scale: 10,000 workloads,
// 2,000 services (5 endpoints each) and 10,000 policies (100 namespaces x 100: every
// connection faces 100 policies, half port-scoped, half identity-only), as issue 4
// asks. Prints one JSON line: build time, and ns per operation (median of 5 rounds)
// for workload by IP, service by VIP, a full route, authorization, and workload lookup
// plus authorization (what a new inbound connection pays).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "ztunnel/state/authz.h"
#include "ztunnel/state/route.h"
#include "ztunnel/state/state.h"

using namespace zt;
using namespace zt::state;
using Clock = std::chrono::steady_clock;

namespace {

IpAddr Ip(uint32_t host, uint8_t net) {
  IpAddr ip;
  ip.addr[0] = 10;
  ip.addr[1] = net;
  ip.addr[2] = static_cast<uint8_t>(host >> 8);
  ip.addr[3] = static_cast<uint8_t>(host);
  return ip;
}

template <typename Fn>
double NsPerOp(int ops, Fn fn) {
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < ops; ++i) fn(i);
    rounds.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / ops);
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[2];
}

}  // namespace

int main() {
  constexpr int kWorkloads = 10000, kServices = 2000, kNamespaces = 100, kPolicies = 10000;
  std::vector<Workload> workloads;
  for (int i = 0; i < kWorkloads; ++i) {
    Workload w;
    w.uid = "w" + std::to_string(i);
    w.name = w.uid;
    w.namespace_name = "ns" + std::to_string(i % kNamespaces);
    w.service_account = "sa" + std::to_string(i % 7);
    w.ips = {Ip(static_cast<uint32_t>(i), 1)};
    w.protocol = Protocol::kHbone;
    // Workload i serves service i / 5: 5 endpoints per service.
    w.services["ns" + std::to_string((i / 5) % kNamespaces) + "/svc" + std::to_string(i / 5)] = {
        {80, 8080}};
    workloads.push_back(std::move(w));
  }
  std::vector<Service> services;
  for (int i = 0; i < kServices; ++i) {
    Service s;
    s.name = "svc" + std::to_string(i);
    s.namespace_name = "ns" + std::to_string(i % kNamespaces);
    s.hostname = s.name;
    s.vips = {{"", Ip(static_cast<uint32_t>(i), 96)}};
    s.ports = {{80, 8080}};
    services.push_back(std::move(s));
  }
  std::vector<Policy> policies;
  for (int i = 0; i < kPolicies; ++i) {
    Policy p;
    p.name = "p" + std::to_string(i);
    p.namespace_name = "ns" + std::to_string(i % kNamespaces);
    p.action = i % 10 == 0 ? PolicyAction::kDeny : PolicyAction::kAllow;
    Match m;
    m.principals = {{StringMatch::Kind::kPrefix, "cluster.local/ns/ns" + std::to_string(i % 50)}};
    // Half the policies are scoped to a port (the pre-filter skips them for other
    // ports), half are identity-only (always evaluated in full).
    if (i % 2 == 0) m.destination_ports = {static_cast<uint16_t>(8000 + i % 100)};
    p.rules = {Rule{Clause{m}}};
    policies.push_back(std::move(p));
  }
  std::string error;
  const auto b0 = Clock::now();
  auto state = State::Build(std::move(workloads), std::move(services), std::move(policies), &error);
  const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - b0).count();
  if (!state) {
    std::fprintf(stderr, "state_lookup: %s\n", error.c_str());
    return 1;
  }
  volatile size_t sink = 0;
  const double by_ip = NsPerOp(1000000, [&](int i) {
    sink =
        sink + (state->FindWorkload("", Ip(static_cast<uint32_t>(i % kWorkloads), 1)) != nullptr);
  });
  const double by_vip = NsPerOp(1000000, [&](int i) {
    sink = sink + (state->FindService("", Ip(static_cast<uint32_t>(i % kServices), 96)) != nullptr);
  });
  RoundRobin rr;
  const double route = NsPerOp(1000000, [&](int i) {
    IpPort dst;
    const IpAddr ip = Ip(static_cast<uint32_t>(i % kServices), 96);
    dst.addr = ip.addr;
    dst.port = 80;
    sink = sink + ResolveRoute(*state, "", dst, rr).target.port;
  });
  Connection c;
  c.principal = "cluster.local/ns/ns3/sa/sa1";
  c.peer_namespace = "ns3";
  c.peer_service_account = "sa1";
  c.source = Ip(3, 1);
  c.destination = Ip(7, 1);
  c.destination_port = 8077;  // matches no policy's port: every policy is evaluated
  const double authz = NsPerOp(100000, [&](int i) {
    const Workload& w = state->workloads()[static_cast<size_t>(i % kWorkloads)];
    sink = sink + Authorize(state->PoliciesFor(w), c).allowed;
  });
  // What a new inbound connection costs: find the destination workload, then decide.
  const double per_connection = NsPerOp(100000, [&](int i) {
    const Workload* w = state->FindWorkload("", Ip(static_cast<uint32_t>(i % kWorkloads), 1));
    sink = sink + Authorize(state->PoliciesFor(*w), c).allowed;
  });
  std::printf(
      "{\"workloads\": %d, \"services\": %d, \"policies\": %d, \"policies_per_namespace\": %d, "
      "\"build_ms\": %.1f, \"ns_workload_by_ip\": %.1f, \"ns_service_by_vip\": %.1f, "
      "\"ns_route_vip\": %.1f, \"ns_authorize_100_policies\": %.1f, "
      "\"ns_lookup_and_authorize\": %.1f}\n",
      kWorkloads, kServices, kPolicies, kPolicies / kNamespaces, build_ms, by_ip, by_vip, route,
      authz, per_connection);
  return sink == 0 ? 1 : 0;
}
