#include "ztunnel/proxy/relay.h"

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/io/socket.h"
#include "ztunnel/io/testing.h"
#include "ztunnel/proxy/test_util.h"

namespace zt::proxy {
namespace {

using io::UniqueFd;
using io::testing::BlockingConnect;
using io::testing::Listener;
using io::testing::ListenLoopback;
using io::testing::LoopThread;
using testing::ConnectedPair;
using testing::ReadRandomSizes;
using testing::ReadToEof;
using testing::WriteAll;
using testing::WriteRandomSizes;
using namespace std::chrono_literals;

// Relayed is client <-> [a  relay  b] <-> server, with the relay on `lt`.
struct Relayed {
  UniqueFd client;
  UniqueFd server;
  std::future<RelayResult> result;
};

Relayed StartRelay(LoopThread& lt, ConnectionTracker* tracker = nullptr) {
  auto [client, a] = ConnectedPair();
  auto [b, server] = ConnectedPair();
  auto promise = std::make_shared<std::promise<RelayResult>>();
  Relayed out{std::move(client), std::move(server), promise->get_future()};
  lt.Run([&, a = a.release(), b = b.release()] {
    Relay::Start(lt.loop(), UniqueFd(a), UniqueFd(b), tracker,
                 [promise](const RelayResult& r) { promise->set_value(r); });
  });
  return out;
}

RelayResult Finished(std::future<RelayResult>& f) {
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  return f.get();
}

TEST_CASE("Relay is byte-exact both ways with random write and read sizes", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  constexpr size_t kBytes = 24 * 1024 * 1024;
  std::thread up_writer([&] { WriteRandomSizes(r.client.get(), 11, kBytes); });
  std::thread down_writer([&] { WriteRandomSizes(r.server.get(), 22, kBytes + 12345); });
  auto up_read =
      std::async(std::launch::async, [&] { return ReadRandomSizes(r.server.get(), 11); });
  const size_t down_read = ReadRandomSizes(r.client.get(), 22);
  up_writer.join();
  down_writer.join();
  CHECK(up_read.get() == kBytes);
  CHECK(down_read == kBytes + 12345);
  RelayResult result = Finished(r.result);
  CHECK(result.ok);
  CHECK(result.bytes_downstream_to_upstream == kBytes);
  CHECK(result.bytes_upstream_to_downstream == kBytes + 12345);
  CHECK(lt.Run([&] { return lt.loop().buffers().in_use(); }) == 0);
}

TEST_CASE("Half-close: client FIN first, server answers after it", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  WriteAll(r.client.get(), "request");
  ::shutdown(r.client.get(), SHUT_WR);
  CHECK(ReadToEof(r.server.get()) == "request");
  // The other direction is still open: the server writes after the client's FIN.
  WriteAll(r.server.get(), "response after your FIN");
  ::shutdown(r.server.get(), SHUT_WR);
  CHECK(ReadToEof(r.client.get()) == "response after your FIN");
  CHECK(Finished(r.result).ok);
}

TEST_CASE("Half-close: server FIN first, client writes after it", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  WriteAll(r.server.get(), "banner");
  ::shutdown(r.server.get(), SHUT_WR);
  CHECK(ReadToEof(r.client.get()) == "banner");
  WriteAll(r.client.get(), "client keeps talking");
  ::shutdown(r.client.get(), SHUT_WR);
  CHECK(ReadToEof(r.server.get()) == "client keeps talking");
  RelayResult result = Finished(r.result);
  CHECK(result.ok);
  CHECK(result.bytes_downstream_to_upstream == 20);
  CHECK(result.bytes_upstream_to_downstream == 6);
}

TEST_CASE("Half-close: both sides FIN at once with data in flight", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  const std::string up(300 * 1024, 'u');
  const std::string down(200 * 1024, 'd');
  std::thread a([&] {
    WriteAll(r.client.get(), up);
    ::shutdown(r.client.get(), SHUT_WR);
  });
  std::thread b([&] {
    WriteAll(r.server.get(), down);
    ::shutdown(r.server.get(), SHUT_WR);
  });
  auto server_got = std::async(std::launch::async, [&] { return ReadToEof(r.server.get()); });
  CHECK(ReadToEof(r.client.get()) == down);
  CHECK(server_got.get() == up);
  a.join();
  b.join();
  CHECK(Finished(r.result).ok);
}

TEST_CASE("Half-close: server speaks first and closes, client half-closes later", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  WriteAll(r.server.get(), "220 ready\r\n");
  ::shutdown(r.server.get(), SHUT_WR);
  char buf[64];
  const ssize_t n = ::recv(r.client.get(), buf, sizeof(buf), MSG_WAITALL);
  CHECK(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))) == "220 ready\r\n");
  // The relay must not close the connection while the client's direction is open.
  std::this_thread::sleep_for(50ms);
  CHECK(r.result.wait_for(0s) == std::future_status::timeout);
  ::shutdown(r.client.get(), SHUT_WR);
  CHECK(ReadToEof(r.server.get()).empty());
  CHECK(Finished(r.result).ok);
}

