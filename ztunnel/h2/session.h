// HBONE over HTTP/2, sans-I/O on nghttp2 (mem_recv / mem_send): the caller feeds the
// peer's bytes in with Receive and sends what NextOutput gives out, so the same code
// runs over TLS on io_uring and in tests without a socket.
//
// HBONE (DESIGN.md §4): one CONNECT stream per tunnelled TCP connection;
// `:authority` is the target "ip:port"; 200 opens the tunnel; END_STREAM is the TCP
// FIN; RST_STREAM is a reset.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ztunnel/core/ip_port.h"
#include "ztunnel/core/result.h"

struct nghttp2_session;

namespace zt::h2 {

/// HTTP/2 error codes used in RST_STREAM and GOAWAY.
enum ErrorCode : uint32_t {
  kNoError = 0x0,
  kProtocolError = 0x1,
  kInternalError = 0x2,
  kRefusedStream = 0x7,
  kCancel = 0x8,
  kConnectError = 0xa,
  kEnhanceYourCalm = 0xb,
};

/// Limits are the HTTP/2 settings and abuse bounds of one connection.
struct Limits {
  uint32_t stream_window = 4 << 20;
  uint32_t connection_window = 16 << 20;
  uint32_t max_frame_size = 1 << 20;
  /// max_concurrent_streams is what a server allows (a client opens at most 100).
  uint32_t max_concurrent_streams = 200;
  /// max_header_list is the largest *decoded* header list accepted (64 KiB server,
  /// 16 KiB client).
  uint32_t max_header_list = 64 << 10;
  /// Queued SETTINGS/PING acks before the peer counts as flooding (Envoy: 1,000).
  uint32_t max_outbound_acks = 1000;
  /// Rapid reset: a token bucket of RST_STREAMs (burst, then per-second refill).
  uint32_t reset_burst = 1000;
  uint32_t reset_rate = 33;
  /// Rapid reset (CVE-2023-44487), the sharper bound: streams the peer reset before
  /// the handler answered them, while the handler's work for them (the upstream
  /// connect) has not finished. One more than this ends the connection with GOAWAY
  /// ENHANCE_YOUR_CALM. Istio's ztunnel (hyper) allows 20 such pending resets.
  uint32_t max_pending_resets = 20;
  /// CONTINUATION frames allowed after one HEADERS.
  uint32_t max_continuations = 8;
  /// Consecutive empty DATA frames (without END_STREAM) tolerated.
  uint32_t max_empty_frames = 1;
  /// WINDOW_UPDATE flood (as Envoy bounds it): inbound WINDOW_UPDATEs may exceed
  /// window_update_base + window_update_per_data * (DATA frames we sent) only by a flood.
  uint32_t window_update_base = 100;
  uint32_t window_update_per_data = 10;
};

/// ServerLimits and ClientLimits are DESIGN.md's defaults for each side.
Limits ServerLimits();
Limits ClientLimits();

/// ConnectRequest is what an HBONE CONNECT carries.
struct ConnectRequest {
  IpPort authority;
  std::string baggage;
  std::string forwarded;
  std::string traceparent;
};

/// StreamObserver receives one stream's events, on the thread driving the session.
/// It must stay alive until OnStreamClosed.
class StreamObserver {
 public:
  /// OnResponse (client) reports the response status; anything but 200 is a refusal.
  virtual void OnResponse(int /*status*/) {}
  /// OnData delivers tunnelled bytes; the window reopens only after Session::Consume.
  virtual void OnData(std::span<const char> data) = 0;
  /// OnEndStream: the peer half-closed (its TCP FIN).
  virtual void OnEndStream() = 0;
  /// OnWritable: bytes written with Session::Write have gone out; more may follow.
  virtual void OnWritable() {}
  /// OnStreamClosed: the stream is gone; `code` is the RST_STREAM/GOAWAY error or
  /// kNoError after a clean close. Called exactly once, last.
  virtual void OnStreamClosed(uint32_t code) = 0;

 protected:
  ~StreamObserver() = default;
};

/// ServerHandler gets each well-formed CONNECT. It answers with Session::Respond, now
/// or later (e.g. once the upstream connect finished): exactly once per OnConnect,
/// also after OnStreamReset, which is how the session learns its work for the stream
/// is over (until then a reset stream counts against Limits::max_pending_resets).
class ServerHandler {
 public:
  virtual void OnConnect(int32_t stream, const ConnectRequest& request) = 0;
  /// OnStreamReset: the peer reset (or the session lost) a stream before it was
  /// answered; the handler should abandon its work for it (cancel its connect).
  virtual void OnStreamReset(int32_t /*stream*/) {}

