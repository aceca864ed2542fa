// HttpServer on Boost.Beast (HTTP/1 parsing and serializing) and Boost.Asio (sockets,
// timers, one io_context per endpoint). Everything of an endpoint, its sessions
// included, lives on that endpoint's thread; other threads only read its atomic
// counters and post its shutdown.
//
// A session is one connection. Its phases each have one deadline on one timer:
//   idle   (keep-alive, waiting for the next request's first byte)   idle_timeout
//   header (request line and headers)          min(header_timeout, request_timeout)
//   body, write (the handler runs in between)  request_timeout from the request's start
//   linger (after the last response: read and discard until the client's FIN)  linger
// A refused connection (over the budget) is not a session: it is accepted as a plain fd,
// gets a fixed 503 and a half-close at once, and lingers in a list swept every 50 ms
// (bounded by max_rejecting). Keeping refused fds out of Asio matters for memory: Asio
// keeps one reactor record per socket ever open at once for good, and a flood of
// records scattered among sessions left the heap unable to shrink after the flood.
// So accepting is a wait for readability plus accept4 until EAGAIN, not async_accept.
#include "ztunnel/admin/http_server.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>
#include <exception>
#include <limits>
#include <list>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "ztunnel/core/log.h"
#include "ztunnel/core/result.h"
#include "ztunnel/io/socket.h"

