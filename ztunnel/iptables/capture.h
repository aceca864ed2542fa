// Installing and removing the in-pod capture inside a pod's network namespace:
// policy routing with `ip`, then the rules with one iptables-restore transaction per
// family. What the enrollment agent and dedicated mode call.
#pragma once

#include <string>

#include "ztunnel/iptables/rules.h"

namespace zt::iptables {

/// Tools names the binaries used; tests point one at a missing path.
struct Tools {
  std::string iptables_restore = "iptables-restore";
  std::string ip6tables_restore = "ip6tables-restore";
  std::string iptables_save = "iptables-save";
  std::string ip6tables_save = "ip6tables-save";
  std::string ip = "ip";
};

/// Install sets up the capture in the namespace opened as `netns_fd`. Idempotent:
/// installing twice leaves the same rules as once. On failure nothing it added stays
/// (the namespace is as it was) and `*error` names the step and the tool's message.
bool Install(int netns_fd, const CaptureConfig& config, const Tools& tools, std::string* error);

/// Uninstall removes all of it, including what a partial install left; a namespace
/// without any of it is fine. On failure `*error` says what could not be removed.
bool Uninstall(int netns_fd, const Tools& tools, std::string* error);

/// StopCapturing removes only the REDIRECTs (the nat table's chains and jumps), so
/// new connections go direct, and keeps the connmark rules and the policy routing
/// that connections the node process still carries depend on: the app's packets of
/// such a connection are routed to loopback by their restored mark. Uninstall, after
/// the drain grace, removes the rest. Install on top of it captures again.
bool StopCapturing(int netns_fd, const Tools& tools, std::string* error);

/// Snapshot is the namespace's rules and policy routing as text (iptables-save for
/// both families, `ip rule`, table 100), counters zeroed: for tests and debugging.
std::string Snapshot(int netns_fd, const Tools& tools = {});

}  // namespace zt::iptables
