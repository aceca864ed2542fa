#include "ztunnel/state/route.h"

#include <fmt/format.h>

namespace zt::state {
namespace {

// AddressFor is the workload's first address of the family of `like`.
const IpAddr* AddressFor(const Workload& w, const IpAddr& like) {
  for (const IpAddr& ip : w.ips) {
    if (ip.v6 == like.v6) return &ip;
  }
  return nullptr;
}

}  // namespace

Route ResolveRoute(const State& state, const std::string& network, const IpPort& dst,
                   RoundRobin& rr) {
  Route r;
  r.target = dst;
  const IpAddr ip = dst.ip();
  const Service* svc = state.FindService(network, ip);
  if (svc == nullptr) {
    r.workload = state.FindWorkload(network, ip);
    return r;
  }
  r.service = svc;
  const auto service_port = svc->ports.find(dst.port);
  if (!svc->ports.empty() && service_port == svc->ports.end()) {
    r.error = fmt::format("service {} has no port {}", svc->Key(), dst.port);
    return r;
  }
  // An endpoint is a candidate when it has an address of the dialed family and serves
  // this port; `candidate` resolves both, returning the target port (0: not one).
  // Counting first, then walking to the round-robin's pick, avoids a candidate list.
  auto candidate = [&](const Endpoint& e, const IpAddr** addr) -> uint16_t {
    if (e.workload->network != network) return 0;
    *addr = AddressFor(*e.workload, ip);
    if (*addr == nullptr) return 0;
    uint16_t port = 0;
    if (auto it = e.ports->find(dst.port); it != e.ports->end()) {
      port = it->second;
    } else if (!e.ports->empty()) {
      return 0;  // this endpoint lists its ports, and not this one
    }
    if (port == 0 && service_port != svc->ports.end()) port = service_port->second;
    return port != 0 ? port : dst.port;
  };
  const std::vector<Endpoint>& endpoints = state.Endpoints(*svc);
  size_t count = 0;
  for (const Endpoint& e : endpoints) {
    const IpAddr* addr = nullptr;
    if (candidate(e, &addr) != 0) ++count;
  }
  const std::string key = svc->Key();
  if (count == 0) {
    r.error = fmt::format("service {} has no endpoint for port {}", key, dst.port);
    return r;
  }
  size_t pick = rr.Next(key, count);
  for (const Endpoint& e : endpoints) {
    const IpAddr* addr = nullptr;
    const uint16_t port = candidate(e, &addr);
    if (port == 0 || pick-- != 0) continue;
    r.workload = e.workload;
    r.target.v6 = addr->v6;
    r.target.addr = addr->addr;
    r.target.port = port;
    break;
  }
  return r;
}

}  // namespace zt::state
