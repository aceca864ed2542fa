// TlsSession: a TLS connection that does no I/O. The caller pushes bytes read from
// the network in, pulls bytes to write out, and reads and writes plaintext; so it runs
// unchanged on io_uring, in tests, or over a transport that moves one byte at a time
// (the BoringSSL/nghttp2 habit, see STYLE-ANCHORS).
#pragma once

#include <openssl/base.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ztunnel/tls/context.h"
#include "ztunnel/tls/spiffe.h"

namespace zt::tls {

/// TlsSession is used from one thread. It keeps its context alive.
class TlsSession {
 public:
  /// Client starts a client session that accepts the server only if its SPIFFE id is
  /// one of `expected` (the destination workload's identity plus the service's SANs).
  static std::unique_ptr<TlsSession> Client(std::shared_ptr<TlsContext> ctx,
                                            std::vector<SpiffeId> expected);
  /// ClientForHost starts a client session to a control plane (istiod): the server's
  /// certificate must chain to the context's roots and name `host` (a DNS SAN, or an
  /// IP SAN when `host` is an address), as any TLS client checks; `host` is also sent
  /// as SNI. No SPIFFE identity is expected of it.
  static std::unique_ptr<TlsSession> ClientForHost(std::shared_ptr<TlsContext> ctx,
                                                   std::string host);
  /// Server starts a server session; the client must belong to the context's trust domain.
  static std::unique_ptr<TlsSession> Server(std::shared_ptr<TlsContext> ctx);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  /// Progress is where an operation left the session.
  enum class Progress : uint8_t {
    kDone,    // the operation completed
    kWantIo,  // needs more ciphertext in (PushCiphertext) or has some to send out
    kClosed,  // the peer closed cleanly (close_notify)
    kFailed,  // see error()
  };

  /// PushCiphertext hands over bytes received from the network (all are taken).
  void PushCiphertext(std::span<const char> data);
  /// LendCiphertext is PushCiphertext without the copy: BoringSSL reads `data` in
  /// place until ReturnLent(), which keeps (copies) only what it has not read yet.
  /// `data` must stay valid and unchanged until then; no Push in between.
  void LendCiphertext(std::span<const char> data);
  void ReturnLent();
  /// PendingCiphertext is how many bytes wait to be sent to the network.
  size_t PendingCiphertext() const;
  /// PullCiphertext moves up to out.size() pending bytes into `out`; returns the count.
  size_t PullCiphertext(std::span<char> out);
  /// TakeCiphertext hands over all pending ciphertext without copying it; `spare`
  /// (emptied, its capacity kept) becomes the buffer new ciphertext goes to.
  std::string TakeCiphertext(std::string spare);

  /// Handshake advances the handshake; kDone once it has completed and the peer passed.
  Progress Handshake();
  bool handshake_done() const { return handshake_done_; }
  /// Read decrypts into `out`; `*n` is set on kDone (n > 0). kWantIo: push more bytes.
  Progress Read(std::span<char> out, size_t* n);
  /// Write encrypts all of `data` into the pending ciphertext.
  Progress Write(std::span<const char> data);
  /// Close queues a close_notify alert.
  void Close();

  /// peer is the verified identity of the other side (valid after the handshake).
  const SpiffeId& peer() const { return peer_; }
  TlsError error() const { return error_; }
  /// error_detail adds what failed in words (verify error, SAN text, BoringSSL reason).
  const std::string& error_detail() const { return error_detail_; }

 private:
  friend struct SessionVerifier;
  TlsSession(std::shared_ptr<TlsContext> ctx, std::vector<SpiffeId> expected);
  Progress Fail(TlsError error, std::string detail);
  Progress FromSslError(int rc);

  std::shared_ptr<TlsContext> ctx_;
  std::vector<SpiffeId> expected_;
  std::string host_;  // ClientForHost: the name the server's certificate must have
  SSL* ssl_ = nullptr;
  friend struct NetworkBio;
  // Ciphertext from the peer, read by BoringSSL from in_off_ on (no memmove per read,
  // as a memory BIO would do), and ciphertext for the peer, appended by BoringSSL.
  std::string in_;
  size_t in_off_ = 0;
  std::span<const char> lent_;  // read after in_, until ReturnLent
  std::string out_;
  size_t out_off_ = 0;
  SpiffeId peer_;
  TlsError error_ = TlsError::kNone;
  std::string error_detail_;
  bool handshake_done_ = false;
};

}  // namespace zt::tls
