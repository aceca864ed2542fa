#include "ztunnel/state/policy_program.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace zt::state {
namespace {

using Kind = StringMatch::Kind;

Connection Peer(std::string ns, std::string sa, uint16_t port) {
  Connection c;
  c.principal = "cluster.local/ns/" + ns + "/sa/" + sa;
  c.peer_namespace = std::move(ns);
  c.peer_service_account = std::move(sa);
  c.source = *IpAddr::Parse("fd00::5");
  c.destination = *IpAddr::Parse("10.0.2.7");
  c.destination_port = port;
  return c;
}

Policy Named(std::string name, PolicyAction action, std::vector<Rule> rules) {
  Policy p;
  p.name = std::move(name);
  p.namespace_name = "backend";
  p.action = action;
  p.rules = std::move(rules);
  PreparePolicy(p);
  return p;
}

Match Ports(std::vector<uint16_t> ports) {
  Match m;
  m.destination_ports = std::move(ports);
  return m;
}

// Strings of every length from 0 to 19 land on every padding of the word stream; each
// must compare exactly, and the cursor must land on the next item afterwards.
TEST_CASE("Compiled strings of any length match exactly and keep the cursor", "[authz]") {
  for (size_t n = 1; n < 20; ++n) {
    const std::string ns(n, 'a');
    Connection c = Peer(ns, "web", 80);
    Match m;
    // A decoy of the same length first, then the right one: the second item is only
    // found if the first was skipped by its padded size.
    std::string decoy = ns;
    decoy.back() = 'b';
    m.namespaces = {{Kind::kExact, decoy}, {Kind::kExact, ns}};
    m.service_accounts = {{ns, "db"}, {ns, "web"}};
    m.principals = {{Kind::kSuffix, "/sa/web"}};
    const Policy p = Named("p", PolicyAction::kAllow, {Rule{Clause{m}}});
    INFO("length " << n);
    CHECK(PolicyMatches(p, c));
    c.peer_namespace = std::string(n, 'b');
    CHECK_FALSE(PolicyMatches(p, c));
  }
  Match prefix;
  prefix.principals = {{Kind::kPrefix, "cluster.local/ns/fron"}};
  const Policy p = Named("p", PolicyAction::kAllow, {Rule{Clause{prefix}}});
  CHECK(PolicyMatches(p, Peer("frontend", "web", 80)));
  CHECK_FALSE(PolicyMatches(p, Peer("from", "web", 80)));
}

TEST_CASE("Compiled CIDRs of both families", "[authz]") {
  Match m;
  m.source_ips = {*Cidr::Parse("10.0.0.0/8"), *Cidr::Parse("fd00::/64")};
  m.not_destination_ips = {*Cidr::Parse("10.0.3.0/24")};
  const Policy p = Named("p", PolicyAction::kAllow, {Rule{Clause{m}}});
  Connection c = Peer("frontend", "web", 80);
  CHECK(PolicyMatches(p, c));  // fd00::5 is inside fd00::/64
  c.source = *IpAddr::Parse("fd01::5");
  CHECK_FALSE(PolicyMatches(p, c));
  c.source = *IpAddr::Parse("10.9.9.9");
  CHECK(PolicyMatches(p, c));
  c.destination = *IpAddr::Parse("10.0.3.1");
  CHECK_FALSE(PolicyMatches(p, c));
}

TEST_CASE("A failed match, clause or rule skips to the next one", "[authz]") {
  Match miss;
  miss.namespaces = {{Kind::kExact, "other-namespace-longer-than-eight"}};
  miss.principals = {{Kind::kPresence, ""}};
  Match hit;
  hit.principals = {{Kind::kSuffix, "/sa/web"}};
  // Rule 1 fails in its second clause; rule 2 hits with its clause's second match.
  const Policy p =
      Named("p", PolicyAction::kAllow,
            {Rule{Clause{hit}, Clause{miss, Ports({9090})}}, Rule{Clause{miss, Match{}, hit}}});
  CHECK(PolicyMatches(p, Peer("frontend", "web", 80)));
  CHECK_FALSE(PolicyMatches(p, Peer("frontend", "db", 80)));
}

TEST_CASE("The port index visits in policy order and keeps every verdict", "[authz]") {
  const Policy deny_a = Named("deny-a", PolicyAction::kDeny, {Rule{Clause{Ports({80})}}});
  const Policy deny_any = Named("deny-any", PolicyAction::kDeny, {Rule{}});
  const Policy deny_c = Named("deny-c", PolicyAction::kDeny, {Rule{Clause{Ports({80, 81})}}});
  // The first matching DENY names the reason, whichever list it came from.
  Decision d = Authorize({&deny_a, &deny_any, &deny_c}, Peer("frontend", "web", 80));
  CHECK(d.reason == "denied by backend/deny-a");
  d = Authorize({&deny_c, &deny_any, &deny_a}, Peer("frontend", "web", 81));
  CHECK(d.reason == "denied by backend/deny-c");
  d = Authorize({&deny_c, &deny_any, &deny_a}, Peer("frontend", "web", 443));
  CHECK(d.reason == "denied by backend/deny-any");

  // An ALLOW for another port still counts as an ALLOW policy: the connection is
  // denied for want of a match, not admitted for want of ALLOW policies.
  const Policy allow_80 = Named("allow-80", PolicyAction::kAllow, {Rule{Clause{Ports({80})}}});
  CHECK(Authorize({&allow_80}, Peer("frontend", "web", 80)).allowed);
  d = Authorize({&allow_80}, Peer("frontend", "web", 8080));
  CHECK_FALSE(d.allowed);
  CHECK(d.reason == "no ALLOW policy matched");

  // Dry-run policies report even when their port rules them out.
  Policy dry = allow_80;
  dry.dry_run = true;
  d = Authorize({&dry}, Peer("frontend", "web", 8080));
  CHECK(d.allowed);
  CHECK(d.dry_run == std::vector<std::string>{"backend/allow-80 would not allow"});

  const std::vector<const Policy*> all = {&deny_a, &allow_80, &dry, &deny_any};
  const PolicyProgram program(all);
  CHECK(program.has_allow());
  CHECK(program.policies().size() == 4);
  std::vector<std::string> visited;
  program.ForEach(Peer("frontend", "web", 8080), [&](const PolicyProgram::Entry& e, auto) {
    visited.push_back(e.policy->name);
    return true;
  });
  CHECK(visited == std::vector<std::string>{"allow-80", "deny-any"});
}

}  // namespace
}  // namespace zt::state
