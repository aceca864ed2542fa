#include "ztunnel/admin/config_dump.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

#include "ztunnel/state/authz.h"

namespace zt::admin {
namespace {

using nlohmann::ordered_json;

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// PortMap is Istio's {"service port": target port}; a target of 0 is the same port.
ordered_json PortMap(const std::map<uint16_t, uint16_t>& ports) {
  ordered_json out = ordered_json::object();
  for (const auto& [port, target] : ports) out[std::to_string(port)] = target ? target : port;
  return out;
}

// Strings is each item's ToString() (addresses, CIDRs) as a JSON array.
template <typename T>
ordered_json Strings(const std::vector<T>& items) {
  ordered_json out = ordered_json::array();
  for (const auto& item : items) out.push_back(item.ToString());
  return out;
}

ordered_json Workload(const state::Workload& w) {
  ordered_json j;
  j["uid"] = w.uid;
  j["name"] = w.name;
  j["namespace"] = w.namespace_name;
  j["serviceAccount"] = w.service_account.empty() ? "default" : w.service_account;
  if (!w.trust_domain.empty()) j["trustDomain"] = w.trust_domain;
  if (!w.network.empty()) j["network"] = w.network;
  j["node"] = w.node;
  j["protocol"] = state::ProtocolName(w.protocol);
  j["networkMode"] = "Standard";
  j["workloadIps"] = Strings(w.ips);
  ordered_json services = ordered_json::array();
  for (const auto& [key, ports] : w.services) services.push_back(key);
  j["services"] = std::move(services);
  j["authorizationPolicies"] = w.authorization_policies;
  j["status"] = "Healthy";  // unhealthy workloads never make it into the state
  j["clusterId"] = w.cluster_id;
  if (!w.workload_name.empty()) j["workloadName"] = w.workload_name;
  j["workloadType"] = w.workload_type.empty() ? "deployment" : w.workload_type;
  if (!w.canonical_name.empty()) j["canonicalName"] = w.canonical_name;
  if (!w.canonical_revision.empty()) j["canonicalRevision"] = w.canonical_revision;
  if (!w.region.empty() || !w.zone.empty()) {
    j["locality"] = {{"region", w.region}, {"zone", w.zone}, {"subzone", ""}};
  }
  j["capacity"] = 1;
  return j;
}

ordered_json Service(const state::State& st, const state::Service& s) {
  ordered_json j;
  j["name"] = s.name;
  j["namespace"] = s.namespace_name;
  j["hostname"] = s.hostname;
  // Istio writes every address as "network/ip", the default network as "".
  ordered_json vips = ordered_json::array();
  for (const auto& a : s.vips) vips.push_back(a.network + "/" + a.ip.ToString());
  j["vips"] = std::move(vips);
  j["ports"] = PortMap(s.ports);
  ordered_json endpoints = ordered_json::object();
  for (const auto& e : st.Endpoints(s)) {
    endpoints[e.workload->uid] = {{"workloadUid", e.workload->uid},
                                  {"service", s.Key()},
                                  {"port", PortMap(e.ports->empty() ? s.ports : *e.ports)},
                                  {"status", "Healthy"}};
  }
  j["endpoints"] = std::move(endpoints);
  j["subjectAltNames"] = s.subject_alt_names;
  return j;
}

ordered_json Matches(const std::vector<state::StringMatch>& matches) {
  ordered_json out = ordered_json::array();
  for (const auto& m : matches) {
    using K = state::StringMatch::Kind;
    switch (m.kind) {
      case K::kExact:
        out.push_back({{"Exact", m.value}});
        break;
      case K::kPrefix:
        out.push_back({{"Prefix", m.value}});
        break;
      case K::kSuffix:
        out.push_back({{"Suffix", m.value}});
        break;
      case K::kPresence:
        out.push_back({{"Presence", ordered_json::array()}});
        break;
    }
  }
  return out;
}

ordered_json Accounts(const std::vector<state::ServiceAccountMatch>& accounts) {
  ordered_json out = ordered_json::array();
  for (const auto& a : accounts) {
    out.push_back({{"namespace", a.namespace_name}, {"serviceAccount", a.service_account}});
  }
  return out;
}

// Match is Istio's RbacMatch: only the lists that are set.
ordered_json Match(const state::Match& m) {
  ordered_json j = ordered_json::object();
  auto put = [&j](const char* key, ordered_json value) {
    if (!value.empty()) j[key] = std::move(value);
  };
  put("namespaces", Matches(m.namespaces));
  put("notNamespaces", Matches(m.not_namespaces));
  put("serviceAccounts", Accounts(m.service_accounts));
  put("notServiceAccounts", Accounts(m.not_service_accounts));
  put("principals", Matches(m.principals));
  put("notPrincipals", Matches(m.not_principals));
  put("sourceIps", Strings(m.source_ips));
  put("notSourceIps", Strings(m.not_source_ips));
  put("destinationIps", Strings(m.destination_ips));
  put("notDestinationIps", Strings(m.not_destination_ips));
  put("destinationPorts", m.destination_ports);
  put("notDestinationPorts", m.not_destination_ports);
  return j;
}

ordered_json Policy(const state::Policy& p) {
  ordered_json j;
  j["name"] = p.name;
  j["namespace"] = p.namespace_name;
  j["scope"] = p.scope == state::PolicyScope::kGlobal      ? "Global"
               : p.scope == state::PolicyScope::kNamespace ? "Namespace"
                                                           : "WorkloadSelector";
  j["action"] = p.action == state::PolicyAction::kAllow ? "Allow" : "Deny";
  // rules: any rule; a rule: every clause; a clause: any match.
  ordered_json rules = ordered_json::array();
  for (const auto& rule : p.rules) {
    ordered_json clauses = ordered_json::array();
    for (const auto& clause : rule) {
      ordered_json matches = ordered_json::array();
      for (const auto& m : clause) matches.push_back(Match(m));
      clauses.push_back(std::move(matches));
    }
    rules.push_back(std::move(clauses));
  }
  j["rules"] = std::move(rules);
  j["dryRun"] = p.dry_run;
  return j;
}

CertDump DumpCert(const tls::Certificate& c) {
  return {tls::Base64Encode(c.ToPem()), c.SerialDecimal(), Rfc3339(c.not_before()),
          Rfc3339(c.not_after())};
}

ordered_json Certs(const std::vector<CertDump>& certs) {
  ordered_json out = ordered_json::array();
  for (const auto& c : certs) {
    out.push_back({{"pem", c.pem},
                   {"serialNumber", c.serial_number},
                   {"validFrom", c.valid_from},
                   {"expirationTime", c.expiration_time}});
  }
  return out;
}

}  // namespace

std::vector<CertSummary> SummarizeCerts(const identity::CertSet& certs) {
  std::vector<CertSummary> out;
  for (const auto& [uri, e] : certs.entries()) {
    CertSummary s;
    s.identity = uri;
    s.failures = e.status.failures;
    s.last_error = e.status.last_error;
    if (e.cert) {
      // A refresh failing keeps the certificate in use: still Available, with the
      // failures beside it.
      s.state = "Available";
      std::vector<std::string> roots;
      for (const auto& r : e.cert->roots) {
        roots.push_back(r.ToPem());
        s.root_certs.push_back(DumpCert(r));
      }
      for (const auto& c : e.cert->credentials.chain) {
        if (std::find(roots.begin(), roots.end(), c.ToPem()) == roots.end()) {
          s.cert_chain.push_back(DumpCert(c));
        }
      }
    } else {
      s.state = e.status.failures > 0 ? "Unavailable: " + e.status.last_error : "Initializing";
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string ConfigDumpJson(const state::State& state, const std::vector<CertSummary>& certs,
                           const std::vector<PodSummary>& pods) {
  ordered_json dump;
  ordered_json& workloads = dump["workloads"] = ordered_json::array();
  for (const auto& w : state.workloads()) workloads.push_back(Workload(w));
  ordered_json& services = dump["services"] = ordered_json::array();
  for (const auto& s : state.services()) services.push_back(Service(state, s));
  ordered_json& policies = dump["policies"] = ordered_json::array();
  for (const auto& p : state.policies()) policies.push_back(Policy(p));
  ordered_json& out_certs = dump["certificates"] = ordered_json::array();
  for (const auto& c : certs) {
    out_certs.push_back({{"identity", c.identity},
                         {"state", c.state},
                         {"certChain", Certs(c.cert_chain)},
                         {"rootCerts", Certs(c.root_certs)},
                         {"failures", c.failures},
                         {"lastError", c.last_error}});
  }
  // Istio's workloadState: the enrolled pods by uid.
  ordered_json& pod_state = dump["workloadState"] = ordered_json::object();
  for (const auto& p : pods) {
    ordered_json entry = {{"state", p.serving ? "Up" : "Pending"},
                          {"info",
                           {{"name", p.name},
                            {"namespace", p.namespace_name},
                            {"serviceAccount", p.service_account}}}};
    if (!p.error.empty()) entry["error"] = p.error;
    pod_state[p.uid] = std::move(entry);
  }
  return dump.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace zt::admin