 protected:
  ~ServerHandler() = default;
};

/// DataSink takes one whole DATA frame (9-byte header, then payload) straight from the
/// stream's buffer, which saves copying the payload into nghttp2's frame buffer. It
/// returns false to take nothing now; the same frame is offered again on a later
/// NextOutput. The bytes must be consumed (e.g. encrypted) before it returns.
using DataSink = std::function<bool(std::span<const char> frame)>;

/// Session is one HTTP/2 connection; use it from one thread.
class Session {
 public:
  /// Client makes a client session; it sends the preface and SETTINGS first.
  static std::unique_ptr<Session> Client(const Limits& limits);
  /// Server makes a server session answering CONNECTs through `handler`, which must
  /// outlive it. Requests that are not CONNECT or whose authority is not ip:port are
  /// answered 400 without reaching the handler.
  static std::unique_ptr<Session> Server(const Limits& limits, ServerHandler* handler);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Receive processes bytes from the peer. An error means the connection must be
  /// closed (after sending what NextOutput still gives: usually a GOAWAY).
  Status Receive(std::span<const char> data);
  /// NextOutput returns the next bytes to send (empty when none); the view is valid
  /// until the next call on this session.
  std::string_view NextOutput();
  /// SetDataSink sends DATA frames through `sink` (in NextOutput's order with the other
  /// frames) instead of returning them from NextOutput.
  void SetDataSink(DataSink sink) { data_sink_ = std::move(sink); }
  /// alive is false once the connection should be closed (GOAWAY exchanged, error).
  bool alive() const;
  /// failure names why the session failed (flood, protocol error), for logs.
  const std::string& failure() const { return failure_; }

  /// Connect (client) opens a CONNECT stream; returns its id.
  Result<int32_t> Connect(const ConnectRequest& request, StreamObserver* observer);
  /// Respond (server) answers a CONNECT; with 200 the tunnel opens and `observer` gets
  /// its events; otherwise the stream ends and `observer` may be null.
  /// `baggage`, when not empty, is sent as the answer's baggage header (Istio's
  /// ztunnel describes the destination workload there).
  Status Respond(int32_t stream, int status, StreamObserver* observer,
                 std::string_view baggage = {});
  /// Write queues bytes on a stream; Buffered tells how many wait (apply back-pressure).
  Status Write(int32_t stream, std::span<const char> data);
  size_t Buffered(int32_t stream) const;
  /// EndStream half-closes our side (END_STREAM) after the queued bytes.
  Status EndStream(int32_t stream);
  /// Reset sends RST_STREAM with `code` (kConnectError for a TCP reset).
  void Reset(int32_t stream, uint32_t code);
  /// Consume reopens the flow-control window for `n` delivered bytes.
  void Consume(int32_t stream, size_t n);
  /// Goaway stops new streams (drain); live ones continue. On a server with kNoError it
  /// is graceful (RFC 9113 §6.8): a GOAWAY naming the highest stream id and a PING go
  /// out first, and the final GOAWAY naming the last stream processed only when the
  /// PING's ack arrives, so a stream the peer opened before it saw the first is served.
  void Goaway(uint32_t code = kNoError);
  /// draining is true once Goaway was called.
  bool draining() const { return draining_; }
  /// FinishDrain sends the final GOAWAY of a graceful drain now, without waiting for
  /// the PING's ack (a peer that never answers); no-op otherwise.
  void FinishDrain();
  /// drain_finishing is true while a graceful drain waits for its PING's ack.
  bool drain_finishing() const { return drain_notice_pending_ || drain_ping_outstanding_; }
  /// CloseAll ends every stream (observers get OnStreamClosed(code), the handler
  /// OnStreamReset for streams not answered yet); for teardown: the session does
  /// nothing afterwards but get destroyed.
  void CloseAll(uint32_t code);

  /// SendPing queues a keepalive PING; PingOutstanding is true until its ack.
  void SendPing();
  bool PingOutstanding() const { return ping_outstanding_; }

  /// can_open is true while a new stream may be opened (no GOAWAY, not failed).
  bool can_open() const;
  /// active_streams counts open streams; peer_max_streams is the peer's setting.
  size_t active_streams() const { return streams_.size(); }
  uint32_t peer_max_streams() const;

 private:
  struct Stream;
  friend struct Callbacks;
  Session(const Limits& limits, ServerHandler* handler);
  bool Init(bool server);
  Stream* Find(int32_t id) const;
  void Fail(std::string why);
  void OnRequest(Stream* stream);

  Limits limits_;
  ServerHandler* handler_;
  DataSink data_sink_;
  nghttp2_session* ng_ = nullptr;
  std::map<int32_t, std::unique_ptr<Stream>> streams_;
  std::vector<int32_t> writable_;  // streams to tell OnWritable after the next flush
  // Streams the peer reset before they were answered, until the handler answers them.
  std::set<int32_t> pending_resets_;
  bool calm_ = false;  // failed for abuse: the GOAWAY says ENHANCE_YOUR_CALM
  std::string failure_;
  uint32_t empty_frames_ = 0;
  uint64_t window_updates_in_ = 0;
  uint64_t data_frames_out_ = 0;
  bool ping_outstanding_ = false;
  bool draining_ = false;
  bool drain_notice_pending_ = false;    // the first GOAWAY queued, its PING not yet
  bool drain_ping_outstanding_ = false;  // the graceful GOAWAY's PING, not acked yet
  bool failed_ = false;
  bool closed_ = false;
};

}  // namespace zt::h2
