#include "ztunnel/config/policy_yaml.h"

#include <fmt/format.h>

#include "ztunnel/config/yaml_util.h"

namespace zt::config {
namespace {

using yaml::CheckKeys;
using yaml::Describe;
using yaml::Fail;
using yaml::ForEach;
using yaml::String;

using Kind = state::StringMatch::Kind;

// StringMatchOf reads either spelling ztunnel's YAML accepts: a one-key map
// ({Exact: s}, {Prefix: s}, {Suffix: s}, {Presence: ...}) or a tagged scalar
// (!Exact s, ..., !Presence).
state::StringMatch StringMatchOf(const YAML::Node& n, const std::string& path) {
  auto kind_of = [&](const std::string& name) -> Kind {
    if (name == "Exact") return Kind::kExact;
    if (name == "Prefix") return Kind::kPrefix;
    if (name == "Suffix") return Kind::kSuffix;
    if (name == "Presence") return Kind::kPresence;
    Fail(path, fmt::format("\"{}\" is not one of Exact, Prefix, Suffix, Presence", name));
  };
  const std::string& tag = n.Tag();
  if (!tag.empty() && tag != "?" && tag != "!") {
    const Kind k = kind_of(tag[0] == '!' ? tag.substr(1) : tag);
    if (k == Kind::kPresence) return {k, ""};
    return {k, String(n, path)};
  }
  if (!n.IsMap() || n.size() != 1) {
    Fail(path, fmt::format("expected {{Exact|Prefix|Suffix|Presence: ...}}, got {}", Describe(n)));
  }
  const auto kv = *n.begin();
  const Kind k = kind_of(kv.first.Scalar());
  if (k == Kind::kPresence) return {k, ""};
  return {k, String(kv.second, path + "." + kv.first.Scalar())};
}

state::Match MatchOf(const YAML::Node& n, const std::string& path) {
  CheckKeys(n, path,
            {"namespaces", "notNamespaces", "principals", "notPrincipals", "serviceAccounts",
             "notServiceAccounts", "sourceIps", "notSourceIps", "destinationIps",
             "notDestinationIps", "destinationPorts", "notDestinationPorts"});
  state::Match m;
  auto strings = [&](const char* key, std::vector<state::StringMatch>* out) {
    ForEach(n[key], path + "." + key, [&](const YAML::Node& item, const std::string& p) {
      out->push_back(StringMatchOf(item, p));
    });
  };
  auto accounts = [&](const char* key, std::vector<state::ServiceAccountMatch>* out) {
    ForEach(n[key], path + "." + key, [&](const YAML::Node& item, const std::string& p) {
      CheckKeys(item, p, {"namespace", "serviceAccount"});
      if (!item["namespace"] || !item["serviceAccount"]) {
        Fail(p, "needs both \"namespace\" and \"serviceAccount\"");
      }
      out->push_back({String(item["namespace"], p + ".namespace"),
                      String(item["serviceAccount"], p + ".serviceAccount")});
    });
  };
  auto cidrs = [&](const char* key, std::vector<Cidr>* out) {
    ForEach(n[key], path + "." + key, [&](const YAML::Node& item, const std::string& p) {
      const std::string text = String(item, p);
      auto c = Cidr::Parse(text);
      if (!c) Fail(p, fmt::format("\"{}\" is not a CIDR or IP address", text));
      out->push_back(*c);
    });
  };
  auto ports = [&](const char* key, std::vector<uint16_t>* out) {
    ForEach(n[key], path + "." + key, [&](const YAML::Node& item, const std::string& p) {
      out->push_back(yaml::Port(item, p));
    });
  };
  strings("namespaces", &m.namespaces);
  strings("notNamespaces", &m.not_namespaces);
  strings("principals", &m.principals);
  strings("notPrincipals", &m.not_principals);
  accounts("serviceAccounts", &m.service_accounts);
  accounts("notServiceAccounts", &m.not_service_accounts);
  cidrs("sourceIps", &m.source_ips);
  cidrs("notSourceIps", &m.not_source_ips);
  cidrs("destinationIps", &m.destination_ips);
  cidrs("notDestinationIps", &m.not_destination_ips);
  ports("destinationPorts", &m.destination_ports);
  ports("notDestinationPorts", &m.not_destination_ports);
  return m;
}

}  // namespace

state::Policy ParsePolicy(const YAML::Node& n, const std::string& path) {
  CheckKeys(n, path, {"name", "namespace", "scope", "action", "dryRun", "rules"});
  state::Policy p;
  if (!n["name"]) Fail(path, "needs a \"name\"");
  p.name = String(n["name"], path + ".name");
  if (n["namespace"]) p.namespace_name = String(n["namespace"], path + ".namespace");
  if (const YAML::Node scope = n["scope"]) {
    const std::string s = String(scope, path + ".scope");
    if (s == "Global") {
      p.scope = state::PolicyScope::kGlobal;
    } else if (s == "Namespace") {
      p.scope = state::PolicyScope::kNamespace;
    } else if (s == "WorkloadSelector") {
      p.scope = state::PolicyScope::kWorkloadSelector;
    } else {
      Fail(path + ".scope",
           fmt::format("\"{}\" is not one of Global, Namespace, WorkloadSelector", s));
    }
  }
  if (const YAML::Node action = n["action"]) {
    const std::string a = String(action, path + ".action");
    if (a == "Allow") {
      p.action = state::PolicyAction::kAllow;
    } else if (a == "Deny") {
      p.action = state::PolicyAction::kDeny;
    } else {
      Fail(path + ".action", fmt::format("\"{}\" is not one of Allow, Deny", a));
    }
  }
  if (n["dryRun"]) p.dry_run = yaml::Bool(n["dryRun"], path + ".dryRun");
  // rules: a list of rules, each a list of clauses, each a list of matches.
  ForEach(n["rules"], path + ".rules", [&](const YAML::Node& rule, const std::string& rp) {
    state::Rule r;
    ForEach(rule, rp, [&](const YAML::Node& clause, const std::string& cp) {
      state::Clause c;
      ForEach(clause, cp, [&](const YAML::Node& match, const std::string& mp) {
        c.push_back(MatchOf(match, mp));
      });
      r.push_back(std::move(c));
    });
    p.rules.push_back(std::move(r));
  });
  return p;
}

}  // namespace zt::config
