#include "ztunnel/tls/session.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <climits>
#include <cstring>

namespace zt::tls {

// NetworkBio is the BIO between BoringSSL and the session's byte buffers: reads take
// from in_ (retry when empty), writes append to out_.
struct NetworkBio {
  static TlsSession* Session(BIO* bio) { return static_cast<TlsSession*>(BIO_get_data(bio)); }
  static int Read(BIO* bio, char* buf, int len) {
    TlsSession* s = Session(bio);
    BIO_clear_retry_flags(bio);
    const size_t avail = s->in_.size() - s->in_off_;
    if (avail > 0) {
      const size_t n = std::min(avail, static_cast<size_t>(len));
      std::memcpy(buf, s->in_.data() + s->in_off_, n);
      s->in_off_ += n;
      if (s->in_off_ == s->in_.size()) {
        s->in_.clear();
        s->in_off_ = 0;
      }
      return static_cast<int>(n);
    }
    if (!s->lent_.empty()) {
      const size_t n = std::min(s->lent_.size(), static_cast<size_t>(len));
      std::memcpy(buf, s->lent_.data(), n);
      s->lent_ = s->lent_.subspan(n);
      return static_cast<int>(n);
    }
    BIO_set_retry_read(bio);
    return -1;
  }
  static int Write(BIO* bio, const char* buf, int len) {
    BIO_clear_retry_flags(bio);
    Session(bio)->out_.append(buf, static_cast<size_t>(len));
    return len;
  }
  static long Ctrl(BIO* bio, int cmd, long /*larg*/, void* /*parg*/) {
    TlsSession* s = Session(bio);
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_PENDING:
        return static_cast<long>(s->in_.size() - s->in_off_ + s->lent_.size());
      case BIO_CTRL_WPENDING:
        return static_cast<long>(s->out_.size() - s->out_off_);
      default:
        return 0;
    }
  }
  static const BIO_METHOD* Method() {
    static const BIO_METHOD* method = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "ztunnel network");
      BIO_meth_set_read(m, Read);
      BIO_meth_set_write(m, Write);
      BIO_meth_set_ctrl(m, Ctrl);
      return m;
    }();
    return method;
  }
};

// SessionVerifier is BoringSSL's custom verify callback: chain to our roots, then the
// SPIFFE identity checks. BoringSSL's own verification is not used.
struct SessionVerifier {
  // ChainDigest is SHA-256 over the peer's certificates as sent (length-prefixed DER).
  static std::string ChainDigest(SSL* ssl) {
    SHA256_CTX sha;
    SHA256_Init(&sha);
    const STACK_OF(CRYPTO_BUFFER)* certs = SSL_get0_peer_certificates(ssl);
    for (size_t i = 0; certs != nullptr && i < sk_CRYPTO_BUFFER_num(certs); ++i) {
      const CRYPTO_BUFFER* b = sk_CRYPTO_BUFFER_value(certs, i);
      const uint64_t len = CRYPTO_BUFFER_len(b);
      SHA256_Update(&sha, &len, sizeof(len));
      SHA256_Update(&sha, CRYPTO_BUFFER_data(b), len);
    }
    std::string out(SHA256_DIGEST_LENGTH, '\0');
    SHA256_Final(reinterpret_cast<uint8_t*>(out.data()), &sha);
    return out;
  }

  // VerifyChain checks the chain reaches our roots (and, for ClientForHost, names the
  // host), naming the failure.
  static bool VerifyChain(TlsSession* s, X509* leaf, STACK_OF(X509) * chain, uint8_t* out_alert) {
    bssl::UniquePtr<X509_STORE_CTX> store_ctx(X509_STORE_CTX_new());
    if (!store_ctx || !X509_STORE_CTX_init(store_ctx.get(), s->ctx_->roots(), leaf, chain)) {
      *out_alert = SSL_AD_INTERNAL_ERROR;
      s->Fail(TlsError::kProtocol, "cannot set up certificate verification");
      return false;
    }
    if (!s->host_.empty()) {
      X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(store_ctx.get());
      const bool ip = X509_VERIFY_PARAM_set1_ip_asc(param, s->host_.c_str()) == 1;
      if (!ip && X509_VERIFY_PARAM_set1_host(param, s->host_.data(), s->host_.size()) != 1) {
        *out_alert = SSL_AD_INTERNAL_ERROR;
        s->Fail(TlsError::kProtocol, "cannot check the server name " + s->host_);
        return false;
      }
    }
    X509_STORE_CTX_set_purpose(store_ctx.get(), s->ctx_->role() == Role::kClient
                                                    ? X509_PURPOSE_SSL_SERVER
                                                    : X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(store_ctx.get()) == 1) return true;
    const int err = X509_STORE_CTX_get_error(store_ctx.get());
    TlsError kind = TlsError::kBadChain;
    if (err == X509_V_ERR_CERT_HAS_EXPIRED) {
      kind = TlsError::kExpired;
      *out_alert = SSL_AD_CERTIFICATE_EXPIRED;
    } else if (err == X509_V_ERR_CERT_NOT_YET_VALID) {
      kind = TlsError::kNotYetValid;
      *out_alert = SSL_AD_BAD_CERTIFICATE;
    } else if (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
               err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
               err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
               err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
               err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE) {
      kind = TlsError::kUntrustedRoot;
      *out_alert = SSL_AD_UNKNOWN_CA;
    } else if (err == X509_V_ERR_HOSTNAME_MISMATCH || err == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      *out_alert = SSL_AD_BAD_CERTIFICATE;
      s->Fail(TlsError::kSanMismatch, "the server's certificate does not name " + s->host_);
      return false;
    } else {
      *out_alert = SSL_AD_BAD_CERTIFICATE;
    }
    s->Fail(kind, X509_verify_cert_error_string(err));
    return false;
  }

