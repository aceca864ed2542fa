#include "ztunnel/io/address.h"

#include <arpa/inet.h>

#include <cstring>

#include "ztunnel/core/ip_port.h"

namespace zt::io {

std::optional<SocketAddress> SocketAddress::Parse(std::string_view text) {
  auto ip = IpPort::Parse(text);
  if (!ip) return std::nullopt;
  return FromIpPort(*ip);
}

SocketAddress SocketAddress::FromIpPort(const IpPort& ip) {
  SocketAddress out;
  if (ip.v6) {
    out.storage_.v6.sin6_family = AF_INET6;
    std::memcpy(&out.storage_.v6.sin6_addr, ip.addr.data(), 16);
    out.storage_.v6.sin6_port = htons(ip.port);
  } else {
    out.storage_.v4.sin_family = AF_INET;
    std::memcpy(&out.storage_.v4.sin_addr, ip.addr.data(), 4);
    out.storage_.v4.sin_port = htons(ip.port);
  }
  return out;
}

std::optional<SocketAddress> SocketAddress::FromSockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress out;
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    std::memcpy(&out.storage_.v4, sa, sizeof(sockaddr_in));
    return out;
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    std::memcpy(&out.storage_.v6, sa, sizeof(sockaddr_in6));
    return out;
  }
  return std::nullopt;
}

SocketAddress SocketAddress::Loopback4(uint16_t port) {
  SocketAddress out;
  auto* v4 = &out.storage_.v4;
  v4->sin_family = AF_INET;
  v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  v4->sin_port = htons(port);
  return out;
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(storage_.v4.sin_port);
  if (family() == AF_INET6) {
    return ntohs(storage_.v6.sin6_port);
  }
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  if (family() == AF_INET) storage_.v4.sin_port = htons(port);
  if (family() == AF_INET6) storage_.v6.sin6_port = htons(port);
}

bool SocketAddress::IsLoopback() const {
  if (family() == AF_INET) {
    return (ntohl(storage_.v4.sin_addr.s_addr) >> 24) == 127;
  }
  if (family() == AF_INET6) {
    return IN6_IS_ADDR_LOOPBACK(&storage_.v6.sin6_addr);
  }
  return false;
}

bool SocketAddress::IsUnspecified() const {
  if (family() == AF_INET) {
    return storage_.v4.sin_addr.s_addr == INADDR_ANY;
  }
  if (family() == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&storage_.v6.sin6_addr);
  }
  return false;
}

socklen_t SocketAddress::len() const {
  return family() == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::optional<IpPort> SocketAddress::ToIpPort() const {
  IpPort out;
  out.port = port();
  if (family() == AF_INET) {
    std::memcpy(out.addr.data(), &storage_.v4.sin_addr, 4);
  } else if (family() == AF_INET6) {
    out.v6 = true;
    std::memcpy(out.addr.data(), &storage_.v6.sin6_addr, 16);
  } else {
    return std::nullopt;
  }
  return out;
}

std::string SocketAddress::IpString() const {
  auto ip = ToIpPort();
  return ip ? ip->IpString() : "unspecified";
}

std::string SocketAddress::ToString() const {
  auto ip = ToIpPort();
  return ip ? ip->ToString() : "unspecified:" + std::to_string(port());
}

bool SocketAddress::operator==(const SocketAddress& other) const {
  return family() == other.family() && std::memcmp(&storage_, &other.storage_, len()) == 0;
}

}  // namespace zt::io
