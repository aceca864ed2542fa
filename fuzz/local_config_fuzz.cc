// Fuzz target: the local config file (config::ParseLocalConfig), YAML text → an
// immutable state::State with its compiled policy programs. Reload reads whatever is
// in the file, so nothing in it may crash the process; the rest of this target checks
// what a parsed state is used for:
//
// - authorization: every policy set (each workload's, and all policies at once) is
//   decided for connections made from the config's own strings, addresses and ports
//   (and near misses) by the compiled programs (state/policy_program.*) and by the
//   reference below, written from authz.h's semantics over the policy tree; verdict,
//   reason and dry-run reports must agree;
// - routing: ResolveRoute to every workload address and service VIP port lands on a
//   workload of the right family serving that port, or says why not;
// - the admin /config_dump JSON of the state parses as JSON;
// - the baggage header a workload's CONNECTs (and 200s) carry (proxy::Baggage) is a
//   valid HTTP field value and a W3C baggage list whose members decode to exactly the
//   workload's fields, so no config string can break the header or add a member.
//
// A refused file must come with an error message.
#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "fuzz/json_check.h"
#include "ztunnel/admin/config_dump.h"
#include "ztunnel/config/local_config.h"
#include "ztunnel/proxy/mesh.h"
#include "ztunnel/state/authz.h"
#include "ztunnel/state/route.h"
#include "ztunnel/state/state.h"

