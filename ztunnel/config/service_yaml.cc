#include "ztunnel/config/service_yaml.h"

#include <fmt/format.h>

#include "ztunnel/config/yaml_util.h"

namespace zt::config {

using yaml::CheckKeys;
using yaml::Describe;
using yaml::Fail;
using yaml::ForEach;
using yaml::String;

std::map<uint16_t, uint16_t> ParsePortMap(const YAML::Node& n, const std::string& path) {
  std::map<uint16_t, uint16_t> out;
  if (!n || n.IsNull()) return out;
  if (!n.IsMap()) Fail(path, fmt::format("expected a map of ports, got {}", Describe(n)));
  for (const auto& kv : n) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    const uint16_t from = yaml::Port(kv.first, path + "." + key);
    out[from] = yaml::Port(kv.second, path + "." + key);
  }
  return out;
}

state::Service ParseService(const YAML::Node& n, const std::string& path) {
  CheckKeys(
      n, path,
      {"name", "namespace", "hostname", "vips", "cidrVips", "ports", "subjectAltNames", "endpoints",
       "waypoint", "weightedWaypoints", "loadBalancer", "ipFamilies", "canonical", "visibility"});
  state::Service s;
  if (!n["name"]) Fail(path, "needs a \"name\"");
  s.name = String(n["name"], path + ".name");
  if (n["namespace"]) s.namespace_name = String(n["namespace"], path + ".namespace");
  if (!n["hostname"]) Fail(path, "needs a \"hostname\"");
  s.hostname = String(n["hostname"], path + ".hostname");
  ForEach(n["vips"], path + ".vips", [&](const YAML::Node& item, const std::string& p) {
    // "network/ip"; the network may be empty ("/10.96.0.10").
    const std::string text = String(item, p);
    const size_t slash = text.find('/');
    if (slash == std::string::npos) {
      Fail(p, fmt::format("\"{}\" is not network/ip (e.g. \"/10.96.0.10\")", text));
    }
    auto ip = IpAddr::Parse(std::string_view(text).substr(slash + 1));
    if (!ip) Fail(p, fmt::format("\"{}\" is not network/ip: bad IP address", text));
    s.vips.push_back({text.substr(0, slash), *ip});
  });
  s.ports = ParsePortMap(n["ports"], path + ".ports");
  ForEach(n["subjectAltNames"], path + ".subjectAltNames",
          [&](const YAML::Node& item, const std::string& p) {
            const std::string san = String(item, p);
            if (san.rfind("spiffe://", 0) != 0) {
              Fail(p, fmt::format("\"{}\" is not a SPIFFE id (spiffe://...)", san));
            }
            s.subject_alt_names.push_back(san);
          });
  // Features this build does not implement are refused rather than ignored.
  for (const char* later :
       {"cidrVips", "endpoints", "waypoint", "weightedWaypoints", "loadBalancer"}) {
    if (yaml::IsSet(n[later])) {
      Fail(path + "." + later,
           std::string("not supported by this build yet") +
               (std::string(later) == "endpoints" ? " (list the service under each workload's "
                                                    "\"services\" instead)"
                                                  : ""));
    }
  }
  return s;
}

}  // namespace zt::config
