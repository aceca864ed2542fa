// Inbound plaintext (15006): connections from peers outside the mesh, captured by the
// inbound rules on their way to a local workload. They carry no identity: they are
// authorized as plaintext peers (DESIGN.md §2 step 4, §4), then relayed; denied ones
// are closed with a reset.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "ztunnel/core/result.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/connection_tracker.h"
#include "ztunnel/proxy/inbound.h"
#include "ztunnel/proxy/mesh.h"
#include "ztunnel/state/authz.h"

namespace zt::proxy {

class Relay;

/// InboundPlaintext runs on one worker's loop; an Acceptor feeds it.
class InboundPlaintext {
 public:
  /// `mesh`, `view`, `tracker` and `balancer` must outlive this object. `original_dst` reads
  /// where a captured connection was going (SO_ORIGINAL_DST when empty).
  InboundPlaintext(io::Loop& loop, InboundOptions options, const Mesh& mesh,
                   const SnapshotView& view, ConnectionTracker& tracker, Balancer& balancer,
                   int index, std::function<void()> on_connection_end,
                   std::function<Result<io::SocketAddress>(int fd)> original_dst = {});

  /// Serve takes an accepted connection the balancer counted for this worker.
  void Serve(int fd);
  /// Recheck authorizes live connections again and resets those now denied.
  void Recheck();

 private:
  void ServeFiber(io::UniqueFd fd);
  void ConnectionEnded();

  io::Loop& loop_;
  InboundOptions options_;
  const Mesh& mesh_;
  const SnapshotView& view_;
  ConnectionTracker& tracker_;
  Balancer& balancer_;
  int index_;
  std::function<void()> on_connection_end_;
  std::function<Result<io::SocketAddress>(int fd)> original_dst_;
  struct Live {
    std::string workload_uid;
    state::Connection info;
    std::string src;
  };
  std::unordered_map<Relay*, Live> live_;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

}  // namespace zt::proxy
