#include "ztunnel/admin/readiness.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

namespace zt::admin {
namespace {

// Get sends `request` to 127.0.0.1:port and returns the whole response.
std::string Get(uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;)
    out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST_CASE("Readiness answers 500 naming what is pending, then 200", "[admin]") {
  Readiness r;
  r.Set("workers", true);
  r.Set("inpod snapshot", true);
  std::string error;
  auto server = HttpServer::Start(
      {{"readiness", *io::SocketAddress::Parse("127.0.0.1:0"), ReadinessHandler(r)}}, &error);
  REQUIRE(server != nullptr);
  const uint16_t port = server->port(0);
  REQUIRE(port != 0);
  std::string resp = Get(port, "GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(resp.starts_with("HTTP/1.1 500 "));
  CHECK(resp.ends_with("\r\n\r\nnot ready: inpod snapshot; workers\n"));
  r.Set("workers", false);
  r.Set("inpod snapshot", false);
  resp = Get(port, "GET /healthz/ready HTTP/1.1\r\n\r\n");
  CHECK(resp.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(resp.ends_with("\r\n\r\nready\n"));
  CHECK(Get(port, "GET /stats HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
  // Garbage or a half request does not stop the server.
  CHECK(Get(port, "\r\n\r\n").starts_with("HTTP/1.1 400 "));
  CHECK(Get(port, "GET /healthz/ready HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
}

}  // namespace
}  // namespace zt::admin
