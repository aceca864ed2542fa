// XdsClient: Istio's workload API over delta ADS, as Istio's ztunnel speaks it to
// istiod (ISTIO-WIRE.md §4-6): one stream, wildcard subscriptions to Address then
// Authorization, every response ACKed or NACKed with the reasons (each resource
// stands alone: the good ones of a response apply), the known versions echoed on a
// reconnect, backoff from 10 ms to 15 s, and the state kept across reconnects. Every
// accepted change is published as a new state snapshot.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/control/grpc_channel.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/state/state.h"

namespace zt::control {

/// XdsOptions configure the client; the defaults are Istio's ztunnel's.
struct XdsOptions {
  /// channel: istiod's address (XDS_ADDRESS), the name its certificate has, its root.
  GrpcChannelOptions channel;
  /// token_path is the service-account token sent as "authorization: Bearer" (read
  /// again for every stream: the kubelet rotates it).
  std::string token_path = "./var/run/secrets/tokens/istio-token";
  /// cluster_id goes in the clusterid header (which cluster validates the token).
  std::string cluster_id = "Kubernetes";
  /// Node identity: istiod checks the token's namespace against pod_namespace.
  std::string pod_name, pod_namespace, instance_ip, node_name;
  /// metadata are extra node metadata strings (ISTIO_META_*, prefix removed).
  std::map<std::string, std::string> metadata;
  /// headers are extra stream headers (XDS_HEADER_*).
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds initial_backoff{10};
  std::chrono::milliseconds max_backoff{15'000};
};

/// XdsStats are counters for logs, metrics and tests.
struct XdsStats {
  uint64_t streams = 0;    // streams opened
  uint64_t responses = 0;  // responses received
  uint64_t acks = 0;
  uint64_t nacks = 0;
  std::string last_nack;   // the reasons of the last NACK
  std::string last_error;  // why the last stream ended
};

/// XdsClient runs on one loop (the control thread's); every call is on it.
class XdsClient {
 public:
  /// Publish receives every new snapshot (on the loop's thread).
  using Publish = std::function<void(std::shared_ptr<const state::State>)>;

  /// Create checks the options; on failure `*error` says what is wrong.
  static std::unique_ptr<XdsClient> Create(io::Loop& loop, XdsOptions options, Publish publish,
                                           std::string* error);
  ~XdsClient();

  /// Start opens the stream (and reopens it whenever it ends).
  void Start();
  /// synced is true once both types had a response accepted (Istio's readiness rule).
  bool synced() const { return synced_; }
  /// set_on_synced runs once, when synced() becomes true.
  void set_on_synced(std::function<void()> fn) { on_synced_ = std::move(fn); }
  const XdsStats& stats() const { return stats_; }
  /// NodeId is what istiod parses: ztunnel~IP~POD.NS~NS.svc.cluster.local.
  std::string NodeId() const;

 private:
  class Stream;
  struct Known {
    std::string version;
  };
  XdsClient(io::Loop& loop, XdsOptions options, Publish publish);
  void OpenStream();
  void StreamEnded(const h2::GrpcStatus& status);
  void OnResponse(const std::string& bytes);
  std::string Request(const std::string& type_url, bool initial, const std::string& nonce,
                      const std::string& error) const;
  // Build makes the snapshot, giving an address or VIP two resources claim to the one
  // istiod updated last.
  std::shared_ptr<const state::State> Build(const std::map<std::string, state::Workload>& workloads,
                                            const std::map<std::string, state::Service>& services,
                                            const std::map<std::string, state::Policy>& policies,
                                            std::string* error);

  io::Loop& loop_;
  XdsOptions options_;
  Publish publish_;
  std::unique_ptr<GrpcChannel> channel_;
  std::unique_ptr<Stream> stream_;
  GrpcChannel::CallId call_ = 0;
  std::unique_ptr<io::Timer> retry_;
  std::chrono::milliseconds backoff_;
  // What istiod sent, by resource name, as accepted (converted).
  std::map<std::string, state::Workload> workloads_;
  std::map<std::string, state::Service> services_;
  std::map<std::string, state::Policy> policies_;
  // When each resource was last updated (a sequence number), for address conflicts.
  std::map<std::string, uint64_t> updated_;
  uint64_t sequence_ = 0;
  // Versions by type then name (echoed as initial_resource_versions on a reconnect).
  std::map<std::string, std::map<std::string, std::string>> versions_;
  bool address_acked_ = false;
  bool authorization_acked_ = false;
  bool synced_ = false;
  std::function<void()> on_synced_;
  XdsStats stats_;
};

}  // namespace zt::control
