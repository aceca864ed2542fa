// HttpServer: parsing, answers, and the bounds that keep one client from taking an
// endpoint (budget, sizes, timeouts, fd exhaustion) or another endpoint with it.
#include "ztunnel/admin/http_server.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/admin/testing.h"

namespace zt::admin {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::Connect;
using testing::Exchange;
using testing::Get;

// Echo answers with what it was asked, so tests see the parse.
HttpResponse Echo(const HttpRequest& r) {
  return {
      200, "text/plain",
      r.method + " " + r.path + " q=" + r.query + " level=" + r.Param("level") + " body=" + r.body};
}

io::SocketAddress AnyPort() { return *io::SocketAddress::Parse("127.0.0.1:0"); }

std::unique_ptr<HttpServer> Start(std::vector<HttpEndpoint> endpoints) {
  std::string error;
  auto s = HttpServer::Start(std::move(endpoints), &error);
  INFO(error);
  REQUIRE(s != nullptr);
  return s;
}

// WaitFor polls `done` until it holds; false if it never does within a generous while
// (a liveness guard, not a timing check).
bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 10000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return done();
}

void Send(int fd, const std::string& data) {
  REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

// ReadResponse reads one response with a Content-Length body from a connection that
// stays open (keep-alive); "" if the server closed first.
std::string ReadResponse(int fd) {
  std::string in;
  char buf[512];
  for (;;) {
    const size_t head = in.find("\r\n\r\n");
    if (head != std::string::npos) {
      const size_t cl = in.find("Content-Length: ");
      REQUIRE(cl != std::string::npos);
      const size_t len = std::stoul(in.substr(cl + 16));
      if (in.size() >= head + 4 + len) return in;
    }
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return "";
    in.append(buf, static_cast<size_t>(n));
  }
}

// Closed is true once the server has closed fd (EOF or reset), reading what arrives.
bool Closed(int fd) {
  char buf[512];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

TEST_CASE("Requests are parsed: method, path, query parameters, body", "[admin]") {
  auto s = Start({{"test", AnyPort(), Echo}});
  std::string resp = Get(s->port(0), "GET /config_dump HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(resp.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(resp.find("Content-Length: 32\r\n") != std::string::npos);
  CHECK(resp.ends_with("\r\n\r\nGET /config_dump q= level= body="));
  resp =
      Get(s->port(0), "POST /logging?x=1&level=debug HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello");
  CHECK(resp.ends_with("POST /logging q=x=1&level=debug level=debug body=hello"));
  resp =
      Get(s->port(0),
          "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  CHECK(resp.ends_with("POST /c q= level= body=abcde"));
  CHECK(s->stats(0).requests == 3);
}

TEST_CASE("Each endpoint has its own handler and a taken port names the endpoint", "[admin]") {
  auto s = Start({{"one", AnyPort(),
                   [](const HttpRequest&) {
                     return HttpResponse{200, "text/plain", "one"};
                   }},
                  {"two", AnyPort(), [](const HttpRequest&) {
                     return HttpResponse{404, "text/plain", "two"};
                   }}});
  REQUIRE(s->size() == 2);
  CHECK(s->name(1) == "two");
  CHECK(Get(s->port(0), "GET / HTTP/1.1\r\n\r\n").ends_with("\r\n\r\none"));
  CHECK(Get(s->port(1), "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found"));

  const std::string taken = "127.0.0.1:" + std::to_string(s->port(1));
  std::string error;
  auto second = HttpServer::Start(
      {{"admin", AnyPort(), Echo}, {"metrics", *io::SocketAddress::Parse(taken), Echo}}, &error);
  CHECK(second == nullptr);
  CHECK(error == "cannot listen on " + taken + " (metrics): system error: Address already in use");
}

TEST_CASE("Bad or silent clients get an answer or are dropped, and are counted", "[admin]") {
  auto s = Start({{"test", AnyPort(), Echo}});
  const uint16_t port = s->port(0);
  CHECK(Get(port, "NONSENSE\r\n\r\n").starts_with("HTTP/1.1 400 "));
  CHECK(Get(port, "GET nopath HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
  CHECK(Get(port, "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").starts_with("HTTP/1.1 400 "));
  CHECK(s->stats(0).bad_requests == 3);
  // A client that connects and says nothing does not hold up the next one.
  const int silent = Connect(port);
  CHECK(Get(port, "GET /x HTTP/1.1\r\n\r\n").ends_with("GET /x q= level= body="));
  // A half request and then the client's FIN: dropped without an answer.
  const int half = Connect(port);
  Send(half, "GET /x HTTP/1.1\r\n");
  ::shutdown(half, SHUT_WR);
  CHECK(Exchange(half, "").empty());
  ::close(silent);
}

TEST_CASE("A handler that throws answers 500 and the endpoint keeps serving", "[admin]") {
  auto s = Start({{"test", AnyPort(), [](const HttpRequest& r) -> HttpResponse {
                     if (r.path == "/boom") throw std::runtime_error("boom");
                     return {200, "text/plain", "fine"};
                   }}});
  CHECK(Get(s->port(0), "GET /boom HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 500 "));
  CHECK(Get(s->port(0), "GET / HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nfine"));
}

TEST_CASE("Oversized headers get 431, oversized bodies 413, and both are counted", "[admin]") {
  HttpLimits limits;
  limits.max_header_bytes = 1024;
  limits.max_body_bytes = 16;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  const uint16_t port = s->port(0);
  const std::string big_header = "GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  std::string resp = Get(port, big_header);
  CHECK(resp.starts_with("HTTP/1.1 431 "));
  CHECK(resp.find("Connection: close\r\n") != std::string::npos);
  // No line end at all: still the header limit.
  CHECK(Get(port, std::string(4000, 'a')).starts_with("HTTP/1.1 431 "));
  // A Content-Length above the limit is refused before the body is read...
  CHECK(Get(port, "POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
            .starts_with("HTTP/1.1 413 "));
  // ... and a chunked body as soon as it passes the limit.
  CHECK(Get(port,
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n"
            "01234567890123456789\r\n0\r\n\r\n")
            .starts_with("HTTP/1.1 413 "));
  // Within the limits all is well.
  CHECK(Get(port, "POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef")
            .ends_with("body=0123456789abcdef"));
  CHECK(s->stats(0).too_large == 4);
  CHECK(s->stats(0).requests == 1);
}

TEST_CASE("A connection over the budget is answered 503 at once and counted", "[admin]") {
  HttpLimits limits;
  limits.max_connections = 2;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  const uint16_t port = s->port(0);
  const int a = Connect(port);
  const int b = Connect(port);
  REQUIRE(WaitFor([&] { return s->stats(0).active == 2; }));
  // The third connection gets its answer without sending anything.
  const int c = Connect(port);
  const std::string busy = Exchange(c, "");
  CHECK(busy.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
  CHECK(busy.find("Connection: close\r\n") != std::string::npos);
  // With a request sent, the same answer, and the request does not reset it.
  CHECK(Get(port, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503 "));
  CHECK(s->stats(0).rejected_budget == 2);
  CHECK(s->stats(0).accepted == 2);
  ::close(a);
  REQUIRE(WaitFor([&] { return s->stats(0).active == 1; }));
  CHECK(Get(port, "GET /ok HTTP/1.1\r\n\r\n").ends_with("GET /ok q= level= body="));
  ::close(b);
}

TEST_CASE("Past max_rejecting a refused connection still gets its 503, then a close", "[admin]") {
  HttpLimits limits;
  limits.max_connections = 0;
  limits.max_rejecting = 0;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  CHECK(Exchange(Connect(s->port(0)), "").starts_with("HTTP/1.1 503 "));
  CHECK(s->stats(0).rejected_budget == 1);
}

TEST_CASE("Keep-alive serves requests in turn, and an idle one yields its place", "[admin]") {
  HttpLimits limits;
  limits.max_connections = 1;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  const uint16_t port = s->port(0);
  const int fd = Connect(port);
  Send(fd, "GET /1 HTTP/1.1\r\n\r\n");
  CHECK(ReadResponse(fd).ends_with("GET /1 q= level= body="));
  // Two pipelined requests on the same connection, answered in order.
  Send(fd, "GET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
  CHECK(ReadResponse(fd).ends_with("GET /2 q= level= body="));
  CHECK(ReadResponse(fd).ends_with("GET /3 q= level= body="));
  // The budget is full, but with a connection that only waits: it is closed for the new one.
  CHECK(Get(port, "GET /4 HTTP/1.1\r\n\r\n").ends_with("GET /4 q= level= body="));
  CHECK(Exchange(fd, "").empty());
  CHECK(s->stats(0).idle_closed == 1);
  CHECK(s->stats(0).rejected_budget == 0);
}

TEST_CASE("An idle keep-alive connection is closed after the idle timeout", "[admin]") {
  HttpLimits limits;
  limits.idle_timeout = 200ms;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  const int fd = Connect(s->port(0));
  // Before the request: the server's idle clock starts once its answer is written,
  // which may be before we have read it.
  const auto start = Clock::now();
  Send(fd, "GET / HTTP/1.1\r\n\r\n");
  REQUIRE(!ReadResponse(fd).empty());
  char c;
  CHECK(::recv(fd, &c, 1, 0) <= 0);
  CHECK(Clock::now() - start >= 200ms);
  ::close(fd);
  CHECK(s->stats(0).idle_closed == 1);
}

TEST_CASE("A client that does not finish its headers in time is closed (slowloris)", "[admin]") {
  HttpLimits limits;
  limits.header_timeout = 300ms;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  // Before connecting: the server's clock starts at accept, which may precede ours.
  const auto start = Clock::now();
  const int fd = Connect(s->port(0));
  Send(fd, "GET / HTTP/1.1\r\n");
  // One byte every 20 ms: progress, but never a complete header.
  bool closed = false;
  for (int i = 0; i < 1000 && !closed; ++i) {
    if (::send(fd, "X", 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) > 0) closed = Closed(fd);
  }
  const auto elapsed = Clock::now() - start;
  CHECK((closed || Closed(fd)));
  CHECK(elapsed >= 300ms);
  ::close(fd);
  CHECK(s->stats(0).header_timeouts == 1);
  CHECK(s->stats(0).requests == 0);
}

TEST_CASE("A request whose body does not arrive in time is closed", "[admin]") {
  HttpLimits limits;
  limits.request_timeout = 300ms;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  const auto start = Clock::now();  // before connecting, as above
  const int fd = Connect(s->port(0));
  Send(fd, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12");
  char c;
  CHECK(::recv(fd, &c, 1, 0) <= 0);  // closed without an answer
  CHECK(Clock::now() - start >= 300ms);
  ::close(fd);
  CHECK(s->stats(0).request_timeouts == 1);
}

TEST_CASE("Slowloris filling one endpoint does not stop another from answering", "[admin]") {
  // No eviction here (see the next test): the budget alone must isolate the endpoints.
  HttpLimits no_eviction;
  no_eviction.slow_header_grace = std::chrono::hours(1);
  auto s = Start({{"admin", AnyPort(), Echo, no_eviction},
                  {"readiness", AnyPort(), [](const HttpRequest&) {
                     return HttpResponse{200, "text/plain", "ready\n"};
                   }}});
  const size_t budget = HttpLimits{}.max_connections;
  std::vector<int> loris;
  for (size_t i = 0; i < budget; ++i) {
    loris.push_back(Connect(s->port(0)));
    Send(loris.back(), "GET / HTTP/1.1\r\nX-A: ");
  }
  REQUIRE(WaitFor([&] { return s->stats(0).active == budget; }));
  // The admin endpoint is full: a new client there is refused at once...
  CHECK(Get(s->port(0), "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503 "));
  // ... while readiness answers every probe.
  for (int i = 0; i < 20; ++i) {
    Send(loris[static_cast<size_t>(i)], "a");  // keep dribbling
    CHECK(Get(s->port(1), "GET /healthz/ready HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nready\n"));
  }
  CHECK(s->stats(1).requests == 20);
  CHECK(s->stats(0).rejected_budget == 1);
  // Destroying the server with the slow connections open ends them.
  s.reset();
  for (int fd : loris) {
    char c;
    CHECK(::recv(fd, &c, 1, 0) <= 0);
    ::close(fd);
  }
}

TEST_CASE("A full budget of slow header senders makes room for a client that asks at once",
          "[admin]") {
  // Slowloris on the readiness port itself: the probe must still get through.
  HttpLimits limits;
  limits.max_connections = 8;
  limits.slow_header_grace = 50ms;
  auto s = Start({{"readiness", AnyPort(),
                   [](const HttpRequest&) {
                     return HttpResponse{200, "text/plain", "ready\n"};
                   },
                   limits}});
  std::vector<int> loris;
  for (size_t i = 0; i < limits.max_connections; ++i) {
    loris.push_back(Connect(s->port(0)));
    Send(loris.back(), "GET /healthz/ready HTTP/1.1\r\nX-A: ");
  }
  REQUIRE(WaitFor([&] { return s->stats(0).active == limits.max_connections; }));
  std::this_thread::sleep_for(60ms);  // all of them older than the grace now
  for (int i = 0; i < 5; ++i) {
    CHECK(Get(s->port(0), "GET /healthz/ready HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nready\n"));
    // The attacker takes the freed place again with a new slow connection.
    REQUIRE(WaitFor([&] { return s->stats(0).active < limits.max_connections; }));
    loris.push_back(Connect(s->port(0)));
    Send(loris.back(), "GET /healthz/ready HTTP/1.1\r\nX-A: ");
    REQUIRE(WaitFor([&] { return s->stats(0).active == limits.max_connections; }));
    std::this_thread::sleep_for(60ms);
  }
  CHECK(s->stats(0).slow_evicted == 5);
  CHECK(s->stats(0).rejected_budget == 0);
  CHECK(s->stats(0).requests == 5);
  // The oldest slow connections were the ones closed, the newer ones still wait.
  for (size_t i = 0; i < 5; ++i) CHECK(Closed(loris[i]));
  for (size_t i = 5; i < loris.size(); ++i) CHECK_FALSE(Closed(loris[i]));
  for (int fd : loris) ::close(fd);
}

TEST_CASE("A handler that blocks holds up only its own endpoint", "[admin]") {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto s = Start({{"slow", AnyPort(),
                   [released](const HttpRequest&) {
                     released.wait();
                     return HttpResponse{200, "text/plain", "slow"};
                   }},
                  {"fast", AnyPort(), [](const HttpRequest&) {
                     return HttpResponse{200, "text/plain", "fast"};
                   }}});
  const uint16_t slow_port = s->port(0);
  std::string slow_answer;
  std::thread client([&] { slow_answer = Get(slow_port, "GET / HTTP/1.1\r\n\r\n"); });
  for (int i = 0; i < 10; ++i) {
    CHECK(Get(s->port(1), "GET / HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nfast"));
  }
  CHECK(slow_answer.empty());
  release.set_value();
  client.join();
  CHECK(slow_answer.ends_with("\r\n\r\nslow"));
}

TEST_CASE("Running out of file descriptors backs off, counts, and recovers", "[admin]") {
  HttpLimits limits;
  limits.accept_backoff = 100ms;
  auto s = Start({{"test", AnyPort(), Echo, limits}});
  const uint16_t port = s->port(0);
  // The client's socket exists before the fds run out; connect needs no new one.
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(client >= 0);
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  size_t open_fds = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++open_fds;
  }
  rlimit low = old;
  low.rlim_cur = std::min<rlim_t>(old.rlim_cur, open_fds + 64);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> hog;
  for (;;) {
    const int fd = ::dup(client);
    if (fd < 0) {
      REQUIRE(errno == EMFILE);
      break;
    }
    hog.push_back(fd);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  const bool failed = WaitFor([&] { return s->stats(0).accept_errors >= 1; });
  const auto first = Clock::now();
  const uint64_t errors_then = s->stats(0).accept_errors;
  std::this_thread::sleep_for(350ms);
  const uint64_t retries = s->stats(0).accept_errors - errors_then;
  const auto elapsed = Clock::now() - first;
  for (int fd : hog) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  REQUIRE(failed);
  // Each retry waits at least the backoff: a spinning server would have retried
  // thousands of times here.
  CHECK(retries >= 1);
  CHECK(retries <= static_cast<uint64_t>(elapsed / limits.accept_backoff) + 1);
  // The fds are back: the waiting connection is served.
  CHECK(Exchange(client, "GET /back HTTP/1.1\r\n\r\n").ends_with("GET /back q= level= body="));
  CHECK(s->stats(0).accepted == 1);
}

}  // namespace
}  // namespace zt::admin