namespace zt::admin {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using tcp = asio::ip::tcp;

// One line per kind of trouble per endpoint at most this often; the rest are counted
// and the count is in the next line.
constexpr std::chrono::seconds kLogInterval{5};

// What a connection over the budget gets, written before anything is read.
constexpr std::string_view kBusy =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Connection: close\r\n"
    "Retry-After: 1\r\n"
    "Content-Length: 26\r\n"
    "\r\n"
    "too many connections, busy";

// LogLimiter lets one line through every kLogInterval and counts the ones it holds back.
class LogLimiter {
 public:
  // Allow is true when a line may be written now; then *suppressed is how many were
  // held back since the last one.
  bool Allow(uint64_t* suppressed) {
    const auto now = Clock::now();
    if (written_ && now - last_ < kLogInterval) {
      ++suppressed_;
      return false;
    }
    written_ = true;
    last_ = now;
    *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  bool written_ = false;
  Clock::time_point last_;
  uint64_t suppressed_ = 0;
};

// How many connections one turn accepts before it lets the endpoint's other handlers
// (timers, sessions) run.
constexpr int kAcceptBatch = 128;
// How often lingering refused connections are checked for their FIN.
constexpr std::chrono::milliseconds kSweepInterval{50};

// ResourceShortage is true for accept errors that mean "no fd or memory now": the
// listener stays readable, so retrying at once would spin.
bool ResourceShortage(int e) { return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM; }

// ConnectionSpecific is true for accept errors that concern only the connection being
// accepted (it went away first, or a firewall refused it): accept the next one at once.
bool ConnectionSpecific(int e) {
  return e == ECONNABORTED || e == EPROTO || e == EPERM || e == EINTR;
}

void Bump(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

struct HttpServer::Endpoint {
  Endpoint(std::string n, HttpHandler h, const HttpLimits& l)
      : name(std::move(n)), handler(std::move(h)), limits(l) {}

  void WaitAccept();
  void AcceptReady();
  void AcceptFailed(int err);
  void Admit(int fd);
  void Reject(int fd);
  void Sweep();
  void ArmSweep();
  void Shutdown();
  void Run();

  const std::string name;
  const HttpHandler handler;
  const HttpLimits limits;
  uint16_t port = 0;
  bool v6 = false;

  // Endpoint thread only.
  bool stopping = false;
  struct Lingering {
    int fd;
    Clock::time_point deadline;
  };
  std::vector<Lingering> lingering;  // refused: 503 written, waiting for the client's FIN
  bool sweeping = false;             // the sweep timer is armed
  std::list<Session*> sessions;      // every live session (to close them at shutdown)
  std::list<Session*> idle;          // keep-alive sessions waiting, oldest first
  std::list<Session*> headering;     // sessions reading headers, oldest first
  LogLimiter accept_log, budget_log, timeout_log;
  uint64_t shortage_streak = 0;

  // Read from any thread.
  std::atomic<uint64_t> accepted{0}, active{0}, requests{0}, rejected_budget{0}, header_timeouts{0},
      request_timeouts{0}, too_large{0}, bad_requests{0}, accept_errors{0}, idle_closed{0},
      slow_evicted{0};

  // Declared after what sessions use and destroyed before it: handlers still pending when
  // the io_context goes are destroyed with it, and may end sessions.
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer backoff{ioc};
  asio::steady_timer sweep{ioc};
  std::thread thread;
};

// Session is one connection, kept alive by the handlers of its pending operations.
class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Endpoint& ep, tcp::socket socket) : ep_(ep), socket_(std::move(socket)), timer_(ep.ioc) {
    registered_ = ep_.sessions.insert(ep_.sessions.end(), this);
    ep_.active.fetch_add(1, std::memory_order_relaxed);
  }
  ~Session() {
    Close();
    ep_.sessions.erase(registered_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serve starts reading the first request.
  void Serve() { StartRequest(); }

  // Close ends the connection now; pending operations complete as aborted.
  void Close() {
    if (phase_ == Phase::kClosed) return;
    if (phase_ == Phase::kIdle) ep_.idle.erase(idle_it_);
    LeaveHeaderList();
    phase_ = Phase::kClosed;
    timer_.cancel();
    error_code ignored;
    socket_.close(ignored);
    ep_.active.fetch_sub(1, std::memory_order_relaxed);
  }

  // CloseIdle closes a keep-alive connection waiting for a request (counted).
  void CloseIdle() {
    Bump(ep_.idle_closed);
    Close();
  }

  // CloseSlow closes a connection still sending its headers, for a new client (counted).
  void CloseSlow() {
    Bump(ep_.slow_evicted);
    Close();
  }

  // HeaderSince is when this session started reading its current request's headers.
  Clock::time_point header_since() const { return header_since_; }

 private:
  enum class Phase { kIdle, kHeader, kBody, kWrite, kLinger, kClosed };

  // Arm enters `phase` with its deadline; a deadline of an earlier phase no longer fires.
  void Arm(Phase phase, Clock::time_point deadline) {
    LeaveHeaderList();
    if (phase == Phase::kHeader) {
      header_since_ = Clock::now();
      header_it_ = ep_.headering.insert(ep_.headering.end(), this);
      in_headering_ = true;
    }
    phase_ = phase;
    const uint64_t generation = ++generation_;
    timer_.expires_at(deadline);
    timer_.async_wait([self = shared_from_this(), generation](const error_code& ec) {
      if (!ec && generation == self->generation_) self->OnTimeout();
    });
  }

  void OnTimeout() {
    switch (phase_) {
      case Phase::kHeader:
        Bump(ep_.header_timeouts);
        LogTimeout("no complete request headers within the header timeout");
        break;
      case Phase::kBody:
      case Phase::kWrite:
        Bump(ep_.request_timeouts);
        LogTimeout("request not read and answered within the request timeout");
        break;
      case Phase::kIdle:
        Bump(ep_.idle_closed);
        break;
      case Phase::kLinger:
      case Phase::kClosed:
        break;
    }
    Close();
  }

  void LogTimeout(std::string_view what) {
    uint64_t suppressed = 0;
    if (!ep_.timeout_log.Allow(&suppressed)) return;
    ZT_WARN("admin", "{} endpoint: closed a connection: {} ({} more since the last message)",
            ep_.name, what, suppressed);
  }

  // StartRequest waits for the next request: at once when its bytes are buffered or on
  // a new connection, else through the idle phase until its first byte.
  void StartRequest() {
    if (served_ == 0 || buffer_.size() > 0) return ReadHeader();
    Arm(Phase::kIdle, Clock::now() + ep_.limits.idle_timeout);
    idle_it_ = ep_.idle.insert(ep_.idle.end(), this);
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](const error_code& ec) {
      if (self->phase_ != Phase::kIdle) return;  // closed
      self->ep_.idle.erase(self->idle_it_);
      self->phase_ = Phase::kHeader;  // no longer in the idle list
      if (ec) return self->Close();
      self->ReadHeader();
    });
  }

