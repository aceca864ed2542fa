// HBONE end to end inside one process: an inbound HBONE server and an HBONE client on
// io_uring loops, talking mutual TLS 1.3 + HTTP/2 CONNECT over loopback.
#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "ztunnel/h2/session.h"
#include "ztunnel/proxy/hbone_connection.h"
#include "ztunnel/proxy/hbone_stream.h"
#include "ztunnel/proxy/test_util.h"
#include "ztunnel/tls/testing.h"

namespace zt::proxy {
namespace {

using namespace std::chrono_literals;
using testing::BlockingConnect;
using testing::ConnectedPair;
using testing::EchoServer;
using testing::Listener;
using testing::ListenLoopback;
using testing::LoopThread;
using testing::ReadRandomSizes;
using testing::UniqueFd;
using testing::WriteRandomSizes;

const tls::SpiffeId kClientId = tls::SpiffeId::Make("cluster.local", "frontend", "web");
const tls::SpiffeId kServerId = tls::SpiffeId::Make("cluster.local", "backend", "api");

std::shared_ptr<tls::TlsContext> Ctx(tls::Role role, const tls::Credentials& creds,
                                     const tls::testing::TestCa& root) {
  auto ctx = tls::TlsContext::Create(role, creds, {root.cert}, "cluster.local");
  REQUIRE(ctx.ok());
  return *ctx;
}

// InboundServer accepts HBONE and serves each CONNECT by connecting to its authority.
class InboundServer {
 public:
  InboundServer(std::shared_ptr<tls::TlsContext> ctx) : ctx_(std::move(ctx)) {
    lt_.Run([this] {
      accept_ = std::make_unique<io::MultishotAccept>(lt_.loop(), listener_.fd.get());
      io::testing::SpawnOrDie(lt_.loop(), [this] {
        for (;;) {
          auto fd = accept_->Next();
          if (!fd) break;
          auto handler = std::make_shared<Handler>(this);
          handler->conn = HboneConnection::StartServer(
              lt_.loop(), std::move(fd).value(), ctx_, handler.get(), nullptr,
              {.ready = [this](HboneConnection* c) { peers_.push_back(c->peer()); },
               .closed =
                   [this, handler](HboneConnection*, const std::string& error) {
                     handler->conn = nullptr;
                     if (!error.empty()) errors_.push_back(error);
                   }});
        }
        stopped_.set_value();
      });
    });
  }
  ~InboundServer() {
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

 private:
  // Handler answers one connection's CONNECTs; it lives as long as the connection.
  struct Handler : h2::ServerHandler {
    explicit Handler(InboundServer* s) : server(s) {}
    void OnConnect(int32_t stream, const h2::ConnectRequest& request) override {
      auto target = io::SocketAddress::Parse(request.authority.ToString());
      io::Loop& loop = server->lt_.loop();
      // Connect on a fiber; by the time it finishes, the connection may be gone.
      io::testing::SpawnOrDie(loop, [this, stream, target, &loop] {
        auto up = io::TcpSocket(AF_INET);
        const bool ok = up.ok() && io::Connect(loop, up->get(), *target, 2s).ok();
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
  std::shared_ptr<tls::TlsContext> ctx_;
  std::unique_ptr<io::MultishotAccept> accept_;
  std::promise<void> stopped_;
  std::vector<tls::SpiffeId> peers_;
  std::vector<std::string> errors_;
};

// Client holds one HBONE connection and opens tunnels over it.
class Client {
 public:
  Client(const io::SocketAddress& server, std::shared_ptr<tls::TlsContext> ctx,
         std::vector<tls::SpiffeId> expected) {
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
                 }});
      });
    });
    auto f = ready.get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    ready_ = f.get();
  }
  bool ready() const { return ready_; }
  std::string error() {
    return lt_.Run([this] { return error_; });
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

TEST_CASE("HBONE tunnels carry bytes exactly both ways and half-close", "[proxy][hbone]") {
  Pki pki;
  EchoServer echo;
  InboundServer inbound(pki.server);
  Client client(inbound.addr(), pki.client, {kServerId});
  REQUIRE(client.ready());
  constexpr int kTunnels = 4;
  constexpr size_t kBytes = 8 << 20;
  std::vector<UniqueFd> apps;
  std::vector<std::shared_ptr<std::promise<StreamResult>>> results;
  for (int i = 0; i < kTunnels; ++i) {
    results.push_back(std::make_shared<std::promise<StreamResult>>());
    apps.push_back(client.Open(echo.addr(), results.back()));
  }
  std::vector<std::thread> writers;
  std::vector<std::future<size_t>> readers;
  for (int i = 0; i < kTunnels; ++i) {
    const int fd = apps[i].get();
    writers.emplace_back([fd, i] { WriteRandomSizes(fd, 100 + i, kBytes + i); });
    readers.push_back(
        std::async(std::launch::async, [fd, i] { return ReadRandomSizes(fd, 100 + i); }));
  }
  for (int i = 0; i < kTunnels; ++i) CHECK(readers[i].get() == kBytes + i);  // echoed, then EOF
  for (auto& w : writers) w.join();
  for (int i = 0; i < kTunnels; ++i) {
    auto f = results[i]->get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    StreamResult r = f.get();
    CHECK(r.ok);
    CHECK(r.bytes_to_stream == kBytes + i);
    CHECK(r.bytes_from_stream == kBytes + i);
  }
  const auto peers = inbound.peers();
  REQUIRE(peers.size() == 1);
  CHECK(peers[0] == kClientId);
}

TEST_CASE("An unreachable target gets 503 and the application a reset", "[proxy][hbone]") {
  Pki pki;
  InboundServer inbound(pki.server);
  Client client(inbound.addr(), pki.client, {kServerId});
  REQUIRE(client.ready());
  io::SocketAddress closed;
  {
    Listener gone = ListenLoopback();
    closed = gone.addr;
  }
  auto result = std::make_shared<std::promise<StreamResult>>();
  UniqueFd app = client.Open(closed, result);
  auto f = result->get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  StreamResult r = f.get();
  CHECK_FALSE(r.ok);
  CHECK(r.error == "tunnel refused with HTTP 503");
  char c;
  CHECK(::recv(app.get(), &c, 1, 0) == -1);
  CHECK(errno == ECONNRESET);
}

TEST_CASE("A reset on one side of a tunnel resets the other", "[proxy][hbone]") {
  Pki pki;
  InboundServer inbound(pki.server);
  Client client(inbound.addr(), pki.client, {kServerId});
  REQUIRE(client.ready());
  Listener upstream = ListenLoopback();
  UniqueFd app = client.Open(upstream.addr);
  UniqueFd target = testing::AcceptWithin(upstream.fd.get());
  REQUIRE(target.valid());
  REQUIRE(::send(app.get(), "hi", 2, 0) == 2);
  char buf[8];
  REQUIRE(::recv(target.get(), buf, 2, MSG_WAITALL) == 2);
  REQUIRE(io::SetLingerZero(app.get()).ok());
  app.reset();  // the application resets
  CHECK(::recv(target.get(), buf, sizeof(buf), 0) == -1);
  CHECK(errno == ECONNRESET);
}

TEST_CASE("A client with an untrusted certificate is refused, others keep working",
          "[proxy][hbone]") {
  Pki pki;
  EchoServer echo;
  InboundServer inbound(pki.server);
  Client good(inbound.addr(), pki.client, {kServerId});
  REQUIRE(good.ready());
  auto rogue_ca = tls::testing::TestCa::Make("rogue");
  Client rogue(inbound.addr(), Ctx(tls::Role::kClient, rogue_ca.Issue(kClientId), pki.ca),
               {kServerId});
  // TLS 1.3: the client may finish its side before the server rejects it; either way
  // the connection ends and the server says why.
  for (int i = 0; i < 100 && inbound.errors().empty(); ++i) std::this_thread::sleep_for(10ms);
  const auto errors = inbound.errors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("untrusted_root") != std::string::npos);
  UniqueFd app = good.Open(echo.addr());
  WriteRandomSizes(app.get(), 7, 100000);
  CHECK(ReadRandomSizes(app.get(), 7) == 100000);
}

TEST_CASE("A server that is not the expected identity is refused", "[proxy][hbone]") {
  Pki pki;
  InboundServer inbound(pki.server);
  Client client(inbound.addr(), pki.client, {tls::SpiffeId::Make("", "backend", "someone-else")});
  CHECK_FALSE(client.ready());
  CHECK(client.error().find("san_mismatch") != std::string::npos);
}

}  // namespace
}  // namespace zt::proxy
