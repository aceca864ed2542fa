#include "ztunnel/app/startup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "ztunnel/config/local_config.h"
#include "ztunnel/core/log.h"
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

}  // namespace zt::app
