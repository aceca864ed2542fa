#include "ztunnel/state/authz.h"

#include <catch2/catch.hpp>
#include <functional>
#include <string>

namespace zt::state {
namespace {

using Kind = StringMatch::Kind;

// The connection most cases use: web in ns frontend, 10.0.1.5 -> 10.0.2.7:8080.
Connection Mtls() {
  Connection c;
  c.principal = "cluster.local/ns/frontend/sa/web";
  c.peer_namespace = "frontend";
  c.peer_service_account = "web";
  c.source = *IpAddr::Parse("10.0.1.5");
  c.destination = *IpAddr::Parse("10.0.2.7");
  c.destination_port = 8080;
  return c;
}

Connection Plaintext() {
  Connection c = Mtls();
  c.principal.clear();
  c.peer_namespace.clear();
  c.peer_service_account.clear();
  return c;
}

Policy OneMatch(PolicyAction action, Match m) {
  Policy p;
  p.name = "p";
  p.namespace_name = "backend";
  p.action = action;
  p.rules = {Rule{Clause{std::move(m)}}};
  return p;
}

Cidr C(const char* s) { return *Cidr::Parse(s); }
StringMatch S(Kind k, std::string v = "") { return StringMatch{k, std::move(v)}; }

struct FieldCase {
  const char* name;
  std::function<void(Match&)> set;
  bool mtls_hits;       // does the match hit the mTLS connection?
  bool plaintext_hits;  // ... and the plaintext one?
};

TEST_CASE("Every match field and its not form, for mTLS and plaintext peers", "[authz]") {
  const FieldCase cases[] = {
      {"namespaces hit", [](Match& m) { m.namespaces = {S(Kind::kExact, "frontend")}; }, true,
       false},
      {"namespaces miss", [](Match& m) { m.namespaces = {S(Kind::kExact, "other")}; }, false,
       false},
      {"notNamespaces hit", [](Match& m) { m.not_namespaces = {S(Kind::kExact, "frontend")}; },
       false, true},
      {"notNamespaces miss", [](Match& m) { m.not_namespaces = {S(Kind::kExact, "other")}; }, true,
       true},
      {"principals exact",
       [](Match& m) { m.principals = {S(Kind::kExact, "cluster.local/ns/frontend/sa/web")}; }, true,
       false},
      {"principals prefix", [](Match& m) { m.principals = {S(Kind::kPrefix, "cluster.local/")}; },
       true, false},
      {"principals suffix", [](Match& m) { m.principals = {S(Kind::kSuffix, "/sa/web")}; }, true,
       false},
      {"principals presence", [](Match& m) { m.principals = {S(Kind::kPresence)}; }, true, false},
      {"principals miss", [](Match& m) { m.principals = {S(Kind::kSuffix, "/sa/db")}; }, false,
       false},
      {"notPrincipals hit", [](Match& m) { m.not_principals = {S(Kind::kPresence)}; }, false, true},
      {"notPrincipals miss", [](Match& m) { m.not_principals = {S(Kind::kExact, "x")}; }, true,
       true},
      {"serviceAccounts hit",
       [](Match& m) {
         m.service_accounts = {{"frontend", "web"}};
       },
       true, false},
      {"serviceAccounts wrong namespace",
       [](Match& m) {
         m.service_accounts = {{"backend", "web"}};
       },
       false, false},
      {"notServiceAccounts hit",
       [](Match& m) {
         m.not_service_accounts = {{"frontend", "web"}};
       },
       false, true},
      {"notServiceAccounts miss",
       [](Match& m) {
         m.not_service_accounts = {{"frontend", "db"}};
       },
       true, true},
      {"sourceIps hit", [](Match& m) { m.source_ips = {C("10.0.1.0/24")}; }, true, true},
      {"sourceIps miss", [](Match& m) { m.source_ips = {C("10.0.9.0/24")}; }, false, false},
      {"notSourceIps hit", [](Match& m) { m.not_source_ips = {C("10.0.1.5")}; }, false, false},
      {"notSourceIps miss", [](Match& m) { m.not_source_ips = {C("10.0.9.0/24")}; }, true, true},
      {"destinationIps hit", [](Match& m) { m.destination_ips = {C("10.0.2.7/32")}; }, true, true},
      {"destinationIps miss", [](Match& m) { m.destination_ips = {C("10.0.3.0/24")}; }, false,
       false},
      {"notDestinationIps hit", [](Match& m) { m.not_destination_ips = {C("10.0.0.0/8")}; }, false,
       false},
      {"notDestinationIps miss", [](Match& m) { m.not_destination_ips = {C("fd00::/8")}; }, true,
       true},
      {"destinationPorts hit",
       [](Match& m) {
         m.destination_ports = {80, 8080};
       },
       true, true},
      {"destinationPorts miss (15008 is not the target port)",
       [](Match& m) { m.destination_ports = {15008}; }, false, false},
      {"notDestinationPorts hit", [](Match& m) { m.not_destination_ports = {8080}; }, false, false},
      {"notDestinationPorts miss", [](Match& m) { m.not_destination_ports = {9090}; }, true, true},
      {"two lists, both pass",
       [](Match& m) {
         m.namespaces = {S(Kind::kExact, "frontend")};
         m.destination_ports = {8080};
       },
       true, false},
      {"two lists, one fails",
       [](Match& m) {
         m.namespaces = {S(Kind::kExact, "frontend")};
         m.destination_ports = {9090};
       },
       false, false},
  };
  for (const FieldCase& fc : cases) {
    INFO(fc.name);
    Match m;
    fc.set(m);
    const Policy p = OneMatch(PolicyAction::kAllow, m);
    CHECK(PolicyMatches(p, Mtls()) == fc.mtls_hits);
    CHECK(PolicyMatches(p, Plaintext()) == fc.plaintext_hits);
  }
}

TEST_CASE("Strings match literally: a.b never matches aXb", "[authz]") {
  Connection c = Mtls();
  c.principal = "cluster.local/ns/aXb/sa/web";
  c.peer_namespace = "aXb";
  for (Kind k : {Kind::kExact, Kind::kPrefix, Kind::kSuffix}) {
    Match m;
    m.namespaces = {S(k, "a.b")};
    CHECK_FALSE(PolicyMatches(OneMatch(PolicyAction::kAllow, m), c));
    Match star;
    star.principals = {S(k, "cluster.local/ns/*")};
    CHECK_FALSE(PolicyMatches(OneMatch(PolicyAction::kAllow, star), c));
  }
}

TEST_CASE("Empty rules, clauses and matches follow ztunnel's corner cases", "[authz]") {
  Policy p;
  p.name = "p";
  p.namespace_name = "backend";
  SECTION("no rules: matches nothing") { CHECK_FALSE(PolicyMatches(p, Mtls())); }
  SECTION("a rule without clauses matches") {
    p.rules = {Rule{}};
    CHECK(PolicyMatches(p, Mtls()));
    CHECK(PolicyMatches(p, Plaintext()));
  }
  SECTION("a clause without matches counts as matched") {
    p.rules = {Rule{Clause{}}};
    CHECK(PolicyMatches(p, Mtls()));
  }
  SECTION("a clause of only empty matches does not match") {
    p.rules = {Rule{Clause{Match{}, Match{}}}};
    CHECK_FALSE(PolicyMatches(p, Mtls()));
  }
  SECTION("an empty match is skipped, another match in the clause can hit") {
    Match ports;
    ports.destination_ports = {8080};
    p.rules = {Rule{Clause{Match{}, ports}}};
    CHECK(PolicyMatches(p, Mtls()));
  }
  SECTION("every clause of a rule must hit") {
    Match ns;
    ns.namespaces = {S(Kind::kExact, "frontend")};
    Match port;
    port.destination_ports = {9090};
    p.rules = {Rule{Clause{ns}, Clause{port}}};
    CHECK_FALSE(PolicyMatches(p, Mtls()));
    p.rules.push_back(Rule{Clause{ns}});  // any rule is enough
    CHECK(PolicyMatches(p, Mtls()));
  }
}

TEST_CASE("Decisions: DENY over ALLOW, no ALLOW means allow, dry-run only reports", "[authz]") {
  Match frontend;
  frontend.namespaces = {S(Kind::kExact, "frontend")};
  Match port;
  port.destination_ports = {8080};
  Policy allow_frontend = OneMatch(PolicyAction::kAllow, frontend);
  allow_frontend.name = "allow-frontend";
  Policy deny_port = OneMatch(PolicyAction::kDeny, port);
  deny_port.name = "deny-8080";
  Policy allow_other = OneMatch(PolicyAction::kAllow, Match{.namespaces = {S(Kind::kExact, "x")}});
  allow_other.name = "allow-x";

  CHECK(Authorize(std::vector<const Policy*>{}, Mtls()).allowed);
  CHECK(Authorize({&allow_frontend}, Mtls()).allowed);

  Decision d = Authorize({&allow_frontend, &deny_port}, Mtls());
  CHECK_FALSE(d.allowed);
  CHECK(d.reason == "denied by backend/deny-8080");

  d = Authorize({&allow_other}, Mtls());
  CHECK_FALSE(d.allowed);
  CHECK(d.reason == "no ALLOW policy matched");
  CHECK(Authorize({&allow_other, &allow_frontend}, Mtls()).allowed);

  // Plaintext peers: identity ALLOWs cannot admit them.
  CHECK_FALSE(Authorize({&allow_frontend}, Plaintext()).allowed);

  // Dry-run: verdicts are reported, never enforced.
  Policy dry_deny = deny_port;
  dry_deny.dry_run = true;
  Policy dry_allow = allow_other;
  dry_allow.dry_run = true;
  d = Authorize({&dry_deny, &dry_allow}, Mtls());
  CHECK(d.allowed);  // the dry-run ALLOW does not count as an ALLOW policy either
  REQUIRE(d.dry_run.size() == 2);
  CHECK(d.dry_run[0] == "backend/deny-8080 would deny");
  CHECK(d.dry_run[1] == "backend/allow-x would not allow");
}

}  // namespace
}  // namespace zt::state

