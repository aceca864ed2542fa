// ConnectUpstream: the one way the proxy opens a connection towards a workload or a
// peer proxy: SO_MARK (so capture rules skip it), TCP_NODELAY, keepalive, a connect
// deadline, and a drain that can cancel the connect while it is in flight.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "ztunnel/core/result.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/proxy/connect_limiter.h"
#include "ztunnel/proxy/connection_tracker.h"

namespace zt::proxy {

/// ConnectCancel lets its owner abort one ConnectUpstream while it is in flight (the
/// HBONE stream it dials for was reset). Shared by the owner and the connecting fiber.
struct ConnectCancel {
  /// Cancel makes the connect end with kCancelled (at once if it has not started).
  void Cancel() {
    cancelled = true;
    if (fd >= 0 && loop != nullptr) loop->CancelFd(fd);
  }
  bool cancelled = false;
  int fd = -1;  // the socket being connected, while it is
  io::Loop* loop = nullptr;
};

/// UpstreamOptions configure an upstream socket.
struct UpstreamOptions {
  uint32_t mark = 1337;  // 0: none
  std::chrono::milliseconds connect_timeout{10'000};
  io::KeepaliveOptions keepalive{};
  /// netns_fd, when >= 0, is the network namespace to create the socket in (the
  /// source pod's, in in-pod mode). Must stay open for the call.
  int netns_fd = -1;
  /// limiter, when set, bounds connects in flight; `source` names who the connect is
  /// for (the client's address or identity). Past a bound: kOverloaded at once.
  ConnectLimiter* limiter = nullptr;
  std::string source;
  /// cancel, when set, can abort the connect; it must outlive the call.
  ConnectCancel* cancel = nullptr;
};

/// ConnectUpstream connects to `dst` from a fiber on `loop`. While the connect is in
/// flight it is in `tracker` (may be null), so a drain deadline aborts it. A failure
/// to set the mark is an error too: without it the connection would be captured again.
Result<io::UniqueFd> ConnectUpstream(io::Loop& loop, const io::SocketAddress& dst,
                                     const UpstreamOptions& options, ConnectionTracker* tracker);

}  // namespace zt::proxy
