// ConnectionReport: what one proxied connection tells the operator — the istio_tcp_*
// metrics at its reporter and one access-log line at its end (DESIGN.md §4
// "Telemetry"). Filled in as set-up learns things, then ended exactly once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "ztunnel/metrics/access_log.h"
#include "ztunnel/metrics/tcp.h"
#include "ztunnel/state/workload.h"

namespace zt::proxy {

/// ConnectionReport is used on one worker; `metrics` (may be null) outlives it.
class ConnectionReport {
 public:
  ConnectionReport(metrics::TcpMetrics* metrics, metrics::Reporter reporter, const char* direction,
                   const char* protocol);

  /// Source and Destination name the two sides (workload may be null: unknown).
  void Source(const std::string& addr, const state::Workload* w, std::string identity);
  void Destination(const std::string& addr, const state::Workload* w, std::string identity);
  /// Service records the service whose VIP the client dialed.
  void Service(const state::Service* s);
  /// MutualTls marks an HBONE connection (connection_security_policy=mutual_tls).
  void MutualTls() { labels_.mutual_tls = true; }
  void SetProtocol(const char* protocol) { record_.protocol = protocol; }

  /// Opened counts the connection as opened (set-up is done, bytes will flow).
  void Opened();
  /// Closed ends an opened connection: `to_destination` and `from_destination` bytes,
  /// and the error if it did not end cleanly.
  void Closed(uint64_t to_destination, uint64_t from_destination, const std::string& error);
  /// Failed ends a connection that never opened; Denied one a policy refused (with
  /// the HBONE status sent, 0 for plaintext); ClosedByPolicy a live one a policy change
  /// ended.
  void Failed(const std::string& error, int response = 0);
  void Denied(const std::string& reason, int response);

  const metrics::ConnectionRecord& record() const { return record_; }
  bool opened() const { return opened_; }

 private:
  void End();
  // NeverOpened counts a connection that failed set-up and logs it.
  void NeverOpened(const char* outcome, const char* flags, int response);

  metrics::TcpMetrics* metrics_;
  metrics::ConnectionCounters* counters_ = nullptr;
  metrics::ConnectionLabels labels_;
  metrics::ConnectionRecord record_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool opened_ = false;
  bool ended_ = false;
};

}  // namespace zt::proxy
