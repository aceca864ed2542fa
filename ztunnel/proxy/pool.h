// Pool: shared HBONE connections, one set per pool key (DESIGN.md §4): a connection
// carries at most min(100, peer's limit) streams, is replaced after GOAWAY or close,
// and is released after idling (5 minutes by default). A pool belongs to one worker
// loop: connections never cross threads.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/core/result.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/proxy/connect_limiter.h"
#include "ztunnel/proxy/connection_tracker.h"
#include "ztunnel/proxy/hbone_connection.h"
#include "ztunnel/tls/context.h"
#include "ztunnel/tls/spiffe.h"

namespace zt::io {
class Fiber;
}

namespace zt::proxy {

/// PoolKey says which connections may be shared: same source identity, same expected
/// destination identities, same destination ip:15008 (and, later, same source IP).
struct PoolKey {
  tls::SpiffeId source;
  std::vector<tls::SpiffeId> expected;
  io::SocketAddress destination;
  /// netns: the source pod's network namespace (in-pod mode), or -1. Connections from
  /// different pods never mix, even with the same identity: each has the pod's address.
  /// Only read while Acquire runs.
  int netns = -1;
  /// ToString is the map key (expected identities sorted, the netns by inode).
  std::string ToString() const;
};

/// PoolOptions configure new connections and their reuse.
struct PoolOptions {
  uint32_t mark = 1337;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds idle_timeout{300'000};
  size_t max_streams = 100;
  io::KeepaliveOptions keepalive{};
  HboneTimeouts timeouts{};
  /// limiter, when set, bounds this worker's pending connects (must outlive the Pool).
  ConnectLimiter* limiter = nullptr;
};

/// Pool is used from fibers on its loop. Destroy it after its loop stopped, or once
/// quiet() after CloseAll().
class Pool {
 public:
  Pool(io::Loop& loop, PoolOptions options, ConnectionTracker* tracker);
  ~Pool();

  /// Acquire returns a ready connection with room for one more stream, connecting (TLS
  /// with `client_ctx`) if needed. Call on a fiber; open the stream before the fiber
  /// suspends again, or another caller may take the room. On failure `*error` says why.
  Result<HboneConnection*> Acquire(const PoolKey& key,
                                   const std::shared_ptr<tls::TlsContext>& client_ctx,
                                   std::string* error);
  /// connections counts live connections (ready or connecting).
  size_t connections() const { return entries_.size(); }
  /// CloseAll closes every connection (shutdown).
  void CloseAll();
  /// quiet is true once no connection and no timer refers to the pool: only then may
  /// it be destroyed while its loop keeps running.
  bool quiet() const { return entries_.empty() && !sweep_.pending(); }

 private:
  struct Entry {
    std::string key;
    HboneConnection* conn = nullptr;
    bool ready = false;
    bool done = false;  // ready, or failed before becoming ready
    std::string error;
    std::vector<io::Fiber*> waiters;
    std::chrono::steady_clock::time_point idle_since{};
  };
  bool HasRoom(const Entry& e) const;
  void Wake(const std::shared_ptr<Entry>& e);
  // Unlist removes `e` from by_key_, so no caller picks it any more.
  void Unlist(const std::shared_ptr<Entry>& e);
  void ArmSweep();
  void Sweep();

  io::Loop& loop_;
  PoolOptions options_;
  ConnectionTracker* tracker_;
  std::multimap<std::string, std::shared_ptr<Entry>> by_key_;
  std::map<HboneConnection*, std::shared_ptr<Entry>> entries_;
  io::Timer sweep_;
  bool closing_ = false;
  // Connection callbacks hold a weak reference: they may run after the pool is gone.
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

}  // namespace zt::proxy
