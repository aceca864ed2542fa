// IpPort: an IP literal and a port, parsed strictly ("10.0.0.1:80", "[fd00::1]:80").
// Shared by socket addresses (io/) and HBONE authorities (h2/), which must agree.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace zt {

/// IpPort holds an IPv4 or IPv6 address in network byte order, and a port.
struct IpPort {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};  // the first 4 bytes for IPv4
  uint16_t port = 0;

  /// Parse reads an IP literal (IPv6 in brackets) and a port 0..65535; no host names.
  static std::optional<IpPort> Parse(std::string_view text);
  /// IpString is the canonical address text ("10.0.0.1", "fd00::1").
  std::string IpString() const;
  /// ToString is "ip:port" or "[v6]:port".
  std::string ToString() const;
  bool operator==(const IpPort&) const = default;
};

}  // namespace zt
