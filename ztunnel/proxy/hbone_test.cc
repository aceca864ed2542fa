// HBONE end to end inside one process: an inbound HBONE server and an HBONE client on
// io_uring loops, talking mutual TLS 1.3 + HTTP/2 CONNECT over loopback.
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <future>
#include <thread>

#include "ztunnel/h2/session.h"
#include "ztunnel/h2/testing.h"
#include "ztunnel/identity/cert_manager.h"
#include "ztunnel/proxy/hbone_connection.h"
#include "ztunnel/proxy/hbone_stream.h"
#include "ztunnel/proxy/hbone_test_util.h"
#include "ztunnel/proxy/pool.h"
#include "ztunnel/proxy/test_util.h"
#include "ztunnel/tls/testing.h"

namespace zt::proxy {
namespace {

using namespace std::chrono_literals;
using testing::BlockingConnect;
using testing::Client;
using testing::ConnectedPair;
using testing::Ctx;
using testing::EchoServer;
using testing::InboundServer;
using testing::kClientId;
using testing::kServerId;
using testing::Listener;
using testing::ListenLoopback;
using testing::LoopThread;
using testing::Pki;
using testing::ReadRandomSizes;
using testing::UniqueFd;
using testing::WriteAll;
using testing::WriteRandomSizes;

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
  Listener refusing = io::testing::BindRefusingLoopback();
  const io::SocketAddress closed = refusing.addr;
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

TEST_CASE("A silent peer is closed by the keepalive PING", "[proxy][hbone]") {
  Pki pki;
  InboundServer inbound(pki.server);
  // Generous bounds: a loaded CI machine must not make a live peer look dead.
  HboneTimeouts fast;
  fast.ping_interval = 100ms;
  fast.ping_timeout = 1000ms;
  Client client(inbound.addr(), pki.client, {kServerId}, fast);
  REQUIRE(client.ready());
  std::this_thread::sleep_for(500ms);
  CHECK(client.connected());  // several PINGs answered: still up
  inbound.Freeze(4000ms);
  for (int i = 0; i < 400 && client.connected(); ++i) std::this_thread::sleep_for(10ms);
  CHECK_FALSE(client.connected());
  CHECK(client.error().find("did not answer a PING") != std::string::npos);
}

TEST_CASE("A peer that never completes the TLS handshake is dropped", "[proxy][hbone]") {
  Pki pki;
  Listener mute = ListenLoopback();  // accepts (in the backlog) but never speaks TLS
  HboneTimeouts fast;
  fast.handshake = 200ms;
  Client client(mute.addr, pki.client, {kServerId}, fast);
  CHECK_FALSE(client.ready());
  CHECK(client.error().find("TLS handshake timed out") != std::string::npos);
}

// RawTlsClient is a blocking mutual-TLS client with no HTTP/2 logic: it sends whatever
// frames a test writes, to play a hostile peer.
class RawTlsClient {
 public:
  RawTlsClient(const io::SocketAddress& server, std::shared_ptr<tls::TlsContext> ctx)
      : fd_(BlockingConnect(server)), tls_(tls::TlsSession::Client(std::move(ctx), {kServerId})) {
    while (tls_->Handshake() == tls::TlsSession::Progress::kWantIo) {
      FlushOut();
      if (!ReadSome(5000)) break;
    }
    FlushOut();
  }
  bool handshake_done() const { return tls_->handshake_done(); }
  // Send encrypts and writes; false once the server has closed the connection.
  bool Send(std::string_view plain) {
    if (tls_->Write(plain) != tls::TlsSession::Progress::kDone) return false;
    return FlushOut();
  }
  // Closed waits up to `ms` for the server to end the connection (EOF or reset).
  bool Closed(int ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!ReadSome(50) && eof_) return true;
    }
    return false;
  }
  bool saw_goaway() const { return plain_.find('\x07') != std::string::npos; }

 private:
  bool FlushOut() {
    char buf[65536];
    while (size_t n = tls_->PullCiphertext(buf)) {
      for (size_t off = 0; off < n;) {
        const ssize_t w = ::send(fd_.get(), buf + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) return false;
        off += static_cast<size_t>(w);
      }
    }
    return true;
  }
  // ReadSome reads what arrives within `ms`; false on timeout, EOF or error.
  bool ReadSome(int ms) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return false;
    char buf[65536];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    tls_->PushCiphertext({buf, static_cast<size_t>(n)});
    size_t got = 0;
    while (tls_->Read(buf, &got) == tls::TlsSession::Progress::kDone) plain_.append(buf, got);
    return true;
  }

  UniqueFd fd_;
  std::unique_ptr<tls::TlsSession> tls_;
  std::string plain_;
  bool eof_ = false;
};

