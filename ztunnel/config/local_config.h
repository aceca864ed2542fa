// The local config file: the YAML that Istio's ztunnel reads from LOCAL_XDS_PATH
// (DESIGN.md §4 "Local config file"), turned into state. Strict: every error names
// the offending field by its path, e.g.
//   workloads[3].workloadIps[0]: "10.0.0.300" is not an IP address
// Keys whose feature this build does not implement yet (waypoints, service
// `endpoints`, cidrVips, load-balancer modes) are refused when set, never ignored.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "ztunnel/state/state.h"

namespace zt::config {

/// ParseLocalConfig builds a snapshot from YAML text; null with `*error` on failure.
std::shared_ptr<const state::State> ParseLocalConfig(std::string_view yaml, std::string* error);

/// LoadLocalConfig reads and parses `path`; errors start with the path.
std::shared_ptr<const state::State> LoadLocalConfig(const std::string& path, std::string* error);

}  // namespace zt::config
