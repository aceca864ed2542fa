#include "ztunnel/admin/endpoints.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <iterator>
#include <utility>

#include "ztunnel/core/log.h"

namespace zt::admin {

HttpHandler AdminHandler(std::function<std::string()> config_dump) {
  return [config_dump = std::move(config_dump)](const HttpRequest& req) -> HttpResponse {
    if (req.path == "/config_dump") return {200, "application/json", config_dump()};
    if (req.path == "/logging") {
      if (req.method == "POST" && !req.query.empty()) {
        const std::string text = req.Param("level");
        auto level = log::ParseLevel(text);
        if (!level) {
          return {400, "text/plain",
                  "unknown level \"" + text +
                      "\": expected level=trace, debug, info, warn, error or off (one level for "
                      "every scope)\n"};
        }
        log::SetLevel(*level);
        ZT_INFO("admin", "log level set to {} through /logging", log::LevelName(*level));
      }
      return {200, "text/plain",
              "current log level is " + std::string(log::LevelName(log::GetLevel())) + "\n"};
    }
    if (req.path == "/quitquitquit") {
      if (req.method != "POST") return {405, "text/plain", "use POST\n"};
      ZT_INFO("admin", "POST /quitquitquit: shutting down as on SIGTERM");
      ::kill(::getpid(), SIGTERM);  // the main thread's sigwait takes it
      return {200, "text/plain", "OK\n"};
    }
    if (req.path == "/") {
      return {200, "text/plain",
              "ztunnel admin: /config_dump, /logging[?level=...] (POST), /quitquitquit (POST)\n"};
    }
    return {404, "text/plain", "not found\n"};
  };
}

// RenderHttpStats renders the HTTP server's own counters in the Prometheus text format.
// They live in HttpServer, not in metrics' registry: admin may not depend on
// metrics (the module table in docs/ARCHITECTURE.md).
std::string RenderHttpStats(const HttpServer& http) {
  std::string out =
      "# HELP ztunnel_admin_connections_rejected_total Connections to the admin, metrics and "
      "readiness endpoints refused (budget: 503 past the connection limit; too_large: 431 or "
      "413; bad_request: 400), closed on a timeout or to make room for a new client "
      "(slow_headers: still sending headers while the budget was full), or not accepted "
      "(accept_error: out of fds or memory, then backed off).\n"
      "# TYPE ztunnel_admin_connections_rejected_total counter\n";
  auto line = std::back_inserter(out);
  for (size_t i = 0; i < http.size(); ++i) {
    const HttpServer::Stats s = http.stats(i);
    const std::pair<const char*, uint64_t> reasons[] = {
        {"budget", s.rejected_budget},           {"header_timeout", s.header_timeouts},
        {"request_timeout", s.request_timeouts}, {"too_large", s.too_large},
        {"bad_request", s.bad_requests},         {"accept_error", s.accept_errors},
        {"slow_headers", s.slow_evicted}};
    for (const auto& [reason, n] : reasons) {
      fmt::format_to(line,
                     "ztunnel_admin_connections_rejected_total{{endpoint=\"{}\",reason=\"{}\"}} "
                     "{}\n",
                     http.name(i), reason, n);
    }
  }
  out +=
      "# HELP ztunnel_admin_connections_accepted_total Connections the admin, metrics and "
      "readiness endpoints served within their budget.\n"
      "# TYPE ztunnel_admin_connections_accepted_total counter\n";
  for (size_t i = 0; i < http.size(); ++i) {
    fmt::format_to(line, "ztunnel_admin_connections_accepted_total{{endpoint=\"{}\"}} {}\n",
                   http.name(i), http.stats(i).accepted);
  }
  out +=
      "# HELP ztunnel_admin_connections_active Connections open now on the admin, metrics and "
      "readiness endpoints, within their budget.\n"
      "# TYPE ztunnel_admin_connections_active gauge\n";
  for (size_t i = 0; i < http.size(); ++i) {
    fmt::format_to(line, "ztunnel_admin_connections_active{{endpoint=\"{}\"}} {}\n", http.name(i),
                   http.stats(i).active);
  }
  out +=
      "# HELP ztunnel_admin_requests_total Requests answered by the admin, metrics and "
      "readiness endpoints' handlers.\n"
      "# TYPE ztunnel_admin_requests_total counter\n";
  for (size_t i = 0; i < http.size(); ++i) {
    fmt::format_to(line, "ztunnel_admin_requests_total{{endpoint=\"{}\"}} {}\n", http.name(i),
                   http.stats(i).requests);
  }
  return out;
}

HttpHandler MetricsHandler(std::function<std::string()> render,
                           const std::atomic<const HttpServer*>& http) {
  return [render = std::move(render), &http](const HttpRequest& req) -> HttpResponse {
    if (req.path != "/metrics" && req.path != "/stats/prometheus") {
      return {404, "text/plain", "not found\n"};
    }
    std::string body = render();
    if (const HttpServer* server = http.load()) body += RenderHttpStats(*server);
    return {200, "text/plain; version=0.0.4; charset=utf-8", std::move(body)};
  };
}

}  // namespace zt::admin
