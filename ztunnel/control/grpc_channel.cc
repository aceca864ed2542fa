#include "ztunnel/control/grpc_channel.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>
#include <utility>

#include "ztunnel/core/duration.h"
#include "ztunnel/core/log.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/socket.h"

namespace zt::control {

// CallProxy stands between the session and the caller's observer: it holds what a call
// needs before its stream exists (the channel may still be connecting) and its deadline.
class GrpcChannel::CallProxy final : public h2::GrpcCallObserver {
 public:
  CallProxy(GrpcChannel* channel, CallId id, h2::GrpcCallObserver* observer)
      : channel_(channel), id_(id), observer_(observer) {}

  void OnHeaders(const h2::Metadata& headers) override { observer_->OnHeaders(headers); }
  void OnMessage(std::string message) override { observer_->OnMessage(std::move(message)); }
  void OnClose(const h2::GrpcStatus& status, const h2::Metadata& trailers) override {
    h2::GrpcCallObserver* observer = observer_;
    const h2::GrpcStatus copy = status;
    const h2::Metadata trailers_copy = trailers;
    channel_->Finished(id_);  // destroys this
    observer->OnClose(copy, trailers_copy);
  }

  GrpcChannel* channel_;
  CallId id_;
  h2::GrpcCallObserver* observer_;
  int32_t stream = 0;  // 0 until started on a connection
  std::string path;
  h2::Metadata metadata;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::vector<std::string> queued;  // messages sent before the stream existed
  bool close_send = false;
  std::unique_ptr<io::Timer> timer;
};

namespace {

// SplitHostPort splits "host:port" / "[v6]:port"; false if malformed.
bool SplitHostPort(const std::string& address, std::string* host, uint16_t* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) return false;
  std::string h = address.substr(0, colon);
  if (h.front() == '[') {
    if (h.back() != ']') return false;
    h = h.substr(1, h.size() - 2);
  }
  unsigned long p = 0;
  for (char c : address.substr(colon + 1)) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + static_cast<unsigned long>(c - '0');
    if (p > 65535) return false;
  }
  if (p == 0 || h.empty()) return false;
  *host = std::move(h);
  *port = static_cast<uint16_t>(p);
  return true;
}

// Resolve returns the first address of `host` (a literal, or a name through the
// resolver: this blocks the control thread, never a worker).
Result<io::SocketAddress> Resolve(const std::string& host, uint16_t port, std::string* why) {
  // HostPort renders "ip:port" or "[v6]:port" for SocketAddress::Parse.
  const auto host_port = [port](const std::string& ip) {
    return ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip, port)
                                             : fmt::format("{}:{}", ip, port);
  };
  if (auto literal = io::SocketAddress::Parse(host_port(host))) return *literal;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    *why = fmt::format("cannot resolve {}: {}", host, gai_strerror(rc));
    return Error{Errc::kNotFound};
  }
  std::optional<io::SocketAddress> out;
  for (addrinfo* a = res; a != nullptr && !out; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* src =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if (::inet_ntop(a->ai_family, src, text, sizeof(text)) == nullptr) continue;
    out = io::SocketAddress::Parse(host_port(text));
  }
  ::freeaddrinfo(res);
  if (!out) {
    *why = fmt::format("cannot resolve {}: no usable address", host);
    return Error{Errc::kNotFound};
  }
  return *out;
}

}  // namespace

std::unique_ptr<GrpcChannel> GrpcChannel::Create(io::Loop& loop, GrpcChannelOptions options,
                                                 std::string* error) {
  std::unique_ptr<GrpcChannel> c(new GrpcChannel(loop, std::move(options)));
  if (!SplitHostPort(c->options_.address, &c->host_, &c->port_)) {
    *error = "invalid address \"" + c->options_.address + "\": expected host:port";
    return nullptr;
  }
  if (c->options_.server_name.empty()) c->options_.server_name = c->host_;
  if (c->options_.roots.empty()) {
    *error = "no root certificate to check " + c->options_.address + "'s certificate with";
    return nullptr;
  }
  std::string why;
  auto ctx =
      tls::TlsContext::Create(tls::Role::kClient, tls::Credentials{}, c->options_.roots, "", &why);
  if (!ctx) {
    *error = "cannot build the TLS context for " + c->options_.address + ": " + why;
    return nullptr;
  }
  c->ctx_ = std::move(ctx).value();
  return c;
}

