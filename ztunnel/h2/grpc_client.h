// gRPC client over HTTP/2, sans-I/O on nghttp2 (as h2::Session): the caller feeds
// the server's bytes in with Receive and sends what NextOutput gives. Unary and
// streaming calls (a unary call is a stream with one message each way), trailers and
// trailers-only answers, grpc-status/grpc-message, per-call deadlines sent as
// grpc-timeout (enforced by the caller's timer through Cancel), HTTP status and
// RST_STREAM codes mapped as gRPC's PROTOCOL-HTTP2 says, keepalive PINGs.
//
// Messages are length-prefixed (1 flag byte, 4-byte big-endian length); compression is
// never sent and a compressed message from the server fails its call.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ztunnel/core/result.h"

struct nghttp2_session;

namespace zt::h2 {

/// GrpcCode is a gRPC status code (grpc/doc/statuscodes.md).
enum class GrpcCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

/// GrpcCodeName is the canonical upper-case name ("UNAVAILABLE").
const char* GrpcCodeName(GrpcCode code);

/// GrpcStatus is how a call ended.
struct GrpcStatus {
  GrpcCode code = GrpcCode::kOk;
  std::string message;
  bool ok() const { return code == GrpcCode::kOk; }
  /// ToString is "UNAVAILABLE: message" (or "OK").
  std::string ToString() const;
};

/// Metadata is a call's headers or trailers, in order (keys lower-case).
using Metadata = std::vector<std::pair<std::string, std::string>>;

/// GrpcCallObserver receives one call's events, on the thread driving the client. It
/// must stay alive until OnClose.
class GrpcCallObserver {
 public:
  /// OnHeaders: the server's initial metadata (not for a trailers-only answer).
  virtual void OnHeaders(const Metadata& /*headers*/) {}
  /// OnMessage: one whole message from the server.
  virtual void OnMessage(std::string message) = 0;
  /// OnClose: the call is over, with the server's status or a local one (deadline,
  /// cancel, connection lost). Exactly once, last; the observer may be freed in it.
  virtual void OnClose(const GrpcStatus& status, const Metadata& trailers) = 0;

 protected:
  ~GrpcCallObserver() = default;
};

/// GrpcClientOptions configure one connection.
struct GrpcClientOptions {
  /// authority is the :authority of every call (host[:port] of the server).
  std::string authority;
  /// max_message is the largest message accepted from the server (Istio's ztunnel
  /// allows 200 MiB on the xDS stream); a larger one fails its call.
  uint32_t max_message = 200u << 20;
  /// window is the stream and connection receive window.
  uint32_t window = 4u << 20;
  /// user_agent is sent with every call.
  std::string user_agent = "ztunnel-grpc";
};

/// GrpcClient is one HTTP/2 connection to a gRPC server; use it from one thread.
class GrpcClient {
 public:
  /// Create makes the session; its preface and SETTINGS are the first output.
  static std::unique_ptr<GrpcClient> Create(const GrpcClientOptions& options);
  ~GrpcClient();
  GrpcClient(const GrpcClient&) = delete;
  GrpcClient& operator=(const GrpcClient&) = delete;

  /// Receive processes bytes from the server. An error means the connection is
  /// unusable: send what NextOutput still gives, close, then CloseAll.
  Status Receive(std::span<const char> data);
  /// NextOutput returns the next bytes to send (empty when none); valid until the next
  /// call on this client.
  std::string_view NextOutput();
  /// alive is false once the connection should be closed (GOAWAY with no call left, or
  /// a protocol error).
  bool alive() const;
  /// can_start is false once the server sent GOAWAY (start calls on a new connection).
  bool can_start() const;
  /// failure says why the session failed, for logs.
  const std::string& failure() const { return failure_; }

  /// Start opens a call to `path` ("/package.Service/Method") with `metadata` (keys
  /// lower-case, e.g. "authorization"); `timeout`, when set, is sent as grpc-timeout.
  Result<int32_t> Start(std::string_view path, const Metadata& metadata, GrpcCallObserver* observer,
                        std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  /// Send queues one message on a call.
  Status Send(int32_t call, std::string_view message);
  /// CloseSend ends our side of a call (END_STREAM) after what is queued.
  Status CloseSend(int32_t call);
  /// Cancel ends a call at once (RST_STREAM CANCEL); its observer gets `status`.
  void Cancel(int32_t call, const GrpcStatus& status);
  /// CloseAll ends every call with `status` (the connection was lost); afterwards the
  /// client only gets destroyed.
  void CloseAll(const GrpcStatus& status);
  /// SendPing queues a keepalive PING; PingOutstanding is true until its ack.
  void SendPing();
  bool PingOutstanding() const { return ping_outstanding_; }
  /// Goaway tells the server we start no more calls; live ones finish.
  void Goaway();
  /// active_calls counts calls not closed yet.
  size_t active_calls() const { return calls_.size(); }

 private:
  struct Call;
  friend struct GrpcCallbacks;
  explicit GrpcClient(const GrpcClientOptions& options);
  bool Init();
  Call* Find(int32_t id) const;
  void Finish(Call* call, GrpcStatus status);
  void Fail(std::string why);
  void OnData(Call* call, std::span<const uint8_t> data);
  void OnHeadersDone(Call* call, bool end_stream);

  GrpcClientOptions options_;
  nghttp2_session* ng_ = nullptr;
  std::map<int32_t, std::unique_ptr<Call>> calls_;
  std::string output_;
  std::string failure_;
  bool ping_outstanding_ = false;
  bool goaway_received_ = false;
  bool failed_ = false;
};

/// FormatGrpcTimeout renders a deadline as grpc-timeout ("1500m", at most 8 digits).
std::string FormatGrpcTimeout(std::chrono::milliseconds timeout);
/// PercentDecode decodes grpc-message (%XX escapes; anything malformed stays as is).
std::string PercentDecode(std::string_view text);

}  // namespace zt::h2
