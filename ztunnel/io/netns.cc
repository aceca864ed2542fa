#include "ztunnel/io/netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/sockios.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>

#include "ztunnel/core/log.h"

namespace zt::io {

Result<UniqueFd> OpenNetns(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::FromErrno(errno);
  UniqueFd out(fd);
  if (!IsNetns(fd)) return Error{Errc::kInvalidArgument};
  return out;
}

bool IsNetns(int fd) { return ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET; }

Result<UniqueFd> SocketInNetns(int netns_fd, int domain, int type, int protocol) {
  if (!IsNetns(netns_fd)) return Error{Errc::kInvalidArgument};
  // The thread's current namespace, to come back to.
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home.valid()) return Error::FromErrno(errno);
  if (setns(netns_fd, CLONE_NEWNET) != 0) return Error::FromErrno(errno);
  const int fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
  const int socket_errno = errno;
  if (setns(home.get(), CLONE_NEWNET) != 0) {
    // A thread stuck in a pod's namespace would send other pods' traffic from the
    // wrong place; there is no safe way to continue.
    ZT_ERROR("io", "cannot return to the home network namespace: {}",
             Error::FromErrno(errno).Message());
    std::abort();
  }
  if (fd < 0) return Error::FromErrno(socket_errno);
  return UniqueFd(fd);
}

namespace {

// NetnsCookie is the SO_NETNS_COOKIE of socket `fd`, or 0 where the kernel has none.
uint64_t NetnsCookie(int fd) {
#ifndef SO_NETNS_COOKIE
  constexpr int SO_NETNS_COOKIE = 71;
#endif
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  return ::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) == 0 ? cookie : 0;
}

}  // namespace

uint64_t InodeOf(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

Result<UniqueFd> ForeignNetnsOf(int fd) {
  static const uint64_t home_cookie = [] {
    UniqueFd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    return probe.valid() ? NetnsCookie(probe.get()) : 0;
  }();
  static const uint64_t home_inode = [] {
    struct stat st {};
    return ::stat("/proc/self/ns/net", &st) == 0 ? st.st_ino : 0;
  }();
  if (home_cookie != 0 && NetnsCookie(fd) == home_cookie) return UniqueFd();
  UniqueFd ns(::ioctl(fd, SIOCGSKNS));
  if (!ns.valid()) return Error::FromErrno(errno);
  if (InodeOf(ns.get()) == home_inode) return UniqueFd();
  return ns;
}

}  // namespace zt::io
