#include "ztunnel/config/local_config.h"

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
      {"workloads:\n- {name: a, workloadIps: 10.0.0.1}\n",
       "workloads[0].workloadIps: expected a list, got \"10.0.0.1\""},
      {"workloads:\n- {namespace: x}\n", "workloads[0]: needs a \"uid\" or a \"name\""},
      {"workloads:\n- {uid: u, name: [a]}\n", "workloads[0].name: expected a string, got a list"},
      {"workloads:\n- {uid: u}\n- {uid: u}\n", "duplicate workload uid \"u\""},
      {"workload: []\n", "config: unknown key \"workload\""},
      {"policies:\n- {name: p}\n",
       "policies: not supported by this build yet (only workloads are read)"},
      {"workloads: [\n", "line 2, column 1: end of sequence flow not found"},
  };
  for (const Case& c : cases) {
    INFO(c.yaml);
    std::string error;
    CHECK(ParseLocalConfig(c.yaml, &error) == nullptr);
    CHECK(error == c.error);
  }
}

TEST_CASE("Loading a missing local config file names the file", "[config]") {
  std::string error;
  CHECK(LoadLocalConfig("/nonexistent/zt.yaml", &error) == nullptr);
  CHECK(error == "/nonexistent/zt.yaml: cannot read the file");
}

}  // namespace
}  // namespace zt::config
