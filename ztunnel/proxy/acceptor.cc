#include "ztunnel/proxy/acceptor.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "ztunnel/core/log.h"
#include "ztunnel/io/fiber.h"

namespace zt::proxy {

// The metrics module cannot name proxy::Listener; the two enums line up instead.
static_assert(static_cast<uint8_t>(Listener::kOutbound) ==
              static_cast<uint8_t>(metrics::AcceptKind::kOutbound));
static_assert(static_cast<uint8_t>(Listener::kInboundHbone) ==
              static_cast<uint8_t>(metrics::AcceptKind::kInboundHbone));
static_assert(static_cast<uint8_t>(Listener::kInboundPlaintext) ==
              static_cast<uint8_t>(metrics::AcceptKind::kInboundPlaintext));

Acceptor::Acceptor(io::Loop& loop, int listen_fd, Balancer& balancer, int index, Listener listener,
                   const char* name, ServeFn serve, metrics::OverloadMetrics* overload)
    : loop_(loop),
      listen_fd_(listen_fd),
      balancer_(balancer),
      index_(index),
      listener_(listener),
      name_(name),
      serve_(std::move(serve)),
      overload_(overload) {}

Acceptor::~Acceptor() = default;

void Acceptor::Start() {
  accept_ = std::make_unique<io::MultishotAccept>(loop_, listen_fd_);
  if (!io::Fiber::Spawn(loop_, [this] { AcceptLoop(); })) {
    ZT_ERROR("proxy", "cannot start the {} accept loop: out of memory for a fiber stack", name_);
    accept_->Stop();
    done_ = true;
  }
}

void Acceptor::Stop(std::function<void()> on_stopped) {
  on_stopped_ = std::move(on_stopped);
  // shutdown() on a listening socket stops it listening: new SYNs are refused and the
  // kernel's backlog is reset, so a drain never strands half-accepted connections.
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (accept_) accept_->Stop();
  if ((done_ || !accept_) && on_stopped_) std::exchange(on_stopped_, nullptr)();
}

void Acceptor::AcceptLoop() {
  for (;;) {
    auto conn = accept_->Next();
    if (!conn) {
      if (conn.error().code == Errc::kCancelled) break;
      // EINVAL: the listener was shut down (by another worker's drain).
      if (conn.error().sys == EINVAL || conn.error().sys == EBADF) break;
      const int sys = conn.error().sys;
      if (sys == EMFILE || sys == ENFILE || sys == ENOMEM || sys == ENOBUFS) {
        BackOff(conn.error());
      } else {
        // A connection that failed before we got it (ECONNABORTED, ...): next one.
        ZT_DEBUG("proxy", "{} accept failed: {}", name_, conn.error().Message());
      }
      continue;
    }
    if (backoff_.count() > 0) {
      ZT_INFO("proxy", "{} accepting again after running out of file descriptors", name_);
      backoff_ = std::chrono::milliseconds(0);
    }
    const int target = balancer_.Pick(index_);
    balancer_.Acquire(target);
    if (target == index_) {
      serve_(conn->release());
    } else {
      balancer_.Hand(target, conn->release(), listener_);
    }
  }
  accept_.reset();
  done_ = true;
  if (on_stopped_) std::exchange(on_stopped_, nullptr)();
}

void Acceptor::BackOff(const Error& error) {
  // The multishot accept is not re-armed until the next Next(): while we sleep the
  // kernel keeps new connections in the listen backlog, nothing spins, and existing
  // connections keep being served (freeing fds as they end).
  backoff_ = backoff_.count() == 0 ? kMinBackoff : std::min(backoff_ * 2, kMaxBackoff);
  if (overload_ != nullptr) {
    overload_->AcceptBackoff(static_cast<metrics::AcceptKind>(static_cast<uint8_t>(listener_)));
  }
  uint64_t held = 0;
  if (log_limiter_.Allow(&held)) {
    ZT_WARN("proxy",
            "{} accept failed: {}; pausing accepts for {}ms (and {} more like it since "
            "the last such line)",
            name_, error.Message(), backoff_.count(), held);
  }
  io::Sleep(loop_, backoff_);
}

}  // namespace zt::proxy
