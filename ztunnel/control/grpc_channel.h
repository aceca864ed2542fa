// GrpcChannel: one TLS 1.3 + HTTP/2 connection to a gRPC server (istiod's 15012), on
// the control thread's loop. It connects when the first call starts and again after
// the connection is lost (the caller's backoff decides when to start calls again),
// checks the server's certificate against the given roots and name, keeps the
// connection alive with PINGs, and enforces each call's deadline. The calls
// themselves are h2::GrpcClient's (sans-I/O): this class only moves bytes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ztunnel/h2/grpc_client.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/tls/context.h"
#include "ztunnel/tls/session.h"
#include "ztunnel/tls/x509.h"

namespace zt::control {

/// GrpcChannelOptions configure one channel.
struct GrpcChannelOptions {
  /// address is host:port ("istiod.istio-system.svc:15012", "[::1]:15012"); a name is
  /// resolved at every connect.
  std::string address;
  /// server_name is the name the server's certificate must have (empty: the host of
  /// `address`). istiod's serving certificate has DNS names only.
  std::string server_name;
  /// roots are the CAs the server's certificate must chain to.
  std::vector<tls::Certificate> roots;
  std::chrono::milliseconds connect_timeout{5000};
  /// A PING every keepalive_interval; no ack within keepalive_timeout ends the
  /// connection (Istio's ztunnel: 30 s / 10 s).
  std::chrono::milliseconds keepalive_interval{30'000};
  std::chrono::milliseconds keepalive_timeout{10'000};
  /// max_message bounds a message from the server.
  uint32_t max_message = 200u << 20;
};

/// GrpcChannel lives on one loop; every call is on its thread.
class GrpcChannel {
 public:
  /// CallId names a call for Send/CloseSend/Cancel.
  using CallId = uint64_t;

  /// Create checks the options; on failure `*error` says what is wrong.
  static std::unique_ptr<GrpcChannel> Create(io::Loop& loop, GrpcChannelOptions options,
                                             std::string* error);
  /// The destructor closes the connection; calls still open are dropped without a
  /// callback (their observers may already be gone).
  ~GrpcChannel();
  GrpcChannel(const GrpcChannel&) = delete;
  GrpcChannel& operator=(const GrpcChannel&) = delete;

  /// Start opens a call (connecting first if needed). `observer` must stay alive until
  /// its OnClose, which may run inside Start (a channel that cannot connect). A call
  /// that outlives `timeout` ends with DEADLINE_EXCEEDED.
  CallId Start(std::string path, h2::Metadata metadata, h2::GrpcCallObserver* observer,
               std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  /// Send queues one message; CloseSend ends our side after what is queued.
  void Send(CallId call, std::string message);
  void CloseSend(CallId call);
  /// Cancel ends a call now; its observer gets CANCELLED (with `why`).
  void Cancel(CallId call, const std::string& why);
  /// connected is true while a connection is up (handshake done).
  bool connected() const { return state_ == State::kConnected; }
  /// last_error says why the last connection attempt or connection failed.
  const std::string& last_error() const { return last_error_; }
  /// connects counts connections established (for tests and logs).
  uint64_t connects() const { return connects_; }
  /// LiveConnections counts connections of every channel in the process whose fibers
  /// have not ended yet (a destroyed channel's end at their next CQE): tests run the
  /// loop until it is 0, so nothing is left on a fiber stack when the loop stops.
  static int LiveConnections() { return live_connections_.load(); }

 private:
  enum class State : uint8_t { kIdle, kConnecting, kConnected };
  class CallProxy;
  // Connection is one attempt or live connection; its fibers hold it, and stop when
  // it is marked dead (lost, or the channel went away).
  struct Connection {
    Connection() { live_connections_.fetch_add(1); }
    ~Connection() { live_connections_.fetch_sub(1); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    bool dead = false;
    io::UniqueFd fd;
    std::unique_ptr<tls::TlsSession> tls;
    std::unique_ptr<h2::GrpcClient> client;
    io::Fiber* writer = nullptr;  // set while the writer fiber waits for work
    bool flush_wanted = false;
  };
  GrpcChannel(io::Loop& loop, GrpcChannelOptions options);
  void Connect();
  void ConnectFiber(std::shared_ptr<Connection> conn);
  void ReadLoop(const std::shared_ptr<Connection>& conn);
  void WriterFiber(std::shared_ptr<Connection> conn);
  // Lost ends every call with UNAVAILABLE `why` and goes back to idle.
  void Lost(const std::shared_ptr<Connection>& conn, const std::string& why);
  void Flush();
  void StartPending(CallProxy& p);
  void ArmKeepalive();
  void Finished(CallId id);

  io::Loop& loop_;
  GrpcChannelOptions options_;
  std::string host_;
  uint16_t port_ = 0;
  std::shared_ptr<tls::TlsContext> ctx_;
  State state_ = State::kIdle;
  std::shared_ptr<Connection> conn_;  // the current attempt or connection
  h2::GrpcClient* client_ = nullptr;  // conn_'s session once connected
  // Calls: started ones have a stream; pending ones wait for the connection.
  std::map<CallId, std::unique_ptr<CallProxy>> calls_;
  std::vector<CallId> pending_;
  CallId next_id_ = 1;
  std::unique_ptr<io::Timer> ping_timer_;
  std::unique_ptr<io::Timer> ack_timer_;
  std::string last_error_;
  uint64_t connects_ = 0;
  static inline std::atomic<int> live_connections_{0};
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

}  // namespace zt::control
