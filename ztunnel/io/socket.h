// Socket helpers: creation, listening, and the options a transparent proxy needs.
// All are plain syscalls; they never block (sockets are non-blocking).
#pragma once

#include <chrono>
#include <cstdint>

#include "ztunnel/core/result.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/fd.h"

namespace zt::io {

/// TcpSocket creates a non-blocking, close-on-exec TCP socket of `family`.
Result<UniqueFd> TcpSocket(int family);

/// ListenOptions say how Listen prepares its socket.
struct ListenOptions {
  int backlog = 4096;
  bool reuse_port = false;   // one listener per worker, balanced by the kernel
  bool transparent = false;  // IP_TRANSPARENT: accept for non-local addresses (TPROXY)
  uint32_t mark = 0;         // SO_MARK on the listener (0 = leave unset)
  int netns_fd = -1;         // >= 0: create the socket in this network namespace
  bool v6only = false;       // IPV6_V6ONLY, so [::]:P can sit next to 0.0.0.0:P
};

/// Listen creates a TCP socket bound to `addr` and listening. A bind conflict is an
/// error, never silently ignored.
Result<UniqueFd> Listen(const SocketAddress& addr, const ListenOptions& options);

/// ListenPatiently is Listen, retried every 50 ms for up to `patience` while the address
/// is in use. A process killed a moment ago (a crashed node process kubelet restarts
/// at once) still holds its io_uring listeners until the kernel has torn its ring down,
/// a few ms after the process is reaped. Start-up only: it sleeps. Any other error,
/// and the conflict still there after `patience`, is returned as is.
Result<UniqueFd> ListenPatiently(const SocketAddress& addr, const ListenOptions& options,
                                 std::chrono::milliseconds patience);

/// OriginalDst reads the pre-NAT destination of a REDIRECTed connection
/// (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). kNotFound when the connection was not NATed.
Result<SocketAddress> OriginalDst(int fd);

/// LocalAddress is getsockname.
Result<SocketAddress> LocalAddress(int fd);
/// PeerAddress is getpeername.
Result<SocketAddress> PeerAddress(int fd);

/// SetMark sets SO_MARK (needs CAP_NET_ADMIN) so our own traffic is not captured again.
Status SetMark(int fd, uint32_t mark);
/// SetTransparent sets IP_TRANSPARENT (IPV6_TRANSPARENT for v6; needs CAP_NET_ADMIN).
Status SetTransparent(int fd, int family);
/// SetReusePort sets SO_REUSEPORT.
Status SetReusePort(int fd);
/// SetNoDelay disables Nagle's algorithm.
Status SetNoDelay(int fd);

/// KeepaliveOptions mirror the TCP keepalive knobs.
struct KeepaliveOptions {
  std::chrono::seconds idle{180};
  std::chrono::seconds interval{180};
  int probes = 9;
};
/// SetKeepalive turns on TCP keepalive with the given timings.
Status SetKeepalive(int fd, const KeepaliveOptions& options);
/// SetLingerZero makes the next close send RST instead of FIN (reset propagation).
Status SetLingerZero(int fd);
/// SocketError reads and clears SO_ERROR.
int SocketError(int fd);

}  // namespace zt::io
