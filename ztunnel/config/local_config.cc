#include "ztunnel/config/local_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "ztunnel/config/policy_yaml.h"
#include "ztunnel/config/service_yaml.h"
#include "ztunnel/config/yaml_util.h"

namespace zt::config {
namespace {

using yaml::CheckKeys;
using yaml::ConfigError;
using yaml::Describe;
using yaml::Fail;
using yaml::String;

// Keys of Istio's local workload format this build accepts; those without a parser
// below are not used yet and are accepted as written.
const std::set<std::string> kWorkloadKeys = {
    "uid",          "name",         "namespace",      "serviceAccount",
    "trustDomain",  "workloadIps",  "protocol",       "networkMode",
    "network",      "node",         "hostname",       "clusterId",
    "workloadName", "workloadType", "canonicalName",  "canonicalRevision",
    "nativeTunnel", "status",       "locality",       "authorizationPolicies",
    "capacity",     "waypoint",     "networkGateway", "applicationTunnel",
    "services"};

state::Workload ParseWorkload(const YAML::Node& n, const std::string& path) {
  CheckKeys(n, path, kWorkloadKeys);
  state::Workload w;
  auto opt = [&](const char* key, std::string* out) {
    if (n[key]) *out = String(n[key], path + "." + key);
  };
  opt("uid", &w.uid);
  opt("name", &w.name);
  opt("namespace", &w.namespace_name);
  opt("serviceAccount", &w.service_account);
  opt("trustDomain", &w.trust_domain);
  opt("network", &w.network);
  opt("node", &w.node);
  opt("clusterId", &w.cluster_id);
  opt("workloadName", &w.workload_name);
  opt("canonicalName", &w.canonical_name);
  opt("canonicalRevision", &w.canonical_revision);
  opt("workloadType", &w.workload_type);
  // It names a baggage key (k8s.<workloadType>.name), which cannot be escaped.
  if (!w.workload_type.empty() &&
      w.workload_type.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") !=
          std::string::npos) {
    Fail(path + ".workloadType",
         fmt::format("\"{}\" is not a lower-case kind such as deployment, cronjob, pod or job",
                     w.workload_type));
  }
  if (const YAML::Node loc = n["locality"]; loc && !loc.IsNull()) {
    const std::string p = path + ".locality";
    CheckKeys(loc, p, {"region", "zone", "subzone"});
    if (loc["region"]) w.region = String(loc["region"], p + ".region");
    if (loc["zone"]) w.zone = String(loc["zone"], p + ".zone");
    if (loc["subzone"]) (void)String(loc["subzone"], p + ".subzone");
  }
  if (w.uid.empty()) {
    if (w.name.empty()) Fail(path, "needs a \"uid\" or a \"name\"");
    w.uid = fmt::format("{}/{}", w.namespace_name, w.name);
  }
  if (const YAML::Node ips = n["workloadIps"]) {
    const std::string p = path + ".workloadIps";
    if (!ips.IsSequence()) Fail(p, fmt::format("expected a list, got {}", Describe(ips)));
    for (size_t i = 0; i < ips.size(); ++i) {
      const std::string pi = fmt::format("{}[{}]", p, i);
      const std::string text = String(ips[i], pi);
      auto ip = IpAddr::Parse(text);
      if (!ip) Fail(pi, fmt::format("\"{}\" is not an IP address", text));
      w.ips.push_back(*ip);
    }
  }
  if (const YAML::Node svcs = n["services"]) {
    const std::string p = path + ".services";
    if (!svcs.IsMap() && !svcs.IsNull()) {
      Fail(p, fmt::format("expected a map of \"namespace/hostname\" to ports, got {}",
                          Describe(svcs)));
    }
    if (svcs.IsMap()) {
      for (const auto& kv : svcs) {
        const std::string key = String(kv.first, p);
        if (key.find('/') == std::string::npos) {
          Fail(p, fmt::format("\"{}\" is not namespace/hostname", key));
        }
        w.services[key] = ParsePortMap(kv.second, p + "." + key);
      }
    }
  }
  // Features this build does not implement are refused when set, never ignored.
  for (const char* later : {"waypoint", "networkGateway"}) {
    if (yaml::IsSet(n[later])) {
      Fail(path + "." + later, "not supported by this build yet");
    }
  }
  if (const YAML::Node tunnel = n["applicationTunnel"]; tunnel && !tunnel.IsNull()) {
    CheckKeys(tunnel, path + ".applicationTunnel", {"protocol", "port"});
    if (tunnel["protocol"] &&
        String(tunnel["protocol"], path + ".applicationTunnel.protocol") != "NONE") {
      Fail(path + ".applicationTunnel.protocol", "only NONE is supported by this build");
    }
  }
  yaml::ForEach(n["authorizationPolicies"], path + ".authorizationPolicies",
                [&](const YAML::Node& item, const std::string& p) {
                  w.authorization_policies.push_back(String(item, p));
                });
  if (const YAML::Node proto = n["protocol"]) {
    const std::string text = String(proto, path + ".protocol");
    if (text == "HBONE") {
      w.protocol = state::Protocol::kHbone;
    } else if (text == "TCP") {
      w.protocol = state::Protocol::kTcp;
    } else {
      Fail(path + ".protocol", fmt::format("\"{}\" is not one of TCP, HBONE", text));
    }
  }
  return w;
}

}  // namespace

std::shared_ptr<const state::State> ParseLocalConfig(std::string_view yaml, std::string* error) {
  try {
    const YAML::Node root = yaml::LoadOne(std::string(yaml));
    std::vector<state::Workload> workloads;
    if (root.IsNull()) return state::State::Build({}, error);
    CheckKeys(root, "config", {"workloads", "services", "policies"});
    std::vector<state::Service> services;
    yaml::ForEach(root["services"], "services", [&](const YAML::Node& n, const std::string& p) {
      services.push_back(ParseService(n, p));
    });
    if (const YAML::Node list = root["workloads"]) {
      if (!list.IsSequence() && !list.IsNull()) {
        Fail("workloads", fmt::format("expected a list, got {}", Describe(list)));
      }
      for (size_t i = 0; i < list.size(); ++i) {
        workloads.push_back(ParseWorkload(list[i], fmt::format("workloads[{}]", i)));
      }
    }
    std::vector<state::Policy> policies;
    std::set<std::string> keys;
    yaml::ForEach(root["policies"], "policies", [&](const YAML::Node& n, const std::string& p) {
      policies.push_back(ParsePolicy(n, p));
      keys.insert(policies.back().Key());
    });
    // A local file is complete: a workload naming a policy it does not define is a typo.
    for (size_t i = 0; i < workloads.size(); ++i) {
      const auto& names = workloads[i].authorization_policies;
      for (size_t j = 0; j < names.size(); ++j) {
        if (keys.count(names[j]) == 0) {
          Fail(fmt::format("workloads[{}].authorizationPolicies[{}]", i, j),
               fmt::format("no policy \"{}\" in this file (expected namespace/name)", names[j]));
        }
      }
    }
    return state::State::Build(std::move(workloads), std::move(services), std::move(policies),
                               error);
  } catch (const ConfigError& e) {
    if (error != nullptr) *error = e.message;
  } catch (const YAML::Exception& e) {
    if (error != nullptr) {
      *error = fmt::format("line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1, e.msg);
    }
  }
  return nullptr;
}

std::shared_ptr<const state::State> LoadLocalConfig(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    if (error != nullptr) *error = fmt::format("{}: cannot read the file", path);
    return nullptr;
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string inner;
  auto state = ParseLocalConfig(text.str(), &inner);
  if (!state && error != nullptr) *error = fmt::format("{}: {}", path, inner);
  return state;
}

}  // namespace zt::config
