#include "ztunnel/state/authz.h"

#include <algorithm>
#include <optional>
#include <set>

namespace zt::state {
namespace {

// Bits of Match::lists: one per pair of positive and `not_` lists.
enum Lists : uint8_t {
  kPorts = 1,
  kDestinationIps = 2,
  kSourceIps = 4,
  kNamespaces = 8,
  kServiceAccounts = 16,
  kPrincipals = 32,
};

template <typename T, typename Pred>
bool AnyOf(const std::vector<T>& list, Pred pred) {
  return std::any_of(list.begin(), list.end(), pred);
}

// Passes applies one positive list and its `not_` twin: an empty list passes; a
// positive list needs a hit, a negative list must have none.
template <typename T, typename Pred>
bool Passes(const std::vector<T>& yes, const std::vector<T>& no, Pred hit) {
  if (!yes.empty() && !AnyOf(yes, hit)) return false;
  if (!no.empty() && AnyOf(no, hit)) return false;
  return true;
}

// PassesIdentity is Passes for identity lists: a peer without identity hits nothing.
template <typename T, typename Pred>
bool PassesIdentity(bool has_identity, const std::vector<T>& yes, const std::vector<T>& no,
                    Pred hit) {
  if (!has_identity) return yes.empty();
  return Passes(yes, no, hit);
}

bool MatchHits(const Match& m, const Connection& c) {
  const uint8_t lists = m.lists != 0 ? m.lists : m.ListsInUse();
  if (lists == 0) return false;  // a match with every list empty never hits
  const bool identity = !c.principal.empty();
  // Every non-empty list must pass, so the order is free: the cheap comparisons
  // (ports, then addresses) go first and most non-matching policies stop there.
  if ((lists & kPorts) && !Passes(m.destination_ports, m.not_destination_ports,
                                  [&](uint16_t p) { return p == c.destination_port; })) {
    return false;
  }
  if ((lists & kDestinationIps) &&
      !Passes(m.destination_ips, m.not_destination_ips,
              [&](const Cidr& r) { return r.Contains(c.destination); })) {
    return false;
  }
  if ((lists & kSourceIps) && !Passes(m.source_ips, m.not_source_ips,
                                      [&](const Cidr& r) { return r.Contains(c.source); })) {
    return false;
  }
  if ((lists & kNamespaces) &&
      !PassesIdentity(identity, m.namespaces, m.not_namespaces,
                      [&](const StringMatch& s) { return s.Matches(c.peer_namespace); })) {
    return false;
  }
  if ((lists & kServiceAccounts) &&
      !PassesIdentity(identity, m.service_accounts, m.not_service_accounts,
                      [&](const ServiceAccountMatch& s) {
                        return s.namespace_name == c.peer_namespace &&
                               s.service_account == c.peer_service_account;
                      })) {
    return false;
  }
  return !(lists & kPrincipals) ||
         PassesIdentity(identity, m.principals, m.not_principals,
                        [&](const StringMatch& s) { return s.Matches(c.principal); });
}

bool ClauseHits(const Clause& clause, const Connection& c) {
  if (clause.empty()) return true;
  return AnyOf(clause, [&](const Match& m) { return MatchHits(m, c); });
}

bool RuleMatches(const Rule& rule, const Connection& c) {
  return std::all_of(rule.begin(), rule.end(),
                     [&](const Clause& clause) { return ClauseHits(clause, c); });
}

}  // namespace

bool StringMatch::Matches(std::string_view s) const {
  switch (kind) {
    case Kind::kExact:
      return s == value;
    case Kind::kPrefix:
      return s.size() >= value.size() && s.substr(0, value.size()) == value;
    case Kind::kSuffix:
      return s.size() >= value.size() && s.substr(s.size() - value.size()) == value;
    case Kind::kPresence:
      return !s.empty();
  }
  return false;
}

uint8_t Match::ListsInUse() const {
  uint8_t out = 0;
  if (!destination_ports.empty() || !not_destination_ports.empty()) out |= kPorts;
  if (!destination_ips.empty() || !not_destination_ips.empty()) out |= kDestinationIps;
  if (!source_ips.empty() || !not_source_ips.empty()) out |= kSourceIps;
  if (!namespaces.empty() || !not_namespaces.empty()) out |= kNamespaces;
  if (!service_accounts.empty() || !not_service_accounts.empty()) out |= kServiceAccounts;
  if (!principals.empty() || !not_principals.empty()) out |= kPrincipals;
  return out;
}

bool Match::Empty() const {
  return namespaces.empty() && not_namespaces.empty() && principals.empty() &&
         not_principals.empty() && service_accounts.empty() && not_service_accounts.empty() &&
         source_ips.empty() && not_source_ips.empty() && destination_ips.empty() &&
         not_destination_ips.empty() && destination_ports.empty() && not_destination_ports.empty();
}

void PreparePolicy(Policy& policy) {
  for (Rule& rule : policy.rules) {
    for (Clause& clause : rule) {
      for (Match& m : clause) m.lists = m.ListsInUse();
    }
  }
  using Ports = std::optional<std::set<uint16_t>>;  // nullopt: any port
  auto unite = [](Ports& into, const Ports& more) {
    if (!into || !more) {
      into.reset();
    } else {
      into->insert(more->begin(), more->end());
    }
  };
  Ports policy_ports = std::set<uint16_t>{};
  for (const Rule& rule : policy.rules) {
    Ports rule_ports;  // a rule without clauses matches any port
    for (const Clause& clause : rule) {
      Ports clause_ports;  // a clause without matches hits any port
      if (!clause.empty()) {
        clause_ports = std::set<uint16_t>{};
        for (const Match& m : clause) {
          if (m.Empty()) continue;  // never hits
          unite(clause_ports, m.destination_ports.empty()
                                  ? Ports{}
                                  : Ports{std::set<uint16_t>(m.destination_ports.begin(),
                                                             m.destination_ports.end())});
        }
      }
      if (!clause_ports) continue;  // no restriction from this clause
      if (!rule_ports) {
        rule_ports = clause_ports;
      } else {
        std::set<uint16_t> both;
        std::set_intersection(rule_ports->begin(), rule_ports->end(), clause_ports->begin(),
                              clause_ports->end(), std::inserter(both, both.begin()));
        rule_ports = std::move(both);
      }
    }
    unite(policy_ports, rule_ports);
    if (!policy_ports) break;
  }
  policy.any_port = !policy_ports.has_value();
  policy.only_ports.clear();
  if (policy_ports) policy.only_ports.assign(policy_ports->begin(), policy_ports->end());
}

bool PolicyMatches(const Policy& policy, const Connection& c) {
  if (!policy.any_port &&
      !std::binary_search(policy.only_ports.begin(), policy.only_ports.end(), c.destination_port)) {
    return false;
  }
  return AnyOf(policy.rules, [&](const Rule& r) { return RuleMatches(r, c); });
}

Decision Authorize(const std::vector<const Policy*>& policies, const Connection& c) {
  return Authorize(PolicySet{policies, {}, {}}, c);
}

Decision Authorize(const PolicySet& set, const Connection& c) {
  Decision d;
  bool any_allow = false;
  bool allow_matched = false;
  for (std::span<const Policy* const> list : {set.global, set.in_namespace, set.selected}) {
    for (const Policy* p : list) {
      const bool deny = p->action == PolicyAction::kDeny;
      if (p->dry_run) {
        const bool matched = PolicyMatches(*p, c);
        if (deny && matched) d.dry_run.push_back(p->Key() + " would deny");
        if (!deny) d.dry_run.push_back(p->Key() + (matched ? " would allow" : " would not allow"));
        continue;
      }
      if (deny) {
        if (d.allowed && PolicyMatches(*p, c)) {
          d.allowed = false;
          d.reason = "denied by " + p->Key();
        }
        continue;
      }
      any_allow = true;
      if (!allow_matched && PolicyMatches(*p, c)) allow_matched = true;
    }
  }
  if (d.allowed && any_allow && !allow_matched) {
    d.allowed = false;
    d.reason = "no ALLOW policy matched";
  }
  return d;
}

}  // namespace zt::state
