// Metrics is the process' Prometheus registry: Istio's TCP metrics, pod enrollment and
// config reload counters, and the standard process_* metrics, rendered in the text
// exposition format for 15020 /metrics (and /stats/prometheus).
#pragma once

#include <memory>
#include <string>

#include "ztunnel/metrics/overload.h"
#include "ztunnel/metrics/tcp.h"

namespace prometheus {
class Gauge;
class Registry;
}  // namespace prometheus

namespace zt::metrics {

/// Metrics owns the registry. Thread-safe; it must outlive everything that reports.
class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  /// tcp reports connections (istio_tcp_*).
  TcpMetrics& tcp() { return *tcp_; }
  /// overload reports back-offs and refusals past a bound (ztunnel_accept_backoffs_total,
  /// ztunnel_overload_refused_total).
  OverloadMetrics& overload() { return *overload_; }

  /// ProxyStarted / ProxyStopped track enrolled pods (Istio's workload_manager_*).
  /// RecordBuild exports istio_build{component="ztunnel",tag=...} 1, as Istio's ztunnel
  /// does (dashboards count versions during a rollout with it). Call once.
  void RecordBuild(const std::string& tag);
  void ProxyStarted();
  void ProxyStopped();
  /// AgentConnected sets ztunnel_inpod_connected: 1 while a ZDS connection to the
  /// node agent is up and its snapshot applied (`ztunnel check` reads it).
  void AgentConnected(bool up);
  /// ConfigReload counts a local-config reload that was applied or rejected.
  void ConfigReload(bool applied);

  /// Render returns every metric in the Prometheus text format (version 0.0.4).
  std::string Render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<class ProcessCollector> process_;
  std::unique_ptr<TcpMetrics> tcp_;
  std::unique_ptr<OverloadMetrics> overload_;
  prometheus::Gauge* active_proxies_ = nullptr;
  prometheus::Counter* proxies_started_ = nullptr;
  prometheus::Gauge* inpod_connected_ = nullptr;
  prometheus::Counter* proxies_stopped_ = nullptr;
  prometheus::Counter* reloads_applied_ = nullptr;
  prometheus::Counter* reloads_rejected_ = nullptr;
};

}  // namespace zt::metrics
