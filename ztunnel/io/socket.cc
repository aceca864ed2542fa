#include "ztunnel/io/socket.h"

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <thread>

#include "ztunnel/io/netns.h"

namespace zt::io {
namespace {

Status SetInt(int fd, int level, int name, int value) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) return Error::FromErrno(errno);
  return Status::Ok();
}

}  // namespace

Result<UniqueFd> TcpSocket(int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return Error::FromErrno(errno);
  return UniqueFd(fd);
}

Result<UniqueFd> Listen(const SocketAddress& addr, const ListenOptions& options) {
  auto sock = options.netns_fd >= 0
                  ? SocketInNetns(options.netns_fd, addr.family(), SOCK_STREAM | SOCK_NONBLOCK, 0)
                  : TcpSocket(addr.family());
  if (!sock) return sock.error();
  const int fd = sock->get();
  if (auto s = SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1); !s) return s.error();
  if (options.v6only && addr.family() == AF_INET6) {
    if (auto s = SetInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1); !s) return s.error();
  }
  if (options.reuse_port) {
    if (auto s = SetReusePort(fd); !s) return s.error();
  }
  if (options.transparent) {
    if (auto s = SetTransparent(fd, addr.family()); !s) return s.error();
  }
  if (options.mark != 0) {
    if (auto s = SetMark(fd, options.mark); !s) return s.error();
  }
  if (::bind(fd, addr.sa(), addr.len()) != 0) return Error::FromErrno(errno);
  if (::listen(fd, options.backlog) != 0) return Error::FromErrno(errno);
  return sock;
}

Result<UniqueFd> ListenPatiently(const SocketAddress& addr, const ListenOptions& options,
                                 std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (true) {
    auto l = Listen(addr, options);
    if (l || l.error().sys != EADDRINUSE || std::chrono::steady_clock::now() >= deadline) {
      return l;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<SocketAddress> OriginalDst(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  auto local = LocalAddress(fd);
  if (!local) return local.error();
  int rc;
  if (local->family() == AF_INET6) {
    rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &storage, &len);
  } else {
    rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &storage, &len);
  }
  if (rc != 0) {
    if (errno == ENOENT) return Error{Errc::kNotFound, ENOENT};
    return Error::FromErrno(errno);
  }
  auto out = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
  if (!out) return Error{Errc::kNotFound};
  return *out;
}

Result<SocketAddress> LocalAddress(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) {
    return Error::FromErrno(errno);
  }
  auto out = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
  if (!out) return Error{Errc::kInvalidArgument};
  return *out;
}

Result<SocketAddress> PeerAddress(int fd) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &len) != 0) {
    return Error::FromErrno(errno);
  }
  auto out = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&storage), len);
  if (!out) return Error{Errc::kInvalidArgument};
  return *out;
}

Status SetMark(int fd, uint32_t mark) {
  return SetInt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(mark));
}

Status SetTransparent(int fd, int family) {
  if (family == AF_INET6) return SetInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
  return SetInt(fd, SOL_IP, IP_TRANSPARENT, 1);
}

Status SetReusePort(int fd) { return SetInt(fd, SOL_SOCKET, SO_REUSEPORT, 1); }

Status SetNoDelay(int fd) { return SetInt(fd, IPPROTO_TCP, TCP_NODELAY, 1); }

Status SetKeepalive(int fd, const KeepaliveOptions& options) {
  if (auto s = SetInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1); !s) return s;
  if (auto s = SetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(options.idle.count())); !s) {
    return s;
  }
  if (auto s = SetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(options.interval.count()));
      !s) {
    return s;
  }
  return SetInt(fd, IPPROTO_TCP, TCP_KEEPCNT, options.probes);
}

Status SetLingerZero(int fd) {
  linger lg{.l_onoff = 1, .l_linger = 0};
  if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0) return Error::FromErrno(errno);
  return Status::Ok();
}

int SocketError(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

}  // namespace zt::io