namespace {

namespace state = zt::state;
using zt::Cidr;
using zt::IpAddr;
using zt::IpPort;
using Kind = state::StringMatch::Kind;

// ---- The reference: authz.h's semantics, evaluated on the tree ----

bool StringHit(const state::StringMatch& m, const std::string& s) {
  switch (m.kind) {
    case Kind::kExact:
      return s == m.value;
    case Kind::kPrefix:
      return s.size() >= m.value.size() && s.compare(0, m.value.size(), m.value) == 0;
    case Kind::kSuffix:
      return s.size() >= m.value.size() &&
             s.compare(s.size() - m.value.size(), m.value.size(), m.value) == 0;
    case Kind::kPresence:
      return !s.empty();
  }
  return false;
}

// A positive list passes with a hit, a `not_` list with none; a plaintext peer (no
// principal) never hits a positive identity list and always passes a `not_` one.
template <typename T, typename Hit>
bool Passes(const std::vector<T>& yes, const std::vector<T>& no, bool identity_list,
            bool has_identity, Hit hit) {
  if (identity_list && !has_identity) return yes.empty();
  if (!yes.empty() && std::none_of(yes.begin(), yes.end(), hit)) return false;
  return std::none_of(no.begin(), no.end(), hit);
}

bool RefMatch(const state::Match& m, const state::Connection& c) {
  if (m.Empty()) return false;
  const bool id = !c.principal.empty();
  auto port = [&](uint16_t p) { return p == c.destination_port; };
  auto dst = [&](const Cidr& r) { return r.Contains(c.destination); };
  auto src = [&](const Cidr& r) { return r.Contains(c.source); };
  auto ns = [&](const state::StringMatch& s) { return StringHit(s, c.peer_namespace); };
  auto sa = [&](const state::ServiceAccountMatch& s) {
    return s.namespace_name == c.peer_namespace && s.service_account == c.peer_service_account;
  };
  auto principal = [&](const state::StringMatch& s) { return StringHit(s, c.principal); };
  return Passes(m.destination_ports, m.not_destination_ports, false, id, port) &&
         Passes(m.destination_ips, m.not_destination_ips, false, id, dst) &&
         Passes(m.source_ips, m.not_source_ips, false, id, src) &&
         Passes(m.namespaces, m.not_namespaces, true, id, ns) &&
         Passes(m.service_accounts, m.not_service_accounts, true, id, sa) &&
         Passes(m.principals, m.not_principals, true, id, principal);
}

bool RefPolicy(const state::Policy& p, const state::Connection& c) {
  for (const state::Rule& rule : p.rules) {
    bool all = true;
    for (const state::Clause& clause : rule) {
      const bool hit = clause.empty() || std::any_of(clause.begin(), clause.end(),
                                                     [&](auto& m) { return RefMatch(m, c); });
      if (!hit) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

state::Decision RefAuthorize(const std::vector<const state::Policy*>& policies,
                             const state::Connection& c) {
  state::Decision d;
  bool any_allow = false, allow_matched = false;
  for (const state::Policy* p : policies) {
    const bool deny = p->action == state::PolicyAction::kDeny;
    const bool matched = RefPolicy(*p, c);
    if (p->dry_run) {
      if (deny && matched) d.dry_run.push_back(p->Key() + " would deny");
      if (!deny) d.dry_run.push_back(p->Key() + (matched ? " would allow" : " would not allow"));
      continue;
    }
    if (deny) {
      if (d.allowed && matched) {
        d.allowed = false;
        d.reason = "denied by " + p->Key();
      }
      continue;
    }
    any_allow = true;
    allow_matched = allow_matched || matched;
  }
  if (d.allowed && any_allow && !allow_matched) {
    d.allowed = false;
    d.reason = "no ALLOW policy matched";
  }
  return d;
}

// ---- Connections made from the config itself ----

struct Pools {
  std::vector<std::string> principals{""}, namespaces{""}, accounts{"default"};
  std::vector<IpAddr> ips;
  std::vector<uint16_t> ports{0, 80, 15008};

  void String(std::vector<std::string>& to, const std::string& s) {
    if (to.size() > 64) return;
    to.push_back(s);
    to.push_back(s + "x");  // near misses: one byte more, one byte less
    if (!s.empty()) to.push_back(s.substr(0, s.size() - 1));
    if (!s.empty()) to.push_back(s.substr(1));
  }
  void Ip(const IpAddr& ip) {
    if (ips.size() > 64) return;
    ips.push_back(ip);
    IpAddr near = ip;
    near.addr[ip.v6 ? 15 : 3] ^= 1;
    ips.push_back(near);
  }
  void Port(uint16_t p) {
    if (ports.size() > 64) return;
    ports.push_back(p);
    ports.push_back(static_cast<uint16_t>(p + 1));
  }
  void Add(const state::Policy& p) {
    for (const auto& rule : p.rules) {
      for (const auto& clause : rule) {
        for (const state::Match& m : clause) {
          for (auto* list : {&m.namespaces, &m.not_namespaces}) {
            for (const auto& s : *list) String(namespaces, s.value);
          }
          for (auto* list : {&m.principals, &m.not_principals}) {
            for (const auto& s : *list) String(principals, s.value);
          }
          for (auto* list : {&m.service_accounts, &m.not_service_accounts}) {
            for (const auto& s : *list) {
              namespaces.push_back(s.namespace_name);
              accounts.push_back(s.service_account);
              principals.push_back("cluster.local/ns/" + s.namespace_name + "/sa/" +
                                   s.service_account);
            }
          }
          for (auto* list :
               {&m.source_ips, &m.not_source_ips, &m.destination_ips, &m.not_destination_ips}) {
            for (const Cidr& r : *list) Ip(r.base);
          }
          for (auto* list : {&m.destination_ports, &m.not_destination_ports}) {
            for (uint16_t port : *list) Port(port);
          }
        }
      }
    }
  }
};

void CheckDecisions(const std::vector<const state::Policy*>& policies,
                    const state::PolicySet* compiled, const Pools& pools, zt::fuzz::Rng& rng) {
  for (int i = 0; i < 48; ++i) {
    state::Connection c;
    c.principal = pools.principals[rng.Below(pools.principals.size())];
    if (!c.principal.empty()) {
      c.peer_namespace = pools.namespaces[rng.Below(pools.namespaces.size())];
      c.peer_service_account = pools.accounts[rng.Below(pools.accounts.size())];
    }
    c.source = pools.ips[rng.Below(pools.ips.size())];
    c.destination = pools.ips[rng.Below(pools.ips.size())];
    c.destination_port = pools.ports[rng.Below(pools.ports.size())];
    const state::Decision want = RefAuthorize(policies, c);
    const state::Decision got =
        compiled != nullptr ? state::Authorize(*compiled, c) : state::Authorize(policies, c);
    ZT_FUZZ_CHECK(got.allowed == want.allowed);
    ZT_FUZZ_CHECK(got.reason == want.reason);
    ZT_FUZZ_CHECK(got.dry_run == want.dry_run);
  }
}

void CheckRoutes(const state::State& s) {
  state::RoundRobin rr;
  std::vector<std::pair<std::string, IpPort>> targets;
  for (const state::Workload& w : s.workloads()) {
    for (const IpAddr& ip : w.ips) targets.push_back({w.network, IpPort{ip.v6, ip.addr, 80}});
  }
  for (const state::Service& svc : s.services()) {
    for (const auto& vip : svc.vips) {
      for (const auto& [port, target] : svc.ports) {
        targets.push_back({vip.network, IpPort{vip.ip.v6, vip.ip.addr, port}});
      }
      targets.push_back({vip.network, IpPort{vip.ip.v6, vip.ip.addr, 1}});
    }
  }
  if (targets.size() > 256) targets.resize(256);
  for (const auto& [network, dst] : targets) {
    const state::Route r = state::ResolveRoute(s, network, dst, rr);
    if (r.service == nullptr) {
      ZT_FUZZ_CHECK(r.error.empty());
      ZT_FUZZ_CHECK(r.target == dst);
      ZT_FUZZ_CHECK(r.workload == s.FindWorkload(network, dst.ip()));
      continue;
    }
    ZT_FUZZ_CHECK(r.service == s.FindService(network, dst.ip()));
    if (!r.error.empty()) {
      ZT_FUZZ_CHECK(r.workload == nullptr);
      continue;
    }
    ZT_FUZZ_CHECK(r.workload != nullptr);
    ZT_FUZZ_CHECK(r.workload->network == network);
    ZT_FUZZ_CHECK(r.target.v6 == dst.v6 && r.target.port != 0);
    ZT_FUZZ_CHECK(std::find(r.workload->ips.begin(), r.workload->ips.end(), r.target.ip()) !=
                  r.workload->ips.end());
    bool endpoint = false;
    for (const state::Endpoint& e : s.Endpoints(*r.service)) endpoint |= e.workload == r.workload;
    ZT_FUZZ_CHECK(endpoint);
  }
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // we write upper-case hex only
}

void CheckBaggage(const state::Workload& w) {
  const std::string b = zt::proxy::Baggage(w);
  // What Baggage documents: these members, each only when known, in this order.
  const std::string type = w.workload_type.empty() ? "deployment" : w.workload_type;
  std::vector<std::pair<std::string, std::string>> want;
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"k8s.cluster.name", w.cluster_id},
                                                        {"k8s.namespace.name", w.namespace_name},
                                                        {"k8s." + type + ".name", w.workload_name},
                                                        {"service.name", w.canonical_name},
                                                        {"service.version", w.canonical_revision},
                                                        {"cloud.region", w.region},
                                                        {"cloud.availability_zone", w.zone}}) {
    if (!value.empty()) want.emplace_back(key, value);
  }
  std::vector<std::pair<std::string, std::string>> got;
  size_t at = 0;
  while (at < b.size()) {
    size_t end = b.find(',', at);
    if (end == std::string::npos) end = b.size();
    const std::string member = b.substr(at, end - at);
    const size_t eq = member.find('=');
    ZT_FUZZ_CHECK(eq != std::string::npos && eq > 0);
    const std::string key = member.substr(0, eq);
    for (unsigned char c : key) {  // a token (RFC 9110 tchar), as W3C baggage keys are
      ZT_FUZZ_CHECK(std::isalnum(c) ||
                    std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                        std::string_view::npos);
    }
    std::string value;
    for (size_t i = eq + 1; i < member.size(); ++i) {
      const auto c = static_cast<unsigned char>(member[i]);
      ZT_FUZZ_CHECK(c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\');
      if (c == '%') {
        ZT_FUZZ_CHECK(i + 2 < member.size() && Hex(member[i + 1]) >= 0 && Hex(member[i + 2]) >= 0);
        value += static_cast<char>(Hex(member[i + 1]) << 4 | Hex(member[i + 2]));
        i += 2;
      } else {
        value += static_cast<char>(c);
      }
    }
    got.emplace_back(key, value);
    at = end + 1;
    ZT_FUZZ_CHECK(end == b.size() || at < b.size());  // no empty member at the end
  }
  ZT_FUZZ_CHECK(got == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto s = zt::config::ParseLocalConfig(yaml, &error);
  if (!s) {
    ZT_FUZZ_CHECK(!error.empty());
    return 0;
  }

  Pools pools;
  for (const state::Policy& p : s->policies()) pools.Add(p);
  for (const state::Workload& w : s->workloads()) {
    for (const IpAddr& ip : w.ips) pools.Ip(ip);
    pools.namespaces.push_back(w.namespace_name);
  }
  pools.Ip(*IpAddr::Parse("10.0.0.1"));
  pools.Ip(*IpAddr::Parse("fd00::1"));

  uint64_t seed = size;
  for (size_t i = 0; i < size && i < 64; ++i) seed = seed * 131 + data[i];
  zt::fuzz::Rng rng(seed);

  std::vector<const state::Policy*> all;
  for (const state::Policy& p : s->policies()) all.push_back(&p);
  CheckDecisions(all, nullptr, pools, rng);
  size_t checked = 0;
  for (const state::Workload& w : s->workloads()) {
    if (++checked > 8) break;
    const state::PolicySet set = s->PoliciesFor(w);
    CheckDecisions(set.Policies(), &set, pools, rng);
  }
  for (const state::Workload& w : s->workloads()) {
    CheckBaggage(w);
    ZT_FUZZ_CHECK(s->FindByUid(w.uid) == &w);
    for (const IpAddr& ip : w.ips) ZT_FUZZ_CHECK(s->FindWorkload(w.network, ip) == &w);
  }
  for (const state::Policy& p : s->policies()) ZT_FUZZ_CHECK(s->FindPolicy(p.Key()) == &p);
  CheckRoutes(*s);

  const std::string dump = zt::admin::ConfigDumpJson(*s, {}, {});
  ZT_FUZZ_CHECK(zt::fuzz::ValidJson(dump));
  return 0;
}
