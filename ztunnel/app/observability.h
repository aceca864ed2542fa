// The node process's HTTP endpoints: readiness (15021), metrics (15020) and admin
// (15000, the config dump), and what the config dump reads as pieces come and go.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "ztunnel/admin/http_server.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/config/options.h"
#include "ztunnel/control/control_plane.h"
#include "ztunnel/inpod/manager.h"
#include "ztunnel/metrics/metrics.h"

namespace zt::app {

/// AdminView is what /config_dump reads; main sets and clears it as pieces come and go.
class AdminView {
 public:
  void set_control(control::ControlPlane* control);
  void set_inpod(inpod::InpodManager* inpod);
  /// Dump renders the config dump of what is there now.
  std::string Dump();

 private:
  std::mutex mu_;
  control::ControlPlane* control_ = nullptr;
  inpod::InpodManager* inpod_ = nullptr;
};

/// Endpoints serves the endpoints `opts` does not turn off, one thread and a budget
/// each. `readiness`, `metrics` and `view` must outlive it (or its Stop).
class Endpoints {
 public:
  /// Starts serving; fatal when an endpoint cannot listen.
  Endpoints(const config::Options& opts, admin::Readiness& readiness, metrics::Metrics& metrics,
            AdminView& view);
  /// Stop ends the server; its destructor waits for a running handler.
  void Stop() { http_.reset(); }

 private:
  // The metrics handler reports the server's own counters once the server exists.
  std::atomic<const admin::HttpServer*> server_for_metrics_{nullptr};
  std::unique_ptr<admin::HttpServer> http_;
};

}  // namespace zt::app
