#include "ztunnel/state/authz.h"

#include <algorithm>

namespace zt::state {
namespace {

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
  if (m.Empty()) return false;
  const bool identity = !c.principal.empty();
  return PassesIdentity(identity, m.namespaces, m.not_namespaces,
                        [&](const StringMatch& s) { return s.Matches(c.peer_namespace); }) &&
         PassesIdentity(identity, m.principals, m.not_principals,
                        [&](const StringMatch& s) { return s.Matches(c.principal); }) &&
         PassesIdentity(identity, m.service_accounts, m.not_service_accounts,
                        [&](const ServiceAccountMatch& s) {
                          return s.namespace_name == c.peer_namespace &&
                                 s.service_account == c.peer_service_account;
                        }) &&
         Passes(m.source_ips, m.not_source_ips,
                [&](const Cidr& r) { return r.Contains(c.source); }) &&
         Passes(m.destination_ips, m.not_destination_ips,
                [&](const Cidr& r) { return r.Contains(c.destination); }) &&
         Passes(m.destination_ports, m.not_destination_ports,
                [&](uint16_t p) { return p == c.destination_port; });
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

bool Match::Empty() const {
  return namespaces.empty() && not_namespaces.empty() && principals.empty() &&
         not_principals.empty() && service_accounts.empty() && not_service_accounts.empty() &&
         source_ips.empty() && not_source_ips.empty() && destination_ips.empty() &&
         not_destination_ips.empty() && destination_ports.empty() && not_destination_ports.empty();
}

bool PolicyMatches(const Policy& policy, const Connection& c) {
  return AnyOf(policy.rules, [&](const Rule& r) { return RuleMatches(r, c); });
}

Decision Authorize(const std::vector<const Policy*>& policies, const Connection& c) {
  Decision d;
  bool any_allow = false;
  bool allow_matched = false;
  for (const Policy* p : policies) {
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
  if (d.allowed && any_allow && !allow_matched) {
    d.allowed = false;
    d.reason = "no ALLOW policy matched";
  }
  return d;
}

}  // namespace zt::state
