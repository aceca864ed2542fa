// Mesh: what the data path needs to know about the mesh, shared by every worker: the
// published state and certificates (each worker keeps its own view of both), and this
// node's name.
#pragma once

#include <memory>
#include <string>

#include "ztunnel/core/ip_port.h"
#include "ztunnel/core/result.h"
#include "ztunnel/h2/session.h"
#include "ztunnel/identity/cert_store.h"
#include "ztunnel/metrics/tcp.h"
#include "ztunnel/state/state.h"
#include "ztunnel/tls/spiffe.h"

namespace zt::proxy {

/// Mesh is read from every worker; the objects it points to outlive the workers.
struct Mesh {
  const state::StateStore* state = nullptr;
  /// certs are the certificates the control thread issued (workers read a CertView).
  const identity::CertStore* certs = nullptr;
  /// node is this node's name: workloads whose `node` equals it are served here.
  std::string node;
  /// network is the network this node's workloads live in ("" by default).
  std::string network;
  /// tcp_metrics receives every proxied connection (null: no metrics).
  metrics::TcpMetrics* tcp_metrics = nullptr;

  /// LocalWorkload is the workload at `ip` that this node serves, or null.
  const state::Workload* LocalWorkload(const state::State& s, const IpAddr& ip) const;
};

/// SnapshotView is one worker's copy of the current state. The data path reads it
/// with no lock and no atomic (DESIGN §2); the worker refreshes it on its own loop
/// when a new state is published (Worker::StateChanged).
class SnapshotView {
 public:
  explicit SnapshotView(const state::StateStore& store) : store_(store), current_(store.Load()) {}
  /// Get is the snapshot to use for the connection at hand; keep the shared_ptr while
  /// using pointers into it.
  const std::shared_ptr<const state::State>& Get() const { return current_; }
  /// Refresh takes the store's current snapshot (on the worker's loop only).
  void Refresh() { current_ = store_.Load(); }

 private:
  const state::StateStore& store_;
  std::shared_ptr<const state::State> current_;
};

/// WorkloadIdentity is the SPIFFE identity of `w`, with Istio's defaults.
tls::SpiffeId WorkloadIdentity(const state::Workload& w);

/// Baggage is the W3C baggage Istio's ztunnel sends for `w` (its CONNECTs' source, its
/// 200 answers' destination): k8s.cluster.name, k8s.namespace.name,
/// k8s.<workloadType>.name, service.name, service.version, cloud.region and
/// cloud.availability_zone, each only when known, comma-separated in that order.
/// Values are percent-encoded where W3C baggage needs it (never for Kubernetes names).
std::string Baggage(const state::Workload& w);

/// MakeConnectRequest builds the HBONE CONNECT for a connection from `src` (a
/// workload, may be null) at `src_addr` to `target`: authority, baggage, forwarded
/// and a fresh W3C traceparent (not sampled, as Istio's ztunnel sends it).
h2::ConnectRequest MakeConnectRequest(const state::Workload* src, const IpPort& src_addr,
                                      const IpPort& target);

}  // namespace zt::proxy
