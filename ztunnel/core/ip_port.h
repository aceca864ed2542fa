// IpAddr and IpPort: an IP literal (and a port), parsed strictly ("10.0.0.1:80", "[fd00::1]:80").
// Shared by socket addresses (io/) and HBONE authorities (h2/), which must agree.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace zt {

/// IpAddr holds an IPv4 or IPv6 address in network byte order (IPv4 in the first 4 bytes).
struct IpAddr {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};

  /// Parse reads an IP literal without brackets or port ("10.0.0.1", "fd00::1").
  static std::optional<IpAddr> Parse(std::string_view text);
  /// ToString is the canonical address text.
  std::string ToString() const;
  auto operator<=>(const IpAddr&) const = default;
};

/// Cidr is an address range: an address and a prefix length. A bare address is a
/// range of one (/32 or /128).
struct Cidr {
  IpAddr base;  // host bits are zero
  uint8_t prefix = 0;

  /// Parse reads "10.0.0.0/8", "fd00::/64" or a bare address; host bits must be zero.
  static std::optional<Cidr> Parse(std::string_view text);
  /// Contains is true for addresses of the same family inside the range.
  bool Contains(const IpAddr& ip) const;
  std::string ToString() const;
  bool operator==(const Cidr&) const = default;
};

/// IpPort holds an IPv4 or IPv6 address in network byte order, and a port.
struct IpPort {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};  // the first 4 bytes for IPv4
  uint16_t port = 0;

  /// Parse reads an IP literal (IPv6 in brackets) and a port 0..65535; no host names.
  static std::optional<IpPort> Parse(std::string_view text);
  /// ip is the address without the port.
  IpAddr ip() const { return IpAddr{v6, addr}; }
  /// IpString is the canonical address text ("10.0.0.1", "fd00::1").
  std::string IpString() const;
  /// ToString is "ip:port" or "[v6]:port".
  std::string ToString() const;
  bool operator==(const IpPort&) const = default;
};

}  // namespace zt

template <>
struct std::hash<zt::IpAddr> {
  size_t operator()(const zt::IpAddr& ip) const noexcept {
    // FNV-1a over the bytes that matter.
    size_t h = 1469598103934665603ULL ^ static_cast<size_t>(ip.v6);
    const size_t n = ip.v6 ? 16 : 4;
    for (size_t i = 0; i < n; ++i) h = (h ^ ip.addr[i]) * 1099511628211ULL;
    return h;
  }
};