TEST_CASE("A rapid-reset flood closes that connection while another keeps moving data",
          "[proxy][hbone]") {
  Pki pki;
  EchoServer echo;
  InboundServer inbound(pki.server);
  Client good(inbound.addr(), pki.client, {kServerId});
  REQUIRE(good.ready());
  UniqueFd app = good.Open(echo.addr());
  constexpr size_t kBytes = 20 << 20;
  std::thread writer([&] { WriteRandomSizes(app.get(), 9, kBytes); });
  auto reader = std::async(std::launch::async, [&] { return ReadRandomSizes(app.get(), 9); });

  RawTlsClient attacker(inbound.addr(), pki.client);
  REQUIRE(attacker.handshake_done());
  h2::testing::Frames f;
  std::string wire = h2::testing::Frames::Preface();
  for (int32_t i = 0; i < 10000; ++i) {
    wire += f.Connect(1 + 2 * i, echo.addr().ToString());
    wire += h2::testing::Frames::Rst(1 + 2 * i, h2::kCancel);
    if (wire.size() > (64 << 10)) {
      if (!attacker.Send(wire)) break;  // the server already hung up
      wire.clear();
    }
  }
  (void)attacker.Send(wire);
  CHECK(attacker.Closed(5000));

  writer.join();
  CHECK(reader.get() == kBytes);  // the neighbour's tunnel was unaffected
  bool flood_reported = false;
  for (const auto& e : inbound.errors()) {
    flood_reported = flood_reported || e.find("rapid reset") != std::string::npos;
  }
  CHECK(flood_reported);
}

TEST_CASE("A rotated certificate serves new connections and live tunnels outlive the old one",
          "[proxy][hbone]") {
  // Real time: TLS checks validity against the real clock. Certificates live 3 s.
  char tmpl[] = "/tmp/zt-rotation-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::string why;
  auto ca = identity::LocalCa::Open({dir, true, "cluster.local", std::chrono::seconds(3)}, &why);
  REQUIRE(ca.ok());
  // The manager on this thread; the server reads what it publishes (as workers do).
  identity::CertStore store;
  identity::CertManager certs(*ca, store);
  certs.Track(kServerId);
  certs.Track(kClientId);
  certs.Poll();
  auto client_cert = certs.Current(kClientId);
  REQUIRE(client_cert != nullptr);
  REQUIRE(certs.Current(kServerId) != nullptr);
  const auto first_expiry = certs.Current(kServerId)->not_after;

  EchoServer echo;
  InboundServer inbound(
      InboundServer::CtxFn([&] { return store.Load()->Find(kServerId)->cert->server; }));
  Client before(inbound.addr(), client_cert->client, {kServerId});
  REQUIRE(before.ready());
  UniqueFd live = before.Open(echo.addr());
  WriteAll(live.get(), "x");
  char c;
  REQUIRE(::recv(live.get(), &c, 1, MSG_WAITALL) == 1);

  // Half-life passes: the manager replaces both certificates.
  while (std::chrono::system_clock::now() < first_expiry - 1s) std::this_thread::sleep_for(50ms);
  certs.Poll();
  REQUIRE(certs.Current(kServerId)->not_after > first_expiry);
  // Past the first certificate's expiry, the tunnel made with it still moves data...
  while (std::chrono::system_clock::now() < first_expiry + 1s) std::this_thread::sleep_for(50ms);
  WriteAll(live.get(), "y");
  REQUIRE(::recv(live.get(), &c, 1, MSG_WAITALL) == 1);
  CHECK(c == 'y');
  // ...and a new connection is made with the new certificates.
  Client after(inbound.addr(), certs.Current(kClientId)->client, {kServerId});
  REQUIRE(after.ready());
  UniqueFd fresh = after.Open(echo.addr());
  WriteAll(fresh.get(), "z");
  REQUIRE(::recv(fresh.get(), &c, 1, MSG_WAITALL) == 1);
  CHECK(c == 'z');
  std::filesystem::remove_all(dir);
}