namespace zt::state {
namespace {

TEST_CASE("The port pre-filter never changes a verdict", "[authz]") {
  Match p80;
  p80.destination_ports = {80};
  Match p8080;
  p8080.destination_ports = {8080, 9090};
  Match ns;
  ns.namespaces = {StringMatch{StringMatch::Kind::kExact, "frontend"}};
  Match not80;
  not80.not_destination_ports = {80};
  const std::vector<std::vector<Rule>> shapes = {
      {},                                     // no rules
      {Rule{}},                               // empty rule
      {Rule{Clause{}}},                       // empty clause
      {Rule{Clause{p80}}},                    // one port
      {Rule{Clause{p80, p8080}}},             // union within a clause
      {Rule{Clause{p80}, Clause{p8080}}},     // disjoint: matches nothing
      {Rule{Clause{p8080}, Clause{ns}}},      // port and identity
      {Rule{Clause{p80}}, Rule{Clause{ns}}},  // second rule: any port
      {Rule{Clause{Match{}}}},                // only an empty match
      {Rule{Clause{Match{}, p80}}},           // empty match skipped
      {Rule{Clause{not80}}},                  // negative ports: no filter
      {Rule{Clause{p8080, ns}}, Rule{Clause{p80}, Clause{p80}}},
  };
  for (size_t i = 0; i < shapes.size(); ++i) {
    Policy plain;
    plain.name = "p";
    plain.rules = shapes[i];
    Policy prepared = plain;
    PreparePolicy(prepared);
    for (uint16_t port : {80, 8080, 9090, 15008}) {
      for (bool plaintext : {false, true}) {
        Connection c = plaintext ? Plaintext() : Mtls();
        c.destination_port = port;
        INFO("shape " << i << " port " << port << " plaintext " << plaintext);
        CHECK(PolicyMatches(prepared, c) == PolicyMatches(plain, c));
      }
    }
  }
  Policy one;
  one.rules = {Rule{Clause{p80, p8080}}};
  PreparePolicy(one);
  CHECK_FALSE(one.any_port);
  CHECK(one.only_ports == std::vector<uint16_t>{80, 8080, 9090});
}

}  // namespace
}  // namespace zt::state
