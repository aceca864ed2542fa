// An early look at the HBONE data path: bytes per second through one HBONE client and
// one HBONE server (mutual TLS 1.3 + HTTP/2 CONNECT, each on its own io_uring loop)
// over loopback, against the same transfer over plain loopback TCP, in the same run.
// Not the mesh benchmark (that needs two ztunnel processes in two namespaces); run by
// hand: build/bench/hbone_loopback [--seconds N --runs N]. Prints medians with min–max.
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/core/log.h"
#include "ztunnel/proxy/hbone_test_util.h"

using namespace zt;
using namespace zt::proxy::testing;
using Clock = std::chrono::steady_clock;

namespace {

// Sink accepts connections and discards what they send, counting bytes.
struct Sink {
  Listener listener = ListenLoopback();
  std::atomic<uint64_t> bytes{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::thread acceptor{[this] {
    while (!stop) {
      UniqueFd c = AcceptWithin(listener.fd.get(), 100);
      if (!c.valid()) continue;
      threads.emplace_back([this, fd = c.release()] {
        std::vector<char> buf(1 << 20);
        for (;;) {
          const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
          if (n <= 0) break;
          bytes += static_cast<uint64_t>(n);
        }
        ::close(fd);
      });
    }
  }};
  ~Sink() {
    stop = true;
    acceptor.join();
    for (auto& t : threads) t.join();
  }
};

// Blast writes for `seconds` on each socket in parallel; returns Gbit/s seen by the sink.
double Blast(Sink& sink, std::vector<UniqueFd> sockets, double seconds) {
  const uint64_t before = sink.bytes;
  const std::string chunk(256 << 10, 'x');
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (auto& s : sockets) {
    writers.emplace_back([&, fd = s.get()] {
      while (!stop) {
        if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) break;
      }
    });
  }
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const uint64_t moved = sink.bytes - before;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  for (auto& s : sockets) ::shutdown(s.get(), SHUT_RDWR);
  for (auto& w : writers) w.join();
  return static_cast<double>(moved) * 8 / elapsed / 1e9;
}

struct Stats {
  double median, min, max;
};
Stats Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace

TEST_CASE("hbone loopback throughput") {
  log::SetLevel(log::Level::kError);
  double seconds = 3;
  int runs = 3;
  if (const char* s = std::getenv("BENCH_SECONDS")) seconds = std::atof(s);
  if (const char* r = std::getenv("BENCH_RUNS")) runs = std::atoi(r);
  Pki pki;
  InboundServer inbound(pki.server);
  Client client(inbound.addr(), pki.client, {kServerId});
  REQUIRE(client.ready());
  for (int streams : {1, 4}) {
    std::vector<double> direct, hbone, ratio;
    for (int run = 0; run < runs; ++run) {
      Sink sink;
      std::vector<UniqueFd> plain, tunnels;
      for (int i = 0; i < streams; ++i) plain.push_back(BlockingConnect(sink.listener.addr));
      direct.push_back(Blast(sink, std::move(plain), seconds));
      for (int i = 0; i < streams; ++i) tunnels.push_back(client.Open(sink.listener.addr));
      hbone.push_back(Blast(sink, std::move(tunnels), seconds));
      ratio.push_back(hbone.back() / direct.back());
    }
    const Stats d = Summarize(direct), h = Summarize(hbone), r = Summarize(ratio);
    std::printf(
        "%d stream(s): direct %.2f [%.2f-%.2f] Gb/s, HBONE %.2f [%.2f-%.2f] Gb/s, "
        "HBONE/direct %.2f [%.2f-%.2f] (medians of %d runs of %.0f s)\n",
        streams, d.median, d.min, d.max, h.median, h.min, h.max, r.median, r.min, r.max, runs,
        seconds);
  }
}
