// The handlers of the node process's own endpoints: admin (15000: /config_dump,
// /logging, /quitquitquit) and metrics (15020: Prometheus text, with the HTTP server's
// own counters appended).
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "ztunnel/admin/http_server.h"

namespace zt::admin {

/// AdminHandler serves 15000 (DESIGN.md §4 "Ports"), bound to localhost;
/// `config_dump` renders /config_dump (called on the admin thread).
HttpHandler AdminHandler(std::function<std::string()> config_dump);

/// RenderHttpStats renders the HTTP server's own counters in the Prometheus text format.
/// They live in HttpServer, not in metrics' registry: admin may not depend on metrics
/// (the module table in docs/ARCHITECTURE.md).
std::string RenderHttpStats(const HttpServer& http);

/// MetricsHandler serves 15020: Prometheus text on /metrics and /stats/prometheus,
/// `render`'s output and then the HTTP server's counters once `http` is set. The
/// server outlives every call: its destructor waits for a running handler.
HttpHandler MetricsHandler(std::function<std::string()> render,
                           const std::atomic<const HttpServer*>& http);

}  // namespace zt::admin
