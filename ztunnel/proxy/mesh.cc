#include "ztunnel/proxy/mesh.h"

#include <fmt/format.h>

#include <random>

namespace zt::proxy {

const state::Workload* Mesh::LocalWorkload(const state::State& s, const IpAddr& ip) const {
  const state::Workload* w = s.FindWorkload(network, ip);
  return w != nullptr && w->node == node ? w : nullptr;
}

std::shared_ptr<const identity::WorkloadCert> Mesh::Cert(const state::Workload& w,
                                                         std::string* error) const {
  const tls::SpiffeId id = WorkloadIdentity(w);
  if (auto cert = certs->Current(id)) return cert;
  std::string why;
  auto fetched = certs->Fetch(id, &why);
  if (!fetched) {
    if (error != nullptr) {
      *error = fmt::format("no certificate for {}: {}", id.ToString(),
                           why.empty() ? fetched.error().Message() : why);
    }
    return nullptr;
  }
  return *fetched;
}

tls::SpiffeId WorkloadIdentity(const state::Workload& w) {
  return tls::SpiffeId::Make(w.trust_domain, w.namespace_name, w.service_account);
}

h2::ConnectRequest MakeConnectRequest(const state::Workload* src, const IpPort& src_addr,
                                      const IpPort& target) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  h2::ConnectRequest r;
  r.authority = target;
  if (src != nullptr) {
    r.baggage =
        fmt::format("k8s.namespace.name={},k8s.pod.name={}", src->namespace_name, src->name);
  }
  r.forwarded = fmt::format("for=\"{}\"", src_addr.ToString());
  // W3C trace context: version 00, 16-byte trace id, 8-byte parent id, sampled.
  r.traceparent = fmt::format("00-{:016x}{:016x}-{:016x}-01", rng(), rng(), rng() | 1);
  return r;
}

}  // namespace zt::proxy
