#include "ztunnel/xds/convert.h"

#include <fmt/format.h>

#include <cstring>

namespace zt::xds {
namespace {

// ToIp reads 4 or 16 bytes (Istio's ztunnel refuses any other length too).
bool ToIp(const std::string& bytes, IpAddr* out) {
  if (bytes.size() != 4 && bytes.size() != 16) return false;
  out->v6 = bytes.size() == 16;
  out->addr = {};
  std::memcpy(out->addr.data(), bytes.data(), bytes.size());
  return true;
}

std::string Hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

bool Port16(uint32_t p, uint16_t* out) {
  if (p > 65535) return false;
  *out = static_cast<uint16_t>(p);
  return true;
}

const char* WorkloadTypeName(istio::workload::WorkloadType t) {
  switch (t) {
    case istio::workload::CRONJOB:
      return "cronjob";
    case istio::workload::POD:
      return "pod";
    case istio::workload::JOB:
      return "job";
    default:
      return "deployment";
  }
}

bool ToCidr(const istio::security::Address& a, Cidr* out) {
  if (!ToIp(a.address(), &out->base)) return false;
  const uint32_t max = out->base.v6 ? 128 : 32;
  if (a.length() > max) return false;
  out->prefix = static_cast<uint8_t>(a.length());
  // Zero the host bits: the policy compiler compares the base.
  for (uint32_t bit = out->prefix; bit < max; ++bit) {
    out->base.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  return true;
}

bool ToStringMatch(const istio::security::StringMatch& m, state::StringMatch* out) {
  using M = istio::security::StringMatch;
  switch (m.match_type_case()) {
    case M::kExact:
      *out = {state::StringMatch::Kind::kExact, m.exact()};
      return true;
    case M::kPrefix:
      *out = {state::StringMatch::Kind::kPrefix, m.prefix()};
      return true;
    case M::kSuffix:
      *out = {state::StringMatch::Kind::kSuffix, m.suffix()};
      return true;
    case M::kPresence:
      *out = {state::StringMatch::Kind::kPresence, ""};
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string ServiceResourceName(const istio::workload::Service& s) {
  return s.namespace_() + "/" + s.hostname();
}

bool ToWorkload(const istio::workload::Workload& in, state::Workload* out, std::string* error) {
  const std::string who = fmt::format("workload {}", in.uid().empty() ? in.name() : in.uid());
  if (in.uid().empty()) {
    *error = who + ": uid is empty";
    return false;
  }
  state::Workload w;
  w.uid = in.uid();
  w.name = in.name();
  w.namespace_name = in.namespace_();
  w.service_account = in.service_account();
  w.trust_domain = in.trust_domain();
  w.network = in.network();
  w.node = in.node();
  w.cluster_id = in.cluster_id();
  w.workload_name = in.workload_name();
  w.canonical_name = in.canonical_name();
  w.canonical_revision = in.canonical_revision();
  w.workload_type = WorkloadTypeName(in.workload_type());
  w.region = in.locality().region();
  w.zone = in.locality().zone();
  w.protocol = in.tunnel_protocol() == istio::workload::HBONE ? state::Protocol::kHbone
                                                              : state::Protocol::kTcp;
  for (int i = 0; i < in.addresses_size(); ++i) {
    IpAddr ip;
    if (!ToIp(in.addresses(i), &ip)) {
      *error = fmt::format("{}: addresses[{}] is {} bytes (0x{}), not an IPv4 or IPv6 address", who,
                           i, in.addresses(i).size(), Hex(in.addresses(i)));
      return false;
    }
    w.ips.push_back(ip);
  }
  for (const std::string& p : in.authorization_policies()) w.authorization_policies.push_back(p);
  for (const auto& [key, list] : in.services()) {
    auto& ports = w.services[key];
    for (int i = 0; i < list.ports_size(); ++i) {
      uint16_t sp = 0, tp = 0;
      if (!Port16(list.ports(i).service_port(), &sp) || !Port16(list.ports(i).target_port(), &tp)) {
        *error = fmt::format("{}: services[\"{}\"].ports[{}] is not a TCP port", who, key, i);
        return false;
      }
      ports[sp] = tp;
    }
  }
  *out = std::move(w);
  return true;
}

bool ToService(const istio::workload::Service& in, state::Service* out, std::string* error) {
  const std::string who = "service " + ServiceResourceName(in);
  if (in.hostname().empty()) {
    *error = who + ": hostname is empty";
    return false;
  }
  state::Service s;
  s.name = in.name();
  s.namespace_name = in.namespace_();
  s.hostname = in.hostname();
  for (int i = 0; i < in.addresses_size(); ++i) {
    const auto& a = in.addresses(i);
    state::NetworkAddress vip;
    vip.network = a.network();
    if (!ToIp(a.address(), &vip.ip)) {
      *error = fmt::format("{}: addresses[{}] is {} bytes, not an IPv4 or IPv6 address", who, i,
                           a.address().size());
      return false;
    }
    if (a.has_length()) continue;  // a CIDR (no VIP to route by): nothing to index
    s.vips.push_back(vip);
  }
  for (int i = 0; i < in.ports_size(); ++i) {
    uint16_t sp = 0, tp = 0;
    if (!Port16(in.ports(i).service_port(), &sp) || !Port16(in.ports(i).target_port(), &tp) ||
        sp == 0) {
      *error = fmt::format("{}: ports[{}] is not a TCP port", who, i);
      return false;
    }
    s.ports[sp] = tp;
  }
  for (const std::string& san : in.subject_alt_names()) s.subject_alt_names.push_back(san);
  *out = std::move(s);
  return true;
}

bool ToPolicy(const istio::security::Authorization& in, state::Policy* out, std::string* error) {
  const std::string who = fmt::format("policy {}/{}", in.namespace_(), in.name());
  if (in.name().empty()) {
    *error = who + ": name is empty";
    return false;
  }
  state::Policy p;
  p.name = in.name();
  p.namespace_name = in.namespace_();
  switch (in.scope()) {
    case istio::security::GLOBAL:
      p.scope = state::PolicyScope::kGlobal;
      break;
    case istio::security::NAMESPACE:
      p.scope = state::PolicyScope::kNamespace;
      break;
    case istio::security::WORKLOAD_SELECTOR:
      p.scope = state::PolicyScope::kWorkloadSelector;
      break;
    default:
      *error = fmt::format("{}: unknown scope {}", who, static_cast<int>(in.scope()));
      return false;
  }
  switch (in.action()) {
    case istio::security::ALLOW:
      p.action = state::PolicyAction::kAllow;
      break;
    case istio::security::DENY:
      p.action = state::PolicyAction::kDeny;
      break;
    default:
      // An action we do not enforce (a newer Istio's) must not become an ALLOW.
      *error = fmt::format("{}: unknown action {}", who, static_cast<int>(in.action()));
      return false;
  }
  p.dry_run = in.dry_run();
  for (int r = 0; r < in.rules_size(); ++r) {
    state::Rule rule;
    for (int c = 0; c < in.rules(r).clauses_size(); ++c) {
      state::Clause clause;
      for (int m = 0; m < in.rules(r).clauses(c).matches_size(); ++m) {
        const auto& src = in.rules(r).clauses(c).matches(m);
        const std::string at = fmt::format("{}: rules[{}].clauses[{}].matches[{}]", who, r, c, m);
        state::Match match;
        const auto strings = [&](const auto& list, std::vector<state::StringMatch>* dst,
                                 const char* field) {
          for (int i = 0; i < list.size(); ++i) {
            state::StringMatch sm;
            if (!ToStringMatch(list.Get(i), &sm)) {
              *error = fmt::format("{}.{}[{}] has no match type", at, field, i);
              return false;
            }
            dst->push_back(std::move(sm));
          }
          return true;
        };
        const auto cidrs = [&](const auto& list, std::vector<Cidr>* dst, const char* field) {
          for (int i = 0; i < list.size(); ++i) {
            Cidr cidr;
            if (!ToCidr(list.Get(i), &cidr)) {
              *error = fmt::format("{}.{}[{}] is not an address with a valid prefix length", at,
                                   field, i);
              return false;
            }
            dst->push_back(cidr);
          }
          return true;
        };
        const auto ports = [&](const auto& list, std::vector<uint16_t>* dst, const char* field) {
          for (int i = 0; i < list.size(); ++i) {
            uint16_t port = 0;
            if (!Port16(list.Get(i), &port)) {
              *error = fmt::format("{}.{}[{}] = {} is not a TCP port", at, field, i, list.Get(i));
              return false;
            }
            dst->push_back(port);
          }
          return true;
        };
        const auto accounts = [&](const auto& list, std::vector<state::ServiceAccountMatch>* dst) {
          for (int i = 0; i < list.size(); ++i) {
            dst->push_back({list.Get(i).namespace_(), list.Get(i).serviceaccount()});
          }
          return true;
        };
        if (!strings(src.namespaces(), &match.namespaces, "namespaces") ||
            !strings(src.not_namespaces(), &match.not_namespaces, "not_namespaces") ||
            !strings(src.principals(), &match.principals, "principals") ||
            !strings(src.not_principals(), &match.not_principals, "not_principals") ||
            !cidrs(src.source_ips(), &match.source_ips, "source_ips") ||
            !cidrs(src.not_source_ips(), &match.not_source_ips, "not_source_ips") ||
            !cidrs(src.destination_ips(), &match.destination_ips, "destination_ips") ||
            !cidrs(src.not_destination_ips(), &match.not_destination_ips, "not_destination_ips") ||
            !ports(src.destination_ports(), &match.destination_ports, "destination_ports") ||
            !ports(src.not_destination_ports(), &match.not_destination_ports,
                   "not_destination_ports") ||
            !accounts(src.service_accounts(), &match.service_accounts) ||
            !accounts(src.not_service_accounts(), &match.not_service_accounts)) {
          return false;
        }
        clause.push_back(std::move(match));
      }
      rule.push_back(std::move(clause));
    }
    p.rules.push_back(std::move(rule));
  }
  *out = std::move(p);
  return true;
}

}  // namespace zt::xds
