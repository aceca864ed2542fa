#include "ztunnel/app/startup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ztunnel/config/local_config.h"
#include "ztunnel/core/log.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/iptables/capture.h"

namespace zt::app {

[[noreturn]] void Fatal(const std::string& message) {
  std::fprintf(stderr, "ztunnel: %s\n", message.c_str());
  std::exit(1);
}

void RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

const char* SignalName(int sig) { return sig == SIGTERM ? "SIGTERM" : "SIGINT"; }

io::SocketAddress ParseListenOrExit(const std::string& value, const char* flag,
                                    const char* example) {
  auto a = io::SocketAddress::Parse(value);
  if (!a) {
    std::fprintf(stderr, "ztunnel: invalid value \"%s\" for --%s: expected IP:PORT, e.g. %s\n",
                 value.c_str(), flag, example);
    std::exit(2);
  }
  return *a;
}

io::UniqueFd ListenOrDie(const io::SocketAddress& addr, const char* what) {
  // A predecessor killed just before frees its address within milliseconds (its
  // io_uring teardown); wait for that, not longer.
  constexpr std::chrono::seconds kListenPatience{5};
  auto fd = io::ListenPatiently(addr, io::ListenOptions{}, kListenPatience);
  if (!fd) {
    Fatal("cannot listen on " + addr.ToString() + " (" + what + "): " + fd.error().Message());
  }
  return std::move(fd).value();
}

DedicatedCapture::~DedicatedCapture() {
  std::string error;
  if (iptables::Uninstall(netns.get(), {}, &error)) {
    ZT_INFO("app", "dedicated mode: capture rules removed");
  } else {
    ZT_ERROR("app", "dedicated mode: removing the capture rules failed: {}", error);
  }
}

void CheckDedicated(config::Options& opts) {
  if (opts.inpod) Fatal("--proxy-mode dedicated and --inpod exclude each other");
  if (opts.local_config.empty() || opts.pod_name.empty() || opts.pod_namespace.empty()) {
    Fatal("--proxy-mode dedicated needs --local-config, --pod-name and --pod-namespace");
  }
  std::string error;
  auto state = config::LoadLocalConfig(opts.local_config, &error);
  if (!state) Fatal("invalid local config: " + error);
  const state::Workload* pod = nullptr;
  for (const state::Workload& w : state->workloads()) {
    if (w.namespace_name == opts.pod_namespace && w.name == opts.pod_name) pod = &w;
  }
  if (pod == nullptr) {
    Fatal("dedicated mode: no workload " + opts.pod_namespace + "/" + opts.pod_name + " in " +
          opts.local_config);
  }
  if (!opts.service_account.empty() && pod->service_account != opts.service_account) {
    Fatal("dedicated mode: " + opts.pod_namespace + "/" + opts.pod_name +
          " has service account \"" + pod->service_account + "\" in the config, not \"" +
          opts.service_account + "\"");
  }
  if (!opts.node_name.empty() && opts.node_name != pod->node) {
    Fatal("dedicated mode: --node-name \"" + opts.node_name + "\" but the config puts " +
          opts.pod_namespace + "/" + opts.pod_name + " on \"" + pod->node + "\"");
  }
  opts.node_name = pod->node;
}

std::unique_ptr<DedicatedCapture> InstallDedicatedRules(const config::Options& opts) {
  std::string error;
  auto capture = std::make_unique<DedicatedCapture>();
  capture->netns.reset(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!iptables::Install(capture->netns.get(), {}, {}, &error)) {
    capture->netns.reset();
    Fatal("dedicated mode: installing the capture rules failed: " + error);
  }
  ZT_INFO("app", "dedicated mode: serving {}/{}, capture rules installed", opts.pod_namespace,
          opts.pod_name);
  return capture;
}

void WaitForLocalConfig(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 || errno != ENOENT) return;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  const auto start = std::chrono::steady_clock::now();
  auto next_log = start;
  while (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_log) {
      ZT_INFO("app",
              "waiting for the local config {} (the node agent writes it); not ready until then",
              path);
      next_log = now + std::chrono::seconds(30);
    }
    const timespec tick{0, 100'000'000};
    const int sig = ::sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      ZT_INFO("app", "{} while waiting for the local config: exiting", SignalName(sig));
      std::exit(0);
    }
  }
  ZT_INFO("app", "local config {} appeared after {} ms", path,
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                start)
              .count());
}

std::vector<std::pair<std::string, std::string>> EnvWithPrefix(const std::string& prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos || kv.substr(0, prefix.size()) != prefix) continue;
    out.emplace_back(std::string(kv.substr(prefix.size(), eq - prefix.size())),
                     std::string(kv.substr(eq + 1)));
  }
  return out;
}

namespace {

std::vector<tls::Certificate> RootsOrDie(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) Fatal(std::string("cannot read ") + what + " " + path + ": " + std::strerror(errno));
  std::stringstream pem;
  pem << in.rdbuf();
  auto roots = tls::Certificate::ChainFromPem(pem.str());
  if (!roots) Fatal(std::string(what) + " " + path + " holds no PEM certificate");
  return std::move(roots).value();
}

// Lower-case header names: HTTP/2 refuses upper case.
std::vector<std::pair<std::string, std::string>> Headers(const std::string& prefix) {
  auto out = EnvWithPrefix(prefix);
  for (auto& [k, v] : out) {
    for (char& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::replace(k.begin(), k.end(), '_', '-');
  }
  return out;
}

}  // namespace

control::ControlOptions ControlFromOptions(const config::Options& opts) {
  control::ControlOptions c;
  c.local_config = opts.local_config;
  c.node = opts.node_name;
  if (!opts.xds_address.empty()) {
    control::XdsOptions x;
    x.channel.address = opts.xds_address;
    x.channel.server_name = opts.xds_server_name;
    x.channel.roots = RootsOrDie(opts.xds_root_cert, "istiod's root certificate (XDS_ROOT_CA)");
    x.token_path = opts.auth_token;
    x.cluster_id = opts.cluster_id;
    x.pod_name = opts.pod_name;
    x.pod_namespace = opts.pod_namespace;
    x.instance_ip = opts.instance_ip;
    x.node_name = opts.node_name;
    for (auto& [k, v] : EnvWithPrefix("ISTIO_META_")) x.metadata[k] = v;
    x.headers = Headers("XDS_HEADER_");
    c.xds = std::move(x);
  }
  if (!opts.ca_address.empty()) {
    control::IstioCaOptions ca;
    ca.channel.address = opts.ca_address;
    ca.channel.server_name = opts.ca_server_name;
    ca.channel.roots =
        RootsOrDie(opts.ca_root_cert, "the Istio CA's root certificate (CA_ROOT_CA)");
    ca.token_path = opts.auth_token;
    ca.cluster_id = opts.cluster_id;
    ca.ttl = opts.cert_ttl;
    ca.headers = Headers("CA_HEADER_");
    c.istio_ca = std::move(ca);
  }
  return c;
}

}  // namespace zt::app
