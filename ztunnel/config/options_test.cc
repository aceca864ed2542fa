#include "ztunnel/config/options.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

namespace zt::config {
namespace {

using namespace std::chrono_literals;

struct Run {
  std::vector<std::string> args;
  std::map<std::string, std::string> env;

  ParseResult Parse() const {
    std::vector<const char*> argv = {"ztunnel"};
    for (const auto& a : args) argv.push_back(a.c_str());
    return ParseOptions(static_cast<int>(argv.size()), argv.data(), [this](const char* name) {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  }
};

Options Ok(const Run& run) {
  auto r = run.Parse();
  if (auto* err = std::get_if<ParseError>(&r)) FAIL("unexpected error: " << err->message);
  return std::get<Options>(r);
}

std::string Err(const Run& run) {
  auto r = run.Parse();
  REQUIRE(std::holds_alternative<ParseError>(r));
  return std::get<ParseError>(r).message;
}

TEST_CASE("Defaults hold with no flags and no env", "[config]") {
  Options o = Ok({});
  CHECK(o.workers == 2);
  CHECK(o.outbound_listen == "127.0.0.1:15001");
  CHECK(o.mark == 1337);
  CHECK(o.connect_timeout == 10s);
  CHECK(o.drain_timeout == 5s);
  CHECK(o.log_level == log::Level::kInfo);
  CHECK_FALSE(o.help);
}

TEST_CASE("Flags and env vars set options and flags win", "[config]") {
  Options o = Ok({{"--workers", "4", "--log-level=debug"},
                  {{"ZTUNNEL_WORKERS", "8"}, {"ZTUNNEL_CONNECT_TIMEOUT", "250ms"}}});
  CHECK(o.workers == 4);
  CHECK(o.log_level == log::Level::kDebug);
  CHECK(o.connect_timeout == 250ms);
  CHECK(Ok({{}, {{"ZTUNNEL_WORKERS", "8"}}}).workers == 8);
}

TEST_CASE("Mesh flags read Istio's variable names", "[config]") {
  Options d = Ok({});
  CHECK(d.local_config.empty());
  CHECK(d.inbound_listen == "0.0.0.0:15008");
  CHECK(d.ca_dir == "/etc/cacerts");
  CHECK_FALSE(d.ca_generate);
  CHECK(d.cert_ttl == 24h);
  Options o = Ok({{"--ca-generate", "--node-name", "n1"},
                  {{"LOCAL_XDS_PATH", "/x.yaml"},
                   {"SECRET_TTL", "2h"},
                   {"NODE_NAME", "ignored"},
                   {"NETWORK", "net1"},
                   {"TRUST_DOMAIN", "example.org"}}});
  CHECK(o.local_config == "/x.yaml");
  CHECK(o.ca_generate);
  CHECK(o.node_name == "n1");
  CHECK(o.network == "net1");
  CHECK(o.trust_domain == "example.org");
  CHECK(o.cert_ttl == 2h);
  CHECK_FALSE(Ok({{"--ca-generate=false"}}).ca_generate);
  CHECK(Err({{}, {{"ZTUNNEL_CA_GENERATE", "yes"}}}) ==
        "invalid value \"yes\" for ZTUNNEL_CA_GENERATE (for --ca-generate): expected true or "
        "false");
  CHECK(Err({{"--cert-ttl", "10s"}}) ==
        "invalid value \"10s\" for --cert-ttl: expected a duration of at least 1m and at most "
        "8760h, such as 24h");
}

TEST_CASE("Istio's control plane reads Istio's ztunnel variables", "[config]") {
  Options d = Ok({});
  CHECK(d.xds_address.empty());
  CHECK(d.ca_address.empty());
  Options o = Ok({{},
                  {{"XDS_ADDRESS", "https://istiod.istio-system.svc:15012/"},
                   {"ALT_XDS_HOSTNAME", "istiod.example"},
                   {"CLUSTER_ID", "c1"},
                   {"ISTIO_META_CLUSTER_ID", "c2"}}});
  CHECK(o.xds_address == "istiod.istio-system.svc:15012");
  // The CA is istiod's xDS address by default, and so is the name its certificate has.
  CHECK(o.ca_address == "istiod.istio-system.svc:15012");
  CHECK(o.ca_server_name == "istiod.example");
  CHECK(o.ca_root_cert == o.xds_root_cert);
  CHECK(o.cluster_id == "c2");
  // A CA of its own: its own name (the host of CA_ADDRESS unless ALT_CA_HOSTNAME).
  Options ca = Ok({{},
                   {{"XDS_ADDRESS", "10.0.0.1:15012"},
                    {"CA_ADDRESS", "10.0.0.2:15012"},
                    {"ALT_XDS_HOSTNAME", "istiod.example"}}});
  CHECK(ca.ca_server_name.empty());
  CHECK(
      Ok({{"--ca-server-name", "ca.example"}, {{"CA_ADDRESS", "10.0.0.2:15012"}}}).ca_server_name ==
      "ca.example");
  CHECK(Err({{}, {{"XDS_ADDRESS", "http://istiod:15010"}}}) ==
        "invalid value \"http://istiod:15010\" for XDS_ADDRESS (for --xds-address): expected "
        "https://HOST:PORT or HOST:PORT (istiod speaks TLS only on 15012)");
  CHECK(Err({{"--xds-address", "istiod:15012"}, {{"LOCAL_XDS_PATH", "/x.yaml"}}})
            .find("exclude each other") != std::string::npos);
}

TEST_CASE("Observability endpoints and log format have Istio's defaults", "[config]") {
  Options d = Ok({});
  CHECK(d.admin_listen == "127.0.0.1:15000");
  CHECK(d.metrics_listen == "0.0.0.0:15020");
  CHECK(d.readiness_listen == "0.0.0.0:15021");
  CHECK(d.log_format == log::Format::kText);
  Options o = Ok({{"--admin-listen", "127.0.0.1:0", "--metrics-listen=off"},
                  {{"ZTUNNEL_LOG_FORMAT", "json"}}});
  CHECK(o.admin_listen == "127.0.0.1:0");
  CHECK(o.metrics_listen == "off");
  CHECK(o.log_format == log::Format::kJson);
  CHECK(Err({{"--log-format", "xml"}}) ==
        "invalid value \"xml\" for --log-format: expected text or json");
  CHECK(Err({{}, {{"ZTUNNEL_METRICS_LISTEN", "localhost"}}}) ==
        "invalid value \"localhost\" for ZTUNNEL_METRICS_LISTEN (for --metrics-listen): expected "
        "IP:PORT, e.g. 0.0.0.0:15021, or off");
}

TEST_CASE("Drain timeout follows the termination grace period", "[config]") {
  CHECK(Ok({{}, {{"TERMINATION_GRACE_PERIOD_SECONDS", "30"}}}).drain_timeout == 25s);
  CHECK(Ok({{}, {{"TERMINATION_GRACE_PERIOD_SECONDS", "3"}}}).drain_timeout == 0s);
  CHECK(
      Ok({{"--drain-timeout", "2s"}, {{"TERMINATION_GRACE_PERIOD_SECONDS", "30"}}}).drain_timeout ==
      2s);
}

TEST_CASE("Bad values name the flag or variable and the expectation", "[config]") {
  CHECK(Err({{"--workers", "zero"}}) ==
        "invalid value \"zero\" for --workers: expected an integer from 1 to 256");
  CHECK(Err({{}, {{"ZTUNNEL_WORKERS", "0"}}}) ==
        "invalid value \"0\" for ZTUNNEL_WORKERS (for --workers): expected an integer from 1 to "
        "256");
  CHECK(Err({{"--connect-timeout", "soon"}}).find("--connect-timeout") != std::string::npos);
  CHECK(Err({{"--log-level", "loud"}}).find("trace, debug") != std::string::npos);
  CHECK(Err({{"--buffer-count", "1000"}}).find("power of two") != std::string::npos);
  CHECK(Err({{}, {{"TERMINATION_GRACE_PERIOD_SECONDS", "x"}}})
            .find("TERMINATION_GRACE_PERIOD_SECONDS") != std::string::npos);
}

TEST_CASE("Durations and numbers out of range are refused, never wrapped", "[config]") {
  // Regression (issue 15, defect 12): a signed overflow (UBSan) and "drain timeout -6s".
  CHECK(Err({{}, {{"TERMINATION_GRACE_PERIOD_SECONDS", "99999999999999"}}}) ==
        "invalid value \"99999999999999\" for TERMINATION_GRACE_PERIOD_SECONDS: expected whole "
        "seconds, at most 31536000 (365 days)");
  CHECK(Err({{}, {{"TERMINATION_GRACE_PERIOD_SECONDS", "9223372036854775807"}}})
            .find("at most 31536000") != std::string::npos);
  CHECK(Ok({{}, {{"TERMINATION_GRACE_PERIOD_SECONDS", "31536000"}}}).drain_timeout ==
        std::chrono::seconds(31536000 - 5));
  CHECK(Err({{"--drain-timeout", "9223372036854775807ms"}}) ==
        "invalid value \"9223372036854775807ms\" for --drain-timeout: expected a duration such "
        "as 500ms, 10s or 1m, at most 8760h");
  CHECK(Err({{"--connect-timeout", "8761h"}}).find("at most 8760h") != std::string::npos);
  CHECK(Err({{}, {{"SECRET_TTL", "100000h"}}}).find("at most 8760h") != std::string::npos);
  CHECK(Err({{"--mark", "4294967296"}}).find("unsigned 32-bit") != std::string::npos);
  CHECK(Err({{"--workers", "18446744073709551616"}}).find("1 to 256") != std::string::npos);
  CHECK(Err({{"--max-handshakes", "1000001"}}) ==
        "invalid value \"1000001\" for --max-handshakes: expected an integer from 0 to 1000000");
  CHECK(Ok({{"--max-pending-connects", "0"}}).max_pending_connects == 0);
}

TEST_CASE("Unknown flags and stray arguments are errors", "[config]") {
  CHECK(Err({{"--no-such-flag"}}).find("no-such-flag") != std::string::npos);
  CHECK(Err({{"stray"}}) == "unexpected argument \"stray\" (see --help)");
  CHECK(Err({{"--workers"}}).find("workers") != std::string::npos);  // missing value
}

TEST_CASE("Help lists every flag with its env var", "[config]") {
  const std::string help = HelpText();
  CHECK(help.find("--outbound-listen") != std::string::npos);
  CHECK(help.find("ZTUNNEL_OUTBOUND_LISTEN") != std::string::npos);
  CHECK(Ok({{"--help"}}).help);
  CHECK(Ok({{"--version"}}).version);
}

}  // namespace
}  // namespace zt::config
