#include "ztunnel/proxy/mesh.h"

#include <fmt/format.h>

#include <random>

namespace zt::proxy {

const state::Workload* Mesh::LocalWorkload(const state::State& s, const IpAddr& ip) const {
  const state::Workload* w = s.FindWorkload(network, ip);
  return w != nullptr && w->node == node ? w : nullptr;
}

tls::SpiffeId WorkloadIdentity(const state::Workload& w) {
  return tls::SpiffeId::Make(w.trust_domain, w.namespace_name, w.service_account);
}

namespace {

// AppendBaggageValue writes `v` as a W3C baggage value: baggage-octets (printable
// ASCII but space, '"', ',', ';' and '\\') as they are, anything else percent-encoded,
// '%' included. Kubernetes names never need it; a config string with a space, a
// comma or a control byte would otherwise make the header one the peer refuses (and
// the CONNECT with it) or read as another member.
void AppendBaggageValue(std::string& out, std::string_view v) {
  constexpr char kHex[] = "0123456789ABCDEF";
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    const bool octet =
        c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\' && c != '%';
    if (octet) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
}

}  // namespace

std::string Baggage(const state::Workload& w) {
  std::string out;
  const auto add = [&out](std::string_view key, const std::string& value) {
    if (value.empty()) return;
    if (!out.empty()) out += ',';
    out.append(key).append("=");
    AppendBaggageValue(out, value);
  };
  add("k8s.cluster.name", w.cluster_id);
  add("k8s.namespace.name", w.namespace_name);
  const std::string type = w.workload_type.empty() ? "deployment" : w.workload_type;
  add("k8s." + type + ".name", w.workload_name);
  add("service.name", w.canonical_name);
  add("service.version", w.canonical_revision);
  add("cloud.region", w.region);
  add("cloud.availability_zone", w.zone);
  return out;
}

h2::ConnectRequest MakeConnectRequest(const state::Workload* src, const IpPort& src_addr,
                                      const IpPort& target) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  h2::ConnectRequest r;
  r.authority = target;
  if (src != nullptr) r.baggage = Baggage(*src);
  r.forwarded = fmt::format("for=\"{}\"", src_addr.ToString());
  // W3C trace context: version 00, 16-byte trace id, 8-byte parent id, flags 00 (not
  // sampled: ztunnel records no span, and says so as Istio's does).
  r.traceparent = fmt::format("00-{:016x}{:016x}-{:016x}-00", rng(), rng(), rng() | 1);
  return r;
}

}  // namespace zt::proxy
