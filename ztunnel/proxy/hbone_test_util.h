// Shared by HBONE tests: a test PKI, an HBONE server that connects each CONNECT to its
// authority, and a client holding one HBONE connection.
#pragma once

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/h2/session.h"
#include "ztunnel/proxy/hbone_connection.h"
#include "ztunnel/proxy/hbone_stream.h"
#include "ztunnel/proxy/test_util.h"
#include "ztunnel/tls/testing.h"

namespace zt::proxy::testing {

using namespace std::chrono_literals;

inline const tls::SpiffeId kClientId = tls::SpiffeId::Make("cluster.local", "frontend", "web");
inline const tls::SpiffeId kServerId = tls::SpiffeId::Make("cluster.local", "backend", "api");

inline std::shared_ptr<tls::TlsContext> Ctx(tls::Role role, const tls::Credentials& creds,
                                            const tls::testing::TestCa& root) {
  auto ctx = tls::TlsContext::Create(role, creds, {root.cert}, "cluster.local");
  REQUIRE(ctx.ok());
  return *ctx;
}

// InboundServer accepts HBONE and serves each CONNECT by connecting to its authority.
class InboundServer {
 public:
  /// CtxFn picks the server context for each new connection (rotation tests swap it).
  using CtxFn = std::function<std::shared_ptr<tls::TlsContext>()>;
  explicit InboundServer(std::shared_ptr<tls::TlsContext> ctx)
      : InboundServer(CtxFn([ctx] { return ctx; })) {}
  explicit InboundServer(CtxFn ctx) : ctx_(std::move(ctx)) {
    lt_.Run([this] {
      accept_ = std::make_unique<io::MultishotAccept>(lt_.loop(), listener_.fd.get());
      io::testing::SpawnOrDie(lt_.loop(), [this] {
        for (;;) {
          auto fd = accept_->Next();
          if (!fd) break;
          auto handler = std::make_shared<Handler>(this);
          live_.insert(handler.get());
          handler->conn = HboneConnection::StartServer(
              lt_.loop(), std::move(fd).value(), ctx_(), handler.get(), nullptr,
              {.ready = [this](HboneConnection* c) { peers_.push_back(c->peer()); },
               .closed =
                   [this, handler](HboneConnection*, const std::string& error) {
                     handler->conn = nullptr;
                     live_.erase(handler.get());
                     if (!error.empty()) errors_.push_back(error);
                   }});
        }
        stopped_.set_value();
      });
    });
  }
  ~InboundServer() {
    // Close live connections and wait for them to go while the members they report
    // to still exist; then stop accepting.
    lt_.Run([this] {
      for (Handler* h : live_) {
        if (h->conn != nullptr) h->conn->Close(h2::kCancel, "");
      }
    });
    for (int i = 0; i < 1500 && !lt_.Run([this] { return live_.empty() && pending_ == 0; }); ++i) {
      std::this_thread::sleep_for(2ms);
    }
    lt_.Run([this] { accept_->Stop(); });
    stopped_.get_future().wait();
  }
  const io::SocketAddress& addr() const { return listener_.addr; }
  std::vector<tls::SpiffeId> peers() {
    return lt_.Run([this] { return peers_; });
  }
  std::vector<std::string> errors() {
    return lt_.Run([this] { return errors_; });
  }
  /// Freeze stops the server's loop for `d`: a peer that is alive but silent.
  void Freeze(std::chrono::milliseconds d) {
    lt_.loop().Post([d] { std::this_thread::sleep_for(d); });
  }

