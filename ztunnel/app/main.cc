// ztunnel: wiring only. Parse options, probe io_uring, start the control plane, open
// listeners, start the workers, wait for a signal, drain, exit.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "ztunnel/admin/config_dump.h"
#include "ztunnel/admin/endpoints.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/app/startup.h"
#include "ztunnel/config/local_config.h"
#include "ztunnel/control/control_plane.h"
#include "ztunnel/core/drain.h"
#include "ztunnel/core/duration.h"
#include "ztunnel/core/log.h"
#include "ztunnel/identity/ca.h"
#include "ztunnel/inpod/manager.h"
#include "ztunnel/io/probe.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/worker.h"

using namespace zt;
using app::Fatal;

namespace {

// How long start-up waits for a listen address still held by a predecessor: one
// killed just before is freed within milliseconds (its io_uring teardown).
constexpr std::chrono::seconds kListenPatience{5};

io::UniqueFd ListenOrDie(const io::SocketAddress& addr, const char* what) {
  auto fd = io::ListenPatiently(addr, io::ListenOptions{}, kListenPatience);
  if (!fd)
    Fatal("cannot listen on " + addr.ToString() + " (" + what + "): " + fd.error().Message());
  return std::move(fd).value();
}

// AdminView is what /config_dump reads; main sets and clears it as pieces come and go.
struct AdminView {
  std::mutex mu;
  control::ControlPlane* control = nullptr;
  inpod::InpodManager* inpod = nullptr;
  std::string Dump() {
    std::lock_guard lock(mu);
    auto snapshot = control ? control->state().Load() : state::StateStore().Load();
    std::vector<admin::CertSummary> certs;
    if (control) certs = admin::SummarizeCerts(*control->certs().Load());
    return admin::ConfigDumpJson(*snapshot, certs,
                                 inpod ? inpod->Summary() : decltype(inpod->Summary()){});
  }
};

}  // namespace

