#include "ztunnel/admin/readiness.h"

#include <catch2/catch.hpp>
#include <string>

#include "ztunnel/admin/testing.h"

namespace zt::admin {
namespace {

using testing::Get;

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
