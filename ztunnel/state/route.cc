#include "ztunnel/state/route.h"

#include <fmt/format.h>

#include <vector>

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
  // Endpoints that serve this port and have an address of the dialed family.
  struct Candidate {
    const Workload* workload;
    const IpAddr* ip;
    uint16_t port;
  };
  std::vector<Candidate> candidates;
  for (const Workload* w : state.Endpoints(*svc)) {
    if (w->network != network) continue;
    const IpAddr* addr = AddressFor(*w, ip);
    if (addr == nullptr) continue;
    const auto& ports = w->services.at(svc->Key());
    uint16_t port = 0;
    if (auto it = ports.find(dst.port); it != ports.end()) {
      port = it->second;
    } else if (!ports.empty()) {
      continue;  // this endpoint lists its ports, and not this one
    }
    if (port == 0 && service_port != svc->ports.end()) port = service_port->second;
    if (port == 0) port = dst.port;
    candidates.push_back({w, addr, port});
  }
  if (candidates.empty()) {
    r.error = fmt::format("service {} has no endpoint for port {}", svc->Key(), dst.port);
    return r;
  }
  const Candidate& c = candidates[rr.Next(svc->Key(), candidates.size())];
  r.workload = c.workload;
  r.target.v6 = c.ip->v6;
  r.target.addr = c.ip->addr;
  r.target.port = c.port;
  return r;
}

}  // namespace zt::state
