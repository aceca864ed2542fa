// Acceptor: one worker's share of a listening socket that every worker accepts on.
// It takes connections with a multishot accept and gives each to the least-loaded
// worker (see Balancer), itself included.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "ztunnel/core/log_limiter.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/metrics/overload.h"
#include "ztunnel/proxy/balancer.h"

namespace zt::proxy {

/// Acceptor runs on one worker's loop.
class Acceptor {
 public:
  /// ServeFn serves a connection accepted here and assigned to this worker; the
  /// balancer already counts it.
  using ServeFn = std::function<void(int fd)>;

  /// `listen_fd` and `balancer` (and `overload`, when given) must outlive this object.
  /// `name` is for logs.
  Acceptor(io::Loop& loop, int listen_fd, Balancer& balancer, int index, Listener listener,
           const char* name, ServeFn serve, metrics::OverloadMetrics* overload = nullptr);

  /// kMinBackoff and kMaxBackoff bound the pause after accept ran out of file
  /// descriptors or memory: doubling from the first to the second, so a listener is
  /// back within kMaxBackoff of resources freeing.
  static constexpr std::chrono::milliseconds kMinBackoff{10};
  static constexpr std::chrono::milliseconds kMaxBackoff{250};
  ~Acceptor();

  /// Start begins accepting.
  void Start();
  /// Stop shuts the listener (new connections are refused, not queued) and runs
  /// `on_stopped` once the kernel has released the accept.
  void Stop(std::function<void()> on_stopped);

 private:
  void AcceptLoop();
  // BackOff pauses accepting after a resource error; logs (rate-limited) and counts it.
  void BackOff(const Error& error);

  io::Loop& loop_;
  int listen_fd_;
  Balancer& balancer_;
  int index_;
  Listener listener_;
  const char* name_;
  ServeFn serve_;
  std::unique_ptr<io::MultishotAccept> accept_;
  std::function<void()> on_stopped_;
  metrics::OverloadMetrics* overload_;
  log::LogLimiter log_limiter_;
  std::chrono::milliseconds backoff_{0};  // 0: the last accept succeeded
  bool done_ = false;
};

}  // namespace zt::proxy
