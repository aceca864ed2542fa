// SocketAddress: an IPv4 or IPv6 address and port, as the kernel wants it.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ztunnel/core/ip_port.h"

namespace zt::io {

/// SocketAddress wraps a sockaddr_in or sockaddr_in6.
class SocketAddress {
 public:
  SocketAddress() = default;
  /// Parse reads "1.2.3.4:80" or "[::1]:80"; nullopt when malformed.
  static std::optional<SocketAddress> Parse(std::string_view text);
  /// FromSockaddr copies a kernel address; nullopt unless AF_INET or AF_INET6.
  /// FromIpPort converts without going through text.
  static SocketAddress FromIpPort(const IpPort& ip);
  static std::optional<SocketAddress> FromSockaddr(const sockaddr* sa, socklen_t len);
  /// Loopback4 is 127.0.0.1:port.
  static SocketAddress Loopback4(uint16_t port);

  int family() const { return storage_.sa.sa_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  /// IsLoopback is true for 127.0.0.0/8 and ::1.
  bool IsLoopback() const;
  /// IsUnspecified is true for 0.0.0.0 and ::.
  bool IsUnspecified() const;
  const sockaddr* sa() const { return &storage_.sa; }
  sockaddr* sa() { return &storage_.sa; }
  socklen_t len() const;
  /// IpString renders only the address ("10.0.0.1", "::1").
  std::string IpString() const;
  /// ToString renders "ip:port" ("[v6]:port" for IPv6), the HBONE authority form.
  std::string ToString() const;
  bool operator==(const SocketAddress& other) const;
  /// ToIpPort gives the address as an IpPort; nullopt unless IPv4 or IPv6.
  std::optional<IpPort> ToIpPort() const;

 private:
  // 28 bytes, not a 128-byte sockaddr_storage: addresses are kept per connection.
  union Storage {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } storage_{};
};

}  // namespace zt::io
