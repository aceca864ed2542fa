#include "ztunnel/config/options.h"

#include <fmt/format.h>

#include <charconv>
#include <cxxopts.hpp>
#include <optional>
#include <vector>

#include "ztunnel/core/duration.h"
#include "ztunnel/core/ip_port.h"

namespace zt::config {
namespace {

// One row per flag: the single source for parsing, env names and help.
struct Flag {
  const char* name;
  const char* env;
  const char* help;
  const char* placeholder;
};

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      {"workers", "ZTUNNEL_WORKERS", "data-plane threads, one io_uring each (default 2)", "N"},
      {"outbound-listen", "ZTUNNEL_OUTBOUND_LISTEN",
       "address of the outbound capture listener (default 127.0.0.1:15001)", "IP:PORT"},
      {"mark", "ZTUNNEL_MARK",
       "SO_MARK on upstream sockets so capture rules skip them; 0 disables (default 1337)", "N"},
      {"connect-timeout", "ZTUNNEL_CONNECT_TIMEOUT", "upstream connect timeout (default 10s)",
       "DURATION"},
      {"drain-timeout", "ZTUNNEL_DRAIN_TIMEOUT",
       "how long live connections may finish after SIGTERM (default: "
       "TERMINATION_GRACE_PERIOD_SECONDS minus 5s, or 5s)",
       "DURATION"},
      {"log-level", "ZTUNNEL_LOG_LEVEL", "trace, debug, info, warn, error or off (default info)",
       "LEVEL"},
      {"log-format", "ZTUNNEL_LOG_FORMAT",
       "text (tab-separated, the default) or json (one object per line, access-log fields "
       "as keys)",
       "FORMAT"},
      {"buffer-size", "ZTUNNEL_BUFFER_SIZE",
       "bytes per receive buffer, 4096..1048576 (default 32768)", "BYTES"},
      {"buffer-count", "ZTUNNEL_BUFFER_COUNT",
       "receive buffers per worker, a power of two up to 32768 (default 256)", "N"},
      {"local-config", "LOCAL_XDS_PATH",
       "local config YAML (workloads) that turns the mesh on: HBONE out and in (default: "
       "none, plain passthrough only)",
       "FILE"},
      {"inbound-listen", "ZTUNNEL_INBOUND_LISTEN",
       "address of the inbound HBONE listener, used with --local-config (default 0.0.0.0:15008)",
       "IP:PORT"},
      {"readiness-listen", "ZTUNNEL_READINESS_LISTEN",
       "address of the readiness endpoint /healthz/ready (default 0.0.0.0:15021; \"off\": none)",
       "IP:PORT"},
      {"admin-listen", "ZTUNNEL_ADMIN_LISTEN",
       "address of the admin endpoints /config_dump, /logging, /quitquitquit (default "
       "127.0.0.1:15000; keep it on localhost; \"off\": none)",
       "IP:PORT"},
      {"metrics-listen", "ZTUNNEL_METRICS_LISTEN",
       "address of the Prometheus endpoint /metrics and /stats/prometheus (default "
       "0.0.0.0:15020; \"off\": none)",
       "IP:PORT"},
      {"inbound-plaintext-listen", "ZTUNNEL_INBOUND_PLAINTEXT_LISTEN",
       "address of the inbound plaintext capture listener, used with --local-config (default "
       "0.0.0.0:15006)",
       "IP:PORT"},
      {"node-name", "NODE_NAME", "this node's name: workloads with this node are served here",
       "NAME"},
      {"network", "NETWORK", "the network this node's workloads are in (default empty)", "NAME"},
      {"trust-domain", "TRUST_DOMAIN", "trust domain of a generated CA (default cluster.local)",
       "DOMAIN"},
      {"ca-dir", "ZTUNNEL_CA_DIR",
       "CA in Istio's plug-in layout: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem "
       "(default /etc/cacerts)",
       "DIR"},
      {"ca-generate", "ZTUNNEL_CA_GENERATE",
       "generate a CA in --ca-dir (key mode 0600) if it holds none (default false)", "BOOL"},
      {"cert-ttl", "SECRET_TTL", "lifetime of workload certificates (default 24h)", "DURATION"},
      {"proxy-mode", "ZTUNNEL_PROXY_MODE",
       "shared (one node process for every pod, the default) or dedicated (one proxy inside "
       "one pod's network namespace: the sidecar model; needs --pod-name and --pod-namespace)",
       "MODE"},
      {"pod-name", "POD_NAME", "dedicated mode: the name of the pod this proxy serves", "NAME"},
      {"pod-namespace", "POD_NAMESPACE", "dedicated mode: the pod's namespace", "NS"},
      {"service-account", "SERVICE_ACCOUNT",
       "dedicated mode: the pod's service account (checked against the config)", "SA"},
      {"inpod", "INPOD_ENABLED",
       "serve enrolled pods inside their network namespaces, as the ZDS agent enrolls them "
       "(needs --local-config; default false)",
       "BOOL"},
      {"inpod-uds", "INPOD_UDS",
       "the ZDS socket the enrollment agent listens on (default /var/run/ztunnel/ztunnel.sock)",
       "PATH"},
      {"max-pending-connects", "ZTUNNEL_MAX_PENDING_CONNECTS",
       "upstream connects in flight per worker; more are refused at once (default 2048; 0: "
       "unbounded)",
       "N"},
      {"max-pending-connects-per-source", "ZTUNNEL_MAX_PENDING_CONNECTS_PER_SOURCE",
       "upstream connects in flight per worker for one source workload (default 1024; 0: "
       "unbounded)",
       "N"},
      {"max-handshakes", "ZTUNNEL_MAX_HANDSHAKES",
       "inbound TLS handshakes in flight per worker; more connections are closed at once "
       "(default 512; 0: unbounded)",
       "N"},
      {"response-baggage", "ENABLE_RESPONSE_BAGGAGE",
       "inbound HBONE 200 answers carry the destination workload's baggage header, as Istio's "
       "ztunnel sends (default true)",
       "BOOL"},
      {"xds-address", "XDS_ADDRESS",
       "istiod's xDS address (https://HOST:PORT or HOST:PORT, e.g. "
       "https://istiod.istio-system.svc:15012): workloads, services and policies come from "
       "istiod over delta xDS instead of --local-config",
       "URL"},
      {"ca-address", "CA_ADDRESS",
       "Istio's CA (default: --xds-address when it is set): workload certificates from istiod "
       "instead of the local CA in --ca-dir",
       "URL"},
      {"xds-root-cert", "XDS_ROOT_CA",
       "PEM file with the root istiod's serving certificate chains to (the istio-ca-root-cert "
       "ConfigMap; default ./var/run/secrets/istio/root-cert.pem)",
       "FILE"},
      {"ca-root-cert", "CA_ROOT_CA",
       "PEM file with the root of Istio's CA (default: --xds-root-cert)", "FILE"},
      {"xds-server-name", "ALT_XDS_HOSTNAME",
       "the name istiod's certificate must have (default: the host of --xds-address)", "NAME"},
      {"ca-server-name", "ALT_CA_HOSTNAME",
       "the name the CA's certificate must have (default: --xds-server-name when the CA is "
       "--xds-address, else the host of --ca-address)",
       "NAME"},
      {"auth-token", "AUTH_TOKEN",
       "service-account token (audience istio-ca) sent to istiod, read again for every stream "
       "and request (default ./var/run/secrets/tokens/istio-token)",
       "FILE"},
      {"cluster-id", "CLUSTER_ID", "this cluster's id, sent to istiod (default Kubernetes)", "ID"},
      {"instance-ip", "INSTANCE_IP", "this node proxy's pod IP, in the xDS node id", "IP"},
      {"max-pending-pods", "ZTUNNEL_MAX_PENDING_PODS",
       "enrolled pods waiting to be set up (not in the config yet); more are NACKed (default "
       "256; 0: unbounded)",
       "N"},
  };
  return flags;
}

