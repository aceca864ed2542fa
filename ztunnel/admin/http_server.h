// HttpServer: the HTTP/1.1 server behind the node process' admin (15000), metrics
// (15020) and readiness (15021) ports, on Boost.Beast and Boost.Asio (no TLS).
//
// Each endpoint is isolated: it has its own thread (its own io_context), its own
// connection budget and its own timeouts, so a slow or flooding client on one port can
// never delay another port's kubelet probe or Prometheus scrape. Past a bound the server
// refuses with a clear answer (503, 431, 413) or closes, and counts it (`stats`); it never
// queues work without bound or drops a client without a trace. Handlers run on their
// endpoint's thread, one request at a time. Not a data path: simplicity over throughput.
// Asio stays out of this header (the implementation is behind `Endpoint`).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/io/address.h"

namespace zt::admin {

/// HttpRequest is one parsed request.
struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query
  std::string query;   // after '?', undecoded
  std::string body;
  /// Param returns a query parameter's value ("" when absent).
  std::string Param(const std::string& name) const;
};

/// HttpResponse is what a handler answers.
struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// HttpHandler answers requests on one listener. It runs on that endpoint's thread, so
/// what it reads must be safe to read from there; an exception it throws becomes a 500.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

/// HttpLimits bound what clients can take from one endpoint. Every bound, once hit, is
/// counted in `HttpServer::Stats`.
struct HttpLimits {
  /// max_connections is how many connections are served at once. One more is answered
  /// `503` with `Connection: close` at once, unless a place can be made: an idle
  /// keep-alive connection is closed, else the connection that has been sending its
  /// headers longest, if that is longer than `slow_header_grace` (slowloris cannot hold
  /// the budget against clients that send their request at once, as probes do).
  size_t max_connections = 64;
  /// slow_header_grace is how long a connection may take over its headers before a new
  /// client may take its place when the budget is full.
  std::chrono::milliseconds slow_header_grace{100};
  /// max_rejecting bounds the refused connections being closed politely (503 written,
  /// the client's bytes drained until its FIN or `linger`). Past it a refused connection
  /// is closed as soon as its 503 is written.
  size_t max_rejecting = 1024;
  /// max_header_bytes bounds the request line and headers: past it, `431`.
  size_t max_header_bytes = 16 << 10;
  /// max_body_bytes bounds a request body: past it (or a Content-Length above it), `413`.
  size_t max_body_bytes = 64 << 10;
  /// header_timeout is how long a client has, from its connect (or its next request's
  /// first byte), to send complete headers; then it is closed (slowloris).
  std::chrono::milliseconds header_timeout{5000};
  /// request_timeout is how long a whole request may take, from its start until the
  /// response is written (slow bodies, clients that do not read the answer).
  std::chrono::milliseconds request_timeout{10000};
  /// idle_timeout is how long a keep-alive connection may wait for its next request.
  std::chrono::milliseconds idle_timeout{15000};
  /// linger is how long, after the last response, the client's bytes are drained before
  /// the close (so a response is not lost to a reset of unread bytes).
  std::chrono::milliseconds linger{1000};
  /// accept_backoff is the pause after accept fails for lack of fds or memory.
  std::chrono::milliseconds accept_backoff{100};
  /// backlog is the listen(2) backlog: connections the kernel holds until accepted.
  int backlog = 1024;
};

/// HttpEndpoint is one listener: where, what it is called in errors, logs and metrics,
/// who answers, and its limits.
struct HttpEndpoint {
  std::string name;  // e.g. "admin"
  io::SocketAddress address;
  HttpHandler handler;
  HttpLimits limits = {};
};

/// HttpServer serves its endpoints, one thread each, until destroyed.
class HttpServer {
 public:
  /// Stats counts what one endpoint served and refused since it started.
  struct Stats {
    uint64_t accepted = 0;          // connections served within the budget
    uint64_t active = 0;            // connections open now within the budget
    uint64_t requests = 0;          // requests answered by the handler
    uint64_t rejected_budget = 0;   // refused with 503: max_connections were open
    uint64_t header_timeouts = 0;   // closed: no complete headers within header_timeout
    uint64_t request_timeouts = 0;  // closed: not read and answered within request_timeout
    uint64_t too_large = 0;         // answered 431 or 413
    uint64_t bad_requests = 0;      // answered 400: not HTTP/1
    uint64_t accept_errors = 0;     // accept failed (EMFILE, ENFILE, ENOBUFS, ENOMEM)
    uint64_t idle_closed = 0;       // keep-alive connections closed idle (timeout, or evicted)
    uint64_t slow_evicted = 0;      // closed for a new client: still sending headers after
                                    // slow_header_grace, while the budget was full
  };

  /// Start binds every endpoint and starts one thread per endpoint; on failure it
  /// returns null and `*error` names the endpoint, the address and the reason.
  static std::unique_ptr<HttpServer> Start(std::vector<HttpEndpoint> endpoints, std::string* error);
  /// ~HttpServer closes every listener and connection and joins the threads; a handler
  /// still running is waited for.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// size is the number of endpoints.
  size_t size() const { return endpoints_.size(); }
  /// port is the bound port of endpoint `i` (tests bind port 0).
  uint16_t port(size_t i) const;
  /// name is endpoint `i`'s name.
  const std::string& name(size_t i) const;
  /// stats reads endpoint `i`'s counters (from any thread; each is read atomically).
  Stats stats(size_t i) const;

 private:
  struct Endpoint;
  class Session;
  HttpServer();
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
};

}  // namespace zt::admin
