// HttpServer: the small HTTP/1.1 server behind the node process' admin (15000), metrics
// (15020) and readiness (15021) ports. One thread polls every listener and connection
// (non-blocking, so a slow or silent client never holds up a kubelet probe or a
// Prometheus scrape); one request per connection, answered then closed. Handlers run on
// that thread. Not a data path: simplicity over throughput.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/core/result.h"
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

/// HttpHandler answers requests on one listener.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

/// HttpEndpoint is one listener: where, what it is called in errors, who answers.
struct HttpEndpoint {
  std::string name;  // e.g. "admin", for error messages
  io::SocketAddress address;
  HttpHandler handler;
};

/// HttpServer serves its endpoints until destroyed.
class HttpServer {
 public:
  /// Limits keep a misbehaving client from using much.
  static constexpr size_t kMaxRequest = 64 << 10;
  static constexpr size_t kMaxConnections = 64;
  static constexpr std::chrono::seconds kDeadline{5};

  /// Start binds every endpoint and starts the thread; on failure it returns null and
  /// `*error` names the endpoint, the address and the reason.
  static std::unique_ptr<HttpServer> Start(std::vector<HttpEndpoint> endpoints, std::string* error);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// port is the bound port of endpoint `i` (tests bind port 0).
  uint16_t port(size_t i) const { return listeners_[i].port; }

 private:
  struct Listener {
    int fd = -1;
    uint16_t port = 0;
    HttpHandler handler;
  };
  struct Conn;
  HttpServer() = default;
  void Serve();
  void Accept(const Listener& l, std::vector<std::unique_ptr<Conn>>& conns);
  // Step reads or writes what is ready; false once the connection is done.
  bool Step(Conn& c);

  std::vector<Listener> listeners_;
  int stop_fd_ = -1;  // eventfd: written by the destructor
  std::thread thread_;
};

/// Render formats a response (Connection: close).
std::string RenderResponse(const HttpResponse& r);

}  // namespace zt::admin
