// Command-line flags and their environment variables (Kubernetes habit: every flag
// can also come from the pod spec's env). A flag on the command line wins over its
// variable; both win over the default.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>

#include "ztunnel/core/log.h"

namespace zt::config {

/// Options is everything the ztunnel binary can be told at start-up.
struct Options {
  int workers = 2;
  std::string outbound_listen = "127.0.0.1:15001";
  uint32_t mark = 1337;
  std::chrono::milliseconds connect_timeout{10'000};
  /// drain_timeout defaults to TERMINATION_GRACE_PERIOD_SECONDS minus 5 s, else 5 s.
  std::chrono::milliseconds drain_timeout{5'000};
  log::Level log_level = log::Level::kInfo;
  log::Format log_format = log::Format::kText;
  uint32_t buffer_size = 32 * 1024;
  uint32_t buffer_count = 256;
  /// local_config is the local config YAML (workloads...); empty = no mesh: every
  /// outbound connection is a plain passthrough and no HBONE listener opens.
  std::string local_config;
  std::string inbound_listen = "0.0.0.0:15008";
  /// readiness_listen serves /healthz/ready; "off" disables it.
  std::string readiness_listen = "0.0.0.0:15021";
  /// admin_listen serves /config_dump, /logging, /quitquitquit (localhost: it can stop
  /// the process); metrics_listen serves /metrics and /stats/prometheus. "off": none.
  std::string admin_listen = "127.0.0.1:15000";
  std::string metrics_listen = "0.0.0.0:15020";
  std::string inbound_plaintext_listen = "0.0.0.0:15006";
  std::string node_name;
  std::string network;
  /// trust_domain names a generated CA root.
  std::string trust_domain = "cluster.local";
  std::string ca_dir = "/etc/cacerts";
  bool ca_generate = false;
  /// dedicated: one proxy for one pod, inside its netns (--proxy-mode dedicated).
  bool dedicated = false;
  std::string pod_name, pod_namespace, service_account;
  /// inpod: serve pods the ZDS agent enrolls, inside their network namespaces.
  bool inpod = false;
  std::string inpod_uds = "/var/run/ztunnel/ztunnel.sock";
  std::chrono::seconds cert_ttl{24 * 3600};
  /// Overload bounds (0: unbounded). Pending upstream connects per worker and per
  /// source workload; TLS handshakes in flight per worker; pods waiting to be set up.
  uint32_t max_pending_connects = 2048;
  uint32_t max_pending_connects_per_source = 1024;
  uint32_t max_handshakes = 512;
  uint32_t max_pending_pods = 256;
  /// response_baggage: inbound 200 answers carry the destination's baggage (Istio's
  /// ENABLE_RESPONSE_BAGGAGE, on by default).
  bool response_baggage = true;
  /// Istio's control plane (empty: standalone). Addresses are HOST:PORT.
  std::string xds_address, ca_address;
  std::string xds_root_cert = "./var/run/secrets/istio/root-cert.pem";
  std::string ca_root_cert;  // default: xds_root_cert
  std::string xds_server_name;
  std::string ca_server_name;  // default: xds_server_name when the CA is istiod's xDS address
  std::string auth_token = "./var/run/secrets/tokens/istio-token";
  std::string cluster_id = "Kubernetes";
  std::string instance_ip;
  bool help = false;
  bool version = false;
  /// check_config: validate this local config file, print the verdict, exit.
  std::string check_config;
};

/// ParsedOptions is the parsed options, or one line saying what was wrong.
struct ParseError {
  std::string message;
};
using ParseResult = std::variant<Options, ParseError>;

/// EnvLookup returns an environment variable's value, or null when unset.
using EnvLookup = std::function<const char*(const char* name)>;

/// ParseOptions reads argv and the environment. It never throws and never exits.
ParseResult ParseOptions(int argc, const char* const* argv, const EnvLookup& env);

/// HelpText is the --help output.
std::string HelpText();

}  // namespace zt::config
