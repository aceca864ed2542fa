#include "ztunnel/proxy/acceptor.h"

#include <sys/socket.h>

#include <cerrno>

#include "ztunnel/core/log.h"
#include "ztunnel/io/fiber.h"

namespace zt::proxy {

Acceptor::Acceptor(io::Loop& loop, int listen_fd, Balancer& balancer, int index, Listener listener,
                   const char* name, ServeFn serve)
    : loop_(loop),
      listen_fd_(listen_fd),
      balancer_(balancer),
      index_(index),
      listener_(listener),
      name_(name),
      serve_(std::move(serve)) {}

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
      // EMFILE/ENFILE and friends: log and keep serving existing connections.
      ZT_WARN("proxy", "{} accept failed: {}", name_, conn.error().Message());
      if (conn.error().sys == EMFILE || conn.error().sys == ENFILE) {
        io::Sleep(loop_, std::chrono::milliseconds(100));
      }
      continue;
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

}  // namespace zt::proxy