// ParseBool reads true/1 and false/0, as the BOOL flags take them.
std::optional<bool> ParseBool(const std::string& text) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  return std::nullopt;
}

std::optional<uint64_t> ParseUnsigned(const std::string& text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// Invalid names the flag, its variable, the bad value and what was expected.
ParseError Invalid(const Flag& flag, bool from_env, const std::string& value,
                   const char* expected) {
  const std::string origin =
      from_env ? fmt::format("{} (for --{})", flag.env, flag.name) : fmt::format("--{}", flag.name);
  return ParseError{
      fmt::format("invalid value \"{}\" for {}: expected {}", value, origin, expected)};
}

}  // namespace

std::string HelpText() {
  std::string out =
      "ztunnel: a node-level ambient service-mesh tunnel.\n\n"
      "Usage: ztunnel [FLAGS]\n\n"
      "Every flag can also be set by the environment variable named after it.\n\n"
      "Flags:\n";
  for (const Flag& f : Flags()) {
    out +=
        fmt::format("  --{} {}\n      {}\n      env: {}\n", f.name, f.placeholder, f.help, f.env);
  }
  out +=
      "  --check-config FILE\n      validate a local config file (exit 0, or 1 with the error) "
      "and exit\n  --help\n      print this help and exit\n  --version\n      print the "
      "version and exit\n";
  return out;
}

