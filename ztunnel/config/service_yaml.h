// Reading services, and workloads' service port maps, from the local config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>

#include "ztunnel/state/workload.h"

namespace zt::config {

/// ParseService reads one service at `path`; throws yaml::ConfigError naming the field.
state::Service ParseService(const YAML::Node& n, const std::string& path);

/// ParsePortMap reads {servicePort: targetPort, ...} (target 0 = same port).
std::map<uint16_t, uint16_t> ParsePortMap(const YAML::Node& n, const std::string& path);

}  // namespace zt::config
