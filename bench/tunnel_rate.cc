// tunnel_rate: how many new HBONE tunnels per second a ztunnel inbound listener
// completes when every tunnel uses a fresh TCP + mutual TLS 1.3 connection (no
// pooling): TCP connect, handshake with a client certificate, CONNECT, the server's
// upstream connect, 200, half-closes both ways, close.
//
//   tunnel_rate serve IP:PORT
//       accept connections and close them at once (the tunnel target).
//   tunnel_rate client --connect IP:15008 --authority IP:PORT --ca-dir DIR
//       --server-id SPIFFE --client-id SPIFFE [--seconds N] [--concurrency N]
//       open tunnels for N seconds from one io_uring loop; print one JSON line.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ztunnel/core/log.h"
#include "ztunnel/h2/session.h"
#include "ztunnel/identity/ca.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/proxy/hbone_connection.h"
#include "ztunnel/tls/context.h"

using namespace zt;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "tunnel_rate: %s\n", msg.c_str());
  std::exit(1);
}

int Serve(const std::string& addr_text) {
  auto addr = io::SocketAddress::Parse(addr_text);
  if (!addr) Die("bad address " + addr_text);
  auto l = io::Listen(*addr, io::ListenOptions{});
  if (!l) Die("listen: " + l.error().Message());
  // io::Listen makes a non-blocking socket; block here instead of spinning.
  const int flags = ::fcntl(l->get(), F_GETFL);
  ::fcntl(l->get(), F_SETFL, flags & ~O_NONBLOCK);
  std::printf("listening\n");
  std::fflush(stdout);
  for (;;) {
    const int c = ::accept(l->get(), nullptr, nullptr);
    if (c >= 0) ::close(c);
  }
}

// Tunnel is one CONNECT stream whose only job is to open and close cleanly.
struct Tunnel final : h2::StreamObserver {
  proxy::HboneConnection* conn = nullptr;
  int32_t id = 0;
  int status = 0;
  bool closed = false;
  void OnResponse(int s) override {
    status = s;
    if (s == 200) (void)conn->h2().EndStream(id);  // nothing to send: half-close at once
    conn->ScheduleFlush();
  }
  void OnData(std::span<const char> data) override { conn->h2().Consume(id, data.size()); }
  void OnEndStream() override {}
  void OnWritable() override {}
  void OnStreamClosed(uint32_t) override {
    closed = true;
    // Both halves are done: close the connection (from the loop, not inside nghttp2).
    proxy::HboneConnection* c = conn;
    c->loop().Defer([c] { c->Close(h2::kNoError, ""); });
  }
};

struct Args {
  std::string connect, authority, ca_dir, server_id, client_id;
  int seconds = 5;
  int concurrency = 32;
};

int Client(const Args& a) {
  log::SetLevel(log::Level::kError);
  auto server = io::SocketAddress::Parse(a.connect);
  auto authority = IpPort::Parse(a.authority);
  if (!server || !authority) Die("bad --connect or --authority");
  auto server_id = tls::SpiffeId::Parse(a.server_id);
  auto client_id = tls::SpiffeId::Parse(a.client_id);
  if (!server_id || !client_id) Die("bad --server-id or --client-id");
  identity::LocalCaOptions ca_options;
  ca_options.directory = a.ca_dir;
  std::string reason;
  auto ca = identity::LocalCa::Open(ca_options, &reason);
  if (!ca) Die("CA: " + reason);
  auto creds = (*ca)->IssueNow(*client_id, nullptr);
  if (!creds) Die("issue: " + creds.error().Message());
  auto ctx = tls::TlsContext::Create(tls::Role::kClient, *creds, (*ca)->Roots(),
                                     client_id->trust_domain, &reason);
  if (!ctx) Die("TLS context: " + reason);
  auto loop_or = io::Loop::Create(io::LoopOptions{});
  if (!loop_or) Die("loop: " + loop_or.error().Message());
  io::Loop& loop = **loop_or;

  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(a.seconds);
  uint64_t ok = 0, failed = 0;
  std::string first_error;
  int running = a.concurrency;
  for (int i = 0; i < a.concurrency; ++i) {
    const bool spawned = io::Fiber::Spawn(loop, [&] {
      while (Clock::now() < end) {
        auto fd = io::TcpSocket(server->family());
        if (!fd || !io::Connect(loop, fd->get(), *server, std::chrono::seconds(5))) {
          ++failed;
          if (first_error.empty()) first_error = "TCP connect failed";
          continue;
        }
        io::Fiber* self = io::Fiber::Current();
        Tunnel tunnel;
        bool gone = false;
        std::string error;
        tunnel.conn = proxy::HboneConnection::StartClient(
            loop, std::move(fd).value(), *ctx, {*server_id}, nullptr,
            {.ready =
                 [&](proxy::HboneConnection* c) {
                   auto id = c->h2().Connect(h2::ConnectRequest{*authority, "", "", ""}, &tunnel);
                   if (!id) return c->Close(h2::kCancel, "cannot open a stream");
                   tunnel.id = *id;
                   c->ScheduleFlush();
                 },
             .closed =
                 [&](proxy::HboneConnection*, const std::string& e) {
                   error = e;
                   gone = true;
                   loop.Defer([self] { self->Resume(); });
                 }});
        while (!gone) self->Suspend();
        if (tunnel.status == 200 && tunnel.closed && error.empty()) {
          ++ok;
        } else {
          ++failed;
          if (first_error.empty()) {
            first_error = error.empty() ? "status " + std::to_string(tunnel.status) : error;
          }
        }
      }
      if (--running == 0) loop.Stop();
    });
    if (!spawned) Die("cannot spawn a fiber");
  }
  loop.Run();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "{\"tunnels\": %llu, \"failed\": %llu, \"seconds\": %.3f, \"per_second\": %.1f, "
      "\"first_error\": \"%s\"}\n",
      static_cast<unsigned long long>(ok), static_cast<unsigned long long>(failed), secs,
      static_cast<double>(ok) / secs, first_error.c_str());
  return ok > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "serve") == 0) return Serve(argv[2]);
  if (argc < 2 || std::strcmp(argv[1], "client") != 0) {
    Die("usage: tunnel_rate serve IP:PORT | tunnel_rate client --connect ... (see source)");
  }
  Args a;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--connect")
      a.connect = v;
    else if (k == "--authority")
      a.authority = v;
    else if (k == "--ca-dir")
      a.ca_dir = v;
    else if (k == "--server-id")
      a.server_id = v;
    else if (k == "--client-id")
      a.client_id = v;
    else if (k == "--seconds")
      a.seconds = std::atoi(v.c_str());
    else if (k == "--concurrency")
      a.concurrency = std::atoi(v.c_str());
    else
      Die("unknown flag " + k);
  }
  return Client(a);
}