  void ReadHeader() {
    const auto now = Clock::now();
    request_deadline_ = now + ep_.limits.request_timeout;
    Arm(Phase::kHeader, std::min(now + ep_.limits.header_timeout, request_deadline_));
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(
        std::min<size_t>(ep_.limits.max_header_bytes, std::numeric_limits<uint32_t>::max())));
    parser_->body_limit(ep_.limits.max_body_bytes);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](const error_code& ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(const error_code& ec) {
    if (phase_ == Phase::kClosed) return;
    if (ec) return OnReadError(ec);
    Arm(Phase::kBody, request_deadline_);
    if (parser_->is_done()) return Handle();
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](const error_code& ec, size_t) {
                       if (self->phase_ == Phase::kClosed) return;
                       if (ec) return self->OnReadError(ec);
                       self->Handle();
                     });
  }

  // OnReadError answers what can be answered and closes the rest quietly.
  void OnReadError(const error_code& ec) {
    if (ec == http::error::header_limit) {
      Bump(ep_.too_large);
      return Respond({431, "text/plain; charset=utf-8", "request headers too large\n"}, false);
    }
    if (ec == http::error::body_limit) {
      Bump(ep_.too_large);
      return Respond({413, "text/plain; charset=utf-8", "request body too large\n"}, false);
    }
    if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      Bump(ep_.bad_requests);
      return Respond({400, "text/plain; charset=utf-8", "malformed request\n"}, false);
    }
    Close();  // the client went away (before or inside a request) or the socket failed
  }

  void Handle() {
    const auto& msg = parser_->get();
    const std::string_view target(msg.target().data(), msg.target().size());
    if (target.empty() || target[0] != '/') {
      Bump(ep_.bad_requests);
      return Respond({400, "text/plain; charset=utf-8", "malformed request target\n"}, false);
    }
    HttpRequest req;
    req.method = std::string(msg.method_string().data(), msg.method_string().size());
    const size_t q = target.find('?');
    req.path = std::string(target.substr(0, q));
    req.query = q == std::string_view::npos ? "" : std::string(target.substr(q + 1));
    req.body = std::move(parser_->get().body());
    const bool keep_alive = msg.keep_alive();
    HttpResponse resp;
    try {
      resp = ep_.handler(req);
    } catch (const std::exception& e) {
      ZT_ERROR("admin", "{} endpoint: handler for {} failed: {}", ep_.name, req.path, e.what());
      resp = {500, "text/plain; charset=utf-8", "internal error\n"};
    }
    Bump(ep_.requests);
    Respond(std::move(resp), keep_alive);
  }

  void Respond(HttpResponse r, bool keep_alive) {
    if (phase_ == Phase::kHeader || phase_ == Phase::kBody) Arm(Phase::kWrite, request_deadline_);
    res_ = {};
    res_.version(11);
    res_.result(r.status >= 100 && r.status <= 999 ? static_cast<unsigned>(r.status) : 500u);
    res_.set(http::field::content_type, r.content_type);
    res_.body() = std::move(r.body);
    res_.keep_alive(keep_alive);
    res_.prepare_payload();
    keep_alive_ = keep_alive;
    http::async_write(socket_, res_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (self->phase_ == Phase::kClosed) return;
      if (ec) return self->Close();
      ++self->served_;
      self->res_ = {};  // its body can be large (metrics)
      if (self->keep_alive_) return self->StartRequest();
      self->Linger();
    });
  }

  // Linger half-closes, then reads and drops what the client still sends until its FIN:
  // closing with unread bytes would reset the connection and could destroy the
  // response before the client reads it.
  void Linger() {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    Arm(Phase::kLinger, Clock::now() + ep_.limits.linger);
    Drain();
  }

  void Drain() {
    socket_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](const error_code& ec, size_t) {
                              if (self->phase_ == Phase::kClosed) return;
                              if (ec) return self->Close();  // the FIN, usually
                              self->Drain();
                            });
  }

  Endpoint& ep_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  Phase phase_ = Phase::kHeader;
  uint64_t generation_ = 0;
  std::list<Session*>::iterator registered_;
  std::list<Session*>::iterator idle_it_;    // valid in kIdle only
  std::list<Session*>::iterator header_it_;  // valid while in_headering_
  bool in_headering_ = false;
  Clock::time_point header_since_{};

  void LeaveHeaderList() {
    if (!in_headering_) return;
    ep_.headering.erase(header_it_);
    in_headering_ = false;
  }
  Clock::time_point request_deadline_;
  boost::beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  bool keep_alive_ = false;
  uint64_t served_ = 0;
  std::array<char, 512> drain_;
};

