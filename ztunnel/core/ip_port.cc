#include "ztunnel/core/ip_port.h"

#include <arpa/inet.h>

#include <charconv>

namespace zt {

namespace {

// inet_pton reads a C string: text with a NUL inside ("10.0.0.1\0junk", which YAML can
// spell) would parse as the part before it. Such text is no address.
bool HasNul(std::string_view text) { return text.find('\0') != std::string_view::npos; }

}  // namespace

std::optional<IpAddr> IpAddr::Parse(std::string_view text) {
  if (HasNul(text)) return std::nullopt;
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

std::optional<Cidr> Cidr::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  auto ip = IpAddr::Parse(text.substr(0, slash));
  if (!ip) return std::nullopt;
  const unsigned max = ip->v6 ? 128 : 32;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix > max) {
      return std::nullopt;
    }
  }
  Cidr out{*ip, static_cast<uint8_t>(prefix)};
  // Host bits must be zero: "10.0.0.1/8" is more likely a typo than a range.
  for (unsigned bit = prefix; bit < max; ++bit) {
    if ((out.base.addr[bit / 8] >> (7 - bit % 8)) & 1) return std::nullopt;
  }
  return out;
}

bool Cidr::Contains(const IpAddr& ip) const {
  if (ip.v6 != base.v6) return false;
  const unsigned full = prefix / 8;
  for (unsigned i = 0; i < full; ++i) {
    if (ip.addr[i] != base.addr[i]) return false;
  }
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip.addr[full] & mask) == (base.addr[full] & mask);
}

std::string Cidr::ToString() const { return base.ToString() + "/" + std::to_string(prefix); }

std::optional<IpPort> IpPort::Parse(std::string_view text) {
  if (HasNul(text)) return std::nullopt;
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