GrpcChannel::GrpcChannel(io::Loop& loop, GrpcChannelOptions options)
    : loop_(loop), options_(std::move(options)) {}

GrpcChannel::~GrpcChannel() {
  ping_timer_.reset();
  ack_timer_.reset();
  calls_.clear();  // no callbacks: the owners of the observers are going away
  if (conn_) {
    conn_->dead = true;
    if (conn_->fd.valid()) loop_.CancelFd(conn_->fd.get());
    // A waiting writer ends now; a fiber in a receive or send ends at its CQE.
    if (io::Fiber* w = std::exchange(conn_->writer, nullptr)) w->Resume();
  }
}

GrpcChannel::CallId GrpcChannel::Start(std::string path, h2::Metadata metadata,
                                       h2::GrpcCallObserver* observer,
                                       std::optional<std::chrono::milliseconds> timeout) {
  const CallId id = next_id_++;
  auto proxy = std::make_unique<CallProxy>(this, id, observer);
  proxy->path = std::move(path);
  proxy->metadata = std::move(metadata);
  CallProxy* p = proxy.get();
  calls_.emplace(id, std::move(proxy));
  if (timeout) {
    p->deadline = std::chrono::steady_clock::now() + *timeout;
    p->timer = std::make_unique<io::Timer>(loop_);
    p->timer->Start(*timeout, [this, id, t = *timeout](bool fired) {
      if (!fired || calls_.count(id) == 0) return;
      CallProxy* c = calls_.at(id).get();
      const h2::GrpcStatus status{h2::GrpcCode::kDeadlineExceeded,
                                  "deadline of " + FormatDuration(t) + " exceeded"};
      if (c->stream != 0 && client_ != nullptr) {
        client_->Cancel(c->stream, status);
        Flush();
      } else {
        std::erase(pending_, id);
        c->OnClose(status, {});
      }
    });
  }
  if (state_ == State::kConnected && client_->can_start()) {
    StartPending(*p);
  } else {
    pending_.push_back(id);
    if (state_ == State::kConnected) {
      Lost(conn_, "the server sent GOAWAY: reconnecting");  // fails no call: p is pending
    }
    if (state_ == State::kIdle) Connect();
  }
  return id;
}

void GrpcChannel::StartPending(CallProxy& p) {
  std::optional<std::chrono::milliseconds> left;
  if (p.deadline) {
    left = std::chrono::duration_cast<std::chrono::milliseconds>(*p.deadline -
                                                                 std::chrono::steady_clock::now());
  }
  auto stream = client_->Start(p.path, p.metadata, &p, left);
  if (!stream) {
    p.OnClose({h2::GrpcCode::kUnavailable, "cannot open a stream on the connection"}, {});
    return;
  }
  p.stream = *stream;
  for (std::string& m : p.queued) (void)client_->Send(p.stream, m);
  p.queued.clear();
  if (p.close_send) (void)client_->CloseSend(p.stream);
  Flush();
}

void GrpcChannel::Send(CallId id, std::string message) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  CallProxy& p = *it->second;
  if (p.stream == 0) {
    p.queued.push_back(std::move(message));
    return;
  }
  (void)client_->Send(p.stream, message);
  Flush();
}

void GrpcChannel::CloseSend(CallId id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  CallProxy& p = *it->second;
  if (p.stream == 0) {
    p.close_send = true;
    return;
  }
  (void)client_->CloseSend(p.stream);
  Flush();
}

void GrpcChannel::Cancel(CallId id, const std::string& why) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  CallProxy& p = *it->second;
  const h2::GrpcStatus status{h2::GrpcCode::kCancelled, why};
  if (p.stream != 0 && client_ != nullptr) {
    client_->Cancel(p.stream, status);
    Flush();
  } else {
    std::erase(pending_, id);
    p.OnClose(status, {});
  }
}

