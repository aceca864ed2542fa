#include "ztunnel/admin/config_dump.h"

#include <fmt/format.h>

#include <chrono>
#include <ctime>

#include "ztunnel/core/log.h"
#include "ztunnel/state/authz.h"

namespace zt::admin {
namespace {

using log::JsonEscape;

// List renders items as a JSON array, one per line, with `render` for each.
template <typename T, typename F>
std::string List(const std::vector<T>& items, F render) {
  if (items.empty()) return "[]";
  std::string out = "[\n";
  for (size_t i = 0; i < items.size(); ++i) {
    out += "    ";
    out += render(items[i]);
    out += i + 1 < items.size() ? ",\n" : "\n";
  }
  return out + "  ]";
}

template <typename T, typename F>
std::string Inline(const std::vector<T>& items, F render) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += render(items[i]);
  }
  return out + "]";
}

std::string Workload(const state::Workload& w) {
  std::string services;
  for (const auto& [key, ports] : w.services) {
    if (!services.empty()) services += ',';
    services += JsonEscape(key);
  }
  return fmt::format(
      R"({{"uid":{},"name":{},"namespace":{},"serviceAccount":{},"node":{},"protocol":{},)"
      R"("workloadIps":{},"services":[{}],"authorizationPolicies":{}}})",
      JsonEscape(w.uid), JsonEscape(w.name), JsonEscape(w.namespace_name),
      JsonEscape(w.service_account.empty() ? "default" : w.service_account), JsonEscape(w.node),
      JsonEscape(state::ProtocolName(w.protocol)),
      Inline(w.ips, [](const IpAddr& ip) { return JsonEscape(ip.ToString()); }), services,
      Inline(w.authorization_policies, [](const std::string& p) { return JsonEscape(p); }));
}

std::string Service(const state::Service& s) {
  std::string ports;
  for (const auto& [port, target] : s.ports) {
    ports += fmt::format("{}\"{}\":{}", ports.empty() ? "" : ",", port, target ? target : port);
  }
  return fmt::format(R"({{"name":{},"namespace":{},"hostname":{},"vips":{},"ports":{{{}}}}})",
                     JsonEscape(s.name), JsonEscape(s.namespace_name), JsonEscape(s.hostname),
                     Inline(s.vips,
                            [](const state::NetworkAddress& a) {
                              std::string text = a.network;
                              if (!text.empty()) text += '/';
                              text += a.ip.ToString();
                              return JsonEscape(text);
                            }),
                     ports);
}

std::string Policy(const state::Policy& p) {
  const char* scope = p.scope == state::PolicyScope::kGlobal      ? "Global"
                      : p.scope == state::PolicyScope::kNamespace ? "Namespace"
                                                                  : "WorkloadSelector";
  return fmt::format(R"({{"name":{},"namespace":{},"scope":"{}","action":"{}","dryRun":{},)"
                     R"("rules":{}}})",
                     JsonEscape(p.name), JsonEscape(p.namespace_name), scope,
                     p.action == state::PolicyAction::kAllow ? "Allow" : "Deny",
                     p.dry_run ? "true" : "false", p.rules.size());
}

}  // namespace

namespace {

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::vector<CertSummary> SummarizeCerts(const identity::CertSet& certs) {
  std::vector<CertSummary> out;
  for (const auto& [uri, e] : certs.entries()) {
    using S = identity::CertStatus::State;
    const S st = e.status.state;
    out.push_back({uri,
                   st == S::kValid     ? "valid"
                   : st == S::kPending ? "pending"
                                       : "refresh failing",
                   st == S::kPending ? "" : Rfc3339(e.status.not_after), e.status.failures,
                   e.status.last_error});
  }
  return out;
}

std::string ConfigDumpJson(const state::State& state, const std::vector<CertSummary>& certs,
                           const std::vector<PodSummary>& pods) {
  std::string out = "{\n";
  out += "  \"workloads\": " + List(state.workloads(), Workload) + ",\n";
  out += "  \"services\": " + List(state.services(), Service) + ",\n";
  out += "  \"policies\": " + List(state.policies(), Policy) + ",\n";
  out += "  \"certificates\": " +
         List(certs,
              [](const CertSummary& c) {
                return fmt::format(
                    R"({{"identity":{},"state":{},"expiration":{},"failures":{},"lastError":{}}})",
                    JsonEscape(c.identity), JsonEscape(c.state),
                    c.not_after.empty() ? "null" : JsonEscape(c.not_after), c.failures,
                    JsonEscape(c.last_error));
              }) +
         ",\n";
  out +=
      "  \"pods\": " +
      List(pods,
           [](const PodSummary& p) {
             return fmt::format(R"({{"uid":{},"name":{},"namespace":{},"state":{},"error":{}}})",
                                JsonEscape(p.uid), JsonEscape(p.name), JsonEscape(p.namespace_name),
                                JsonEscape(p.state), JsonEscape(p.error));
           }) +
      "\n";
  return out + "}\n";
}

}  // namespace zt::admin