  static ssl_verify_result_t Verify(SSL* ssl, uint8_t* out_alert) {
    auto* s = static_cast<TlsSession*>(SSL_get_app_data(ssl));
    STACK_OF(X509)* chain = SSL_get_peer_full_cert_chain(ssl);
    if (chain == nullptr || sk_X509_num(chain) == 0) {
      *out_alert = SSL_AD_CERTIFICATE_REQUIRED;
      s->Fail(TlsError::kNoPeerCertificate, "the peer sent no certificate");
      return ssl_verify_invalid;
    }
    if (!s->host_.empty()) {
      // A control plane: a standard host check, no SPIFFE identity, no reuse cache.
      if (!VerifyChain(s, sk_X509_value(chain, 0), chain, out_alert)) return ssl_verify_invalid;
      return ssl_verify_ok;
    }
    const auto now = std::chrono::system_clock::now();
    const std::string digest = ChainDigest(ssl);
    std::string uri;
    if (auto reused = s->ctx_->FindVerified(digest, now)) {
      uri = std::move(*reused);
    } else {
      X509* leaf = sk_X509_value(chain, 0);
      if (!VerifyChain(s, leaf, chain, out_alert)) return ssl_verify_invalid;
      const Certificate leaf_cert([&] {
        X509_up_ref(leaf);
        return bssl::UniquePtr<X509>(leaf);
      }());
      const std::vector<std::string> sans = leaf_cert.UriSans();
      if (sans.size() != 1) {
        *out_alert = SSL_AD_BAD_CERTIFICATE;
        s->Fail(TlsError::kBadSan, "the certificate has " + std::to_string(sans.size()) +
                                       " URI SANs; exactly one SPIFFE id is required");
        return ssl_verify_invalid;
      }
      uri = sans[0];
      // Reuse within the validity of every certificate the peer sent.
      VerifiedPeer peer{uri, leaf_cert.not_before(), now + TlsContext::kVerifiedReuse};
      for (size_t i = 0; i < sk_X509_num(chain); ++i) {
        X509* c = sk_X509_value(chain, i);
        X509_up_ref(c);
        const Certificate cert{bssl::UniquePtr<X509>(c)};
        peer.not_before = std::max(peer.not_before, cert.not_before());
        peer.reuse_until = std::min(peer.reuse_until, cert.not_after());
      }
      s->ctx_->RememberVerified(digest, std::move(peer));
    }
    std::string why;
    auto id = SpiffeId::Parse(uri, &why);
    if (!id) {
      *out_alert = SSL_AD_BAD_CERTIFICATE;
      s->Fail(TlsError::kBadSan, "URI SAN is not a SPIFFE id: " + why);
      return ssl_verify_invalid;
    }
    if (s->ctx_->role() == Role::kClient) {
      bool expected = false;
      for (const SpiffeId& e : s->expected_) expected = expected || e == *id;
      if (!expected) {
        *out_alert = SSL_AD_BAD_CERTIFICATE;
        s->Fail(TlsError::kSanMismatch, "server identity " + id->ToString() + " is not expected");
        return ssl_verify_invalid;
      }
    } else if (id->trust_domain != s->ctx_->trust_domain()) {
      *out_alert = SSL_AD_BAD_CERTIFICATE;
      s->Fail(TlsError::kWrongTrustDomain,
              "client trust domain " + id->trust_domain + " is not " + s->ctx_->trust_domain());
      return ssl_verify_invalid;
    }
    s->peer_ = std::move(id).value();
    return ssl_verify_ok;
  }
};

std::unique_ptr<TlsSession> TlsSession::Client(std::shared_ptr<TlsContext> ctx,
                                               std::vector<SpiffeId> expected) {
  return std::unique_ptr<TlsSession>(new TlsSession(std::move(ctx), std::move(expected)));
}

std::unique_ptr<TlsSession> TlsSession::ClientForHost(std::shared_ptr<TlsContext> ctx,
                                                      std::string host) {
  std::unique_ptr<TlsSession> s(new TlsSession(std::move(ctx), {}));
  s->host_ = std::move(host);
  if (!s->host_.empty()) SSL_set_tlsext_host_name(s->ssl_, s->host_.c_str());
  return s;
}