void HttpServer::Endpoint::WaitAccept() {
  acceptor.async_wait(tcp::acceptor::wait_read, [this](const error_code& ec) {
    if (!ec && !stopping) AcceptReady();  // ec: the acceptor was closed (shutdown)
  });
}

void HttpServer::Endpoint::AcceptReady() {
  // Until EAGAIN: Asio's edge-triggered wait would not report what is already queued.
  for (int i = 0; i < kAcceptBatch; ++i) {
    const int fd =
        ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return WaitAccept();
      if (ConnectionSpecific(err)) continue;
      return AcceptFailed(err);
    }
    if (shortage_streak > 0) {
      ZT_INFO("admin", "{} endpoint: accepting again after {} failed accepts", name,
              shortage_streak);
      shortage_streak = 0;
    }
    Admit(fd);
  }
  // A long queue: let timers and sessions run, then go on without waiting for an edge.
  asio::post(ioc, [this] {
    if (!stopping) AcceptReady();
  });
}

void HttpServer::Endpoint::AcceptFailed(int err) {
  // Out of fds or memory (or a listener error): the listener stays readable, so back off
  // instead of spinning, and accept again as soon as the pause ends.
  Bump(accept_errors);
  ++shortage_streak;
  uint64_t suppressed = 0;
  if (accept_log.Allow(&suppressed)) {
    ZT_WARN("admin",
            "{} endpoint: accept failed: {}{}; retrying every {} ms ({} more since the last "
            "message)",
            name, Error::FromErrno(err).Message(),
            ResourceShortage(err) ? " (out of file descriptors or memory)" : "",
            limits.accept_backoff.count(), suppressed);
  }
  backoff.expires_after(limits.accept_backoff);
  backoff.async_wait([this](const error_code& ec) {
    if (!ec && !stopping) AcceptReady();
  });
}

void HttpServer::Endpoint::Admit(int fd) {
  if (active.load(std::memory_order_relaxed) >= limits.max_connections && !idle.empty()) {
    // A keep-alive connection waiting for nothing yields its place to a new client.
    idle.front()->CloseIdle();
  } else if (active.load(std::memory_order_relaxed) >= limits.max_connections &&
             !headering.empty() &&
             Clock::now() - headering.front()->header_since() >= limits.slow_header_grace) {
    // So does the slowest sender of headers (slowloris): a client that sends its request
    // at once, as a kubelet probe or a Prometheus scrape does, gets through.
    headering.front()->CloseSlow();
  }
  if (active.load(std::memory_order_relaxed) >= limits.max_connections) return Reject(fd);
  error_code ec;
  tcp::socket socket(ioc);
  socket.assign(v6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return;
  }
  Bump(accepted);
  std::make_shared<Session>(*this, std::move(socket))->Serve();
}

void HttpServer::Endpoint::Reject(int fd) {
  Bump(rejected_budget);
  uint64_t suppressed = 0;
  if (budget_log.Allow(&suppressed)) {
    ZT_WARN("admin",
            "{} endpoint: {} connections open (the limit): refusing new ones with 503 ({} more "
            "since the last message)",
            name, limits.max_connections, suppressed);
  }
  // Before reading anything, so the answer goes out at once; it fits the new socket's
  // empty send buffer.
  (void)!::send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd, SHUT_WR);
  if (lingering.size() >= limits.max_rejecting) {
    ::close(fd);  // too many being refused already
    return;
  }
  lingering.push_back({fd, Clock::now() + limits.linger});
  if (!sweeping) ArmSweep();
}

void HttpServer::Endpoint::Sweep() {
  // Closing with unread bytes would reset the connection, and the reset can destroy the
  // 503 before the client reads it: drain until the client's FIN or the deadline.
  const auto now = Clock::now();
  std::array<char, 4096> buf;
  std::erase_if(lingering, [&](const Lingering& l) {
    bool done = false;  // the FIN or an error
    for (int reads = 0; reads < 16; ++reads) {
      const ssize_t n = ::recv(l.fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n > 0) continue;
      done = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
      break;
    }
    if (!done && now < l.deadline) return false;  // checked again next sweep
    ::close(l.fd);
    return true;
  });
  if (!lingering.empty()) ArmSweep();
}

