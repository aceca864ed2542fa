// Inbound HBONE (15008): terminates mutual TLS presenting the destination workload's
// certificate, answers CONNECTs for that workload's addresses, connects to the target
// and relays (DESIGN.md §2 step 3, §4 HBONE).
//
// Which workload a connection is for comes from the address it was accepted on
// (getsockname): the destination pod's IP. Responses: 400 for a CONNECT whose
// authority is not an address of that workload (h2/ already answers 400 for
// anything that is not a CONNECT to ip:port), 503 when the target refuses.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "ztunnel/core/log_limiter.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/metrics/overload.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/cert_view.h"
#include "ztunnel/proxy/connect_limiter.h"
#include "ztunnel/proxy/connection_tracker.h"
#include "ztunnel/proxy/hbone_connection.h"
#include "ztunnel/proxy/mesh.h"
#include "ztunnel/state/authz.h"

namespace zt::proxy {

/// InboundOptions configure inbound HBONE connections and their upstream sockets.
struct InboundOptions {
  /// mark is set on upstream sockets so in-pod capture rules skip them; 0 = none.
  uint32_t mark = 1337;
  std::chrono::milliseconds connect_timeout{10'000};
  io::KeepaliveOptions keepalive{};
  HboneTimeouts timeouts{};
  /// limiter, when set, bounds this worker's pending upstream connects (must outlive
  /// the Inbound and InboundPlaintext).
  ConnectLimiter* limiter = nullptr;
  /// max_handshakes bounds the TLS handshakes in flight on this worker (0: unbounded);
  /// a connection past it is closed at once, before any TLS work.
  uint32_t max_handshakes = 512;
  /// overload, when set, counts those refusals (must outlive the Inbound).
  metrics::OverloadMetrics* overload = nullptr;
  /// response_baggage sends the destination's baggage on 200 (ENABLE_RESPONSE_BAGGAGE).
  bool response_baggage = true;
};

/// Inbound runs on one worker's loop; an Acceptor feeds it.
class HboneStream;

class Inbound {
 public:
  /// `mesh`, `view`, `certs`, `tracker` and `balancer` must outlive this object.
  /// `on_connection_end` runs on this loop each time an HBONE connection served here ends.
  Inbound(io::Loop& loop, InboundOptions options, const Mesh& mesh, const SnapshotView& view,
          CertView& certs, ConnectionTracker& tracker, Balancer& balancer, int index,
          std::function<void()> on_connection_end);
  ~Inbound();

  /// Serve takes an accepted HBONE connection the balancer counted for this worker.
  void Serve(int fd);
  /// Drain sends GOAWAY on every live connection: no new tunnels, live ones finish.
  void Drain();
  /// Recheck authorizes every live tunnel again against the current state and resets
  /// those now denied (a policy changed).
  void Recheck();

 private:
  class Handler;
  void ConnectionEnded();
  // Admit serves `fd` once its workload's certificate is at hand, parking it (counted
  // as a handshake) while the certificate is issued; `waited` says it was parked once.
  void Admit(io::UniqueFd fd, bool waited);

  io::Loop& loop_;
  InboundOptions options_;
  const Mesh& mesh_;
  const SnapshotView& view_;
  CertView& certs_;
  ConnectionTracker& tracker_;
  Balancer& balancer_;
  int index_;
  std::function<void()> on_connection_end_;
  // Handlers of live connections; a fiber finishing an upstream connect holds its own
  // reference, so a handler may outlive its connection.
  std::map<HboneConnection*, std::shared_ptr<Handler>> live_;
  // Live tunnels and what they were authorized as, for Recheck.
  struct LiveTunnel {
    std::string workload_uid;
    state::Connection info;
    std::string peer_addr;
    std::string peer_id;
  };
  std::unordered_map<HboneStream*, LiveTunnel> tunnels_;
  // Stream callbacks hold a weak reference: they may run after this object is gone.
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
  size_t handshakes_ = 0;  // connections served here whose TLS handshake is not done
  log::LogLimiter refusal_log_;
  bool draining_ = false;
};

}  // namespace zt::proxy
