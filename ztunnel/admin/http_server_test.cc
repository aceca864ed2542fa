#include "ztunnel/admin/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "ztunnel/admin/testing.h"

namespace zt::admin {
namespace {

using testing::Connect;
using testing::Exchange;
using testing::Get;

// Echo answers with what it was asked, so tests see the parse.
HttpResponse Echo(const HttpRequest& r) {
  return {
      200, "text/plain",
      r.method + " " + r.path + " q=" + r.query + " level=" + r.Param("level") + " body=" + r.body};
}

std::unique_ptr<HttpServer> Start(std::vector<HttpEndpoint> endpoints) {
  std::string error;
  auto s = HttpServer::Start(std::move(endpoints), &error);
  INFO(error);
  REQUIRE(s != nullptr);
  return s;
}

TEST_CASE("Requests are parsed: method, path, query parameters, body", "[admin]") {
  auto s = Start({{"test", *io::SocketAddress::Parse("127.0.0.1:0"), Echo}});
  std::string resp = Get(s->port(0), "GET /config_dump HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(resp.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(resp.find("Content-Length: 32\r\n") != std::string::npos);
  CHECK(resp.ends_with("\r\n\r\nGET /config_dump q= level= body="));
  resp =
      Get(s->port(0), "POST /logging?x=1&level=debug HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello");
  CHECK(resp.ends_with("POST /logging q=x=1&level=debug level=debug body=hello"));
}

TEST_CASE("Each endpoint has its own handler and a taken port names the endpoint", "[admin]") {
  auto s = Start({{"one", *io::SocketAddress::Parse("127.0.0.1:0"),
                   [](const HttpRequest&) {
                     return HttpResponse{200, "text/plain", "one"};
                   }},
                  {"two", *io::SocketAddress::Parse("127.0.0.1:0"), [](const HttpRequest&) {
                     return HttpResponse{404, "text/plain", "two"};
                   }}});
  CHECK(Get(s->port(0), "GET / HTTP/1.1\r\n\r\n").ends_with("\r\n\r\none"));
  CHECK(Get(s->port(1), "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found"));

  const std::string taken = "127.0.0.1:" + std::to_string(s->port(1));
  std::string error;
  auto second = HttpServer::Start({{"metrics", *io::SocketAddress::Parse(taken), Echo}}, &error);
  CHECK(second == nullptr);
  CHECK(error == "cannot listen on " + taken + " (metrics): system error: Address already in use");
}

TEST_CASE("Bad, oversized or silent clients get an answer or are dropped", "[admin]") {
  auto s = Start({{"test", *io::SocketAddress::Parse("127.0.0.1:0"), Echo}});
  const uint16_t port = s->port(0);
  CHECK(Get(port, "NONSENSE\r\n\r\n").starts_with("HTTP/1.1 400 "));
  CHECK(Get(port, "GET nopath HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
  CHECK(Get(port, "POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
            .starts_with("HTTP/1.1 413 "));
  CHECK(Get(port, std::string(HttpServer::kMaxRequest + 10, 'a')).starts_with("HTTP/1.1 413 "));
  // A client that connects and says nothing does not hold up the next one.
  const int silent = Connect(port);
  CHECK(Get(port, "GET /x HTTP/1.1\r\n\r\n").ends_with("GET /x q= level= body="));
  // A half request and then the client's FIN: dropped without an answer.
  const int half = Connect(port);
  REQUIRE(::send(half, "GET /x HTTP/1.1\r\n", 17, 0) == 17);
  ::shutdown(half, SHUT_WR);
  CHECK(Exchange(half, "").empty());
  ::close(silent);
}

}  // namespace
}  // namespace zt::admin
