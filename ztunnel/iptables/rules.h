// The in-pod capture rule set (DESIGN.md §4 "In-pod capture") rendered as
// iptables-restore input. Pure text: nothing here runs a command (capture.h does).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace zt::iptables {

enum class Family { kIpv4, kIpv6 };

/// CaptureConfig is what varies between pods; everything else is fixed by the design.
struct CaptureConfig {
  bool dns_capture = false;  // redirect udp/tcp 53 leaving the pod to 15053
};

/// The node process's own sockets carry this mark (SO_MARK) and are never captured.
inline constexpr uint32_t kBypassMark = 0x539;  // 1337
/// Connections the node process opened towards the pod's app get this connmark, so
/// the app's replies are routed back to it (policy routing, table kRouteTable).
inline constexpr uint32_t kConnMark = 0x111;
inline constexpr uint32_t kMarkMask = 0xfff;
inline constexpr int kRouteTable = 100;
inline constexpr int kRulePriority = 32764;
/// Kubelet probes arrive from these SNAT addresses and are not captured.
inline constexpr const char* kProbeSnatV4 = "169.254.7.127";
inline constexpr const char* kProbeSnatV6 = "fd16:9254:7127:1337:ffff:ffff:ffff:ffff";

/// Chain is one of our chains, in one table.
struct Chain {
  const char* table;
  const char* name;
  bool operator==(const Chain&) const = default;
};

/// Jump is the rule in a built-in chain that sends every packet to one of our chains.
struct Jump {
  const char* table;
  const char* builtin;  // PREROUTING or OUTPUT
  const char* target;   // one of our chains
  bool operator==(const Jump&) const = default;
};

/// Chains lists our chains (the same for both families).
std::span<const Chain> Chains();
/// Jumps lists the jumps into them.
std::span<const Jump> Jumps();
/// JumpRule is the rule text of `j` as iptables-save prints it ("-A PREROUTING -j X").
std::string JumpRule(const Jump& j);

/// InstallInput is `iptables-restore --noflush` input that creates (or, when they
/// exist, flushes and refills) our chains and adds `missing` jumps: one transaction,
/// and applying it twice leaves the same rules as applying it once.
std::string InstallInput(Family family, const CaptureConfig& config,
                         const std::vector<Jump>& missing);
/// RemovalInput is `iptables-restore --noflush` input that deletes the `present`
/// jumps, then flushes and deletes the `present` chains (a partial install included).
std::string RemovalInput(const std::vector<Jump>& present, const std::vector<Chain>& chains);

}  // namespace zt::iptables
