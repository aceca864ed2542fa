#include "ztunnel/state/policy_program.h"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace zt::state {
namespace {

// Bits of a match's "lists in use" word, one per pair of positive and `not_` lists,
// in evaluation order: every list must pass, so the order is free, and the cheap
// comparisons (ports, then addresses) go first; most non-matching policies stop there.
enum Lists : uint32_t {
  kPorts = 1,
  kDestinationIps = 2,
  kSourceIps = 4,
  kNamespaces = 8,
  kServiceAccounts = 16,
  kPrincipals = 32,
};

// A CIDR item: [v6 << 8 | prefix] then the 16 address bytes.
constexpr size_t kCidrWords = 5;

// Emitter appends to a program; Open/Close bracket a length-prefixed block.
class Emitter {
 public:
  explicit Emitter(std::vector<uint32_t>& code) : code_(code) {}
  size_t Open() {
    code_.push_back(0);
    return code_.size() - 1;
  }
  void Close(size_t at) { code_[at] = static_cast<uint32_t>(code_.size() - at); }
  void Word(uint32_t w) { code_.push_back(w); }
  void Bytes(const void* data, size_t n) {
    const size_t old = code_.size();
    code_.resize(old + (n + 3) / 4, 0);
    if (n != 0) std::memcpy(&code_[old], data, n);
  }
  void String(StringMatch::Kind kind, std::string_view s) {
    Word(static_cast<uint32_t>(kind));
    Word(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  // List emits one list pair: [yes length][no length] yes items, no items.
  template <typename T, typename EmitItem>
  void List(const std::vector<T>& yes, const std::vector<T>& no, EmitItem item) {
    const size_t lengths = code_.size();
    Word(0);
    Word(0);
    for (const T& x : yes) item(x);
    code_[lengths] = static_cast<uint32_t>(code_.size() - lengths - 2);
    const size_t no_begin = code_.size();
    for (const T& x : no) item(x);
    code_[lengths + 1] = static_cast<uint32_t>(code_.size() - no_begin);
  }

 private:
  std::vector<uint32_t>& code_;
};

uint32_t ListsInUse(const Match& m) {
  uint32_t out = 0;
  if (!m.destination_ports.empty() || !m.not_destination_ports.empty()) out |= kPorts;
  if (!m.destination_ips.empty() || !m.not_destination_ips.empty()) out |= kDestinationIps;
  if (!m.source_ips.empty() || !m.not_source_ips.empty()) out |= kSourceIps;
  if (!m.namespaces.empty() || !m.not_namespaces.empty()) out |= kNamespaces;
  if (!m.service_accounts.empty() || !m.not_service_accounts.empty()) out |= kServiceAccounts;
  if (!m.principals.empty() || !m.not_principals.empty()) out |= kPrincipals;
  return out;
}

void EmitMatch(Emitter& e, const Match& m) {
  const size_t at = e.Open();
  const uint32_t lists = ListsInUse(m);
  e.Word(lists);
  auto port = [&](uint16_t p) { e.Word(p); };
  auto cidr = [&](const Cidr& r) {
    e.Word(static_cast<uint32_t>(r.base.v6) << 8 | r.prefix);
    e.Bytes(r.base.addr.data(), r.base.addr.size());
  };
  auto string = [&](const StringMatch& s) { e.String(s.kind, s.value); };
  auto account = [&](const ServiceAccountMatch& s) {
    e.String(StringMatch::Kind::kExact, s.namespace_name);
    e.String(StringMatch::Kind::kExact, s.service_account);
  };
  if (lists & kPorts) e.List(m.destination_ports, m.not_destination_ports, port);
  if (lists & kDestinationIps) e.List(m.destination_ips, m.not_destination_ips, cidr);
  if (lists & kSourceIps) e.List(m.source_ips, m.not_source_ips, cidr);
  if (lists & kNamespaces) e.List(m.namespaces, m.not_namespaces, string);
  if (lists & kServiceAccounts) {
    e.List(m.service_accounts, m.not_service_accounts, account);
  }
  if (lists & kPrincipals) e.List(m.principals, m.not_principals, string);
  e.Close(at);
}

// BytesEqual compares short strings inline: a libc call per comparison was a third
// of a decision's time, and policy strings are tens of bytes.
inline bool BytesEqual(const char* a, const char* b, size_t n) {
  for (; n >= 8; a += 8, b += 8, n -= 8) {
    uint64_t x, y;
    std::memcpy(&x, a, 8);
    std::memcpy(&y, b, 8);
    if (x != y) return false;
  }
  for (; n > 0; --n) {
    if (*a++ != *b++) return false;
  }
  return true;
}

// Reading side. Items are walked with a cursor; each reader returns whether the item
// hits and advances past it.
inline __attribute__((always_inline)) bool StringHits(const uint32_t*& p, std::string_view s) {
  const auto kind = static_cast<StringMatch::Kind>(p[0]);
  const uint32_t size = p[1];
  const std::string_view value(reinterpret_cast<const char*>(p + 2), size);
  p += 2 + (size + 3) / 4;
  switch (kind) {
    case StringMatch::Kind::kExact:
      return s.size() == size && BytesEqual(s.data(), value.data(), size);
    case StringMatch::Kind::kPrefix:
      return s.size() >= size && BytesEqual(s.data(), value.data(), size);
    case StringMatch::Kind::kSuffix:
      return s.size() >= size && BytesEqual(s.data() + s.size() - size, value.data(), size);
    case StringMatch::Kind::kPresence:
      return !s.empty();
  }
  return false;
}

// AnyHits walks items in [p, end) and is true when one hits.
template <typename Hit>
bool AnyHits(const uint32_t* p, const uint32_t* end, Hit hit) {
  while (p < end) {
    if (hit(p)) return true;
  }
  return false;
}

// ListPasses applies one list pair at `p` (advancing past it): an empty list passes; a
// positive list needs a hit, a negative one must have none. `identity` false means
// the peer has no identity: identity lists then pass only without a positive list.
template <typename Hit>
bool ListPasses(const uint32_t*& p, bool identity, Hit hit) {
  const uint32_t yes = p[0], no = p[1];
  const uint32_t* yes_begin = p + 2;
  const uint32_t* no_begin = yes_begin + yes;
  p = no_begin + no;
  if (!identity) return yes == 0;
  if (yes != 0 && !AnyHits(yes_begin, no_begin, hit)) return false;
  return no == 0 || !AnyHits(no_begin, p, hit);
}

bool MatchHits(const uint32_t* m, const Connection& c) {
  const uint32_t lists = m[1];
  if (lists == 0) return false;  // a match with every list empty never hits
  const uint32_t* p = m + 2;
  const bool identity = !c.principal.empty();
  if ((lists & kPorts) &&
      !ListPasses(p, true, [&](const uint32_t*& q) { return *q++ == c.destination_port; })) {
    return false;
  }
  auto in_range = [](const IpAddr& ip) {
    return [&ip](const uint32_t*& q) {
      Cidr r;
      r.base.v6 = (q[0] >> 8) != 0;
      r.prefix = static_cast<uint8_t>(q[0]);
      std::memcpy(r.base.addr.data(), q + 1, r.base.addr.size());
      q += kCidrWords;
      return r.Contains(ip);
    };
  };
  if ((lists & kDestinationIps) && !ListPasses(p, true, in_range(c.destination))) return false;
  if ((lists & kSourceIps) && !ListPasses(p, true, in_range(c.source))) return false;
  if ((lists & kNamespaces) && !ListPasses(p, identity, [&](const uint32_t*& q) {
        return StringHits(q, c.peer_namespace);
      })) {
    return false;
  }
  if ((lists & kServiceAccounts) && !ListPasses(p, identity, [&](const uint32_t*& q) {
        // Both must be read to advance the cursor, whatever the first says.
        const bool ns = StringHits(q, c.peer_namespace);
        const bool sa = StringHits(q, c.peer_service_account);
        return ns && sa;
      })) {
    return false;
  }
  return !(lists & kPrincipals) ||
         ListPasses(p, identity, [&](const uint32_t*& q) { return StringHits(q, c.principal); });
}

// ClauseHits: a clause without matches hits; otherwise any of its matches must.
bool ClauseHits(const uint32_t* clause, const Connection& c) {
  const uint32_t matches = clause[1];
  if (matches == 0) return true;
  const uint32_t* m = clause + 2;
  for (uint32_t i = 0; i < matches; m += m[0], ++i) {
    if (MatchHits(m, c)) return true;
  }
  return false;
}

// RuleMatches: every clause must hit (so a rule without clauses matches).
bool RuleMatches(const uint32_t* rule, const Connection& c) {
  const uint32_t clauses = rule[1];
  const uint32_t* clause = rule + 2;
  for (uint32_t i = 0; i < clauses; clause += clause[0], ++i) {
    if (!ClauseHits(clause, c)) return false;
  }
  return true;
}

}  // namespace

PolicyProgram::PolicyProgram(std::span<const Policy* const> policies)
    : policies_(policies.begin(), policies.end()) {
  Emitter e(code_);
  for (size_t i = 0; i < policies_.size(); ++i) {
    const Policy& p = *policies_[i];
    const size_t at = e.Open();
    if (p.any_port || p.dry_run) {
      any_port_.push_back(static_cast<uint32_t>(at));
    } else {
      for (uint16_t port : p.only_ports) by_port_.emplace_back(port, static_cast<uint32_t>(at));
    }
    if (p.action == PolicyAction::kAllow && !p.dry_run) has_allow_ = true;
    uint32_t flags = 0;
    if (p.action == PolicyAction::kDeny) flags |= kPolicyDeny;
    if (p.dry_run) flags |= kPolicyDryRun;
    if (p.any_port) flags |= kPolicyAnyPort;
    const std::vector<uint16_t> ports = p.any_port ? std::vector<uint16_t>{} : p.only_ports;
    e.Word(flags | static_cast<uint32_t>(ports.size()) << 16);
    e.Word(static_cast<uint32_t>(i));
    for (uint16_t port : ports) e.Word(port);
    e.Word(static_cast<uint32_t>(p.rules.size()));
    for (const Rule& rule : p.rules) {
      const size_t rule_at = e.Open();
      e.Word(static_cast<uint32_t>(rule.size()));
      for (const Clause& clause : rule) {
        const size_t clause_at = e.Open();
        e.Word(static_cast<uint32_t>(clause.size()));
        for (const Match& m : clause) EmitMatch(e, m);
        e.Close(clause_at);
      }
      e.Close(rule_at);
    }
    e.Close(at);
  }
  std::sort(by_port_.begin(), by_port_.end());
}

bool PolicyProgram::Matches(size_t at, const Connection& c) const {
  const uint32_t* p = &code_[at];
  const uint32_t ports = p[1] >> 16;
  const uint32_t* port = p + 3;
  if (!(p[1] & kPolicyAnyPort) &&
      std::find(port, port + ports, c.destination_port) == port + ports) {
    return false;  // the port pre-filter: no rule can match this port
  }
  const uint32_t* q = port + ports;
  const uint32_t rules = *q++;
  for (uint32_t i = 0; i < rules; q += q[0], ++i) {
    if (RuleMatches(q, c)) return true;
  }
  return false;
}

}  // namespace zt::state
