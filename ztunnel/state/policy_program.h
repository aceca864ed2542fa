// PolicyProgram: a list of policies compiled into one contiguous array of words, so
// deciding a connection reads memory front to back instead of chasing a pointer per
// rule, clause, match, list and string (7 dependent loads per policy in the tree
// form; at 100 policies per destination those cache misses were most of the cost).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "ztunnel/state/authz.h"

namespace zt::state {

/// PolicyProgram is immutable once built; the policies it was built from must outlive it
/// (a State owns both).
class PolicyProgram {
 public:
  PolicyProgram() = default;
  /// Compiles `policies`, in order. Uses each policy's port pre-filter as it stands
  /// (PreparePolicy derives it; an unprepared policy simply has none).
  explicit PolicyProgram(std::span<const Policy* const> policies);

  /// Entry is one compiled policy as the decision loop sees it.
  struct Entry {
    const Policy* policy;
    bool deny;
    bool dry_run;
  };

  /// ForEach calls `visit(entry, matches)`, in order, for each policy that can match
  /// `c` by its port pre-filter, and for every dry-run policy (they report either
  /// way); `matches()` evaluates that policy against `c` on demand (so a decision
  /// that is already settled skips the work). Stops early when `visit` returns false.
  template <typename Visit>
  void ForEach(const Connection& c, Visit visit) const;

  /// has_allow is true when an enforced (not dry-run) ALLOW policy is compiled in,
  /// whether or not ForEach visits it for a given connection.
  bool has_allow() const { return has_allow_; }
  /// policies lists the compiled policies, in order.
  std::span<const Policy* const> policies() const { return policies_; }
  bool empty() const { return policies_.empty(); }
  /// words is the compiled size, for tests and memory accounting.
  size_t words() const { return code_.size(); }

 private:
  // Matches evaluates the policy whose header starts at code_[at].
  bool Matches(size_t at, const Connection& c) const;

  // Visit1 is ForEach's body for the policy at code_[at].
  template <typename Visit>
  bool Visit1(uint32_t at, const Connection& c, Visit& visit) const;

  std::vector<uint32_t> code_;
  std::vector<const Policy*> policies_;
  // The port index: offsets (into code_) of the policies any port can reach and of
  // the dry-run ones, ascending; and (port, offset) for port-scoped ones, sorted.
  // ForEach merges the two, so a connection never touches policies for other ports.
  std::vector<uint32_t> any_port_;
  std::vector<std::pair<uint16_t, uint32_t>> by_port_;
  bool has_allow_ = false;
};

// Layout of one policy in code_ (all counts and lengths in 32-bit words):
//   [length][flags | port count << 16][policy index][ports...][rule count] rules...
// rule:   [length][clause count] clauses...
// clause: [length][match count] matches...
// match:  [length][lists in use] then, per list pair in use: [yes count][no count] items.
// items: a port is one word; a CIDR its bytes; a string [kind << 24 | size] + bytes.
enum PolicyFlags : uint32_t { kPolicyDeny = 1, kPolicyDryRun = 2, kPolicyAnyPort = 4 };

template <typename Visit>
bool PolicyProgram::Visit1(uint32_t at, const Connection& c, Visit& visit) const {
  const uint32_t flags = code_[at + 1] & 0xffff;
  const Entry entry{policies_[code_[at + 2]], (flags & kPolicyDeny) != 0,
                    (flags & kPolicyDryRun) != 0};
  return visit(entry, [&] { return Matches(at, c); });
}

template <typename Visit>
void PolicyProgram::ForEach(const Connection& c, Visit visit) const {
  auto port = std::lower_bound(by_port_.begin(), by_port_.end(),
                               std::pair<uint16_t, uint32_t>{c.destination_port, 0});
  auto any = any_port_.begin();
  // Merge the two ascending offset lists, so policies are visited in order.
  while (true) {
    const bool port_left = port != by_port_.end() && port->first == c.destination_port;
    if (any == any_port_.end() && !port_left) return;
    uint32_t at;
    if (!port_left || (any != any_port_.end() && *any < port->second)) {
      at = *any++;
    } else {
      at = (port++)->second;
    }
    if (!Visit1(at, c, visit)) return;
  }
}

}  // namespace zt::state
