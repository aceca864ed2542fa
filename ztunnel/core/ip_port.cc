#include "ztunnel/core/ip_port.h"

#include <arpa/inet.h>

#include <charconv>

namespace zt {

std::optional<IpAddr> IpAddr::Parse(std::string_view text) {
  IpAddr out;
  out.v6 = text.find(':') != std::string_view::npos;
  const std::string z(text);
  if (inet_pton(out.v6 ? AF_INET6 : AF_INET, z.c_str(), out.addr.data()) != 1) return std::nullopt;
  return out;
}

std::string IpAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof(buf));
  return buf;
}

std::optional<IpPort> IpPort::Parse(std::string_view text) {
  std::string_view host;
  std::string_view port_text;
  IpPort out;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    out.v6 = true;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return std::nullopt;
  }
  out.port = static_cast<uint16_t>(port);
  const std::string host_z(host);
  if (inet_pton(out.v6 ? AF_INET6 : AF_INET, host_z.c_str(), out.addr.data()) != 1) {
    return std::nullopt;
  }
  return out;
}

std::string IpPort::IpString() const { return ip().ToString(); }

std::string IpPort::ToString() const {
  std::string out;
  out.reserve(INET6_ADDRSTRLEN + 8);
  if (v6) out.push_back('[');
  out.append(IpString());
  if (v6) out.push_back(']');
  out.push_back(':');
  out.append(std::to_string(port));
  return out;
}

}  // namespace zt