std::unique_ptr<TlsSession> TlsSession::Server(std::shared_ptr<TlsContext> ctx) {
  return std::unique_ptr<TlsSession>(new TlsSession(std::move(ctx), {}));
}

TlsSession::TlsSession(std::shared_ptr<TlsContext> ctx, std::vector<SpiffeId> expected)
    : ctx_(std::move(ctx)), expected_(std::move(expected)) {
  ssl_ = SSL_new(ctx_->get());
  BIO* bio = BIO_new(NetworkBio::Method());
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // the SSL owns the BIO now (one reference for both)
  SSL_set_app_data(ssl_, this);
  const bool server = ctx_->role() == Role::kServer;
  SSL_set_custom_verify(
      ssl_, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
      SessionVerifier::Verify);
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

void TlsSession::PushCiphertext(std::span<const char> data) {
  // Drop what BoringSSL has read once it is most of the buffer: amortised, each byte
  // moves at most once more.
  if (in_off_ > 0 && in_off_ >= in_.size() / 2) {
    in_.erase(0, in_off_);
    in_off_ = 0;
  }
  in_.append(data.data(), data.size());
}

void TlsSession::LendCiphertext(std::span<const char> data) { lent_ = data; }

void TlsSession::ReturnLent() {
  if (lent_.empty()) return;
  const std::span<const char> rest = lent_;
  lent_ = {};
  PushCiphertext(rest);
}

size_t TlsSession::PendingCiphertext() const { return out_.size() - out_off_; }

size_t TlsSession::PullCiphertext(std::span<char> out) {
  const size_t n = std::min(out.size(), out_.size() - out_off_);
  std::memcpy(out.data(), out_.data() + out_off_, n);
  out_off_ += n;
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
  return n;
}

std::string TlsSession::TakeCiphertext(std::string spare) {
  if (out_off_ > 0) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  spare.clear();
  std::swap(spare, out_);
  return spare;
}

TlsSession::Progress TlsSession::Fail(TlsError error, std::string detail) {
  if (error_ == TlsError::kNone) {
    error_ = error;
    error_detail_ = std::move(detail);
  }
  return Progress::kFailed;
}

TlsSession::Progress TlsSession::FromSslError(int rc) {
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Progress::kWantIo;
  if (err == SSL_ERROR_ZERO_RETURN) return Progress::kClosed;
  const uint32_t packed = ERR_peek_error();
  const int reason = ERR_GET_REASON(packed);
  const char* text = ERR_reason_error_string(packed);
  std::string detail = text != nullptr ? text : "TLS failure";
  ERR_clear_error();
  if (error_ != TlsError::kNone) return Progress::kFailed;  // the verifier said why
  if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION) {
    return Fail(TlsError::kProtocolVersion, detail);
  }
  if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    return Fail(TlsError::kNoPeerCertificate, detail);
  }
  if (reason == SSL_R_NO_APPLICATION_PROTOCOL ||
      reason == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL) {
    return Fail(TlsError::kAlpnMismatch, detail);
  }
  // Reasons from 1000 up are alerts the peer sent: it rejected us.
  if (reason >= SSL_AD_REASON_OFFSET) return Fail(TlsError::kPeerRejected, detail);
  return Fail(TlsError::kProtocol, detail);
}

TlsSession::Progress TlsSession::Handshake() {
  if (handshake_done_) return Progress::kDone;
  if (error_ != TlsError::kNone) return Progress::kFailed;
  const int rc = SSL_do_handshake(ssl_);
  if (rc != 1) return FromSslError(rc);
  const uint8_t* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  // A client that offers no ALPN at all speaks h2 to us anyway (Istio's server takes
  // it the same way); one that offers only other protocols was refused in SelectH2.
  const bool no_alpn_client = alpn_len == 0 && ctx_->role() == Role::kServer;
  if (!no_alpn_client && (alpn_len != 2 || alpn[0] != 'h' || alpn[1] != '2')) {
    return Fail(TlsError::kAlpnMismatch, "the peer did not agree to h2");
  }
  handshake_done_ = true;
  return Progress::kDone;
}

TlsSession::Progress TlsSession::Read(std::span<char> out, size_t* n) {
  *n = 0;
  if (error_ != TlsError::kNone) return Progress::kFailed;
  const int chunk = static_cast<int>(std::min<size_t>(out.size(), INT_MAX));
  const int rc = SSL_read(ssl_, out.data(), chunk);
  if (rc > 0) {
    *n = static_cast<size_t>(rc);
    return Progress::kDone;
  }
  return FromSslError(rc);
}

TlsSession::Progress TlsSession::Write(std::span<const char> data) {
  if (error_ != TlsError::kNone) return Progress::kFailed;
  while (!data.empty()) {
    const int chunk = static_cast<int>(std::min<size_t>(data.size(), 1 << 30));
    const int rc = SSL_write(ssl_, data.data(), chunk);
    if (rc <= 0) return FromSslError(rc);
    data = data.subspan(static_cast<size_t>(rc));
  }
  return Progress::kDone;
}

void TlsSession::Close() { SSL_shutdown(ssl_); }

}  // namespace zt::tls