TEST_CASE("A reset from the client resets the server side", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  WriteAll(r.client.get(), "x");
  char c;
  REQUIRE(::recv(r.server.get(), &c, 1, MSG_WAITALL) == 1);
  REQUIRE(io::SetLingerZero(r.client.get()).ok());
  r.client.reset();
  char buf[16];
  CHECK(::recv(r.server.get(), buf, sizeof(buf), 0) == -1);
  CHECK(errno == ECONNRESET);
  RelayResult result = Finished(r.result);
  CHECK_FALSE(result.ok);
  CHECK(result.error.sys == ECONNRESET);
}

TEST_CASE("A reset from the server resets the client side", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  REQUIRE(io::SetLingerZero(r.server.get()).ok());
  r.server.reset();
  char buf[16];
  CHECK(::recv(r.client.get(), buf, sizeof(buf), 0) == -1);
  CHECK(errno == ECONNRESET);
  CHECK_FALSE(Finished(r.result).ok);
}

TEST_CASE("A slow reader holds back the relay: buffers stay bounded", "[proxy]") {
  LoopThread lt;
  Relayed r = StartRelay(lt);
  constexpr size_t kBytes = 64 * 1024 * 1024;
  std::thread writer([&] { WriteRandomSizes(r.client.get(), 5, kBytes); });
  // The server does not read: kernel buffers fill, then the relay must stop reading.
  std::this_thread::sleep_for(300ms);
  const uint32_t held = lt.Run([&] { return lt.loop().buffers().in_use(); });
  CHECK(held <= Relay::kMaxQueuedBuffers);
  CHECK(ReadRandomSizes(r.server.get(), 5) == kBytes);
  writer.join();
  ::shutdown(r.server.get(), SHUT_WR);
  CHECK(ReadToEof(r.client.get()).empty());
  CHECK(Finished(r.result).ok);
}

TEST_CASE("An idle relayed connection holds no receive buffer", "[proxy]") {
  LoopThread lt;
  ConnectionTracker tracker;
  Relayed r = StartRelay(lt, &tracker);
  WriteAll(r.client.get(), "ping");
  char buf[4];
  REQUIRE(::recv(r.server.get(), buf, 4, MSG_WAITALL) == 4);
  WriteAll(r.server.get(), "pong");
  REQUIRE(::recv(r.client.get(), buf, 4, MSG_WAITALL) == 4);
  CHECK(lt.Run([&] { return lt.loop().buffers().in_use(); }) == 0);
  CHECK(lt.Run([&] { return tracker.size(); }) == 1);
  lt.Run([&] { tracker.AbortAll(); });
  CHECK_FALSE(Finished(r.result).ok);
  CHECK(lt.Run([&] { return tracker.size(); }) == 0);
  // Abort resets both ends.
  CHECK(::recv(r.client.get(), buf, sizeof(buf), 0) == -1);
  CHECK(::recv(r.server.get(), buf, sizeof(buf), 0) == -1);
}

TEST_CASE("Relay keeps working when the buffer ring runs dry", "[proxy]") {
  io::LoopOptions opts;
  opts.buffer_count = 2;  // two directions of two connections compete for two buffers
  opts.buffer_size = 4096;
  LoopThread lt(opts);
  Relayed r1 = StartRelay(lt);
  Relayed r2 = StartRelay(lt);
  constexpr size_t kBytes = 4 * 1024 * 1024;
  std::vector<std::thread> threads;
  for (Relayed* r : {&r1, &r2}) {
    threads.emplace_back([r] { WriteRandomSizes(r->client.get(), 1, kBytes); });
    threads.emplace_back([r] { WriteRandomSizes(r->server.get(), 2, kBytes); });
  }
  auto a = std::async(std::launch::async, [&] { return ReadRandomSizes(r1.server.get(), 1); });
  auto b = std::async(std::launch::async, [&] { return ReadRandomSizes(r1.client.get(), 2); });
  auto c = std::async(std::launch::async, [&] { return ReadRandomSizes(r2.server.get(), 1); });
  auto d = std::async(std::launch::async, [&] { return ReadRandomSizes(r2.client.get(), 2); });
  CHECK(a.get() == kBytes);
  CHECK(b.get() == kBytes);
  CHECK(c.get() == kBytes);
  CHECK(d.get() == kBytes);
  for (auto& t : threads) t.join();
  CHECK(Finished(r1.result).ok);
  CHECK(Finished(r2.result).ok);
}

}  // namespace
}  // namespace zt::proxy
