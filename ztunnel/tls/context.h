// TLS contexts for the mesh: TLS 1.3 only, ALPN h2, mutual authentication by SPIFFE
// identity (DESIGN.md §4 "Identity and TLS"). One context per local identity; many
// sessions share it.
#pragma once

#include <openssl/base.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ztunnel/core/result.h"
#include "ztunnel/tls/x509.h"

namespace zt::tls {

/// TlsError says why a handshake or session failed; each rejection has its own value.
enum class TlsError : uint8_t {
  kNone,
  kNoPeerCertificate,  // the peer sent no certificate
  kUntrustedRoot,      // the chain does not reach our trust root
  kExpired,            // a certificate in the chain has expired
  kNotYetValid,        // a certificate in the chain is not valid yet
  kBadChain,           // any other chain verification failure
  kBadSan,             // the leaf's URI SAN is missing, repeated or not a SPIFFE id
  kSanMismatch,        // client side: the server is not one of the expected identities
  kWrongTrustDomain,   // server side: the client's trust domain is not ours
  kProtocolVersion,    // the peer offered only TLS < 1.3
  kAlpnMismatch,       // the peer does not speak h2
  kPeerRejected,       // the peer sent a fatal alert (it rejected us)
  kProtocol,           // malformed TLS or any other handshake failure
  kClosed,             // used after close
};

/// TlsErrorName is a short stable name for logs and metrics, e.g. "untrusted_root".
const char* TlsErrorName(TlsError error);

/// Role says which side of the handshake a context serves.
enum class Role : uint8_t { kClient, kServer };

/// Credentials are what one side presents: its leaf (first) plus intermediates, and key.
struct Credentials {
  std::vector<Certificate> chain;
  PrivateKey key;
};

/// VerifiedPeer is what a verified peer chain proved, and until when it may be reused.
struct VerifiedPeer {
  std::string spiffe_uri;
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point reuse_until;
};

/// TlsContext wraps an SSL_CTX configured for the mesh. Thread-safe once built.
///
/// It remembers peer chains that verified against its roots (by SHA-256 of their
/// DER), so a repeat peer skips the chain's signature checks: in a mesh the same pod
/// certificate comes back on every connection, and with this BoringSSL build one
/// P-256 verification costs ~270 us. Possession of the key is still proven on every
/// handshake (CertificateVerify), the validity window is still checked, and an entry
/// lives at most kVerifiedReuse; new roots mean a new context, so a cold cache.
class TlsContext {
 public:
  /// Create builds a context that presents `credentials` and trusts `roots`. A server
  /// context accepts only clients of `trust_domain`. On failure `*reason` says why.
  static Result<std::shared_ptr<TlsContext>> Create(Role role, const Credentials& credentials,
                                                    const std::vector<Certificate>& roots,
                                                    const std::string& trust_domain,
                                                    std::string* reason = nullptr);
  ~TlsContext();

  /// kVerifiedReuse bounds how long a verification result is reused.
  static constexpr std::chrono::minutes kVerifiedReuse{10};
  /// kVerifiedMax bounds the remembered chains; the memory is forgotten when full.
  static constexpr size_t kVerifiedMax = 4096;

  /// FindVerified returns the SPIFFE URI of a chain that verified before, if it may be
  /// reused at `now`.
  std::optional<std::string> FindVerified(const std::string& chain_digest,
                                          std::chrono::system_clock::time_point now) const;
  /// RememberVerified records a chain that passed verification.
  void RememberVerified(const std::string& chain_digest, VerifiedPeer peer) const;
  /// verified_reuses counts handshakes that reused a verification (for tests, metrics).
  uint64_t verified_reuses() const { return verified_reuses_.load(); }

  Role role() const { return role_; }
  const std::string& trust_domain() const { return trust_domain_; }
  SSL_CTX* get() const { return ctx_; }
  X509_STORE* roots() const { return roots_; }

 private:
  TlsContext() = default;
  Role role_ = Role::kClient;
  std::string trust_domain_;
  SSL_CTX* ctx_ = nullptr;
  X509_STORE* roots_ = nullptr;
  mutable std::mutex verified_mu_;
  mutable std::unordered_map<std::string, VerifiedPeer> verified_;
  mutable std::atomic<uint64_t> verified_reuses_{0};
};

}  // namespace zt::tls
