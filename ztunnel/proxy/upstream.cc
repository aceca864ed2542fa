#include "ztunnel/proxy/upstream.h"

#include "ztunnel/core/log.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/io/ops.h"

namespace zt::proxy {
namespace {

// PendingConnect lets a drain abort a connect that is still in flight.
class PendingConnect final : public TrackedConnection {
 public:
  PendingConnect(io::Loop& loop, int fd) : loop_(loop), fd_(fd) {}
  void Abort() override { loop_.CancelFd(fd_); }
  int SocketFd() const override { return fd_; }

 private:
  io::Loop& loop_;
  int fd_;
};

}  // namespace

Result<io::UniqueFd> ConnectUpstream(io::Loop& loop, const io::SocketAddress& dst,
                                     const UpstreamOptions& options, ConnectionTracker* tracker) {
  if (options.cancel != nullptr && options.cancel->cancelled) return Error{Errc::kCancelled};
  ConnectLimiter::Permit permit;  // held until the connect has finished, either way
  if (options.limiter != nullptr) {
    auto p = options.limiter->Acquire(options.source);
    if (!p) return p.error();
    permit = std::move(p).value();
  }
  auto sock = options.netns_fd >= 0 ? io::SocketInNetns(options.netns_fd, dst.family(),
                                                        SOCK_STREAM | SOCK_NONBLOCK, 0)
                                    : io::TcpSocket(dst.family());
  if (!sock) return sock.error();
  if (options.mark != 0) {
    if (Status s = io::SetMark(sock->get(), options.mark); !s) {
      ZT_ERROR("proxy", "cannot set SO_MARK {} on an upstream socket (needs CAP_NET_ADMIN): {}",
               options.mark, s.error().Message());
      return s.error();
    }
  }
  (void)io::SetNoDelay(sock->get());
  (void)io::SetKeepalive(sock->get(), options.keepalive);
  PendingConnect pending(loop, sock->get());
  if (tracker != nullptr) tracker->Add(&pending);
  if (options.cancel != nullptr) {
    options.cancel->fd = sock->get();
    options.cancel->loop = &loop;
  }
  const Status connected = io::Connect(loop, sock->get(), dst, options.connect_timeout);
  if (options.cancel != nullptr) options.cancel->fd = -1;
  if (tracker != nullptr) tracker->Remove(&pending);
  if (options.cancel != nullptr && options.cancel->cancelled) return Error{Errc::kCancelled};
  if (!connected) return connected.error();
  return std::move(sock).value();
}

}  // namespace zt::proxy