ParseResult ParseOptions(int argc, const char* const* argv, const EnvLookup& env) {
  cxxopts::Options parser("ztunnel");
  auto adder = parser.add_options();
  for (const Flag& f : Flags()) {
    if (std::string_view(f.placeholder) == "BOOL") {
      adder(f.name, f.help, cxxopts::value<std::string>()->implicit_value("true"));
    } else {
      adder(f.name, f.help, cxxopts::value<std::string>());
    }
  }
  adder("check-config", "validate a local config file and exit", cxxopts::value<std::string>());
  adder("help", "print help");
  adder("version", "print the version");

  Options out;
  std::optional<cxxopts::ParseResult> cli;
  try {
    cli = parser.parse(argc, argv);
  } catch (const std::exception& e) {
    return ParseError{std::string(e.what()) + " (see --help)"};
  }
  if (!cli->unmatched().empty()) {
    return ParseError{fmt::format("unexpected argument \"{}\" (see --help)", cli->unmatched()[0])};
  }
  out.help = cli->count("help") > 0;
  out.version = cli->count("version") > 0;
  if (cli->count("check-config") > 0) out.check_config = (*cli)["check-config"].as<std::string>();

  if (const char* grace = env("TERMINATION_GRACE_PERIOD_SECONDS"); grace != nullptr) {
    auto secs = ParseUnsigned(grace);
    const auto max_secs = std::chrono::duration_cast<std::chrono::seconds>(kMaxDuration).count();
    if (!secs || *secs > static_cast<uint64_t>(max_secs)) {
      return ParseError{fmt::format(
          "invalid value \"{}\" for TERMINATION_GRACE_PERIOD_SECONDS: expected whole seconds, at "
          "most {} (365 days)",
          grace, max_secs)};
    }
    out.drain_timeout = std::chrono::seconds(*secs > 5 ? *secs - 5 : 0);
  }

  for (const Flag& f : Flags()) {
    std::string value;
    bool from_env = false;
    if (cli->count(f.name) > 0) {
      value = (*cli)[f.name].as<std::string>();
    } else if (const char* v = env(f.env); v != nullptr) {
      value = v;
      from_env = true;
    } else {
      continue;
    }
    const std::string name = f.name;
    if (name == "workers") {
      auto n = ParseUnsigned(value);
      if (!n || *n < 1 || *n > 256) return Invalid(f, from_env, value, "an integer from 1 to 256");
      out.workers = static_cast<int>(*n);
    } else if (name == "outbound-listen") {
      out.outbound_listen = value;  // checked by the caller, which knows socket addresses
    } else if (name == "mark") {
      auto n = ParseUnsigned(value);
      if (!n || *n > UINT32_MAX) return Invalid(f, from_env, value, "an unsigned 32-bit integer");
      out.mark = static_cast<uint32_t>(*n);
    } else if (name == "connect-timeout" || name == "drain-timeout") {
      auto d = ParseDuration(value);
      if (!d) {
        return Invalid(f, from_env, value, "a duration such as 500ms, 10s or 1m, at most 8760h");
      }
      (name == "connect-timeout" ? out.connect_timeout : out.drain_timeout) = *d;
    } else if (name == "log-level") {
      auto level = log::ParseLevel(value);
      if (!level) {
        return Invalid(f, from_env, value, "one of trace, debug, info, warn, error, off");
      }
      out.log_level = *level;
    } else if (name == "log-format") {
      auto format = log::ParseFormat(value);
      if (!format) return Invalid(f, from_env, value, "text or json");
      out.log_format = *format;
    } else if (name == "buffer-size") {
      auto n = ParseUnsigned(value);
      if (!n || *n < 4096 || *n > 1048576) {
        return Invalid(f, from_env, value, "a byte count from 4096 to 1048576");
      }
      out.buffer_size = static_cast<uint32_t>(*n);
    } else if (name == "buffer-count") {
      auto n = ParseUnsigned(value);
      if (!n || *n == 0 || *n > 32768 || (*n & (*n - 1)) != 0) {
        return Invalid(f, from_env, value, "a power of two from 1 to 32768");
      }
      out.buffer_count = static_cast<uint32_t>(*n);
    } else if (name == "local-config") {
      out.local_config = value;
    } else if (name == "inbound-listen") {
      out.inbound_listen = value;
    } else if (name == "readiness-listen" || name == "admin-listen" || name == "metrics-listen") {
      if (value != "off" && !IpPort::Parse(value)) {
        return Invalid(f, from_env, value, "IP:PORT, e.g. 0.0.0.0:15021, or off");
      }
      (name == "readiness-listen" ? out.readiness_listen
       : name == "admin-listen"   ? out.admin_listen
                                  : out.metrics_listen) = value;
    } else if (name == "inbound-plaintext-listen") {
      out.inbound_plaintext_listen = value;
    } else if (name == "node-name") {
      out.node_name = value;
    } else if (name == "network") {
      out.network = value;
    } else if (name == "trust-domain") {
      if (value.empty()) return Invalid(f, from_env, value, "a non-empty trust domain");
      out.trust_domain = value;
    } else if (name == "ca-dir") {
      if (value.empty()) return Invalid(f, from_env, value, "a directory");
      out.ca_dir = value;
    } else if (name == "ca-generate") {
      const auto b = ParseBool(value);
      if (!b) return Invalid(f, from_env, value, "true or false");
      out.ca_generate = *b;
    } else if (name == "proxy-mode") {
      if (value == "shared") {
        out.dedicated = false;
      } else if (value == "dedicated") {
        out.dedicated = true;
      } else {
        return Invalid(f, from_env, value, "shared or dedicated");
      }
    } else if (name == "pod-name") {
      out.pod_name = value;
    } else if (name == "pod-namespace") {
      out.pod_namespace = value;
    } else if (name == "service-account") {
      out.service_account = value;
    } else if (name == "response-baggage") {
      const auto b = ParseBool(value);
      if (!b) return Invalid(f, from_env, value, "true or false");
      out.response_baggage = *b;
    } else if (name == "inpod") {
      const auto b = ParseBool(value);
      if (!b) return Invalid(f, from_env, value, "true or false");
      out.inpod = *b;
    } else if (name == "inpod-uds") {
      if (value.empty()) return Invalid(f, from_env, value, "a socket path");
      out.inpod_uds = value;
    } else if (name == "max-pending-connects" || name == "max-pending-connects-per-source" ||
               name == "max-handshakes" || name == "max-pending-pods") {
      auto n = ParseUnsigned(value);
      if (!n || *n > 1'000'000) return Invalid(f, from_env, value, "an integer from 0 to 1000000");
      (name == "max-pending-connects"              ? out.max_pending_connects
       : name == "max-pending-connects-per-source" ? out.max_pending_connects_per_source
       : name == "max-handshakes"                  ? out.max_handshakes
                                  : out.max_pending_pods) = static_cast<uint32_t>(*n);
    } else if (name == "xds-address" || name == "ca-address") {
      std::string address = value;
      if (address.rfind("https://", 0) == 0) address = address.substr(8);
      while (!address.empty() && address.back() == '/') address.pop_back();
      if (value.rfind("http://", 0) == 0 || address.empty() ||
          address.find(':') == std::string::npos || address.find('/') != std::string::npos) {
        return Invalid(f, from_env, value,
                       "https://HOST:PORT or HOST:PORT (istiod speaks TLS only on 15012)");
      }
      (name == "xds-address" ? out.xds_address : out.ca_address) = address;
    } else if (name == "xds-root-cert" || name == "ca-root-cert" || name == "auth-token") {
      if (value.empty()) return Invalid(f, from_env, value, "a file");
      (name == "xds-root-cert"  ? out.xds_root_cert
       : name == "ca-root-cert" ? out.ca_root_cert
                                : out.auth_token) = value;
    } else if (name == "xds-server-name" || name == "ca-server-name") {
      (name == "xds-server-name" ? out.xds_server_name : out.ca_server_name) = value;
    } else if (name == "cluster-id") {
      if (value.empty()) return Invalid(f, from_env, value, "a non-empty cluster id");
      out.cluster_id = value;
    } else if (name == "instance-ip") {
      if (!IpAddr::Parse(value)) return Invalid(f, from_env, value, "an IP address");
      out.instance_ip = value;
    } else if (name == "cert-ttl") {
      auto d = ParseDuration(value);
      if (!d || *d < std::chrono::seconds(60)) {
        return Invalid(f, from_env, value,
                       "a duration of at least 1m and at most 8760h, such as 24h");
      }
      out.cert_ttl = std::chrono::duration_cast<std::chrono::seconds>(*d);
    }
  }
  // Istio's ztunnel reads the cluster id from ISTIO_META_CLUSTER_ID first.
  if (const char* id = env("ISTIO_META_CLUSTER_ID"); id != nullptr && *id != '\0') {
    out.cluster_id = id;
  }
  if (!out.xds_address.empty() && out.ca_address.empty()) out.ca_address = out.xds_address;
  if (out.ca_server_name.empty() && out.ca_address == out.xds_address) {
    out.ca_server_name = out.xds_server_name;
  }
  if (out.ca_root_cert.empty()) out.ca_root_cert = out.xds_root_cert;
  if (!out.xds_address.empty() && !out.local_config.empty()) {
    return ParseError{
        "--xds-address (XDS_ADDRESS) and --local-config (LOCAL_XDS_PATH) exclude each other: "
        "the state comes from istiod or from the file"};
  }
  if (out.connect_timeout.count() == 0) {
    return ParseError{"--connect-timeout must be greater than 0"};
  }
  return out;
}

}  // namespace zt::config