void HttpServer::Endpoint::ArmSweep() {
  sweeping = true;
  sweep.expires_after(kSweepInterval);
  sweep.async_wait([this](const error_code& ec) {
    sweeping = false;
    if (!ec && !stopping) Sweep();
  });
}

void HttpServer::Endpoint::Shutdown() {
  stopping = true;
  error_code ignored;
  acceptor.close(ignored);
  backoff.cancel();
  sweep.cancel();
  for (const Lingering& l : lingering) ::close(l.fd);
  lingering.clear();
  // Close may not destroy a session (its handlers hold it), so the list stays valid.
  for (Session* s : sessions) s->Close();
}

void HttpServer::Endpoint::Run() {
  for (;;) {
    try {
      ioc.run();
      return;  // no work left: Shutdown ran and every session ended
    } catch (const std::exception& e) {
      // Nothing of ours throws; a library that does loses only the operation it was in.
      ZT_ERROR("admin", "{} endpoint: unexpected exception: {}", name, e.what());
    }
  }
}

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

HttpServer::HttpServer() = default;

std::unique_ptr<HttpServer> HttpServer::Start(std::vector<HttpEndpoint> endpoints,
                                              std::string* error) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  try {
    for (HttpEndpoint& e : endpoints) {
      auto l = io::Listen(e.address, io::ListenOptions{.backlog = e.limits.backlog});
      if (!l) {
        *error = "cannot listen on " + e.address.ToString() + " (" + e.name +
                 "): " + l.error().Message();
        return nullptr;  // the endpoints made so far have no thread yet
      }
      auto local = io::LocalAddress(l->get());
      auto ep = std::make_unique<Endpoint>(e.name, std::move(e.handler), e.limits);
      ep->port = local ? local->port() : uint16_t{0};
      ep->v6 = e.address.family() == AF_INET6;
      error_code ec;
      ep->acceptor.assign(e.address.family() == AF_INET6 ? tcp::v6() : tcp::v4(), l->get(), ec);
      if (ec) {
        *error = "cannot listen on " + e.address.ToString() + " (" + e.name + "): " + ec.message();
        return nullptr;
      }
      (void)l->release();  // the acceptor owns it now
      s->endpoints_.push_back(std::move(ep));
    }
    for (auto& ep : s->endpoints_) {
      ep->WaitAccept();
      ep->thread = std::thread([p = ep.get()] { p->Run(); });
      const std::string thread_name = ("http-" + ep->name).substr(0, 15);
      (void)pthread_setname_np(ep->thread.native_handle(), thread_name.c_str());
    }
  } catch (const std::exception& e) {  // Asio's constructors throw (e.g. EMFILE on epoll)
    *error = std::string("cannot start the HTTP server: ") + e.what();
    return nullptr;  // ~HttpServer stops the threads already started
  }
  return s;
}

HttpServer::~HttpServer() {
  for (auto& ep : endpoints_) {
    if (!ep->thread.joinable()) continue;
    asio::post(ep->ioc, [p = ep.get()] { p->Shutdown(); });
  }
  for (auto& ep : endpoints_) {
    if (ep->thread.joinable()) ep->thread.join();
  }
}

uint16_t HttpServer::port(size_t i) const { return endpoints_[i]->port; }

const std::string& HttpServer::name(size_t i) const { return endpoints_[i]->name; }

HttpServer::Stats HttpServer::stats(size_t i) const {
  const Endpoint& ep = *endpoints_[i];
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  return Stats{.accepted = get(ep.accepted),
               .active = get(ep.active),
               .requests = get(ep.requests),
               .rejected_budget = get(ep.rejected_budget),
               .header_timeouts = get(ep.header_timeouts),
               .request_timeouts = get(ep.request_timeouts),
               .too_large = get(ep.too_large),
               .bad_requests = get(ep.bad_requests),
               .accept_errors = get(ep.accept_errors),
               .idle_closed = get(ep.idle_closed),
               .slow_evicted = get(ep.slow_evicted)};
}

}  // namespace zt::admin