 private:
  // Handler answers one connection's CONNECTs. It lives as long as the connection or
  // any upstream connect it started, whichever is longer (each fiber holds a reference).
  struct Handler : h2::ServerHandler, std::enable_shared_from_this<Handler> {
    explicit Handler(InboundServer* s) : server(s) {}
    void OnConnect(int32_t stream, const h2::ConnectRequest& request) override {
      auto target = io::SocketAddress::Parse(request.authority.ToString());
      io::Loop& loop = server->lt_.loop();
      ++server->pending_;
      // Connect on a fiber; by the time it finishes, the connection may be gone.
      io::testing::SpawnOrDie(loop, [self = shared_from_this(), stream, target, &loop] {
        auto up = io::TcpSocket(AF_INET);
        const bool ok = up.ok() && io::Connect(loop, up->get(), *target, 2s).ok();
        --self->server->pending_;
        HboneConnection* conn = self->conn;
        if (conn == nullptr) return;
        if (!ok) {
          (void)conn->h2().Respond(stream, 503, nullptr);
          conn->ScheduleFlush();
          return;
        }
        HboneStream* hs = HboneStream::Create(conn, std::move(up).value(), nullptr, nullptr);
        if (!conn->h2().Respond(stream, 200, hs).ok()) return hs->Refuse("stream gone");
        hs->Attach(stream, false);
        conn->ScheduleFlush();
      });
    }
    InboundServer* server;
    HboneConnection* conn = nullptr;
  };

  LoopThread lt_;
  Listener listener_ = ListenLoopback();
  CtxFn ctx_;
  std::unique_ptr<io::MultishotAccept> accept_;
  std::promise<void> stopped_;
  std::vector<tls::SpiffeId> peers_;
  std::vector<std::string> errors_;
  std::set<Handler*> live_;  // connections not yet closed
  int pending_ = 0;          // upstream connects in flight
};

// Client holds one HBONE connection and opens tunnels over it.
class Client {
 public:
  Client(const io::SocketAddress& server, std::shared_ptr<tls::TlsContext> ctx,
         std::vector<tls::SpiffeId> expected, HboneTimeouts timeouts = {}) {
    std::promise<bool> ready;
    lt_.Run([&] {
      io::testing::SpawnOrDie(lt_.loop(), [&] {
        auto fd = io::TcpSocket(AF_INET);
        if (!fd.ok() || !io::Connect(lt_.loop(), fd->get(), server, 2s).ok()) {
          ready.set_value(false);
          return;
        }
        conn_ = HboneConnection::StartClient(
            lt_.loop(), std::move(fd).value(), ctx, std::move(expected), nullptr,
            {.ready = [&](HboneConnection*) { ready.set_value(true); },
             .closed =
                 [this, &ready](HboneConnection* c, const std::string& error) {
                   error_ = error;
                   if (!c->ready()) ready.set_value(false);
                   conn_ = nullptr;
                 }},
            timeouts);
      });
    });
    auto f = ready.get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    ready_ = f.get();
  }
  ~Client() {
    lt_.Run([this] {
      if (conn_ != nullptr) conn_->Close(h2::kCancel, "");
    });
    for (int i = 0; i < 500 && connected(); ++i) std::this_thread::sleep_for(2ms);
  }
  bool ready() const { return ready_; }
  std::string error() {
    return lt_.Run([this] { return error_; });
  }
  bool connected() {
    return lt_.Run([this] { return conn_ != nullptr; });
  }

  // Open starts a tunnel to `target`; the returned socket is the application's end.
  UniqueFd Open(const io::SocketAddress& target,
                std::shared_ptr<std::promise<StreamResult>> result = nullptr) {
    auto [app, ours] = ConnectedPair();
    lt_.Run([&, fd = ours.release()] {
      REQUIRE(conn_ != nullptr);
      HboneStream* hs =
          HboneStream::Create(conn_, UniqueFd(fd), nullptr, [result](const StreamResult& r) {
            if (result) result->set_value(r);
          });
      auto id = conn_->h2().Connect(
          h2::ConnectRequest{*IpPort::Parse(target.ToString()), "", "", ""}, hs);
      REQUIRE(id.ok());
      hs->Attach(*id, true);
      conn_->ScheduleFlush();
    });
    return std::move(app);
  }

 private:
  LoopThread lt_;
  HboneConnection* conn_ = nullptr;
  bool ready_ = false;
  std::string error_;
};

struct Pki {
  tls::testing::TestCa ca = tls::testing::TestCa::Make();
  std::shared_ptr<tls::TlsContext> server = Ctx(tls::Role::kServer, ca.Issue(kServerId), ca);
  std::shared_ptr<tls::TlsContext> client = Ctx(tls::Role::kClient, ca.Issue(kClientId), ca);
};

}  // namespace zt::proxy::testing
