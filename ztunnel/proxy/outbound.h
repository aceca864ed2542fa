// Outbound: serves connections the in-pod rules REDIRECTed to 15001: finds where
// they were going (SO_ORIGINAL_DST) and either tunnels them over HBONE (the
// destination is a mesh workload speaking HBONE) or passes them through as plain TCP
// (a TCP workload, or an address the mesh does not know).
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
#include "ztunnel/proxy/cert_view.h"
#include "ztunnel/proxy/connect_limiter.h"
#include "ztunnel/proxy/connection_tracker.h"
#include "ztunnel/proxy/mesh.h"
#include "ztunnel/proxy/pool.h"
#include "ztunnel/proxy/ports.h"
#include "ztunnel/state/route.h"

namespace zt::proxy {

/// OutboundOptions configure the outbound listener's connections.
struct OutboundOptions {
  /// mark is set (SO_MARK) on upstream sockets so the capture rules skip them; 0 = none.
  uint32_t mark = 1337;
  std::chrono::milliseconds connect_timeout{10'000};
  io::KeepaliveOptions keepalive{};
  /// hbone_port is the peer's inbound HBONE port (15008; tests use a port of their own).
  uint16_t hbone_port = kInboundHbonePort;
  /// original_dst says where a captured connection was going; SO_ORIGINAL_DST if empty.
  std::function<Result<io::SocketAddress>(int fd)> original_dst;
  /// limiter, when set, bounds this worker's pending upstream connects (must outlive
  /// the Outbound).
  ConnectLimiter* limiter = nullptr;
};

/// Outbound runs on one worker's loop; an Acceptor feeds it.
class Outbound {
 public:
  /// `tracker`, `balancer`, and `mesh`, `view`, `certs` and `pool` when given, must
  /// outlive this object (a mesh needs all four).
  /// Without a mesh every connection is a plain passthrough. `on_connection_end` runs
  /// on this loop each time a connection served here ends.
  Outbound(io::Loop& loop, OutboundOptions options, ConnectionTracker& tracker, Balancer& balancer,
           int index, std::function<void()> on_connection_end, const Mesh* mesh = nullptr,
           const SnapshotView* view = nullptr, CertView* certs = nullptr, Pool* pool = nullptr);
  ~Outbound();

  /// Serve takes an accepted connection the balancer counted for this worker.
  void Serve(int fd);

 private:
  struct Conn;
  void ServeFiber(io::UniqueFd downstream);
  void Passthrough(Conn& c);
  void Tunnel(Conn& c, const state::State& state, const state::Workload& dst_workload,
              const state::Service* service);
  void ConnectionEnded();

  io::Loop& loop_;
  OutboundOptions options_;
  ConnectionTracker& tracker_;
  Balancer& balancer_;
  int index_;
  std::function<void()> on_connection_end_;
  const Mesh* mesh_;
  const SnapshotView* view_;
  CertView* certs_;
  Pool* pool_;
  state::RoundRobin round_robin_;  // this worker's rotation over service endpoints
};

}  // namespace zt::proxy
