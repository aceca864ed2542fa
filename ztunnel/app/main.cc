// ztunnel: wiring only. Parse options, probe io_uring, open listeners, start the
// workers, wait for a signal, drain, exit.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "ztunnel/admin/config_dump.h"
#include "ztunnel/admin/http_server.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/config/local_config.h"
#include "ztunnel/config/local_config_watcher.h"
#include "ztunnel/config/options.h"
#include "ztunnel/core/drain.h"
#include "ztunnel/core/duration.h"
#include "ztunnel/core/log.h"
#include "ztunnel/core/memory_reclaim.h"
#include "ztunnel/identity/ca.h"
#include "ztunnel/identity/cert_manager.h"
#include "ztunnel/inpod/manager.h"
#include "ztunnel/inpod/zds_client.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/probe.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/iptables/capture.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/mesh.h"
#include "ztunnel/proxy/worker.h"

namespace {

using namespace zt;

// How long start-up waits for a listen address still held by a predecessor: one
// kubelet restarted after a crash is freed within milliseconds (its io_uring teardown).
constexpr std::chrono::seconds kListenPatience{5};

// Fatal prints one line on stderr and exits non-zero: the contract for bad input.
[[noreturn]] void Fatal(const std::string& message) {
  std::fprintf(stderr, "ztunnel: %s\n", message.c_str());
  std::exit(1);
}

// RaiseFdLimit lifts the soft open-file limit to the hard one: every relayed
// connection needs two descriptors.
void RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

const char* SignalName(int sig) { return sig == SIGTERM ? "SIGTERM" : "SIGINT"; }

// MeshRuntime is everything HBONE needs that lives outside the workers: the state,
// the CA, the certificates, and the control thread that keeps certificates fresh
// and reloads the local config when the file changes.
struct MeshRuntime {
  state::StateStore state;
  metrics::Metrics* metrics = nullptr;
  std::unique_ptr<config::LocalConfigWatcher> watcher;
  std::unique_ptr<identity::CertManager> certs;
  proxy::Mesh mesh;
  io::UniqueFd inbound_listener;
  io::SocketAddress inbound_addr;
  io::UniqueFd plaintext_listener;
  io::SocketAddress plaintext_addr;
  std::thread refresher;
  std::mutex mu;
  std::mutex reload_mu;  // one reload at a time: the watcher is not thread-safe
  std::condition_variable wake;
  bool stop = false;
  // on_publish runs on the control thread after each published reload (set once the
  // workers serve; guarded by mu).
  std::function<void()> on_publish;
  // After a burst (a flood of connections), freed heap goes back to the kernel.
  MemoryReclaimer reclaimer;

  // ControlLoop renews certificates when due (half-life, or backoff after failures)
  // and polls the local config ten times a second.
  void ControlLoop() {
    std::unique_lock lock(mu);
    while (!stop) {
      lock.unlock();
      ReloadIfChanged();
      if (const size_t freed = reclaimer.Tick(); freed > 0) {
        ZT_DEBUG("app", "gave {} KiB of freed heap back to the kernel", freed >> 10);
      }
      const auto next = certs->Poll();
      lock.lock();
      // 100 ms (one stat of the file): a policy change written by the Kubernetes agent
      // must reach live connections well within a second.
      const auto cap = std::chrono::system_clock::now() + std::chrono::milliseconds(100);
      wake.wait_until(lock, std::min(next, cap), [this] { return stop; });
    }
  }

  // ReloadIfChanged publishes a changed config; a bad one is logged and ignored.
  // Called by the control loop and by the ZDS thread (a pod enrolled just after the
  // Kubernetes agent wrote it into the config).
  void ReloadIfChanged() {
    std::lock_guard reloading(reload_mu);
    std::shared_ptr<const state::State> next;
    std::string error;
    switch (watcher->Poll(&next, &error)) {
      case config::LocalConfigWatcher::Outcome::kUnchanged:
        return;
      case config::LocalConfigWatcher::Outcome::kRejected:
        ZT_ERROR("config", "rejected the new local config, keeping the previous one: {}", error);
        metrics->ConfigReload(false);
        return;
      case config::LocalConfigWatcher::Outcome::kReloaded:
        break;
    }
    state.Publish(next);
    metrics->ConfigReload(true);
    {
      std::lock_guard lock(mu);
      if (on_publish) on_publish();
    }
    IssueLocalCertificates(*next);
    ZT_INFO("config", "reloaded the local config: {} workloads, {} policies",
            next->workloads().size(), next->policies().size());
  }

