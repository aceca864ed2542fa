#include "ztunnel/io/socket.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <thread>

#include "ztunnel/io/testing.h"

namespace zt::io {
namespace {

using testing::BlockingConnect;
using testing::Listener;
using testing::ListenLoopback;

int GetInt(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof(v);
  REQUIRE(getsockopt(fd, level, name, &v, &len) == 0);
  return v;
}

TEST_CASE("Listen binds port 0 and reports the chosen port", "[io]") {
  auto l = Listen(SocketAddress::Loopback4(0), {});
  REQUIRE(l.ok());
  auto local = LocalAddress(l->get());
  REQUIRE(local.ok());
  CHECK(local->port() != 0);
  CHECK(local->IsLoopback());
}

TEST_CASE("A bind conflict is an error, not a silent share", "[io]") {
  auto first = Listen(SocketAddress::Loopback4(0), {});
  REQUIRE(first.ok());
  auto taken = LocalAddress(first->get());
  REQUIRE(taken.ok());
  auto second = Listen(*taken, {});
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().sys == EADDRINUSE);
}

TEST_CASE("ListenPatiently gets the address once its holder lets go, or gives up", "[io]") {
  auto first = Listen(SocketAddress::Loopback4(0), {});
  REQUIRE(first.ok());
  auto taken = LocalAddress(first->get());
  REQUIRE(taken.ok());
  // Still held after the patience: the conflict is returned, not hidden.
  auto refused = ListenPatiently(*taken, {}, std::chrono::milliseconds(120));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().sys == EADDRINUSE);
  // Released while waiting: the listener is had.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    first->reset();
  });
  auto second = ListenPatiently(*taken, {}, std::chrono::seconds(5));
  release.join();
  REQUIRE(second.ok());
  auto local = LocalAddress(second->get());
  REQUIRE(local.ok());
  CHECK(local->port() == taken->port());
}

TEST_CASE("Socket options are applied", "[io]") {
  auto s = TcpSocket(AF_INET);
  REQUIRE(s.ok());
  REQUIRE(SetNoDelay(s->get()).ok());
  CHECK(GetInt(s->get(), IPPROTO_TCP, TCP_NODELAY) == 1);
  REQUIRE(SetReusePort(s->get()).ok());
  CHECK(GetInt(s->get(), SOL_SOCKET, SO_REUSEPORT) == 1);
  REQUIRE(SetKeepalive(s->get(), {std::chrono::seconds(30), std::chrono::seconds(7), 4}).ok());
  CHECK(GetInt(s->get(), SOL_SOCKET, SO_KEEPALIVE) == 1);
  CHECK(GetInt(s->get(), IPPROTO_TCP, TCP_KEEPIDLE) == 30);
  CHECK(GetInt(s->get(), IPPROTO_TCP, TCP_KEEPINTVL) == 7);
  CHECK(GetInt(s->get(), IPPROTO_TCP, TCP_KEEPCNT) == 4);
}

TEST_CASE("OriginalDst of a connection nobody NATed is an error", "[io]") {
  auto l = Listen(SocketAddress::Loopback4(0), {});
  REQUIRE(l.ok());
  UniqueFd client = BlockingConnect(*LocalAddress(l->get()));
  UniqueFd server(::accept4(l->get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(server.valid());
  auto dst = OriginalDst(server.get());
  // Without a conntrack NAT entry the kernel has no original destination to give.
  if (dst.ok()) {
    // With conntrack loaded, the "original" tuple of an un-NATed flow is the flow itself.
    CHECK(*dst == *LocalAddress(server.get()));
  } else {
    CHECK((dst.error().code == Errc::kNotFound || dst.error().sys == ENOPROTOOPT));
  }
}

TEST_CASE("SetLingerZero makes close send a reset", "[io]") {
  auto l = Listen(SocketAddress::Loopback4(0), {});
  REQUIRE(l.ok());
  UniqueFd client = BlockingConnect(*LocalAddress(l->get()));
  UniqueFd server(::accept4(l->get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(server.valid());
  REQUIRE(SetLingerZero(server.get()).ok());
  server.reset();
  char buf[8];
  CHECK(::recv(client.get(), buf, sizeof(buf), 0) == -1);
  CHECK(errno == ECONNRESET);
}

}  // namespace
}  // namespace zt::io
