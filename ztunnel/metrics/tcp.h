// Istio's TCP connection metrics (DESIGN.md §4 "Telemetry"): istio_tcp_connections_
// opened/closed/failed_total and istio_tcp_sent/received_bytes_total, labelled the way
// Istio labels them, reported once by the source's ztunnel (reporter="source") and once
// by the destination's (reporter="destination").
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ztunnel/state/workload.h"

namespace prometheus {
class Counter;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace zt::metrics {

/// Reporter says which side reports a connection.
enum class Reporter : uint8_t { kSource, kDestination };

/// PeerLabels are one side's labels; empty values are exported as "unknown".
struct PeerLabels {
  std::string workload;
  std::string workload_namespace;
  std::string principal;
  std::string app;
  std::string version;
  std::string cluster;
  std::string canonical_service;
  std::string canonical_revision;
};

/// PeerFrom fills a side's labels from its workload (null: nothing known) and the
/// SPIFFE principal it presented or will present (may be empty).
PeerLabels PeerFrom(const state::Workload* w, std::string principal);

/// ConnectionLabels are the full label set of one connection.
struct ConnectionLabels {
  Reporter reporter = Reporter::kSource;
  PeerLabels source;
  PeerLabels destination;
  std::string destination_service;  // the service hostname, when addressed by its VIP
  std::string destination_service_namespace;
  std::string destination_service_name;
  /// mutual_tls for HBONE; plaintext connections are "unknown".
  bool mutual_tls = false;
  /// response_flags: "-" when nothing went wrong (Istio's spelling), "DENY" for a
  /// policy denial, "CONNECT" for a failed upstream connect.
  std::string response_flags = "-";
};

/// ConnectionCounters are one label set's series; a connection keeps a pointer to them
/// (series live as long as the TcpMetrics).
struct ConnectionCounters {
  prometheus::Counter* opened = nullptr;
  prometheus::Counter* closed = nullptr;
  prometheus::Counter* sent = nullptr;
  prometheus::Counter* received = nullptr;
  prometheus::Counter* failed = nullptr;
};

/// TcpMetrics registers the istio_tcp_* families. Thread-safe: workers report
/// connections concurrently.
class TcpMetrics {
 public:
  explicit TcpMetrics(prometheus::Registry& registry);
  ~TcpMetrics();

  /// Opened counts a connection that got through set-up and returns its series, for
  /// Closed. Finding the series takes a lock: once per connection, not per byte.
  ConnectionCounters* Opened(const ConnectionLabels& labels);
  /// Closed counts the end of an opened connection. `received` are the request bytes
  /// (client to server), `sent` the response bytes (server to client), as in Istio.
  static void Closed(ConnectionCounters* counters, uint64_t received, uint64_t sent);
  /// Failed counts a connection that never opened (refused, denied, no upstream).
  void Failed(const ConnectionLabels& labels);

 private:
  ConnectionCounters* Series(const ConnectionLabels& labels);

  prometheus::Family<prometheus::Counter>& opened_;
  prometheus::Family<prometheus::Counter>& closed_;
  prometheus::Family<prometheus::Counter>& sent_;
  prometheus::Family<prometheus::Counter>& received_;
  prometheus::Family<prometheus::Counter>& failed_;
  struct Cache;
  std::unique_ptr<Cache> cache_;
};

}  // namespace zt::metrics
