// ztunnel: wiring only. Parse options, probe io_uring, start the control plane, open
// listeners, start the workers, wait for a signal, drain, exit.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "ztunnel/admin/readiness.h"
#include "ztunnel/app/mesh_start.h"
#include "ztunnel/app/observability.h"
#include "ztunnel/app/startup.h"
#include "ztunnel/app/workers.h"
#include "ztunnel/config/local_config.h"
#include "ztunnel/control/control_plane.h"
#include "ztunnel/core/drain.h"
#include "ztunnel/core/duration.h"
#include "ztunnel/core/log.h"
#include "ztunnel/inpod/manager.h"
#include "ztunnel/io/probe.h"
#include "ztunnel/metrics/metrics.h"

using namespace zt;
using app::Fatal;

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
  io::UniqueFd outbound_fd = app::ListenOrDie(outbound_addr, "outbound");
  // Readiness (15021), metrics (15020) and admin (15000) answer from now on;
  // readiness says 500, naming what is pending, until everything is up.
  admin::Readiness readiness;
  readiness.Set("workers", true);
  metrics::Metrics metrics;
  metrics.RecordBuild(ZTUNNEL_VERSION);
  app::AdminView admin_view;
  app::Endpoints endpoints(opts, readiness, metrics, admin_view);
  const bool mesh_on = !opts.local_config.empty() || !opts.xds_address.empty();
  if (opts.inpod && !mesh_on) {
    Fatal(
        "--inpod (INPOD_ENABLED) needs --local-config (LOCAL_XDS_PATH) or --xds-address "
        "(XDS_ADDRESS): pods are served as the workloads the config names");
  }

  // The mesh: the control plane (config, certificates) and the node's inbound listeners.
  proxy::WorkerOptions worker_options = app::WorkerOptionsFrom(opts, metrics);
  app::MeshStart mesh;
  if (mesh_on) {
    app::StartMesh(opts, readiness, metrics, mesh, worker_options);
    admin_view.set_control(mesh.control.get());
  }
  control::ControlPlane* control = mesh.control.get();
  std::unique_ptr<app::DedicatedCapture> dedicated;
  if (opts.dedicated) dedicated = app::InstallDedicatedRules(opts);
  DrainTrigger drain;
  app::WorkerPool workers(opts.workers, outbound_fd.get(), worker_options, drain);
  const std::vector<proxy::Worker*>& serving = workers.serving();

  // In-pod mode: the ZDS client enrolls pods; each gets listeners in its namespace.
  std::unique_ptr<inpod::InpodManager> inpod_manager;
  if (opts.inpod) {
    inpod_manager = std::make_unique<inpod::InpodManager>(
        serving, control->state(), opts.node_name, opts.mark, opts.drain_timeout, &readiness);
    inpod_manager->set_metrics(&metrics);
    inpod_manager->set_max_pending(opts.max_pending_pods);
    inpod_manager->set_require_workload(opts.xds_address.empty());
    inpod_manager->set_config_refresh([control] { control->ReloadNow(); });
    admin_view.set_inpod(inpod_manager.get());
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
    admin_view.set_inpod(nullptr);
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
  workers.Join();
  endpoints.Stop();  // before what its handlers read goes away
  if (control) control->Stop();
  dedicated.reset();  // the pod's traffic flows uncaptured again
  ZT_INFO("app", "drained; exiting");
  return 0;
}
