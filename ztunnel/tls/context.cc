#include "ztunnel/tls/context.h"

#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>

namespace zt::tls {
namespace {

constexpr uint8_t kAlpnH2[] = {2, 'h', '2'};

// SelectH2 is the server's ALPN choice: h2 or a fatal no_application_protocol alert.
int SelectH2(SSL* /*ssl*/, const uint8_t** out, uint8_t* out_len, const uint8_t* in,
             unsigned in_len, void* /*arg*/) {
  for (unsigned i = 0; i < in_len;) {
    const uint8_t len = in[i];
    if (i + 1 + len > in_len) break;
    if (len == 2 && std::memcmp(in + i + 1, "h2", 2) == 0) {
      *out = in + i + 1;
      *out_len = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

Error Fail(std::string* reason, const char* why) {
  if (reason != nullptr) *reason = why;
  ERR_clear_error();
  return Error{Errc::kInvalidArgument};
}

}  // namespace

const char* TlsErrorName(TlsError error) {
  switch (error) {
    case TlsError::kNone:
      return "none";
    case TlsError::kNoPeerCertificate:
      return "no_peer_certificate";
    case TlsError::kUntrustedRoot:
      return "untrusted_root";
    case TlsError::kExpired:
      return "certificate_expired";
    case TlsError::kNotYetValid:
      return "certificate_not_yet_valid";
    case TlsError::kBadChain:
      return "bad_certificate_chain";
    case TlsError::kBadSan:
      return "bad_san";
    case TlsError::kSanMismatch:
      return "san_mismatch";
    case TlsError::kWrongTrustDomain:
      return "wrong_trust_domain";
    case TlsError::kProtocolVersion:
      return "protocol_version";
    case TlsError::kAlpnMismatch:
      return "alpn_mismatch";
    case TlsError::kPeerRejected:
      return "peer_rejected";
    case TlsError::kProtocol:
      return "protocol_error";
    case TlsError::kClosed:
      return "closed";
  }
  return "unknown";
}

Result<std::shared_ptr<TlsContext>> TlsContext::Create(Role role, const Credentials& credentials,
                                                       const std::vector<Certificate>& roots,
                                                       const std::string& trust_domain,
                                                       std::string* reason) {
  std::shared_ptr<TlsContext> out(new TlsContext());
  out->role_ = role;
  out->trust_domain_ = trust_domain;
  out->ctx_ = SSL_CTX_new(TLS_method());
  if (out->ctx_ == nullptr) return Fail(reason, "SSL_CTX_new failed");
  SSL_CTX* ctx = out->ctx_;
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
    return Fail(reason, "cannot restrict the context to TLS 1.3");
  }
  // Key exchange: X25519, then P-256, as Istio's peers offer. Explicit, so a BoringSSL
  // upgrade cannot change what we offer: newer releases add the post-quantum hybrid
  // X25519MLKEM768 by default, which costs about a third of a handshake here.
  static const int kGroups[] = {NID_X25519, NID_X9_62_prime256v1};
  if (!SSL_CTX_set1_groups(ctx, kGroups, 2)) return Fail(reason, "cannot set key exchange groups");
  // Signatures we accept from the peer (and so offer in signature_algorithms): what
  // Istio's ztunnel offers, modern schemes only. BoringSSL's default list would also
  // offer rsa_pkcs1_sha1 and ecdsa_sha1, which TLS 1.3 handshakes must not use.
  static const uint16_t kVerifyPrefs[] = {
      SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_ECDSA_SECP384R1_SHA384,
      SSL_SIGN_ECDSA_SECP521R1_SHA512, SSL_SIGN_ED25519,
      SSL_SIGN_RSA_PSS_RSAE_SHA256,    SSL_SIGN_RSA_PSS_RSAE_SHA384,
      SSL_SIGN_RSA_PSS_RSAE_SHA512,    SSL_SIGN_RSA_PKCS1_SHA256,
      SSL_SIGN_RSA_PKCS1_SHA384,       SSL_SIGN_RSA_PKCS1_SHA512,
  };
  if (!SSL_CTX_set_verify_algorithm_prefs(ctx, kVerifyPrefs,
                                          sizeof(kVerifyPrefs) / sizeof(kVerifyPrefs[0]))) {
    return Fail(reason, "cannot set the signature algorithms");
  }
  // No resumption: every connection verifies the peer's certificate and identity.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);

  if (credentials.chain.empty()) {
    // Only a client may go without a certificate (a mesh server will refuse it).
    if (role == Role::kServer) return Fail(reason, "a server needs a certificate");
  } else {
    if (!credentials.key) return Fail(reason, "no private key");
    if (!SSL_CTX_use_certificate(ctx, credentials.chain[0].get())) {
      return Fail(reason, "the certificate is not usable");
    }
    for (size_t i = 1; i < credentials.chain.size(); ++i) {
      if (!SSL_CTX_add1_chain_cert(ctx, credentials.chain[i].get())) {
        return Fail(reason, "an intermediate certificate is not usable");
      }
    }
    if (!SSL_CTX_use_PrivateKey(ctx, credentials.key.get()) || !SSL_CTX_check_private_key(ctx)) {
      return Fail(reason, "the private key does not match the certificate");
    }
  }
  if (roots.empty()) return Fail(reason, "no trust roots");
  out->roots_ = X509_STORE_new();
  for (const Certificate& root : roots) {
    if (!X509_STORE_add_cert(out->roots_, root.get())) return Fail(reason, "bad trust root");
  }
  if (role == Role::kClient) {
    if (SSL_CTX_set_alpn_protos(ctx, kAlpnH2, sizeof(kAlpnH2)) != 0) {
      return Fail(reason, "cannot set ALPN");
    }
  } else {
    SSL_CTX_set_alpn_select_cb(ctx, SelectH2, nullptr);
  }
  return out;
}

std::optional<std::string> TlsContext::FindVerified(
    const std::string& chain_digest, std::chrono::system_clock::time_point now) const {
  std::lock_guard lock(verified_mu_);
  auto it = verified_.find(chain_digest);
  if (it == verified_.end()) return std::nullopt;
  if (now < it->second.not_before || now >= it->second.reuse_until) {
    verified_.erase(it);  // verify again: the full check names what is wrong
    return std::nullopt;
  }
  verified_reuses_.fetch_add(1, std::memory_order_relaxed);
  return it->second.spiffe_uri;
}

void TlsContext::RememberVerified(const std::string& chain_digest, VerifiedPeer peer) const {
  std::lock_guard lock(verified_mu_);
  if (verified_.size() >= kVerifiedMax) verified_.clear();
  verified_[chain_digest] = std::move(peer);
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  if (roots_ != nullptr) X509_STORE_free(roots_);
}

}  // namespace zt::tls
