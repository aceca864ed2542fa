// Start-up helpers of the node process: fatal errors, limits, flag parsing that exits,
// waiting for the node agent's config, and dedicated (sidecar) mode's capture rules.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ztunnel/config/options.h"
#include "ztunnel/control/control_plane.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/fd.h"

namespace zt::app {

/// Fatal prints one line on stderr and exits 1: the contract for bad input.
[[noreturn]] void Fatal(const std::string& message);

/// RaiseFdLimit lifts the soft open-file limit to the hard one: every relayed
/// connection needs two descriptors.
void RaiseFdLimit();

/// SignalName is "SIGTERM" or "SIGINT".
const char* SignalName(int sig);

/// ParseListenOrExit parses IP:PORT for `--flag`, or prints why not and exits 2.
io::SocketAddress ParseListenOrExit(const std::string& value, const char* flag,
                                    const char* example);

/// ListenOrDie listens on `addr` (waiting up to 5 s for a predecessor that still holds
/// it), or prints why not, naming `what` and the address, and exits 1.
io::UniqueFd ListenOrDie(const io::SocketAddress& addr, const char* what);

/// WaitForLocalConfig waits, in --inpod mode, for the node agent to write the local
/// config the first time (a DaemonSet's two pods start in any order), answering
/// SIGTERM/SIGINT (blocked by then: main takes them with sigwait) by exiting cleanly.
void WaitForLocalConfig(const std::string& path);

/// EnvWithPrefix lists the environment variables named PREFIX<name> as (name, value),
/// e.g. ISTIO_META_* (node metadata), XDS_HEADER_* and CA_HEADER_* (extra headers).
std::vector<std::pair<std::string, std::string>> EnvWithPrefix(const std::string& prefix);

/// ControlFromOptions builds the control plane's options from the flags: the local
/// config, or istiod's xDS and CA (their roots read now; a missing or bad file is fatal
/// with its name).
control::ControlOptions ControlFromOptions(const config::Options& opts);

/// DedicatedCapture owns the capture rules of the pod a dedicated proxy serves:
/// installed at start, removed at exit.
struct DedicatedCapture {
  io::UniqueFd netns;
  ~DedicatedCapture();
};

/// CheckDedicated checks the pod is a workload of the config and makes this node's
/// name the pod's node (so it is the workload served here). Before anything is bound.
void CheckDedicated(config::Options& opts);

/// InstallDedicatedRules installs the pod's capture rules in the namespace this process
/// runs in, once its listeners exist.
std::unique_ptr<DedicatedCapture> InstallDedicatedRules(const config::Options& opts);

}  // namespace zt::app
