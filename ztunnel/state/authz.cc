#include "ztunnel/state/authz.h"

#include <algorithm>
#include <optional>
#include <set>

#include "ztunnel/state/policy_program.h"

namespace zt::state {
bool Match::Empty() const {
  return namespaces.empty() && not_namespaces.empty() && principals.empty() &&
         not_principals.empty() && service_accounts.empty() && not_service_accounts.empty() &&
         source_ips.empty() && not_source_ips.empty() && destination_ips.empty() &&
         not_destination_ips.empty() && destination_ports.empty() && not_destination_ports.empty();
}

void PreparePolicy(Policy& policy) {
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
  const Policy* one = &policy;
  bool matched = false;
  PolicyProgram(std::span<const Policy* const>(&one, 1))
      .ForEach(c, [&](const PolicyProgram::Entry&, auto matches) {
        matched = matches();
        return false;
      });
  return matched;
}

std::vector<const Policy*> PolicySet::Policies() const {
  std::vector<const Policy*> out;
  for (const PolicyProgram* program : {global, in_namespace, selected}) {
    if (program != nullptr)
      out.insert(out.end(), program->policies().begin(), program->policies().end());
  }
  return out;
}

Decision Authorize(const std::vector<const Policy*>& policies, const Connection& c) {
  const PolicyProgram program(policies);
  return Authorize(PolicySet{&program, nullptr, nullptr}, c);
}

Decision Authorize(const PolicySet& set, const Connection& c) {
  Decision d;
  bool any_allow = false;
  bool allow_matched = false;
  auto decide = [&](const PolicyProgram::Entry& p, auto matches) {
    if (p.dry_run) {
      const bool matched = matches();
      if (p.deny && matched) d.dry_run.push_back(p.policy->Key() + " would deny");
      if (!p.deny) {
        d.dry_run.push_back(p.policy->Key() + (matched ? " would allow" : " would not allow"));
      }
      return true;
    }
    if (p.deny) {
      if (d.allowed && matches()) {
        d.allowed = false;
        d.reason = "denied by " + p.policy->Key();
      }
      return true;
    }
    if (!allow_matched && matches()) allow_matched = true;
    return true;
  };
  for (const PolicyProgram* program : {set.global, set.in_namespace, set.selected}) {
    if (program == nullptr) continue;
    // An ALLOW policy counts even when the port pre-filter keeps ForEach from it.
    any_allow = any_allow || program->has_allow();
    program->ForEach(c, decide);
  }
  if (d.allowed && any_allow && !allow_matched) {
    d.allowed = false;
    d.reason = "no ALLOW policy matched";
  }
  return d;
}

}  // namespace zt::state
