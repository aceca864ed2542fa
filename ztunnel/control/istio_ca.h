// IstioCa: workload certificates from Istio's CA (istiod) over gRPC, as Istio's
// ztunnel asks for them (ISTIO-WIRE.md §3): a P-256 key made here, a CSR with the
// workload's SPIFFE id, CreateCertificate authenticated with the node proxy's own
// service-account token and, for a node proxy, the workload named as the identity it
// impersonates. It answers on the control loop; CertManager keeps the old certificate
// and backs off when it fails.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/control/grpc_channel.h"
#include "ztunnel/identity/ca.h"

namespace zt::control {

/// IstioCaOptions configure the client; the defaults are Istio's ztunnel's.
struct IstioCaOptions {
  /// channel: the CA's address (CA_ADDRESS), the name its certificate has, its root.
  GrpcChannelOptions channel;
  /// token_path and cluster_id as for xDS (the same token, read for every request).
  std::string token_path = "./var/run/secrets/tokens/istio-token";
  std::string cluster_id = "Kubernetes";
  /// ttl is the validity asked for (SECRET_TTL, 24 h).
  std::chrono::seconds ttl{24 * 3600};
  /// impersonate names the workload in the request's metadata (a node proxy asks for
  /// its pods' certificates; istiod allows it for CA_TRUSTED_NODE_ACCOUNTS).
  bool impersonate = true;
  /// headers are extra request headers (CA_HEADER_*).
  std::vector<std::pair<std::string, std::string>> headers;
  /// timeout bounds one request.
  std::chrono::milliseconds timeout{10'000};
};

/// IstioCa lives on one loop (the control thread's): Issue is called there and answers
/// there.
class IstioCa final : public identity::CaClient {
 public:
  /// Create checks the options; the trust anchors are the channel's roots (istiod's
  /// root, the one peers' certificates chain to). On failure `*error` says why.
  static std::shared_ptr<IstioCa> Create(io::Loop& loop, IstioCaOptions options,
                                         std::string* error);
  ~IstioCa() override;

  void Issue(const tls::SpiffeId& id, identity::IssueDone done) override;
  std::vector<tls::Certificate> Roots() const override { return options_.channel.roots; }

 private:
  class Request;
  IstioCa(io::Loop& loop, IstioCaOptions options);

  IstioCaOptions options_;
  std::map<uint64_t, std::unique_ptr<Request>> requests_;  // in flight
  uint64_t next_ = 0;
  std::unique_ptr<GrpcChannel> channel_;  // after requests_: destroyed first, no callbacks
};

}  // namespace zt::control
