// Readiness: what the process still waits for before it should get traffic, served
// as 15021 /healthz/ready (DESIGN.md §4 "Ports": 200 "ready", or 500 naming what is
// pending). Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/core/result.h"
#include "ztunnel/io/address.h"

namespace zt::admin {

/// Readiness is a set of named pending tasks; ready when it is empty.
class Readiness {
 public:
  /// Set marks `task` pending (true) or done (false).
  void Set(const std::string& task, bool pending);
  /// Pending lists the pending tasks, sorted.
  std::vector<std::string> Pending() const;

 private:
  mutable std::mutex mu_;
  std::set<std::string> pending_;
};

/// ReadinessServer answers GET /healthz/ready on its own thread, one short connection
/// at a time (kubelet probes; each read has a 1 s deadline). Anything else is 404.
class ReadinessServer {
 public:
  /// Start binds `addr` (errors name it) and starts serving `readiness`, which must
  /// outlive the server.
  static Result<std::unique_ptr<ReadinessServer>> Start(const io::SocketAddress& addr,
                                                        const Readiness& readiness);
  ~ReadinessServer();
  /// port is the bound port (tests bind port 0).
  uint16_t port() const { return port_; }

 private:
  ReadinessServer() = default;
  void Serve();
  void Answer(int conn);

  const Readiness* readiness_ = nullptr;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: written by the destructor
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace zt::admin
