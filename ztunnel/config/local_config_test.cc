#include "ztunnel/config/local_config.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>

namespace zt::config {
namespace {

TEST_CASE("The local config reads workloads with their identity, addresses and protocol",
          "[config]") {
  std::string error;
  auto s = ParseLocalConfig(R"(
workloads:
- uid: cluster1//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: sleep
  trustDomain: example.org
  workloadIps: ["10.10.0.1", "fd00::1"]
  protocol: HBONE
  node: node-a
  canonicalName: sleep
  status: Healthy
- name: legacy
  namespace: other
  workloadIps: [10.10.0.2]
)",
                            &error);
  INFO(error);
  REQUIRE(s);
  const state::Workload* c = s->FindWorkload("", *IpAddr::Parse("fd00::1"));
  REQUIRE(c);
  CHECK(c->uid == "cluster1//v1/Pod/default/client");
  CHECK(c->service_account == "sleep");
  CHECK(c->trust_domain == "example.org");
  CHECK(c->node == "node-a");
  CHECK(c->protocol == state::Protocol::kHbone);
  const state::Workload* l = s->FindWorkload("", *IpAddr::Parse("10.10.0.2"));
  REQUIRE(l);
  CHECK(l->uid == "other/legacy");
  CHECK(l->protocol == state::Protocol::kTcp);
}

TEST_CASE("Empty YAML documents around the config are fine", "[config]") {
  std::string error;
  auto s = ParseLocalConfig("---\nworkloads:\n- {name: a, workloadIps: [10.0.0.1]}\n---\n", &error);
  REQUIRE(s != nullptr);
  CHECK(error.empty());
  CHECK(s->workloads().size() == 1);
  // The string-match tags are still read where they belong.
  s = ParseLocalConfig(
      "policies:\n- name: p\n  rules: [[[{principals: [!Prefix cluster.local/ns/a/]}]]]\n", &error);
  CHECK(s != nullptr);
  CHECK(error.empty());
}

TEST_CASE("An empty local config is an empty state", "[config]") {
  std::string error;
  auto s = ParseLocalConfig("", &error);
  REQUIRE(s);
  CHECK(s->workloads().empty());
}

TEST_CASE("Local config errors name the offending field", "[config]") {
  struct Case {
    const char* yaml;
    const char* error;
  };
  const Case cases[] = {
      {"workloads:\n- {name: a, workloadIps: [10.0.0.1]}\n- {name: b, workloadIps: [10.0.0.2, "
       "10.0.0.300]}\n",
       "workloads[1].workloadIps[1]: \"10.0.0.300\" is not an IP address"},
      {"workloads:\n- {name: a, colour: red}\n", "workloads[0]: unknown key \"colour\""},
      {"workloads:\n- {name: a, protocol: QUIC}\n",
       "workloads[0].protocol: \"QUIC\" is not one of TCP, HBONE"},
      {"workloads:\n- {name: a, workloadType: Deployment}\n",
       "workloads[0].workloadType: \"Deployment\" is not a lower-case kind such as deployment, "
       "cronjob, pod or job"},
      {"workloads:\n- {name: a, workloadIps: 10.0.0.1}\n",
       "workloads[0].workloadIps: expected a list, got \"10.0.0.1\""},
      {"workloads:\n- {namespace: x}\n", "workloads[0]: needs a \"uid\" or a \"name\""},
      {"workloads:\n- {uid: u, name: [a]}\n", "workloads[0].name: expected a string, got a list"},
      {"workloads:\n- {uid: u}\n- {uid: u}\n", "duplicate workload uid \"u\""},
      {"workload: []\n", "config: unknown key \"workload\""},
      {"services:\n- {name: s}\n", "services[0]: needs a \"hostname\""},
      {"services:\n- {name: s, hostname: h, vips: [10.96.0.1]}\n",
       "services[0].vips[0]: \"10.96.0.1\" is not network/ip (e.g. \"/10.96.0.10\")"},
      {"services:\n- {name: s, hostname: h, ports: {80: http}}\n",
       "services[0].ports.80: \"http\" is not a port (0-65535)"},
      {"services:\n- {name: s, hostname: h, subjectAltNames: [web]}\n",
       "services[0].subjectAltNames[0]: \"web\" is not a SPIFFE id (spiffe://...)"},
      {"services:\n- {name: s, hostname: h, waypoint: {address: x}}\n",
       "services[0].waypoint: not supported by this build yet"},
      {"services:\n- {name: s, namespace: a, hostname: h}\n- {name: t, namespace: a, hostname: "
       "h}\n",
       "duplicate service \"a/h\""},
      {"workloads:\n- {name: w, waypoint: {address: 10.0.0.9}}\n",
       "workloads[0].waypoint: not supported by this build yet"},
      {"workloads:\n- {name: w, applicationTunnel: {protocol: PROXY, port: 15088}}\n",
       "workloads[0].applicationTunnel.protocol: only NONE is supported by this build"},
      {"workloads:\n- {name: w, services: {echo: {80: 8080}}}\n",
       "workloads[0].services: \"echo\" is not namespace/hostname"},
      {"policies:\n- {namespace: x}\n", "policies[0]: needs a \"name\""},
      {"policies:\n- {name: p, action: Audit}\n",
       "policies[0].action: \"Audit\" is not one of Allow, Deny"},
      {"policies:\n- {name: p, scope: Cluster}\n",
       "policies[0].scope: \"Cluster\" is not one of Global, Namespace, WorkloadSelector"},
      {"policies:\n- {name: p, dryRun: maybe}\n",
       "policies[0].dryRun: expected true or false, got \"maybe\""},
      {"policies:\n- name: p\n  rules: [[[{sourceIps: [10.0.0.1/8]}]]]\n",
       "policies[0].rules[0][0][0].sourceIps[0]: \"10.0.0.1/8\" is not a CIDR or IP address"},
      {"policies:\n- name: p\n  rules: [[[{destinationPorts: [70000]}]]]\n",
       "policies[0].rules[0][0][0].destinationPorts[0]: \"70000\" is not a port (0-65535)"},
      {"policies:\n- name: p\n  rules: [[[{principals: [{Regex: a.*}]}]]]\n",
       "policies[0].rules[0][0][0].principals[0]: \"Regex\" is not one of Exact, Prefix, Suffix, "
       "Presence"},
      {"policies:\n- name: p\n  rules: [[[{sourcePorts: [1]}]]]\n",
       "policies[0].rules[0][0][0]: unknown key \"sourcePorts\""},
      {"policies:\n- name: p\n  rules: [[[{serviceAccounts: [{namespace: a}]}]]]\n",
       "policies[0].rules[0][0][0].serviceAccounts[0]: needs both \"namespace\" and "
       "\"serviceAccount\""},
      {"policies:\n- {name: p, namespace: a}\n- {name: p, namespace: a}\n",
       "duplicate policy \"a/p\""},
      {"workloads:\n- {name: w, authorizationPolicies: [a/missing]}\n",
       "workloads[0].authorizationPolicies[0]: no policy \"a/missing\" in this file (expected "
       "namespace/name)"},
      {"workloads: [\n", "line 2, column 1: end of sequence flow not found"},
      // Issue 15, defect 8: what YAML would otherwise drop or misread silently.
      {"workloads: []\n---\npolicies:\n- {name: deny-all, action: Deny}\n",
       "line 3, column 1: a second YAML document (after ---) is not supported: everything must "
       "be in one document, or part of the config would be ignored"},
      {"policies:\n- name: p\n  action: Deny\n  action: Allow\n",
       "line 4, column 3: duplicate key \"action\" (YAML would silently keep only the first)"},
      {"workloads:\n- {name: a, name: b}\n",
       "line 2, column 13: duplicate key \"name\" (YAML would silently keep only the first)"},
      {"workloads:\n- name: a\n  capacity: !!str 3\n",
       "line 3, column 13: tag \"tag:yaml.org,2002:str\" is not allowed here (tags are read only "
       "as !Exact, !Prefix, !Suffix or !Presence on policy string matches)"},
      {"workloads:\n- name: !Exact a\n",
       "line 2, column 9: tag \"!Exact\" is not allowed here (tags are read only as !Exact, "
       "!Prefix, !Suffix or !Presence on policy string matches)"},
  };
  for (const Case& c : cases) {
    INFO(c.yaml);
    std::string error;
    CHECK(ParseLocalConfig(c.yaml, &error) == nullptr);
    CHECK(error == c.error);
  }
}

TEST_CASE("Policies read in both string-match spellings and apply by scope", "[config]") {
  std::string error;
  auto s = ParseLocalConfig(R"(
workloads:
- uid: w1
  name: api
  namespace: backend
  workloadIps: [10.0.0.1]
  authorizationPolicies: [backend/only-web]
- {uid: w2, name: db, namespace: backend, workloadIps: [10.0.0.2]}
policies:
- name: only-web
  namespace: backend
  scope: WorkloadSelector
  action: Allow
  rules:
  - - - principals:
        - !Exact cluster.local/ns/frontend/sa/web
        - Suffix: /sa/admin
        notNamespaces: [!Prefix kube-]
    - - destinationPorts: [8080]
        sourceIps: [10.1.0.0/16, 10.2.0.9]
- name: deny-all-dry
  namespace: istio-system
  scope: Global
  action: Deny
  dryRun: true
  rules: [[]]
- name: ns-wide
  namespace: backend
  action: Deny
  rules:
  - - - principals: [{Presence: {}}, !Presence ""]
        notServiceAccounts: [{namespace: ops, serviceAccount: robot}]
)",
                            &error);
  INFO(error);
  REQUIRE(s);
  REQUIRE(s->policies().size() == 3);
  REQUIRE(s->FindPolicy("backend/only-web"));
  const state::Policy& only_web = *s->FindPolicy("backend/only-web");
  CHECK(only_web.scope == state::PolicyScope::kWorkloadSelector);
  REQUIRE(only_web.rules.size() == 1);
  REQUIRE(only_web.rules[0].size() == 2);  // two clauses
  const state::Match& m = only_web.rules[0][0][0];
  REQUIRE(m.principals.size() == 2);
  CHECK(m.principals[0].kind == state::StringMatch::Kind::kExact);
  CHECK(m.principals[0].value == "cluster.local/ns/frontend/sa/web");
  CHECK(m.principals[1].kind == state::StringMatch::Kind::kSuffix);
  CHECK(m.not_namespaces[0].kind == state::StringMatch::Kind::kPrefix);
  CHECK(only_web.rules[0][1][0].source_ips.size() == 2);
  CHECK(only_web.rules[0][1][0].destination_ports == std::vector<uint16_t>{8080});
  REQUIRE(s->FindPolicy("istio-system/deny-all-dry"));
  const state::Policy& dry = *s->FindPolicy("istio-system/deny-all-dry");
  CHECK(dry.dry_run);
  CHECK(dry.rules.size() == 1);
  CHECK(dry.rules[0].empty());
  REQUIRE(s->FindPolicy("backend/ns-wide"));
  const state::Match& presence = s->FindPolicy("backend/ns-wide")->rules[0][0][0];
  CHECK(presence.principals[0].kind == state::StringMatch::Kind::kPresence);
  CHECK(presence.principals[1].kind == state::StringMatch::Kind::kPresence);
  CHECK(presence.not_service_accounts[0].service_account == "robot");

