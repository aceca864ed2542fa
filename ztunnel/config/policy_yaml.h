// Reading authorization policies from the local config (DESIGN.md §4 "Local config
// file": policy keys, both string-match spellings).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "ztunnel/state/authz.h"

namespace zt::config {

/// ParsePolicy reads one policy at `path`; throws yaml::ConfigError naming the field.
state::Policy ParsePolicy(const YAML::Node& n, const std::string& path);

}  // namespace zt::config
