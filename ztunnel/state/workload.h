// Workload: one mesh (or non-mesh) endpoint as the local config file or a control
// plane describes it (DESIGN.md §4 "Local config file"). Plain data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ztunnel/core/ip_port.h"

namespace zt::state {

/// Protocol is how a workload receives mesh traffic.
enum class Protocol : uint8_t {
  kTcp,    // plain TCP: no tunnel, traffic passes through
  kHbone,  // HTTP/2 CONNECT over mutual TLS to port 15008
};

/// ProtocolName is the config spelling ("TCP", "HBONE").
const char* ProtocolName(Protocol p);

/// Workload is immutable once inside a State snapshot.
struct Workload {
  std::string uid;
  std::string name;
  std::string namespace_name;
  /// service_account, trust_domain: empty means "default" / "cluster.local" (Istio's
  /// defaults), applied where the identity is built.
  std::string service_account;
  std::string trust_domain;
  std::string network;
  /// node names the node that runs the workload; its ztunnel serves it.
  std::string node;
  std::vector<IpAddr> ips;
  Protocol protocol = Protocol::kTcp;
  /// authorization_policies names WorkloadSelector policies that select this
  /// workload, as "namespace/name".
  std::vector<std::string> authorization_policies;
};

}  // namespace zt::state
