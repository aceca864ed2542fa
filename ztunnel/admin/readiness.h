// Readiness: what the process still waits for before it should get traffic, served
// as 15021 /healthz/ready (DESIGN.md §4 "Ports": 200 "ready", or 500 naming what is
// pending). Thread-safe.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ztunnel/admin/http_server.h"

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

/// ReadinessHandler answers GET /healthz/ready from `readiness` (which must outlive
/// it): 200 "ready", or 500 "not ready: a; b" naming what is pending. Anything else 404.
HttpHandler ReadinessHandler(const Readiness& readiness);

}  // namespace zt::admin
