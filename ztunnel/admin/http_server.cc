#include "ztunnel/admin/http_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "ztunnel/core/log.h"
#include "ztunnel/io/socket.h"

namespace zt::admin {
namespace {

using Clock = std::chrono::steady_clock;

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

// Parse fills `req` from a complete head ("\r\n\r\n" included); false if malformed.
bool ParseHead(std::string_view head, HttpRequest* req, size_t* content_length) {
  const size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return false;
  const size_t sp2 = line.find(' ', sp1 + 1);
  const std::string_view target =
      line.substr(sp1 + 1, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - sp1 - 1);
  if (target.empty() || target[0] != '/') return false;
  req->method = std::string(line.substr(0, sp1));
  const size_t q = target.find('?');
  req->path = std::string(target.substr(0, q));
  req->query = q == std::string_view::npos ? "" : std::string(target.substr(q + 1));
  *content_length = 0;
  for (size_t pos = line_end + 2; pos < head.size();) {
    const size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos || end == pos) break;
    std::string_view h = head.substr(pos, end - pos);
    pos = end + 2;
    const size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(h.substr(0, colon));
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name != "content-length") continue;
    std::string value(h.substr(colon + 1));
    char* endp = nullptr;
    const unsigned long long n = std::strtoull(value.c_str(), &endp, 10);
    if (endp == value.c_str()) return false;
    *content_length = static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string HttpRequest::Param(const std::string& name) const {
  size_t pos = 0;
  while (pos <= query.size()) {
    const size_t amp = query.find('&', pos);
    const std::string_view kv = std::string_view(query).substr(
        pos, amp == std::string::npos ? std::string::npos : amp - pos);
    const size_t eq = kv.find('=');
    if (kv.substr(0, eq) == name) {
      return eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
    }
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return "";
}

std::string RenderResponse(const HttpResponse& r) {
  return "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) +
         "\r\nContent-Type: " + r.content_type +
         "\r\nConnection: close\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n\r\n" +
         r.body;
}

struct HttpServer::Conn {
  int fd = -1;
  const HttpHandler* handler = nullptr;
  Clock::time_point deadline;
  std::string in;
  std::string out;
  size_t out_off = 0;
  bool responding = false;
  ~Conn() {
    if (fd >= 0) ::close(fd);
  }
};

std::unique_ptr<HttpServer> HttpServer::Start(std::vector<HttpEndpoint> endpoints,
                                              std::string* error) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  for (HttpEndpoint& e : endpoints) {
    auto l = io::Listen(e.address, io::ListenOptions{.backlog = 64});
    if (!l) {
      for (Listener& done : s->listeners_) ::close(done.fd);
      s->listeners_.clear();
      *error =
          "cannot listen on " + e.address.ToString() + " (" + e.name + "): " + l.error().Message();
      return nullptr;
    }
    auto local = io::LocalAddress(l->get());
    s->listeners_.push_back(
        {l->release(), local ? local->port() : uint16_t{0}, std::move(e.handler)});
  }
  s->stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (s->stop_fd_ < 0) {
    for (Listener& l : s->listeners_) ::close(l.fd);
    s->listeners_.clear();
    *error = "cannot start the HTTP server: " + Error::FromErrno(errno).Message();
    return nullptr;
  }
  s->thread_ = std::thread([p = s.get()] { p->Serve(); });
  return s;
}

HttpServer::~HttpServer() {
  const uint64_t one = 1;
  if (thread_.joinable()) {
    (void)!::write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  for (Listener& l : listeners_) ::close(l.fd);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void HttpServer::Accept(const Listener& l, std::vector<std::unique_ptr<Conn>>& conns) {
  for (;;) {
    const int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;  // EAGAIN: all taken
    if (conns.size() >= kMaxConnections) {
      ::close(fd);  // over the limit: the client retries (probes and scrapes do)
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->handler = &l.handler;
    c->deadline = Clock::now() + kDeadline;
    conns.push_back(std::move(c));
  }
}

bool HttpServer::Step(Conn& c) {
  if (!c.responding) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
      if (n == 0) return false;  // closed before a full request
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return false;
      }
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > kMaxRequest) break;
    }
    const size_t head_end = c.in.find("\r\n\r\n");
    HttpResponse resp;
    if (head_end == std::string::npos) {
      if (c.in.size() <= kMaxRequest) return true;  // wait for more
      resp = {413, "text/plain; charset=utf-8", "request too large\n"};
    } else {
      HttpRequest req;
      size_t length = 0;
      if (!ParseHead(std::string_view(c.in).substr(0, head_end + 4), &req, &length)) {
        resp = {400, "text/plain; charset=utf-8", "malformed request\n"};
      } else if (length > kMaxRequest) {
        resp = {413, "text/plain; charset=utf-8", "request too large\n"};
      } else if (c.in.size() < head_end + 4 + length) {
        return true;  // the body is still coming
      } else {
        req.body = c.in.substr(head_end + 4, length);
        resp = (*c.handler)(req);
      }
    }
    c.out = RenderResponse(resp);
    c.responding = true;
  }
  while (c.out_off < c.out.size()) {
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    c.out_off += static_cast<size_t>(n);
  }
  return false;  // all sent: close
}

void HttpServer::Serve() {
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({stop_fd_, POLLIN, 0});
    for (const Listener& l : listeners_) fds.push_back({l.fd, POLLIN, 0});
    for (const auto& c : conns) {
      fds.push_back({c->fd, static_cast<short>(c->responding ? POLLOUT : POLLIN), 0});
    }
    const int rc = ::poll(fds.data(), fds.size(), 1000);
    if (rc < 0 && errno != EINTR) {
      ZT_ERROR("admin", "HTTP server stopped: poll failed: {}", Error::FromErrno(errno).Message());
      return;
    }
    if (fds[0].revents != 0) return;
    const size_t first_conn = 1 + listeners_.size();
    // Connections first (their indexes match fds), then new ones.
    std::vector<std::unique_ptr<Conn>> keep;
    const auto now = Clock::now();
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = *conns[i];
      bool alive = true;
      if (fds[first_conn + i].revents != 0) alive = Step(c);
      if (alive && now >= c.deadline) alive = false;  // silent or slow client
      if (alive) keep.push_back(std::move(conns[i]));
    }
    conns.swap(keep);
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if (fds[1 + i].revents != 0) Accept(listeners_[i], conns);
    }
  }
}

}  // namespace zt::admin
