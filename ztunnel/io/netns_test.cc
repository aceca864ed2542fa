// Needs root (CAP_SYS_ADMIN): it creates a network namespace. CI runs as root; run
// elsewhere it fails rather than skips, so a green run always means it ran.
#include "ztunnel/io/netns.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "ztunnel/io/socket.h"

namespace zt::io {
namespace {

ino_t Inode(int fd) {
  struct stat st {};
  REQUIRE(fstat(fd, &st) == 0);
  return st.st_ino;
}

ino_t CurrentNetnsInode() {
  UniqueFd self(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  REQUIRE(self.valid());
  return Inode(self.get());
}

// FreshNetns makes a new network namespace from a helper thread, so this thread stays
// home; it lives as long as the returned descriptor.
UniqueFd FreshNetns() {
  REQUIRE(geteuid() == 0);  // needs root: fail, never skip
  UniqueFd target;
  std::thread maker([&] {
    REQUIRE(unshare(CLONE_NEWNET) == 0);
    target.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  });
  maker.join();
  REQUIRE(target.valid());
  return target;
}

TEST_CASE("SocketInNetns creates the socket in the target namespace and comes back", "[io][root]") {
  UniqueFd target = FreshNetns();
  CHECK(IsNetns(target.get()));

  const ino_t home = CurrentNetnsInode();
  REQUIRE(home != Inode(target.get()));
  auto sock = SocketInNetns(target.get(), AF_INET, SOCK_STREAM, 0);
  REQUIRE(sock.ok());
  CHECK(CurrentNetnsInode() == home);  // the thread is back home
  UniqueFd sock_ns(ioctl(sock->get(), SIOCGSKNS));
  REQUIRE(sock_ns.valid());
  CHECK(Inode(sock_ns.get()) == Inode(target.get()));
}

TEST_CASE("SocketInNetns refuses a descriptor that is not a network namespace", "[io][root]") {
  REQUIRE(geteuid() == 0);
  UniqueFd not_ns(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
  auto sock = SocketInNetns(not_ns.get(), AF_INET, SOCK_STREAM, 0);
  REQUIRE_FALSE(sock.ok());
  CHECK(sock.error().code == Errc::kInvalidArgument);
  auto opened = OpenNetns("/proc/self/stat");
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().code == Errc::kInvalidArgument);
}

}  // namespace
}  // namespace zt::io

namespace zt::io {
namespace {

TEST_CASE("SO_MARK and IP_TRANSPARENT are set (they need CAP_NET_ADMIN)", "[io][root]") {
  REQUIRE(geteuid() == 0);
  auto s4 = TcpSocket(AF_INET);
  REQUIRE(s4.ok());
  REQUIRE(SetMark(s4->get(), 1337).ok());
  int v = 0;
  socklen_t len = sizeof(v);
  REQUIRE(getsockopt(s4->get(), SOL_SOCKET, SO_MARK, &v, &len) == 0);
  CHECK(v == 1337);
  REQUIRE(SetTransparent(s4->get(), AF_INET).ok());
  REQUIRE(getsockopt(s4->get(), SOL_IP, IP_TRANSPARENT, &v, &len) == 0);
  CHECK(v == 1);
  auto s6 = TcpSocket(AF_INET6);
  REQUIRE(s6.ok());
  REQUIRE(SetTransparent(s6->get(), AF_INET6).ok());
  REQUIRE(getsockopt(s6->get(), SOL_IPV6, IPV6_TRANSPARENT, &v, &len) == 0);
  CHECK(v == 1);
}

TEST_CASE("ForeignNetnsOf finds a socket's namespace, and none for our own", "[io][root]") {
  UniqueFd target = FreshNetns();
  auto pod_sock = SocketInNetns(target.get(), AF_INET, SOCK_STREAM, 0);
  REQUIRE(pod_sock.ok());
  auto ns = ForeignNetnsOf(pod_sock->get());
  REQUIRE(ns.ok());
  REQUIRE(ns->valid());
  CHECK(Inode(ns->get()) == Inode(target.get()));
  CHECK(InodeOf(ns->get()) == Inode(target.get()));
  UniqueFd home_sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto none = ForeignNetnsOf(home_sock.get());
  REQUIRE(none.ok());
  CHECK_FALSE(none->valid());
}

}  // namespace
}  // namespace zt::io
