// The well-known ports of an ambient node proxy (DESIGN.md §4).
#pragma once

#include <cstdint>

namespace zt::proxy {

inline constexpr uint16_t kOutboundPort = 15001;
inline constexpr uint16_t kInboundPlaintextPort = 15006;
inline constexpr uint16_t kInboundHbonePort = 15008;
inline constexpr uint16_t kAdminPort = 15000;
inline constexpr uint16_t kMetricsPort = 15020;
inline constexpr uint16_t kReadinessPort = 15021;
inline constexpr uint16_t kDnsPort = 15053;
/// kBypassMark marks our own sockets so the in-pod rules never capture them again.
inline constexpr uint32_t kBypassMark = 1337;

/// IsProxyPort is true for the capture ports: a connection to one of them must never
/// be proxied (it would loop back into us).
constexpr bool IsProxyPort(uint16_t port) {
  return port == kOutboundPort || port == kInboundPlaintextPort || port == kInboundHbonePort;
}

/// IsOwnPort is true for every port the node proxy itself serves: the capture ports,
/// DNS, admin, metrics and readiness. An inbound tunnel to one of them would reach
/// ztunnel instead of the workload (HBONE in HBONE, or the admin endpoints from
/// another node), so a CONNECT to one is refused.
constexpr bool IsOwnPort(uint16_t port) {
  return IsProxyPort(port) || port == kAdminPort || port == kMetricsPort ||
         port == kReadinessPort || port == kDnsPort;
}

}  // namespace zt::proxy
