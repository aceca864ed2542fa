#include "ztunnel/admin/readiness.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ztunnel/io/socket.h"

namespace zt::admin {

void Readiness::Set(const std::string& task, bool pending) {
  std::lock_guard lock(mu_);
  if (pending) {
    pending_.insert(task);
  } else {
    pending_.erase(task);
  }
}

std::vector<std::string> Readiness::Pending() const {
  std::lock_guard lock(mu_);
  return {pending_.begin(), pending_.end()};
}

Result<std::unique_ptr<ReadinessServer>> ReadinessServer::Start(const io::SocketAddress& addr,
                                                                const Readiness& readiness) {
  auto l = io::Listen(addr, io::ListenOptions{.backlog = 64});
  if (!l) return l.error();
  auto local = io::LocalAddress(l->get());
  std::unique_ptr<ReadinessServer> s(new ReadinessServer());
  s->readiness_ = &readiness;
  s->port_ = local ? local->port() : 0;
  s->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (s->stop_fd_ < 0) return Error::FromErrno(errno);
  s->listen_fd_ = l->release();
  s->thread_ = std::thread([p = s.get()] { p->Serve(); });
  return s;
}

ReadinessServer::~ReadinessServer() {
  const uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
}

void ReadinessServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    const int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;  // the listener is non-blocking: a lost race is EAGAIN
    Answer(conn);
    ::close(conn);
  }
}

void ReadinessServer::Answer(int conn) {
  // The accepted socket inherits O_NONBLOCK from the listener: wait with poll.
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    pollfd p{conn, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) return;  // silent or slow client: drop it
    const ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
    if (n <= 0) return;
    request.append(buf, static_cast<size_t>(n));
  }
  const std::string line = request.substr(0, request.find("\r\n"));
  std::string status = "404 Not Found", body = "not found\n";
  if (line.starts_with("GET /healthz/ready ") || line == "GET /healthz/ready") {
    const std::vector<std::string> pending = readiness_->Pending();
    if (pending.empty()) {
      status = "200 OK";
      body = "ready\n";
    } else {
      status = "500 Internal Server Error";
      body = "not ready:";
      for (const std::string& t : pending) body += " " + t + ";";
      body.back() = '\n';
    }
  }
  const std::string response = "HTTP/1.1 " + status +
                               "\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                               "Content-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t sent = 0;
  while (sent < response.size()) {
    pollfd p{conn, POLLOUT, 0};
    if (::poll(&p, 1, 1000) <= 0) return;
    const ssize_t n = ::send(conn, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

}  // namespace zt::admin
