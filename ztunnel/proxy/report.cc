#include "ztunnel/proxy/report.h"

namespace zt::proxy {

ConnectionReport::ConnectionReport(metrics::TcpMetrics* metrics, metrics::Reporter reporter,
                                   const char* direction, const char* protocol)
    : metrics_(metrics) {
  labels_.reporter = reporter;
  record_.direction = direction;
  record_.protocol = protocol;
}

void ConnectionReport::Source(const std::string& addr, const state::Workload* w,
                              std::string identity) {
  record_.src_addr = addr;
  if (w != nullptr) {
    record_.src_workload = w->name;
    record_.src_namespace = w->namespace_name;
  }
  record_.src_identity = identity;
  labels_.source = metrics::PeerFrom(w, std::move(identity));
}

void ConnectionReport::Destination(const std::string& addr, const state::Workload* w,
                                   std::string identity) {
  record_.dst_addr = addr;
  if (w != nullptr) {
    record_.dst_workload = w->name;
    record_.dst_namespace = w->namespace_name;
  }
  record_.dst_identity = identity;
  labels_.destination = metrics::PeerFrom(w, std::move(identity));
}

void ConnectionReport::Service(const state::Service* s) {
  if (s == nullptr) return;
  record_.dst_service = s->hostname;
  labels_.destination_service = s->hostname;
  labels_.destination_service_namespace = s->namespace_name;
  labels_.destination_service_name = s->name;
}

void ConnectionReport::Opened() {
  opened_ = true;
  if (metrics_ != nullptr) counters_ = metrics_->Opened(labels_);
}

void ConnectionReport::Closed(uint64_t to_destination, uint64_t from_destination,
                              const std::string& error) {
  record_.bytes_sent = to_destination;
  record_.bytes_recv = from_destination;
  record_.error = error;
  // Istio's names: received = request bytes (towards the server), sent = response.
  metrics::TcpMetrics::Closed(counters_, to_destination, from_destination);
  End();
}

void ConnectionReport::Failed(const std::string& error, int response) {
  record_.error = error;
  NeverOpened("failed", "CONNECT", response);
}

void ConnectionReport::Denied(const std::string& reason, int response) {
  record_.reason = reason;
  NeverOpened("denied", "DENY", response);
}

void ConnectionReport::NeverOpened(const char* outcome, const char* flags, int response) {
  record_.outcome = outcome;
  record_.response = response;
  labels_.response_flags = flags;
  if (metrics_ != nullptr) metrics_->Failed(labels_);
  End();
}

void ConnectionReport::End() {
  if (ended_) return;
  ended_ = true;
  record_.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start_);
  metrics::LogConnection(record_);
}

}  // namespace zt::proxy
