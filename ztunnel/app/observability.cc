#include "ztunnel/app/observability.h"

#include <vector>

#include "ztunnel/admin/config_dump.h"
#include "ztunnel/admin/endpoints.h"
#include "ztunnel/app/startup.h"

namespace zt::app {

void AdminView::set_control(control::ControlPlane* control) {
  std::lock_guard lock(mu_);
  control_ = control;
}

void AdminView::set_inpod(inpod::InpodManager* inpod) {
  std::lock_guard lock(mu_);
  inpod_ = inpod;
}

std::string AdminView::Dump() {
  std::lock_guard lock(mu_);
  auto snapshot = control_ ? control_->state().Load() : state::StateStore().Load();
  std::vector<admin::CertSummary> certs;
  if (control_) certs = admin::SummarizeCerts(*control_->certs().Load());
  return admin::ConfigDumpJson(*snapshot, certs,
                               inpod_ ? inpod_->Summary() : std::vector<admin::PodSummary>{});
}

Endpoints::Endpoints(const config::Options& opts, admin::Readiness& readiness,
                     metrics::Metrics& metrics, AdminView& view) {
  std::vector<admin::HttpEndpoint> endpoints;
  auto endpoint = [&](const std::string& listen, const char* name, admin::HttpHandler h) {
    if (listen != "off") endpoints.push_back({name, *io::SocketAddress::Parse(listen), h});
  };
  endpoint(opts.readiness_listen, "readiness", admin::ReadinessHandler(readiness));
  endpoint(opts.metrics_listen, "metrics",
           admin::MetricsHandler([&metrics] { return metrics.Render(); }, server_for_metrics_));
  endpoint(opts.admin_listen, "admin", admin::AdminHandler([&view] { return view.Dump(); }));
  if (endpoints.empty()) return;
  std::string error;
  http_ = admin::HttpServer::Start(std::move(endpoints), &error);
  if (!http_) Fatal(error);
  server_for_metrics_.store(http_.get());
}

}  // namespace zt::app