// Holder keeps a stream open and remembers how it went.
struct Holder : h2::StreamObserver {
  HboneConnection* conn = nullptr;
  int32_t id = 0;
  int status = 0;
  bool closed = false;
  void OnResponse(int s) override { status = s; }
  void OnData(std::span<const char> d) override { conn->h2().Consume(id, d.size()); }
  void OnEndStream() override {}
  void OnStreamClosed(uint32_t) override { closed = true; }
};

template <typename Pred>
bool WaitFor(LoopThread& lt, Pred pred, std::chrono::milliseconds within = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (lt.Run(pred)) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

TEST_CASE("The pool shares connections: 300 streams from 3 identities use 3 connections",
          "[proxy][hbone]") {
  Pki pki;
  EchoServer echo;
  InboundServer inbound(pki.server);
  std::vector<tls::SpiffeId> ids;
  std::vector<std::shared_ptr<tls::TlsContext>> ctxs;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(tls::SpiffeId::Make("", "frontend", "sa" + std::to_string(i)));
    ctxs.push_back(Ctx(tls::Role::kClient, pki.ca.Issue(ids.back()), pki.ca));
  }
  LoopThread lt;
  std::unique_ptr<Pool> pool;
  lt.Run([&] {
    PoolOptions options;
    options.mark = 0;
    options.idle_timeout = 200ms;
    pool = std::make_unique<Pool>(lt.loop(), options, nullptr);
  });
  std::vector<Holder> holders(301);
  const auto open = [&](int i, int identity) {
    io::testing::SpawnOrDie(lt.loop(), [&, i, identity] {
      PoolKey key{ids[identity], {kServerId}, inbound.addr()};
      std::string why;
      auto conn = pool->Acquire(key, ctxs[identity], &why);
      if (!conn) FAIL("acquire: " << why << " (" << conn.error().Message() << ")");
      Holder& h = holders[i];
      h.conn = *conn;
      auto id = h.conn->h2().Connect(
          h2::ConnectRequest{*IpPort::Parse(echo.addr().ToString()), "", "", ""}, &h);
      REQUIRE(id.ok());
      h.id = *id;
      h.conn->ScheduleFlush();
    });
  };
  lt.Run([&] {
    for (int i = 0; i < 300; ++i) open(i, i % 3);
  });
  REQUIRE(WaitFor(lt, [&] {
    for (int i = 0; i < 300; ++i) {
      if (holders[i].status != 200) return false;
    }
    return true;
  }));
  CHECK(lt.Run([&] { return pool->connections(); }) == 3);
  CHECK(inbound.peers().size() == 3);
  // Each connection carries at most 100 streams: one more needs a fourth connection.
  lt.Run([&] { open(300, 0); });
  REQUIRE(WaitFor(lt, [&] { return holders[300].status == 200; }));
  CHECK(lt.Run([&] { return pool->connections(); }) == 4);

  // When the streams end, idle connections are released.
  lt.Run([&] {
    for (auto& h : holders) {
      h.conn->h2().Reset(h.id, h2::kCancel);
      h.conn->ScheduleFlush();
    }
  });
  CHECK(WaitFor(lt, [&] { return pool->connections() == 0; }));
  // A released connection is replaced on demand. (Forget the first stream's answer:
  // a stale 200 would end the wait below before the new stream is up.)
  lt.Run([&] {
    holders[0].status = 0;
    open(0, 0);
  });
  REQUIRE(WaitFor(lt, [&] { return holders[0].status == 200 && pool->connections() == 1; }));
  lt.Run([&] { pool->CloseAll(); });
  REQUIRE(WaitFor(lt, [&] { return pool->quiet(); }));
  lt.Run([&] { pool.reset(); });
}

TEST_CASE("The pool reports why it cannot connect", "[proxy][hbone]") {
  Pki pki;
  Listener refusing = io::testing::BindRefusingLoopback();
  const io::SocketAddress closed = refusing.addr;
  LoopThread lt;
  PoolOptions options;
  options.mark = 0;
  std::string why = lt.RunFiber([&] {
    Pool pool(lt.loop(), options, nullptr);
    std::string error;
    auto conn = pool.Acquire(PoolKey{kClientId, {kServerId}, closed}, pki.client, &error);
    CHECK_FALSE(conn.ok());
    return error;
  });
  CHECK(why.find("Connection refused") != std::string::npos);
}

}  // namespace
}  // namespace zt::proxy
