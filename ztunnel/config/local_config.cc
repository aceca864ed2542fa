#include "ztunnel/config/local_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

namespace zt::config {
namespace {

// ConfigError carries one message out of the recursive descent; it never leaves
// this file (parsing is start-up/reload work, not the data path).
struct ConfigError {
  std::string message;
};

[[noreturn]] void Fail(const std::string& path, const std::string& what) {
  throw ConfigError{fmt::format("{}: {}", path, what)};
}

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "empty";
    default:
      return fmt::format("\"{}\"", n.Scalar());
  }
}

std::string String(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) Fail(path, fmt::format("expected a string, got {}", Describe(n)));
  return n.Scalar();
}

// CheckKeys rejects any key of map `n` not in `known`.
void CheckKeys(const YAML::Node& n, const std::string& path, const std::set<std::string>& known) {
  if (!n.IsMap()) Fail(path, fmt::format("expected a map, got {}", Describe(n)));
  for (const auto& kv : n) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (known.count(key) == 0) Fail(path, fmt::format("unknown key \"{}\"", key));
  }
}

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
    const YAML::Node root = YAML::Load(std::string(yaml));
    std::vector<state::Workload> workloads;
    if (root.IsNull()) return state::State::Build({}, error);
    CheckKeys(root, "config", {"workloads", "services", "policies"});
    for (const char* later : {"services", "policies"}) {
      if (root[later] && !(root[later].IsSequence() && root[later].size() == 0)) {
        Fail(later, "not supported by this build yet (only workloads are read)");
      }
    }
    if (const YAML::Node list = root["workloads"]) {
      if (!list.IsSequence() && !list.IsNull()) {
        Fail("workloads", fmt::format("expected a list, got {}", Describe(list)));
      }
      for (size_t i = 0; i < list.size(); ++i) {
        workloads.push_back(ParseWorkload(list[i], fmt::format("workloads[{}]", i)));
      }
    }
    return state::State::Build(std::move(workloads), error);
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