  // Scope: api gets the global, the namespace one and its selector; db not the selector.
  auto names = [](const state::PolicySet& ps) {
    std::vector<std::string> out;
    for (const auto* p : ps.Policies()) out.push_back(p->Key());
    return out;
  };
  CHECK(
      names(s->PoliciesFor(*s->FindByUid("w1"))) ==
      std::vector<std::string>{"istio-system/deny-all-dry", "backend/ns-wide", "backend/only-web"});
  CHECK(names(s->PoliciesFor(*s->FindByUid("w2"))) ==
        std::vector<std::string>{"istio-system/deny-all-dry", "backend/ns-wide"});
}

TEST_CASE("A file in Istio's local config format with every key is accepted", "[config]") {
  std::string error;
  auto s = LoadLocalConfig(ZTUNNEL_SOURCE_DIR "/ztunnel/config/testdata/istio-local-format.yaml",
                           &error);
  INFO(error);
  REQUIRE(s);
  CHECK(s->workloads().size() == 2);
  REQUIRE(s->services().size() == 1);
  const state::Service& cart = s->services()[0];
  CHECK(cart.ports.at(80) == 8080);
  REQUIRE(s->Endpoints(cart).size() == 1);
  CHECK(s->Endpoints(cart)[0].workload->name == "cart-7d9f");
  CHECK(s->FindService("", *IpAddr::Parse("10.96.4.20")) == &cart);
  CHECK(s->policies().size() == 2);
  REQUIRE(s->FindPolicy("shop/cart-callers"));
  CHECK(s->FindPolicy("shop/cart-callers")->rules[0][0][0].not_destination_ports ==
        std::vector<uint16_t>{9090});
}