void GrpcChannel::Finished(CallId id) { calls_.erase(id); }

void GrpcChannel::Connect() {
  state_ = State::kConnecting;
  conn_ = std::make_shared<Connection>();
  if (!io::Fiber::Spawn(loop_, [this, c = conn_] { ConnectFiber(c); })) {
    Lost(conn_, "out of memory for a fiber stack");
  }
}

void GrpcChannel::ConnectFiber(std::shared_ptr<Connection> conn) {
  std::string why;
  auto addr = Resolve(host_, port_, &why);
  if (conn->dead) return;
  if (!addr) return Lost(conn, why);
  conn->fd.reset(::socket(addr->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!conn->fd.valid()) return Lost(conn, std::string("socket: ") + std::strerror(errno));
  const int fd = conn->fd.get();
  const Status connected = io::Connect(loop_, fd, *addr, options_.connect_timeout);
  if (conn->dead) return;
  if (!connected) {
    return Lost(conn, "cannot connect to " + options_.address + " (" + addr->ToString() +
                          "): " + connected.error().Message());
  }
  (void)io::SetNoDelay(fd);
  conn->tls = tls::TlsSession::ClientForHost(ctx_, options_.server_name);
  tls::TlsSession& tls = *conn->tls;
  std::vector<char> buf(64 << 10);
  const std::string where = "TLS handshake with " + options_.address;
  for (;;) {
    const tls::TlsSession::Progress p = tls.Handshake();
    const std::string out = tls.TakeCiphertext({});
    if (!out.empty()) {
      const Status sent = io::SendAll(loop_, fd, out);
      if (conn->dead) return;
      if (!sent) return Lost(conn, where + ": " + sent.error().Message());
    }
    if (p == tls::TlsSession::Progress::kDone) break;
    if (p != tls::TlsSession::Progress::kWantIo) {
      return Lost(conn, where + " failed: " + tls::TlsErrorName(tls.error()) +
                            (tls.error_detail().empty() ? "" : " (" + tls.error_detail() + ")"));
    }
    auto n = io::Recv(loop_, fd, buf);
    if (conn->dead) return;
    if (!n || *n == 0) return Lost(conn, where + ": the server closed the connection");
    tls.PushCiphertext({buf.data(), *n});
  }
  conn->client =
      h2::GrpcClient::Create({.authority = options_.address, .max_message = options_.max_message});
  if (!conn->client) return Lost(conn, "cannot create the HTTP/2 session");
  if (!io::Fiber::Spawn(loop_, [this, conn] { WriterFiber(conn); })) {
    return Lost(conn, "out of memory for a fiber stack");
  }
  state_ = State::kConnected;
  client_ = conn->client.get();
  ++connects_;
  last_error_.clear();
  ZT_DEBUG("control", "connected to {} ({})", options_.address, addr->ToString());
  const std::vector<CallId> pending = std::move(pending_);
  pending_.clear();
  for (CallId id : pending) {
    auto it = calls_.find(id);
    if (it != calls_.end()) StartPending(*it->second);
  }
  Flush();
  ArmKeepalive();
  ReadLoop(conn);
}

void GrpcChannel::ReadLoop(const std::shared_ptr<Connection>& conn) {
  const int fd = conn->fd.get();
  std::vector<char> cipher(64 << 10);
  std::vector<char> plain(64 << 10);
  for (;;) {
    auto n = io::Recv(loop_, fd, cipher);
    if (conn->dead) return;
    if (!n) return Lost(conn, "reading from " + options_.address + ": " + n.error().Message());
    if (*n == 0) return Lost(conn, "the server closed the connection");
    conn->tls->PushCiphertext({cipher.data(), *n});
    for (;;) {
      size_t got = 0;
      const tls::TlsSession::Progress p = conn->tls->Read(plain, &got);
      if (p == tls::TlsSession::Progress::kDone) {
        if (!conn->client->Receive({plain.data(), got})) {
          return Lost(conn, conn->client->failure());
        }
        if (conn->dead) return;  // an observer's callback ended it
        continue;
      }
      if (p == tls::TlsSession::Progress::kWantIo) break;
      if (p == tls::TlsSession::Progress::kClosed) {
        return Lost(conn, "the server closed the TLS session");
      }
      return Lost(conn, std::string("TLS error from ") + options_.address + ": " +
                            tls::TlsErrorName(conn->tls->error()));
    }
    Flush();
    if (!conn->client->alive()) return Lost(conn, "the server ended the connection (GOAWAY)");
  }
}

void GrpcChannel::Flush() {
  if (state_ != State::kConnected || !conn_) return;
  conn_->flush_wanted = true;
  if (conn_->writer != nullptr) {
    // Resumed from the loop, not from inside whatever called Flush.
    loop_.Defer([c = conn_] {
      if (io::Fiber* w = std::exchange(c->writer, nullptr)) w->Resume();
    });
  }
}

void GrpcChannel::WriterFiber(std::shared_ptr<Connection> conn) {
  const int fd = conn->fd.get();
  std::string spare;
  for (;;) {
    while (!conn->flush_wanted) {
      conn->writer = io::Fiber::Current();
      io::Fiber::Current()->Suspend();
      if (conn->dead) return;
    }
    conn->flush_wanted = false;
    for (;;) {
      const std::string_view out = conn->client->NextOutput();
      if (out.empty()) break;
      (void)conn->tls->Write(out);
    }
    std::string cipher = conn->tls->TakeCiphertext(std::move(spare));
    if (!cipher.empty()) {
      const Status sent = io::SendAll(loop_, fd, cipher);
      if (conn->dead) return;
      if (!sent)
        return Lost(conn, "writing to " + options_.address + ": " + sent.error().Message());
    }
    spare = std::move(cipher);
  }
}

void GrpcChannel::ArmKeepalive() {
  ping_timer_ = std::make_unique<io::Timer>(loop_);
  ping_timer_->Start(options_.keepalive_interval, [this](bool fired) {
    if (!fired || state_ != State::kConnected) return;
    client_->SendPing();
    Flush();
    ack_timer_ = std::make_unique<io::Timer>(loop_);
    ack_timer_->Start(options_.keepalive_timeout, [this](bool fired2) {
      if (!fired2 || state_ != State::kConnected) return;
      if (client_->PingOutstanding()) {
        return Lost(conn_, "no answer to a keepalive PING within " +
                               FormatDuration(options_.keepalive_timeout));
      }
      ArmKeepalive();
    });
  });
}

void GrpcChannel::Lost(const std::shared_ptr<Connection>& conn, const std::string& why) {
  if (!conn || conn->dead || conn != conn_) return;
  conn->dead = true;
  const bool was_connected = state_ == State::kConnected;
  state_ = State::kIdle;
  conn_.reset();
  client_ = nullptr;
  last_error_ = why;
  if (was_connected) ZT_WARN("control", "connection to {} lost: {}", options_.address, why);
  ping_timer_.reset();
  ack_timer_.reset();
  if (conn->fd.valid()) loop_.CancelFd(conn->fd.get());
  if (io::Fiber* w = std::exchange(conn->writer, nullptr)) {
    loop_.Defer([w, keep = conn] { w->Resume(); });  // it sees `dead` and ends
  }
  // The fd closes with the last fiber holding `conn`. Ending calls runs observers that
  // may start new calls (on a fresh connection); the session may be up the stack in
  // one of its own callbacks, and stays alive through `conn`.
  const h2::GrpcStatus status{h2::GrpcCode::kUnavailable, why};
  if (conn->client) conn->client->CloseAll(status);
  const std::vector<CallId> pending = std::move(pending_);
  pending_.clear();
  for (CallId id : pending) {
    auto it = calls_.find(id);
    if (it != calls_.end()) it->second->OnClose(status, {});
  }
}

}  // namespace zt::control
