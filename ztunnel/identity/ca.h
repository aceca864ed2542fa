// Certificate authorities a node proxy can get workload certificates from. The local
// CA is the embedded default; an Istio CA client (gRPC CSR) can implement the same
// interface later without touching callers.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/core/result.h"
#include "ztunnel/tls/context.h"
#include "ztunnel/tls/spiffe.h"
#include "ztunnel/tls/x509.h"

namespace zt::identity {

/// CaClient issues workload certificates. Implementations are thread-safe.
class CaClient {
 public:
  virtual ~CaClient() = default;
  /// Issue returns a fresh key and a certificate chain (leaf first, no root) for `id`;
  /// on failure `*reason` says why (for the retry log and the config dump).
  virtual Result<tls::Credentials> Issue(const tls::SpiffeId& id, std::string* reason) = 0;
  /// Roots are the trust anchors peers' certificates must chain to.
  virtual std::vector<tls::Certificate> Roots() const = 0;
};

/// LocalCaOptions configure the embedded CA.
struct LocalCaOptions {
  /// directory in Istio's plug-in layout: ca-cert.pem, ca-key.pem, root-cert.pem,
  /// cert-chain.pem (as `istioctl`/cacerts secrets use).
  std::string directory;
  /// generate makes a new self-signed root there if the directory has none.
  bool generate = false;
  /// trust_domain names the root's organization when generating.
  std::string trust_domain = "cluster.local";
  /// leaf_ttl is the lifetime of issued workload certificates.
  std::chrono::seconds leaf_ttl{24 * 3600};
};

/// LocalCa signs workload certificates with a CA key held in this process.
class LocalCa final : public CaClient {
 public:
  /// Open loads the CA from `options.directory`, or generates and persists one (key
  /// file mode 0600) when asked and the directory holds none. Errors name the file and
  /// the problem, e.g. "ca-key.pem does not match ca-cert.pem", or a ca-cert.pem
  /// without the Subject Key Identifier its leaves' Authority Key Identifier needs.
  static Result<std::shared_ptr<LocalCa>> Open(const LocalCaOptions& options, std::string* reason);

  Result<tls::Credentials> Issue(const tls::SpiffeId& id, std::string* reason) override;
  std::vector<tls::Certificate> Roots() const override { return {root_}; }
  const tls::Certificate& root() const { return root_; }

 private:
  LocalCa() = default;
  tls::Certificate ca_cert_;
  tls::PrivateKey ca_key_;
  tls::Certificate root_;
  std::vector<tls::Certificate> chain_;  // ca-cert and intermediates, without the root
  std::chrono::seconds leaf_ttl_{0};
};

}  // namespace zt::identity