  // IssueLocalCertificates makes sure every workload of this node has a certificate.
  size_t IssueLocalCertificates(const state::State& s) {
    size_t local = 0;
    for (const state::Workload& w : s.workloads()) {
      if (w.node != mesh.node) continue;
      ++local;
      const tls::SpiffeId id = proxy::WorkloadIdentity(w);
      if (certs->Current(id)) continue;
      std::string why;
      if (auto cert = certs->Fetch(id, &why); !cert) {
        ZT_WARN("identity", "cannot issue a certificate for {} (workload {}): {}; retrying",
                id.ToString(), w.uid, why.empty() ? cert.error().Message() : why);
      }
    }
    return local;
  }

  void Stop() {
    {
      std::lock_guard lock(mu);
      stop = true;
    }
    wake.notify_all();
    if (refresher.joinable()) refresher.join();
  }
};

// DedicatedCapture owns the capture rules of the pod a dedicated proxy serves: installed
// at start, removed at exit.
struct DedicatedCapture {
  io::UniqueFd netns;
  ~DedicatedCapture() {
    std::string error;
    if (iptables::Uninstall(netns.get(), {}, &error)) {
      ZT_INFO("app", "dedicated mode: capture rules removed");
    } else {
      ZT_ERROR("app", "dedicated mode: removing the capture rules failed: {}", error);
    }
  }
};

// CheckDedicated checks the pod is a workload of the config and makes this node's name
// the pod's node (so it is the workload served here). Before anything is bound.
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

// InstallDedicatedRules installs the pod's capture rules in the namespace this process
// runs in, once its listeners exist.
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

// WaitForLocalConfig waits, in --inpod mode, for the node agent to write the local
// config the first time (a DaemonSet's two pods start in any order), answering
// SIGTERM/SIGINT (blocked by now: main takes them with sigwait) by exiting cleanly.
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

// StartMesh loads the local config, opens the CA, issues the certificates of this
// node's workloads and opens the HBONE listener; any failure is fatal and named.
std::unique_ptr<MeshRuntime> StartMesh(const config::Options& opts, metrics::Metrics& metrics) {
  auto rt = std::make_unique<MeshRuntime>();
  rt->metrics = &metrics;
  rt->mesh.tcp_metrics = &metrics.tcp();
  std::string error;
  if (opts.inpod) WaitForLocalConfig(opts.local_config);
  // Watch from before the first read, so a change during start-up is not missed.
  rt->watcher = std::make_unique<config::LocalConfigWatcher>(opts.local_config);
  auto state = config::LoadLocalConfig(opts.local_config, &error);
  if (!state) Fatal("invalid local config: " + error);
  rt->state.Publish(state);

  auto parse = [](const std::string& value, const char* flag, const char* example) {
    auto a = io::SocketAddress::Parse(value);
    if (!a) {
      std::fprintf(stderr, "ztunnel: invalid value \"%s\" for --%s: expected IP:PORT, e.g. %s\n",
                   value.c_str(), flag, example);
      std::exit(2);
    }
    return *a;
  };
  rt->inbound_addr = parse(opts.inbound_listen, "inbound-listen", "0.0.0.0:15008");
  rt->plaintext_addr =
      parse(opts.inbound_plaintext_listen, "inbound-plaintext-listen", "0.0.0.0:15006");
  const io::SocketAddress* addr = &rt->inbound_addr;

  identity::LocalCaOptions ca_options;
  ca_options.directory = opts.ca_dir;
  ca_options.generate = opts.ca_generate;
  ca_options.trust_domain = opts.trust_domain;
  ca_options.leaf_ttl = opts.cert_ttl;
  std::string reason;
  auto ca = identity::LocalCa::Open(ca_options, &reason);
  if (!ca) Fatal("cannot open the CA in " + opts.ca_dir + ": " + reason);
  rt->certs = std::make_unique<identity::CertManager>(*ca);
  rt->mesh.state = &rt->state;
  rt->mesh.certs = rt->certs.get();
  rt->mesh.node = opts.node_name;
  rt->mesh.network = opts.network;

  const size_t local = rt->IssueLocalCertificates(*state);
  ZT_INFO("app", "local config {}: {} workloads, {} on this node (\"{}\")", opts.local_config,
          state->workloads().size(), local, opts.node_name);

  auto listener = io::ListenPatiently(*addr, io::ListenOptions{}, kListenPatience);
  if (!listener) {
    Fatal("cannot listen on " + addr->ToString() +
          " (inbound HBONE): " + listener.error().Message());
  }
  rt->inbound_listener = std::move(listener).value();
  auto plaintext = io::ListenPatiently(rt->plaintext_addr, io::ListenOptions{}, kListenPatience);
  if (!plaintext) {
    Fatal("cannot listen on " + rt->plaintext_addr.ToString() +
          " (inbound plaintext): " + plaintext.error().Message());
  }
  rt->plaintext_listener = std::move(plaintext).value();
  rt->refresher = std::thread([r = rt.get()] { r->ControlLoop(); });
  return rt;
}

// AdminContext is what the admin endpoints read; the main thread fills it in as the
// pieces start and clears it before they go (the HTTP thread reads it under mu).
struct AdminContext {
  std::mutex mu;
  MeshRuntime* mesh = nullptr;
  inpod::InpodManager* inpod = nullptr;
};

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string ConfigDump(AdminContext& ctx) {
  std::lock_guard lock(ctx.mu);
  std::shared_ptr<const state::State> snapshot;
  std::vector<admin::CertSummary> certs;
  if (ctx.mesh != nullptr) {
    snapshot = ctx.mesh->state.Load();
    for (const auto& [id, st] : ctx.mesh->certs->Status()) {
      using S = identity::CertStatus::State;
      certs.push_back({id.ToString(),
                       st.state == S::kValid     ? "valid"
                       : st.state == S::kPending ? "pending"
                                                 : "refresh failing",
                       st.state == S::kPending ? "" : Rfc3339(st.not_after), st.failures,
                       st.last_error});
    }
  } else {
    snapshot = state::StateStore().Load();
  }
  std::vector<admin::PodSummary> pods;
  if (ctx.inpod != nullptr) pods = ctx.inpod->Summary();
  return admin::ConfigDumpJson(*snapshot, certs, pods);
}

// AdminHandler serves 15000 (DESIGN.md §4 "Ports"), bound to localhost.
admin::HttpHandler AdminHandler(AdminContext& ctx) {
  return [&ctx](const admin::HttpRequest& req) -> admin::HttpResponse {
    if (req.path == "/config_dump") return {200, "application/json", ConfigDump(ctx)};
    if (req.path == "/logging") {
      if (req.method == "POST" && !req.query.empty()) {
        const std::string text = req.Param("level");
        auto level = log::ParseLevel(text);
        if (!level) {
          return {400, "text/plain",
                  "unknown level \"" + text +
                      "\": expected level=trace, debug, info, warn, error or off (one level for "
                      "every scope)\n"};
        }
        log::SetLevel(*level);
        ZT_INFO("admin", "log level set to {} through /logging", log::LevelName(*level));
      }
      return {200, "text/plain",
              "current log level is " + std::string(log::LevelName(log::GetLevel())) + "\n"};
    }
    if (req.path == "/quitquitquit") {
      if (req.method != "POST") return {405, "text/plain", "use POST\n"};
      ZT_INFO("admin", "POST /quitquitquit: shutting down as on SIGTERM");
      ::kill(::getpid(), SIGTERM);  // the main thread's sigwait takes it
      return {200, "text/plain", "OK\n"};
    }
    if (req.path == "/") {
      return {200, "text/plain",
              "ztunnel admin: /config_dump, /logging[?level=...] (POST), /quitquitquit (POST)\n"};
    }
    return {404, "text/plain", "not found\n"};
  };
}

// RenderHttpStats renders the HTTP server's own counters in the Prometheus text format.
// They live in admin::HttpServer, not in metrics' registry: admin may not depend on
// metrics (the module table in docs/ARCHITECTURE.md).
std::string RenderHttpStats(const admin::HttpServer& http) {
  std::string out =
      "# HELP ztunnel_admin_connections_rejected_total Connections to the admin, metrics and "
      "readiness endpoints refused (budget: 503 past the connection limit; too_large: 431 or "
      "413; bad_request: 400), closed on a timeout or to make room for a new client "
      "(slow_headers: still sending headers while the budget was full), or not accepted "
      "(accept_error: out of fds or memory, then backed off).\n"
      "# TYPE ztunnel_admin_connections_rejected_total counter\n";
  auto line = std::back_inserter(out);
  for (size_t i = 0; i < http.size(); ++i) {
    const admin::HttpServer::Stats s = http.stats(i);
    const std::pair<const char*, uint64_t> reasons[] = {
        {"budget", s.rejected_budget},           {"header_timeout", s.header_timeouts},
        {"request_timeout", s.request_timeouts}, {"too_large", s.too_large},
        {"bad_request", s.bad_requests},         {"accept_error", s.accept_errors},
        {"slow_headers", s.slow_evicted}};
    for (const auto& [reason, n] : reasons) {
      fmt::format_to(line,
                     "ztunnel_admin_connections_rejected_total{{endpoint=\"{}\",reason=\"{}\"}} "
                     "{}\n",
                     http.name(i), reason, n);
    }
  }
  out +=
      "# HELP ztunnel_admin_connections_accepted_total Connections the admin, metrics and "
      "readiness endpoints served within their budget.\n"
      "# TYPE ztunnel_admin_connections_accepted_total counter\n";
  for (size_t i = 0; i < http.size(); ++i) {
    fmt::format_to(line, "ztunnel_admin_connections_accepted_total{{endpoint=\"{}\"}} {}\n",
                   http.name(i), http.stats(i).accepted);
  }
  out +=
      "# HELP ztunnel_admin_connections_active Connections open now on the admin, metrics and "
      "readiness endpoints, within their budget.\n"
      "# TYPE ztunnel_admin_connections_active gauge\n";
  for (size_t i = 0; i < http.size(); ++i) {
    fmt::format_to(line, "ztunnel_admin_connections_active{{endpoint=\"{}\"}} {}\n", http.name(i),
                   http.stats(i).active);
  }
  out +=
      "# HELP ztunnel_admin_requests_total Requests answered by the admin, metrics and "
      "readiness endpoints' handlers.\n"
      "# TYPE ztunnel_admin_requests_total counter\n";
  for (size_t i = 0; i < http.size(); ++i) {
    fmt::format_to(line, "ztunnel_admin_requests_total{{endpoint=\"{}\"}} {}\n", http.name(i),
                   http.stats(i).requests);
  }
  return out;
}

// MetricsHandler serves 15020: Prometheus text on /metrics and /stats/prometheus, the
// registry's metrics and then the HTTP server's counters once `http` is set. The server
// outlives every call: its destructor waits for a running handler.
admin::HttpHandler MetricsHandler(const metrics::Metrics& m,
                                  const std::atomic<const admin::HttpServer*>& http) {
  return [&m, &http](const admin::HttpRequest& req) -> admin::HttpResponse {
    if (req.path != "/metrics" && req.path != "/stats/prometheus") {
      return {404, "text/plain", "not found\n"};
    }
    std::string body = m.Render();
    if (const admin::HttpServer* server = http.load()) body += RenderHttpStats(*server);
    return {200, "text/plain; version=0.0.4; charset=utf-8", std::move(body)};
  };
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed =
      config::ParseOptions(argc, argv, [](const char* name) { return std::getenv(name); });
  if (auto* err = std::get_if<config::ParseError>(&parsed)) {
    std::fprintf(stderr, "ztunnel: %s\n", err->message.c_str());
    return 2;
  }
  config::Options opts = std::get<config::Options>(parsed);  // dedicated mode adjusts it
  if (opts.help) {
    std::fputs(config::HelpText().c_str(), stdout);
    return 0;
  }
  if (opts.version) {
    std::printf("ztunnel %s\n", ZTUNNEL_VERSION);
    return 0;
  }
  log::SetLevel(opts.log_level);
  log::SetFormat(opts.log_format);
  if (!opts.check_config.empty()) {
    // Like nginx -t / haproxy -c: validate without starting anything.
    std::string error;
    auto state = config::LoadLocalConfig(opts.check_config, &error);
    if (!state) {
      std::fprintf(stderr, "ztunnel: invalid local config: %s\n", error.c_str());
      return 1;
    }
    std::printf("%s: ok (%zu workloads, %zu policies)\n", opts.check_config.c_str(),
                state->workloads().size(), state->policies().size());
    return 0;
  }

  auto outbound_addr = io::SocketAddress::Parse(opts.outbound_listen);
  if (!outbound_addr) {
    std::fprintf(stderr,
                 "ztunnel: invalid value \"%s\" for --outbound-listen: expected IP:PORT, e.g. "
                 "127.0.0.1:15001 or [::1]:15001\n",
                 opts.outbound_listen.c_str());
    return 2;
  }

  if (const std::string problem = io::ProbeIoUring(); !problem.empty()) Fatal(problem);
  RaiseFdLimit();

  // Signals are taken by sigwait on the main thread only; workers never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Dedicated mode (the sidecar model): this process runs inside one pod's netns and
  // serves that pod only, with the pod's capture rules installed for its lifetime.
  if (opts.dedicated) CheckDedicated(opts);
  auto listener = io::ListenPatiently(*outbound_addr, io::ListenOptions{}, kListenPatience);
  if (!listener) {
    Fatal("cannot listen on " + outbound_addr->ToString() +
          " (outbound): " + listener.error().Message());
  }
  // Readiness (15021), metrics (15020) and admin (15000) answer from now on;
  // readiness says 500, naming what is pending, until everything is up.
  admin::Readiness readiness;
  readiness.Set("workers", true);
  metrics::Metrics metrics;
  metrics.RecordBuild(ZTUNNEL_VERSION);
  AdminContext admin_ctx;
  std::vector<admin::HttpEndpoint> endpoints;
  auto endpoint = [&](const std::string& listen, const char* name, admin::HttpHandler h) {
    if (listen != "off") endpoints.push_back({name, *io::SocketAddress::Parse(listen), h});
  };
  endpoint(opts.readiness_listen, "readiness", admin::ReadinessHandler(readiness));
  std::atomic<const admin::HttpServer*> http_for_metrics{nullptr};
  endpoint(opts.metrics_listen, "metrics", MetricsHandler(metrics, http_for_metrics));
  endpoint(opts.admin_listen, "admin", AdminHandler(admin_ctx));
  // One thread per endpoint, each with its own connection budget and timeouts, so a
  // flood on one port cannot fail another's probe.
  std::unique_ptr<admin::HttpServer> http;
  if (!endpoints.empty()) {
    std::string error;
    http = admin::HttpServer::Start(std::move(endpoints), &error);
    if (!http) Fatal(error);
    http_for_metrics.store(http.get());
  }
  if (opts.inpod && opts.local_config.empty()) {
    Fatal(
        "--inpod (INPOD_ENABLED) needs --local-config (LOCAL_XDS_PATH): pods are served "
        "as the workloads the config names");
  }
  std::unique_ptr<MeshRuntime> mesh;
  if (!opts.local_config.empty()) mesh = StartMesh(opts, metrics);
  {
    std::lock_guard lock(admin_ctx.mu);
    admin_ctx.mesh = mesh.get();
  }
  std::unique_ptr<DedicatedCapture> dedicated;
  if (opts.dedicated) dedicated = InstallDedicatedRules(opts);

  proxy::WorkerOptions worker_options;
  if (mesh) {
    worker_options.mesh = &mesh->mesh;
    worker_options.inbound_listen_fd = mesh->inbound_listener.get();
    worker_options.inbound_plaintext_listen_fd = mesh->plaintext_listener.get();
    worker_options.inbound.mark = opts.mark;
    worker_options.inbound.connect_timeout = opts.connect_timeout;
    worker_options.inbound.max_handshakes = opts.max_handshakes;
    worker_options.inbound.response_baggage = opts.response_baggage;
    worker_options.pool.mark = opts.mark;
    worker_options.pool.connect_timeout = opts.connect_timeout;
  }
  worker_options.loop.buffer_size = opts.buffer_size;
  worker_options.loop.buffer_count = opts.buffer_count;
  worker_options.outbound.mark = opts.mark;
  worker_options.outbound.connect_timeout = opts.connect_timeout;
  worker_options.overload = &metrics.overload();
  worker_options.connect_limits = {opts.max_pending_connects, opts.max_pending_connects_per_source};

  DrainTrigger drain;
  proxy::Balancer balancer(opts.workers);
  // Workers outlive all worker threads: a worker may post to another until the end.
  std::vector<std::unique_ptr<proxy::Worker>> workers;
  for (int i = 0; i < opts.workers; ++i) {
    workers.push_back(std::make_unique<proxy::Worker>(i, listener->get(), worker_options,
                                                      drain.Watcher(), balancer));
  }
  std::vector<std::thread> threads;
  std::vector<std::atomic<bool>> ready(static_cast<size_t>(opts.workers));
  std::atomic<int> failed{0};
  for (int i = 0; i < opts.workers; ++i) {
    threads.emplace_back([&, i] {
      if (Status s = workers[static_cast<size_t>(i)]->Run(&ready[static_cast<size_t>(i)]); !s) {
        ZT_ERROR("proxy", "worker {} could not start: {}", i, s.error().Message());
        failed.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < opts.workers; ++i) {
    while (!ready[static_cast<size_t>(i)].load() && failed.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (failed.load() > 0) {
    drain.Start(std::chrono::milliseconds(0));
    for (auto& t : threads) t.join();
    Fatal("a worker failed to start (see the log above)");
  }
  if (mesh) {
    // Policy changes re-check live inbound tunnels on every worker.
    std::lock_guard lock(mesh->mu);
    mesh->on_publish = [&workers] {
      for (auto& w : workers) w->StateChanged();
    };
    // A reload may have been published while the workers started: sync them once.
    mesh->on_publish();
  }
  ZT_INFO("app", "ztunnel {} ready: outbound on {}, {}, {} workers, drain timeout {}",
          ZTUNNEL_VERSION, outbound_addr->ToString(),
          mesh ? "inbound HBONE on " + mesh->inbound_addr.ToString() + ", inbound plaintext on " +
                     mesh->plaintext_addr.ToString()
               : "no mesh (passthrough only)",
          opts.workers, FormatDuration(opts.drain_timeout));

  // In-pod mode: the ZDS client enrolls pods; each gets listeners in its namespace.
  std::unique_ptr<inpod::InpodManager> inpod_manager;
  std::unique_ptr<inpod::ZdsClient> zds;
  std::thread zds_thread;
  if (opts.inpod) {
    std::vector<proxy::Worker*> serving;
    for (auto& w : workers) serving.push_back(w.get());
    inpod_manager = std::make_unique<inpod::InpodManager>(
        serving, mesh->state, opts.node_name, opts.mark, opts.drain_timeout, &readiness);
    inpod_manager->set_metrics(&metrics);
    inpod_manager->set_max_pending(opts.max_pending_pods);
    if (mesh->watcher) {
      inpod_manager->set_config_refresh([rt = mesh.get()] { rt->ReloadIfChanged(); });
    }
    {
      std::lock_guard lock(mesh->mu);
      mesh->on_publish = [&workers, manager = inpod_manager.get()] {
        for (auto& w : workers) w->StateChanged();
        manager->ConfigChanged();
      };
    }
    {
      std::lock_guard lock(admin_ctx.mu);
      admin_ctx.inpod = inpod_manager.get();
    }
    zds = std::make_unique<inpod::ZdsClient>(opts.inpod_uds, *inpod_manager);
    zds_thread = std::thread([&zds] { zds->Run(); });
    ZT_INFO("app", "in-pod mode: enrolling pods from the ZDS socket {}", opts.inpod_uds);
  }

  readiness.Set("workers", false);

  int sig = 0;
  sigwait(&signals, &sig);
  readiness.Set("draining", true);
  ZT_INFO("app", "received {}: draining (stop accepting, live connections have {})",
          SignalName(sig), FormatDuration(opts.drain_timeout));
  if (zds) {
    // No more enrollments; pods' listeners close now, their live connections drain.
    zds->Stop();
    zds_thread.join();
    {
      std::lock_guard lock(admin_ctx.mu);
      admin_ctx.inpod = nullptr;
    }
    inpod_manager.reset();
  }
  drain.Start(opts.drain_timeout);

  // A second signal while draining ends the process at once.
  std::thread second([&] {
    int again = 0;
    sigwait(&signals, &again);
    ZT_WARN("app", "received {} while draining: exiting now", SignalName(again));
    std::_Exit(1);
  });
  second.detach();

  for (auto& t : threads) t.join();
  http.reset();  // before what its handlers read goes away
  if (mesh) mesh->Stop();
  dedicated.reset();  // the pod's traffic flows uncaptured again
  ZT_INFO("app", "drained; exiting");
  return 0;
}
