// L4 authorization: Istio's AuthorizationPolicy as ztunnel evaluates it at the
// destination (DESIGN.md §4 "L4 authorization semantics"). Pure logic: no I/O, no
// logging; callers log the decision and the dry-run verdicts.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ztunnel/core/ip_port.h"

namespace zt::state {

/// StringMatch compares literally (no regex, no wildcards); Presence means "non-empty".
struct StringMatch {
  enum class Kind : uint8_t { kExact, kPrefix, kSuffix, kPresence } kind = Kind::kExact;
  std::string value;
};

/// ServiceAccountMatch needs both the namespace and the account to be equal.
struct ServiceAccountMatch {
  std::string namespace_name;
  std::string service_account;
};

/// Match is one set of conditions; every non-empty list must pass. A positive list
/// passes with at least one hit, a `not_` list with none.
struct Match {
  std::vector<StringMatch> namespaces, not_namespaces;
  std::vector<StringMatch> principals, not_principals;
  std::vector<ServiceAccountMatch> service_accounts, not_service_accounts;
  std::vector<Cidr> source_ips, not_source_ips;
  std::vector<Cidr> destination_ips, not_destination_ips;
  std::vector<uint16_t> destination_ports, not_destination_ports;
  /// Empty is true when every list is empty: such a match never hits.
  bool Empty() const;
};

/// A clause hits when it has no matches, or when any of its matches hits.
using Clause = std::vector<Match>;
/// A rule matches when every clause hits (so a rule without clauses matches).
using Rule = std::vector<Clause>;

enum class PolicyScope : uint8_t { kGlobal, kNamespace, kWorkloadSelector };
enum class PolicyAction : uint8_t { kAllow, kDeny };

/// Policy matches a connection when any of its rules does; no rules: never.
struct Policy {
  std::string name;
  std::string namespace_name;
  PolicyScope scope = PolicyScope::kNamespace;
  PolicyAction action = PolicyAction::kAllow;
  bool dry_run = false;
  std::vector<Rule> rules;
  /// Derived by PreparePolicy (State::Build does it): when `any_port` is false, the
  /// policy can only match connections to one of `only_ports`, so others skip it.
  bool any_port = true;
  std::vector<uint16_t> only_ports;
  /// Key is "namespace/name", as workloads refer to policies.
  std::string Key() const { return namespace_name + "/" + name; }
};

/// Connection is what a policy sees of an inbound connection. A plaintext peer has an
/// empty principal and namespace: positive identity lists never hit it, `not_` lists
/// always pass.
struct Connection {
  std::string principal;  // the peer's SPIFFE id without "spiffe://"
  std::string peer_namespace;
  std::string peer_service_account;
  IpAddr source;
  IpAddr destination;
  uint16_t destination_port = 0;  // the real target port, not 15008
};

/// PreparePolicy derives the port pre-filter from the rules: a rule can only match
/// ports every clause can hit, a clause the ports any of its matches can (a match
/// without destinationPorts: any port). Evaluation results never change.
void PreparePolicy(Policy& policy);

/// PolicyMatches evaluates one policy (ignoring its action and dry-run flag). It
/// compiles the policy first: for tests and tools, not the data path.
bool PolicyMatches(const Policy& policy, const Connection& c);

/// Decision is the verdict and its reason, for access logs and metrics.
struct Decision {
  bool allowed = true;
  /// reason: "denied by ns/name", "no ALLOW policy matched", or empty when allowed.
  std::string reason;
  /// dry_run lists what dry-run policies would have done, e.g. "ns/name would deny".
  std::vector<std::string> dry_run;
};

class PolicyProgram;

/// PolicySet is the policies in force for one destination, as up to three compiled
/// lists owned by a State (no copy per connection). Null: none.
struct PolicySet {
  const PolicyProgram* global = nullptr;
  const PolicyProgram* in_namespace = nullptr;
  const PolicyProgram* selected = nullptr;
  /// Policies lists every policy of the set, in evaluation order.
  std::vector<const Policy*> Policies() const;
};

/// Authorize applies `policies` (those in force for the destination): dry-run ones
/// only report; any matching DENY denies; without ALLOW policies the connection is
/// allowed; otherwise one matching ALLOW is needed.
Decision Authorize(const PolicySet& policies, const Connection& c);
/// Authorize over a plain list (tests, tools).
Decision Authorize(const std::vector<const Policy*>& policies, const Connection& c);

}  // namespace zt::state
