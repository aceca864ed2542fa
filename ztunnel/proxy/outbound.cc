#include "ztunnel/proxy/outbound.h"

#include <sys/socket.h>

#include <cerrno>

#include "ztunnel/core/log.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/proxy/ports.h"
#include "ztunnel/proxy/relay.h"

namespace zt::proxy {
namespace {

using Clock = std::chrono::steady_clock;

// PendingConnect lets a drain abort a connection that is still connecting upstream.
class PendingConnect final : public TrackedConnection {
 public:
  PendingConnect(io::Loop& loop, int upstream_fd) : loop_(loop), upstream_fd_(upstream_fd) {}
  void Abort() override { loop_.CancelFd(upstream_fd_); }

 private:
  io::Loop& loop_;
  int upstream_fd_;
};

// Refuse reports a failed connection to the client with a reset, as a direct
// connection to a closed port would.
void Refuse(io::UniqueFd downstream) {
  (void)io::SetLingerZero(downstream.get());
  downstream.reset();
}

}  // namespace

Outbound::Outbound(io::Loop& loop, int listen_fd, OutboundOptions options,
                   ConnectionTracker& tracker, Balancer& balancer, int index,
                   std::function<void()> on_connection_end)
    : loop_(loop),
      listen_fd_(listen_fd),
      options_(std::move(options)),
      tracker_(tracker),
      balancer_(balancer),
      index_(index),
      on_connection_end_(std::move(on_connection_end)) {
  if (!options_.original_dst) options_.original_dst = io::OriginalDst;
}

Outbound::~Outbound() = default;

void Outbound::Start() {
  accept_ = std::make_unique<io::MultishotAccept>(loop_, listen_fd_);
  if (!io::Fiber::Spawn(loop_, [this] { AcceptLoop(); })) {
    ZT_ERROR("proxy", "cannot start the outbound accept loop: out of memory for a fiber stack");
    accept_->Stop();
  }
}

void Outbound::StopAccepting(std::function<void()> on_stopped) {
  on_stopped_ = std::move(on_stopped);
  // shutdown() on a listening socket stops it listening: new SYNs are refused and the
  // kernel's backlog is reset, so a drain never strands half-accepted connections.
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (accept_) accept_->Stop();
  if (accept_done_ && on_stopped_) std::exchange(on_stopped_, nullptr)();
}

void Outbound::AcceptLoop() {
  for (;;) {
    auto conn = accept_->Next();
    if (!conn) {
      if (conn.error().code == Errc::kCancelled) break;
      // EINVAL: the listener was shut down (by another worker's drain).
      if (conn.error().sys == EINVAL || conn.error().sys == EBADF) break;
      // EMFILE/ENFILE and friends: log and keep serving existing connections.
      ZT_WARN("proxy", "outbound accept failed: {}", conn.error().Message());
      if (conn.error().sys == EMFILE || conn.error().sys == ENFILE) {
        io::Sleep(loop_, std::chrono::milliseconds(100));
      }
      continue;
    }
    const int target = balancer_.Pick(index_);
    balancer_.Acquire(target);
    if (target == index_) {
      ServeHanded(conn->release());
    } else {
      balancer_.Hand(target, conn->release());
    }
  }
  accept_.reset();
  accept_done_ = true;
  if (on_stopped_) std::exchange(on_stopped_, nullptr)();
}

void Outbound::ServeHanded(int fd) {
  // Spawn runs the fiber at once, so the raw fd cannot leak in between.
  if (!io::Fiber::Spawn(loop_, [this, fd] { Serve(io::UniqueFd(fd)); })) {
    ZT_WARN("proxy", "refusing a connection: out of memory for a fiber stack");
    Refuse(io::UniqueFd(fd));
    ConnectionEnded();
  }
}

void Outbound::ConnectionEnded() {
  balancer_.Release(index_);
  if (on_connection_end_) on_connection_end_();
}

void Outbound::Serve(io::UniqueFd downstream) {
  const auto start = Clock::now();
  // Every way out of set-up counts the connection as ended; the relay does it later.
  struct EndGuard {
    Outbound* self;
    bool armed = true;
    ~EndGuard() {
      if (armed) self->ConnectionEnded();
    }
  } end_guard{this};
  auto src = io::PeerAddress(downstream.get());
  auto dst = options_.original_dst(downstream.get());
  const io::SocketAddress src_addr = src ? *src : io::SocketAddress{};
  const std::string src_text = src ? src->ToString() : "unknown";
  if (!dst) {
    ZT_WARN("proxy", "outbound connection from {} has no original destination ({}); closing",
            src_text, dst.error().Message());
    Refuse(std::move(downstream));
    return;
  }
  if (IsProxyPort(dst->port())) {
    ZT_WARN("proxy", "refusing outbound connection from {} to {}: it targets a proxy port (loop)",
            src_text, dst->ToString());
    Refuse(std::move(downstream));
    return;
  }
  (void)io::SetNoDelay(downstream.get());

  auto upstream = io::TcpSocket(dst->family());
  if (!upstream) {
    ZT_WARN("proxy", "cannot create upstream socket for {}: {}", dst->ToString(),
            upstream.error().Message());
    Refuse(std::move(downstream));
    return;
  }
  const int up = upstream->get();
  if (options_.mark != 0) {
    if (auto s = io::SetMark(up, options_.mark); !s) {
      // Without the mark our own connection would be captured again: refuse.
      ZT_ERROR("proxy", "cannot set SO_MARK {} (needs CAP_NET_ADMIN): {}", options_.mark,
               s.error().Message());
      Refuse(std::move(downstream));
      return;
    }
  }
  (void)io::SetNoDelay(up);
  (void)io::SetKeepalive(up, options_.keepalive);
  (void)io::SetKeepalive(downstream.get(), options_.keepalive);

  PendingConnect pending(loop_, up);
  tracker_.Add(&pending);
  const Status connected = io::Connect(loop_, up, *dst, options_.connect_timeout);
  tracker_.Remove(&pending);
  if (!connected) {
    ZT_INFO("access", "connection failed src.addr={} dst.addr={} direction=outbound error=\"{}\"",
            src_text, dst->ToString(), connected.error().Message());
    Refuse(std::move(downstream));
    return;
  }
  ZT_DEBUG("proxy", "outbound {} -> {} connected", src_text, dst->ToString());
  end_guard.armed = false;
  Relay::Start(
      loop_, std::move(downstream), std::move(upstream).value(), &tracker_,
      [this, src = src_addr, dst = *dst, start](const RelayResult& r) {
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
        ZT_INFO("access",
                "connection complete src.addr={} dst.addr={} direction=outbound "
                "bytes_sent={} bytes_recv={} duration={}ms{}",
                src.ToString(), dst.ToString(), r.bytes_downstream_to_upstream,
                r.bytes_upstream_to_downstream, ms,
                r.ok ? std::string() : " error=\"" + r.error.Message() + "\"");
        ConnectionEnded();
      });
}

}  // namespace zt::proxy
