#include "ztunnel/io/address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace zt::io {

std::optional<SocketAddress> SocketAddress::Parse(std::string_view text) {
  std::string_view host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // v6 needs brackets
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty()) {
    return std::nullopt;
  }
  const std::string host_z(host);
  SocketAddress out;
  auto* v4 = &out.storage_.v4;
  auto* v6 = &out.storage_.v6;
  if (inet_pton(AF_INET, host_z.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    return out;
  }
  out.storage_ = {};
  if (inet_pton(AF_INET6, host_z.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    return out;
  }
  return std::nullopt;
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

std::string SocketAddress::IpString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &storage_.v4.sin_addr, buf, sizeof(buf));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &storage_.v6.sin6_addr, buf, sizeof(buf));
  } else {
    return "unspecified";
  }
  return buf;
}

std::string SocketAddress::ToString() const {
  std::string out;
  out.reserve(INET6_ADDRSTRLEN + 8);
  if (family() == AF_INET6) {
    out.push_back('[');
    out.append(IpString());
    out.push_back(']');
  } else {
    out.append(IpString());
  }
  out.push_back(':');
  out.append(std::to_string(port()));
  return out;
}

bool SocketAddress::operator==(const SocketAddress& other) const {
  return family() == other.family() && std::memcmp(&storage_, &other.storage_, len()) == 0;
}

}  // namespace zt::io