int main(int argc, char** argv) {
  auto parsed =
      config::ParseOptions(argc, argv, [](const char* name) { return std::getenv(name); });
  if (auto* err = std::get_if<config::ParseError>(&parsed)) {
    std::fprintf(stderr, "ztunnel: %s\n", err->message.c_str());
    return 2;
  }
  config::Options opts = std::get<config::Options>(parsed);  // dedicated mode adjusts it
  if (opts.help) return std::fputs(config::HelpText().c_str(), stdout), 0;
  if (opts.version) return std::printf("ztunnel %s\n", ZTUNNEL_VERSION), 0;
  log::SetLevel(opts.log_level);
  log::SetFormat(opts.log_format);
  if (!opts.check_config.empty()) {  // like nginx -t: validate without starting anything
    std::string error;
    auto s = config::LoadLocalConfig(opts.check_config, &error);
    if (!s) return std::fprintf(stderr, "ztunnel: invalid local config: %s\n", error.c_str()), 1;
    std::printf("%s: ok (%zu workloads, %zu policies)\n", opts.check_config.c_str(),
                s->workloads().size(), s->policies().size());
    return 0;
  }
  const io::SocketAddress outbound_addr =
      app::ParseListenOrExit(opts.outbound_listen, "outbound-listen", "127.0.0.1:15001");
  if (const std::string problem = io::ProbeIoUring(); !problem.empty()) Fatal(problem);
  app::RaiseFdLimit();
  // Signals are taken by sigwait on the main thread only; no other thread sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Dedicated mode (the sidecar model): this process serves the one pod it runs in.
  if (opts.dedicated) app::CheckDedicated(opts);
  io::UniqueFd outbound_fd = ListenOrDie(outbound_addr, "outbound");
  // Readiness (15021), metrics (15020) and admin (15000) answer from now on;
  // readiness says 500, naming what is pending, until everything is up.
  admin::Readiness readiness;
  readiness.Set("workers", true);
  metrics::Metrics metrics;
  metrics.RecordBuild(ZTUNNEL_VERSION);
  AdminView admin_view;
  std::atomic<const admin::HttpServer*> http_for_metrics{nullptr};
  std::vector<admin::HttpEndpoint> endpoints;
  auto endpoint = [&](const std::string& listen, const char* name, admin::HttpHandler h) {
    if (listen != "off") endpoints.push_back({name, *io::SocketAddress::Parse(listen), h});
  };
  endpoint(opts.readiness_listen, "readiness", admin::ReadinessHandler(readiness));
  endpoint(opts.metrics_listen, "metrics",
           admin::MetricsHandler([&metrics] { return metrics.Render(); }, http_for_metrics));
  endpoint(opts.admin_listen, "admin",
           admin::AdminHandler([&admin_view] { return admin_view.Dump(); }));
  std::unique_ptr<admin::HttpServer> http;  // a thread and a budget per endpoint
  if (!endpoints.empty()) {
    std::string error;
    http = admin::HttpServer::Start(std::move(endpoints), &error);
    if (!http) Fatal(error);
    http_for_metrics.store(http.get());
  }
  const bool mesh_on = !opts.local_config.empty() || !opts.xds_address.empty();
  if (opts.inpod && !mesh_on) {
    Fatal(
        "--inpod (INPOD_ENABLED) needs --local-config (LOCAL_XDS_PATH) or --xds-address "
        "(XDS_ADDRESS): pods are served as the workloads the config names");
  }

  // The mesh: the control plane (config, certificates) and the node's inbound listeners.
  std::unique_ptr<control::ControlPlane> control;
  proxy::Mesh mesh;
  proxy::WorkerOptions worker_options;
  io::UniqueFd inbound_fd, plaintext_fd;
  if (mesh_on) {
    const auto inbound_addr =
        app::ParseListenOrExit(opts.inbound_listen, "inbound-listen", "0.0.0.0:15008");
    const auto plaintext_addr = app::ParseListenOrExit(opts.inbound_plaintext_listen,
                                                       "inbound-plaintext-listen", "0.0.0.0:15006");
    if (opts.inpod && opts.xds_address.empty()) app::WaitForLocalConfig(opts.local_config);
    std::string why;
    std::shared_ptr<identity::CaClient> ca;
    if (opts.ca_address.empty()) {
      auto local = identity::LocalCa::Open(
          {opts.ca_dir, opts.ca_generate, opts.trust_domain, opts.cert_ttl}, &why);
      if (!local) Fatal("cannot open the CA in " + opts.ca_dir + ": " + why);
      ca = *local;
    }
    if (!opts.xds_address.empty()) readiness.Set("xds", true);  // until istiod's first push
    control = control::ControlPlane::Start(app::ControlFromOptions(opts), ca, &why);
    if (!control) Fatal(why);
    if (opts.xds_address.empty()) {
      ZT_INFO("app", "local config {}: {} workloads, {} on this node (\"{}\")", opts.local_config,
              control->state().Load()->workloads().size(), control->local_workloads(),
              opts.node_name);
    } else {
      ZT_INFO("app", "state from istiod at {} (node \"{}\"), certificates from {}",
              opts.xds_address, opts.node_name,
              opts.ca_address.empty() ? "the local CA" : opts.ca_address);
    }
    mesh = {&control->state(), &control->certs(), opts.node_name, opts.network, &metrics.tcp()};
    inbound_fd = ListenOrDie(inbound_addr, "inbound HBONE");
    plaintext_fd = ListenOrDie(plaintext_addr, "inbound plaintext");
    worker_options.mesh = &mesh;
    worker_options.inbound_listen_fd = inbound_fd.get();
    worker_options.inbound_plaintext_listen_fd = plaintext_fd.get();
    worker_options.inbound = {.mark = opts.mark,
                              .connect_timeout = opts.connect_timeout,
                              .max_handshakes = opts.max_handshakes,
                              .response_baggage = opts.response_baggage};
    worker_options.pool = {.mark = opts.mark, .connect_timeout = opts.connect_timeout};
    worker_options.cert_wait = opts.connect_timeout;
    std::lock_guard lock(admin_view.mu);
    admin_view.control = control.get();
  }
  std::unique_ptr<app::DedicatedCapture> dedicated;
  if (opts.dedicated) dedicated = app::InstallDedicatedRules(opts);

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
  std::vector<proxy::Worker*> serving;
  for (int i = 0; i < opts.workers; ++i) {
    workers.push_back(std::make_unique<proxy::Worker>(i, outbound_fd.get(), worker_options,
                                                      drain.Watcher(), balancer));
    serving.push_back(workers.back().get());
  }
  std::vector<std::thread> threads;
  std::vector<std::atomic<bool>> ready(static_cast<size_t>(opts.workers));
  std::atomic<int> failed{0};
  for (size_t i = 0; i < workers.size(); ++i) {
    threads.emplace_back([&, i] {
      if (Status s = workers[i]->Run(&ready[i]); !s) {
        ZT_ERROR("proxy", "worker {} could not start: {}", i, s.error().Message());
        failed.fetch_add(1);
      }
    });
  }
  for (auto& r : ready) {
    while (!r.load() && failed.load() == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (failed.load() > 0) {
    drain.Start(std::chrono::milliseconds(0));
    for (auto& t : threads) t.join();
    Fatal("a worker failed to start (see the log above)");
  }

  // In-pod mode: the ZDS client enrolls pods; each gets listeners in its namespace.
  std::unique_ptr<inpod::InpodManager> inpod_manager;
  if (opts.inpod) {
    inpod_manager = std::make_unique<inpod::InpodManager>(
        serving, control->state(), opts.node_name, opts.mark, opts.drain_timeout, &readiness);
    inpod_manager->set_metrics(&metrics);
    inpod_manager->set_max_pending(opts.max_pending_pods);
    inpod_manager->set_require_workload(opts.xds_address.empty());
    inpod_manager->set_config_refresh([c = control.get()] { c->ReloadNow(); });
    std::lock_guard lock(admin_view.mu);
    admin_view.inpod = inpod_manager.get();
  }
  // What the control plane publishes reaches every worker (and the pods' manager);
  // policy changes re-check live inbound tunnels.
  auto hooks = [&](inpod::InpodManager* pods) -> control::ControlHooks {
    return {.config_reloaded = [&metrics](bool ok) { metrics.ConfigReload(ok); },
            .state_published =
                [&serving, pods] {
                  for (proxy::Worker* w : serving) w->StateChanged();
                  if (pods != nullptr) pods->ConfigChanged();
                },
            .certs_published =
                [&serving] {
                  for (proxy::Worker* w : serving) w->CertsChanged();
                },
            .synced = [&readiness] { readiness.Set("xds", false); }};
  };
  if (control) control->SetHooks(hooks(inpod_manager.get()));
  std::unique_ptr<inpod::ZdsClient> zds;
  std::thread zds_thread;
  if (inpod_manager) {
    zds = std::make_unique<inpod::ZdsClient>(opts.inpod_uds, *inpod_manager);
    zds_thread = std::thread([&zds] { zds->Run(); });
    ZT_INFO("app", "in-pod mode: enrolling pods from the ZDS socket {}", opts.inpod_uds);
  }
  ZT_INFO("app", "ztunnel {} ready: outbound on {}, {}, {} workers, drain timeout {}",
          ZTUNNEL_VERSION, outbound_addr.ToString(),
          control ? "inbound HBONE on " + opts.inbound_listen + ", inbound plaintext on " +
                        opts.inbound_plaintext_listen
                  : "no mesh (passthrough only)",
          opts.workers, FormatDuration(opts.drain_timeout));
  readiness.Set("workers", false);

  int sig = 0;
  sigwait(&signals, &sig);
  readiness.Set("draining", true);
  ZT_INFO("app", "received {}: draining (stop accepting, live connections have {})",
          app::SignalName(sig), FormatDuration(opts.drain_timeout));
  if (zds) {
    // No more enrollments; pods' listeners close now, their live connections drain.
    zds->Stop();
    zds_thread.join();
    {
      std::lock_guard lock(admin_view.mu);
      admin_view.inpod = nullptr;
    }
    control->SetHooks(hooks(nullptr));  // returns once nothing publishes into the manager
    inpod_manager.reset();
  }
  drain.Start(opts.drain_timeout);
  // A second signal while draining ends the process at once.
  std::thread([&] {
    int again = 0;
    sigwait(&signals, &again);
    ZT_WARN("app", "received {} while draining: exiting now", app::SignalName(again));
    std::_Exit(1);
  }).detach();
  for (auto& t : threads) t.join();
  http.reset();  // before what its handlers read goes away
  if (control) control->Stop();
  dedicated.reset();  // the pod's traffic flows uncaptured again
  ZT_INFO("app", "drained; exiting");
  return 0;
}
