#include "ztunnel/iptables/rules.h"

#include <fmt/format.h>

namespace zt::iptables {
namespace {

constexpr Chain kChains[] = {
    {"mangle", "ISTIO_PRERT"},
    {"mangle", "ISTIO_OUTPUT"},
    {"nat", "ISTIO_PRERT"},
    {"nat", "ISTIO_OUTPUT"},
};

constexpr Jump kJumps[] = {
    {"mangle", "PREROUTING", "ISTIO_PRERT"},
    {"mangle", "OUTPUT", "ISTIO_OUTPUT"},
    {"nat", "PREROUTING", "ISTIO_PRERT"},
    {"nat", "OUTPUT", "ISTIO_OUTPUT"},
};

// Rules lists our rules for one table, in order, as "-A CHAIN ..." lines.
std::vector<std::string> Rules(const std::string& table, Family family,
                               const CaptureConfig& config) {
  const bool v4 = family == Family::kIpv4;
  const std::string localhost = v4 ? "127.0.0.1/32" : "::1/128";
  const std::string probe = std::string(v4 ? kProbeSnatV4 : kProbeSnatV6) + (v4 ? "/32" : "/128");
  const std::string bypass = fmt::format("0x{:x}/0x{:x}", kBypassMark, kMarkMask);
  const std::string connmark = fmt::format("0x{:x}/0x{:x}", kConnMark, kMarkMask);
  std::vector<std::string> out;
  if (table == "mangle") {
    // The node process's packets towards the app (looped back, so they pass
    // PREROUTING) mark their connection; the app's replies restore that mark in
    // OUTPUT, and policy routing sends them to the node process's socket even when
    // that socket used the client's address as its source.
    out.push_back(fmt::format("-A ISTIO_PRERT -m mark --mark {} -j CONNMARK --set-xmark {}", bypass,
                              connmark));
    out.push_back(fmt::format(
        "-A ISTIO_OUTPUT -m connmark --mark {} -j CONNMARK --restore-mark --nfmask 0x{:x} "
        "--ctmask 0x{:x}",
        connmark, kMarkMask, kMarkMask));
    return out;
  }
  // nat: inbound first. Probes, HBONE (15008) and our own packets pass untouched;
  // any other TCP entering the pod goes to the plaintext listener.
  out.push_back(fmt::format("-A ISTIO_PRERT -s {} -p tcp -j RETURN", probe));
  out.push_back("-A ISTIO_PRERT -p tcp -m tcp --dport 15008 -j RETURN");
  out.push_back(fmt::format("-A ISTIO_PRERT -m mark --mark {} -j RETURN", bypass));
  out.push_back(
      fmt::format("-A ISTIO_PRERT ! -d {} -p tcp -j REDIRECT --to-ports 15006", localhost));
  // Outbound: our own sockets and replies to probes pass; DNS (when on) goes to
  // 15053; any other TCP leaving for a non-loopback address goes to 15001.
  out.push_back(fmt::format("-A ISTIO_OUTPUT -d {} -p tcp -j RETURN", probe));
  out.push_back(fmt::format("-A ISTIO_OUTPUT -m mark --mark {} -j RETURN", bypass));
  out.push_back(fmt::format("-A ISTIO_OUTPUT -m mark --mark {} -j RETURN", connmark));
  if (config.dns_capture) {
    out.push_back("-A ISTIO_OUTPUT ! -o lo -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053");
    out.push_back("-A ISTIO_OUTPUT ! -o lo -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 15053");
  }
  out.push_back(
      fmt::format("-A ISTIO_OUTPUT ! -d {} -p tcp -j REDIRECT --to-ports 15001", localhost));
  return out;
}

}  // namespace

std::span<const Chain> Chains() { return kChains; }
std::span<const Jump> Jumps() { return kJumps; }

std::string JumpRule(const Jump& j) { return fmt::format("-A {} -j {}", j.builtin, j.target); }

std::string InstallInput(Family family, const CaptureConfig& config,
                         const std::vector<Jump>& missing) {
  std::string out;
  for (const char* table : {"mangle", "nat"}) {
    out += fmt::format("*{}\n", table);
    // Declaring a chain creates it, or (with --noflush) empties an existing one, so
    // a second install replaces the rules instead of adding them twice.
    for (const Chain& c : kChains) {
      if (std::string_view(c.table) == table) out += fmt::format(":{} - [0:0]\n", c.name);
    }
    for (const Jump& j : missing) {
      if (std::string_view(j.table) == table) out += JumpRule(j) + "\n";
    }
    for (const std::string& rule : Rules(table, family, config)) out += rule + "\n";
    out += "COMMIT\n";
  }
  return out;
}

std::string RemovalInput(const std::vector<Jump>& present, const std::vector<Chain>& chains) {
  std::string out;
  for (const char* table : {"mangle", "nat"}) {
    std::string body;
    for (const Jump& j : present) {
      if (std::string_view(j.table) == table) {
        body += fmt::format("-D {} -j {}\n", j.builtin, j.target);
      }
    }
    for (const Chain& c : chains) {
      if (std::string_view(c.table) == table) body += fmt::format("-F {}\n", c.name);
    }
    for (const Chain& c : chains) {
      if (std::string_view(c.table) == table) body += fmt::format("-X {}\n", c.name);
    }
    if (!body.empty()) out += fmt::format("*{}\n{}COMMIT\n", table, body);
  }
  return out;
}

}  // namespace zt::iptables
