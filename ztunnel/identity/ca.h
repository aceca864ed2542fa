// Certificate authorities a node proxy can get workload certificates from. The local
// CA is the embedded default; a network CA (Istio's, a gRPC CSR) implements the same
// interface and answers later. Only the control thread calls a CA, never a worker.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/core/result.h"
#include "ztunnel/tls/context.h"
#include "ztunnel/tls/spiffe.h"
#include "ztunnel/tls/x509.h"

namespace zt::identity {

/// IssueDone receives a fresh key and certificate chain (leaf first, no root), or an
/// error and a reason (for the retry log and the config dump).
using IssueDone = std::function<void(Result<tls::Credentials> issued, std::string reason)>;

/// CaClient issues workload certificates. It is called from one thread (the control
/// thread), and calls `done` on that thread: at once, or later from that thread's loop.
class CaClient {
 public:
  virtual ~CaClient() = default;
  /// Issue asks for a certificate for `id`; `done` runs exactly once, unless the client
  /// is destroyed first (then never).
  virtual void Issue(const tls::SpiffeId& id, IssueDone done) = 0;
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

  /// IssueNow signs a certificate for `id` at once; on failure `*reason` says why.
  Result<tls::Credentials> IssueNow(const tls::SpiffeId& id, std::string* reason);
  /// Issue answers at once (a key generation and a signature, under a millisecond).
  void Issue(const tls::SpiffeId& id, IssueDone done) override;
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
