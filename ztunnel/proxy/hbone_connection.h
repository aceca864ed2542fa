// HboneConnection: one TCP connection carrying mutual TLS carrying HTTP/2, driven by
// io_uring completions. Bytes flow socket -> TlsSession -> h2::Session and back; both
// engines are sans-I/O, this class only moves bytes and owns lifetimes.
//
// Back-pressure: the socket side holds at most one send of at most kSendChunk bytes;
// h2 output is pulled into TLS only while the TLS output is small, so a slow peer
// stops h2, whose stream buffers then stop the TCP readers (see HboneStream).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/h2/session.h"
#include "ztunnel/io/buffer_ring.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/proxy/connection_tracker.h"
#include "ztunnel/tls/session.h"

namespace zt::proxy {

/// HboneTimeouts bound a connection's set-up and detect dead peers (DESIGN.md §4:
/// PING every 10 s, close after 20 s without an answer).
struct HboneTimeouts {
  std::chrono::milliseconds handshake{10'000};
  std::chrono::milliseconds ping_interval{10'000};
  std::chrono::milliseconds ping_timeout{20'000};
};

/// HboneConnection deletes itself once closed and all its operations are done.
class HboneConnection final : public TrackedConnection, public io::BufferWaiter {
 public:
  /// Events tell the owner (pool, inbound listener) what happened.
  struct Events {
    /// ready runs once the TLS handshake is done and the peer verified.
    std::function<void(HboneConnection*)> ready;
    /// closed runs once, when the connection is gone; `error` empty after a clean end.
    std::function<void(HboneConnection*, const std::string& error)> closed;
  };

  /// StartServer serves HBONE on an accepted socket: TLS with `ctx` (the destination
  /// workload's identity), CONNECTs go to `handler`, which must outlive the connection.
  static HboneConnection* StartServer(io::Loop& loop, io::UniqueFd fd,
                                      std::shared_ptr<tls::TlsContext> ctx,
                                      h2::ServerHandler* handler, ConnectionTracker* tracker,
                                      Events events, HboneTimeouts timeouts = {});
  /// StartClient speaks HBONE on a connected socket, accepting only a server whose
  /// identity is in `expected`.
  static HboneConnection* StartClient(io::Loop& loop, io::UniqueFd fd,
                                      std::shared_ptr<tls::TlsContext> ctx,
                                      std::vector<tls::SpiffeId> expected,
                                      ConnectionTracker* tracker, Events events,
                                      HboneTimeouts timeouts = {});

  /// h2 is the HTTP/2 session (valid until `closed` ran).
  h2::Session& h2() { return *h2_; }
  /// peer is the verified identity of the other side (after `ready`).
  const tls::SpiffeId& peer() const { return tls_->peer(); }
  io::Loop& loop() { return loop_; }
  bool ready() const { return ready_; }
  /// ScheduleFlush sends pending HTTP/2 output soon (once per loop batch). Safe to call
  /// from inside h2 callbacks, where flushing directly would re-enter nghttp2.
  void ScheduleFlush();
  /// Close ends the connection: streams are closed with `code`, the socket is reset.
  void Close(uint32_t code, std::string error);
  /// Drain sends GOAWAY: no new streams; the connection closes once the live ones end.
  /// During the TLS handshake it waits for the handshake, so a peer's first stream is
  /// still served.
  void Drain();
  void Abort() override { Close(h2::kCancel, "aborted"); }
  int SocketFd() const override { return fd_.get(); }
  void OnBuffersAvailable() override { ArmRecv(); }

 private:
  HboneConnection(io::Loop& loop, io::UniqueFd fd, ConnectionTracker* tracker, Events events,
                  HboneTimeouts timeouts);
  void ArmTimer(std::chrono::milliseconds delay);
  void OnTimer();
  ~HboneConnection();
  void ArmRecv();
  void OnRecv(int32_t res, uint32_t flags);
  void OnSend(int32_t res, uint32_t flags);
  void Process();
  void Flush();
  // WriteFrame is the h2 DataSink: it encrypts a DATA frame in place of nghttp2's copy.
  bool WriteFrame(std::span<const char> frame);
  // CloseAfterFlush closes once the output queued so far (a GOAWAY) has been sent.
  void CloseAfterFlush(uint32_t code, std::string error);
  void MaybeDestroy();
  // StartGoaway begins the graceful GOAWAY (Drain, once ready).
  void StartGoaway();
  // How long a graceful drain waits for its PING's ack before the final GOAWAY.
  static constexpr std::chrono::milliseconds kDrainAckWait{1000};
  // MaybeCloseIdle closes cleanly once HTTP/2 is done (GOAWAY and no streams left).
  void MaybeCloseIdle();

  io::Loop& loop_;
  io::UniqueFd fd_;
  ConnectionTracker* tracker_;
  Events events_;
  std::unique_ptr<tls::TlsSession> tls_;
  std::unique_ptr<h2::Session> h2_;
  io::MemberCompletion<HboneConnection, &HboneConnection::OnRecv> recv_op_{this};
  io::MemberCompletion<HboneConnection, &HboneConnection::OnSend> send_op_{this};
  HboneTimeouts timeouts_;
  io::Timer timer_;        // handshake deadline, then keepalive
  io::Timer drain_timer_;  // the final GOAWAY if the drain PING is not acked in time
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point ping_sent_{};
  std::string peer_addr_;  // for logs
  std::string send_buf_;   // ciphertext being sent (taken from TLS without a copy)
  size_t send_offset_ = 0;
  bool recv_inflight_ = false;
  bool drain_when_ready_ = false;  // Drain came during the handshake
  bool send_inflight_ = false;
  bool flush_scheduled_ = false;
  bool ready_ = false;
  bool closing_ = false;
  bool destroy_scheduled_ = false;
  bool peer_eof_ = false;
  bool close_after_flush_ = false;
  bool tls_write_failed_ = false;
  uint32_t close_code_ = 0;
  std::string error_;
};

}  // namespace zt::proxy
