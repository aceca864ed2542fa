// Outbound: accepts connections the in-pod rules REDIRECTed to 15001, finds where
// they were going (SO_ORIGINAL_DST), connects there and relays. Today every
// destination is a plain TCP passthrough; the HBONE path arrives with the mesh.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "ztunnel/core/result.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/connection_tracker.h"

namespace zt::proxy {

/// OutboundOptions configure the outbound listener's connections.
struct OutboundOptions {
  /// mark is set (SO_MARK) on upstream sockets so the capture rules skip them; 0 = none.
  uint32_t mark = 1337;
  std::chrono::milliseconds connect_timeout{10'000};
  io::KeepaliveOptions keepalive{};
  /// original_dst says where a captured connection was going; SO_ORIGINAL_DST if empty.
  std::function<Result<io::SocketAddress>(int fd)> original_dst;
};

/// Outbound runs on one worker's loop; all workers share one listening socket and
/// hand each accepted connection to the least-loaded worker (see Balancer).
class Outbound {
 public:
  /// `listen_fd`, `tracker` and `balancer` must outlive this object. `on_connection_end`
  /// runs on this loop each time a connection served here ends.
  Outbound(io::Loop& loop, int listen_fd, OutboundOptions options, ConnectionTracker& tracker,
           Balancer& balancer, int index, std::function<void()> on_connection_end);
  ~Outbound();

  /// Start begins accepting.
  void Start();
  /// StopAccepting shuts the listener (new connections are refused, not queued) and
  /// runs `on_stopped` once the kernel has released the accept.
  void StopAccepting(std::function<void()> on_stopped);
  /// ServeHanded serves a connection another worker accepted and counted for us.
  void ServeHanded(int fd);

 private:
  void AcceptLoop();
  void Serve(io::UniqueFd downstream);
  void ConnectionEnded();

  io::Loop& loop_;
  int listen_fd_;
  OutboundOptions options_;
  ConnectionTracker& tracker_;
  Balancer& balancer_;
  int index_;
  std::function<void()> on_connection_end_;
  std::unique_ptr<io::MultishotAccept> accept_;
  std::function<void()> on_stopped_;
  bool accept_done_ = false;
};

}  // namespace zt::proxy