TEST_CASE("Loading a missing local config file names the file", "[config]") {
  std::string error;
  CHECK(LoadLocalConfig("/nonexistent/zt.yaml", &error) == nullptr);
  CHECK(error == "/nonexistent/zt.yaml: cannot read the file");
}

// Found by the fuzz seeds (fuzz/corpus/local_config/alias.yaml): the strict walk
// followed a self-referencing alias until the stack overflowed.
// Found by fuzz/local_config_fuzz.cc: yaml-cpp's LoadAll looped (allocating) forever.
TEST_CASE("Input the YAML parser cannot get past is refused instead of hanging", "[config]") {
  std::string error;
  CHECK(ParseLocalConfig("&ser,viceAccounts:\xf2\x1d\n", &error) == nullptr);
  CHECK(error == "line 1, column 5: the YAML parser cannot get past this point");
  // Empty documents around the one that counts are still fine.
  CHECK(ParseLocalConfig("---\n---\nworkloads: []\n---\n", &error) != nullptr);
}

TEST_CASE("Self-referencing aliases and alias bombs are refused like deep nesting", "[config]") {
  std::string error;
  CHECK(ParseLocalConfig("&a [*a]\n", &error) == nullptr);
  CHECK(error.find("nested deeper than 64 levels (or an alias that contains itself)") !=
        std::string::npos);
  CHECK(ParseLocalConfig("workloads: &w [{name: a, services: *w}]\n", &error) == nullptr);
  CHECK(error.find("nested deeper than 64 levels") != std::string::npos);
  CHECK(ParseLocalConfig(std::string(100, '[') + std::string(100, ']'), &error) == nullptr);
  CHECK(error.find("nested deeper than 64 levels") != std::string::npos);
  // Ten times more nodes per level: 10^7 once expanded, from a few hundred bytes.
  std::string bomb = "x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 7; ++i) {
    bomb += fmt::format("x{}: &a{} [*a{}", i, i, i - 1);
    for (int j = 1; j < 10; ++j) bomb += fmt::format(", *a{}", i - 1);
    bomb += "]\n";
  }
  CHECK(ParseLocalConfig(bomb, &error) == nullptr);
  CHECK(error.find("more than 1000000 YAML nodes once aliases are expanded") != std::string::npos);
}

}  // namespace
}  // namespace zt::config
