// The well-known ports of an ambient node proxy (DESIGN.md §4).
#pragma once

#include <cstdint>

namespace zt::proxy {

inline constexpr uint16_t kOutboundPort = 15001;
inline constexpr uint16_t kInboundPlaintextPort = 15006;
inline constexpr uint16_t kInboundHbonePort = 15008;
/// kBypassMark marks our own sockets so the in-pod rules never capture them again.
inline constexpr uint32_t kBypassMark = 1337;

/// IsProxyPort is true for the capture ports: a connection to one of them must never
/// be proxied (it would loop back into us).
constexpr bool IsProxyPort(uint16_t port) {
  return port == kOutboundPort || port == kInboundPlaintextPort || port == kInboundHbonePort;
}

}  // namespace zt::proxy
