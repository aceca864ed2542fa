// HboneStream: one tunnelled TCP connection: a local socket relayed to and from one
// CONNECT stream of an HboneConnection, with the DESIGN.md §4 mapping:
//   TCP FIN -> END_STREAM, END_STREAM -> shutdown(SHUT_WR),
//   TCP reset -> RST_STREAM(CONNECT_ERROR), RST_STREAM(CONNECT_ERROR...) -> TCP reset,
//   RST_STREAM(NO_ERROR/CANCEL) while reading -> EOF.
// Back-pressure both ways: TCP reads stop while the stream holds kMaxBuffered unsent
// bytes; HTTP/2 window credit is returned only after bytes reached the TCP socket.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "ztunnel/h2/session.h"
#include "ztunnel/io/buffer_ring.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/proxy/connection_tracker.h"
#include "ztunnel/proxy/hbone_connection.h"

namespace zt::proxy {

/// StreamResult is what a tunnel reports when it is gone.
struct StreamResult {
  uint64_t bytes_to_stream = 0;    // read from TCP, sent into the tunnel
  uint64_t bytes_from_stream = 0;  // received from the tunnel, written to TCP
  bool ok = true;
  std::string error;
};

/// HboneStream deletes itself when both directions have ended and the stream closed.
class HboneStream final : public h2::StreamObserver,
                          public io::BufferWaiter,
                          public TrackedConnection {
 public:
  using DoneFn = std::function<void(const StreamResult&)>;
  /// kMaxBuffered bounds bytes queued in HTTP/2 for one stream before TCP reads pause.
  static constexpr size_t kMaxBuffered = 256 << 10;

  /// Create makes the observer for a stream that is about to exist (a client passes it
  /// to Session::Connect, a server to Respond); Attach then starts the relay.
  static HboneStream* Create(HboneConnection* conn, io::UniqueFd tcp, ConnectionTracker* tracker,
                             DoneFn done);
  /// Attach starts relaying on stream `id`: at once on the server (after Respond 200),
  /// on the client once the 200 arrives (`wait_for_response`).
  void Attach(int32_t id, bool wait_for_response);
  /// Refuse ends the tunnel before it opened (non-200, or Connect failed).
  void Refuse(std::string error);
  /// Terminate resets a live tunnel both ways (e.g. a policy now denies it).
  void Terminate(std::string reason) { Fail(std::move(reason)); }

  // h2::StreamObserver
  void OnResponse(int status) override;
  void OnData(std::span<const char> data) override;
  void OnEndStream() override;
  void OnWritable() override;
  void OnStreamClosed(uint32_t code) override;
  // io::BufferWaiter
  void OnBuffersAvailable() override { ArmRecv(); }
  // TrackedConnection
  void Abort() override;
  int SocketFd() const override { return tcp_.get(); }

  /// on_response (client) hears the CONNECT answer before anything else happens.
  std::function<void(int status)> on_response;

 private:
  HboneStream(HboneConnection* conn, io::UniqueFd tcp, ConnectionTracker* tracker, DoneFn done);
  ~HboneStream();
  void ArmRecv();
  void OnRecv(int32_t res, uint32_t flags);
  void MaybeSend();
  void OnSend(int32_t res, uint32_t flags);
  void MaybeShutdownWrite();
  void Fail(std::string error);
  void MaybeDestroy();

  HboneConnection* conn_;  // null once the stream is closed
  io::Loop& loop_;
  io::UniqueFd tcp_;
  ConnectionTracker* tracker_;
  DoneFn done_;
  int32_t id_ = 0;
  io::MemberCompletion<HboneStream, &HboneStream::OnRecv> recv_op_{this};
  io::MemberCompletion<HboneStream, &HboneStream::OnSend> send_op_{this};
  std::string out_;       // tunnel -> TCP, waiting
  std::string inflight_;  // tunnel -> TCP, being written (stable while the kernel reads it)
  size_t inflight_off_ = 0;
  StreamResult result_;
  bool attached_ = false;
  bool relaying_ = false;
  bool recv_inflight_ = false;
  bool send_inflight_ = false;
  bool tcp_eof_ = false;         // TCP -> tunnel direction ended
  bool stream_ended_ = false;    // tunnel -> TCP direction ended (END_STREAM or clean RST)
  bool wrote_shutdown_ = false;  // FIN passed to the TCP socket
  bool stream_closed_ = false;
  bool reset_ = false;
  bool destroy_scheduled_ = false;
};

}  // namespace zt::proxy
