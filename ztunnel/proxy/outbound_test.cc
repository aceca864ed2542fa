#include "ztunnel/proxy/outbound.h"

#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/core/drain.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/io/testing.h"
#include "ztunnel/proxy/ports.h"
#include "ztunnel/proxy/test_util.h"
#include "ztunnel/proxy/worker.h"

namespace zt::proxy {
namespace {

using io::UniqueFd;
using io::testing::BlockingConnect;
using io::testing::Listener;
using io::testing::ListenLoopback;
using io::testing::LoopThread;
using testing::EchoServer;
using namespace std::chrono_literals;

// RunningWorker runs a Worker whose "original destination" is fixed by the test.
class RunningWorker {
 public:
  explicit RunningWorker(std::function<Result<io::SocketAddress>(int)> original_dst,
                         std::chrono::milliseconds drain_grace = 5s)
      : listener_(ListenLoopback(4096)), grace_(drain_grace) {
    WorkerOptions options;
    options.outbound.mark = 0;  // no CAP_NET_ADMIN needed in unit tests
    options.outbound.connect_timeout = 2s;
    options.outbound.original_dst = std::move(original_dst);
    worker_ = std::make_unique<Worker>(0, listener_.fd.get(), options, drain_.Watcher(), balancer_);
    thread_ = std::thread([this] { status_ = worker_->Run(&ready_); });
    while (!ready_.load()) std::this_thread::sleep_for(1ms);
  }
  ~RunningWorker() { Stop(); }
  void StartDrain() { drain_.Start(grace_); }
  void Stop() {
    if (!thread_.joinable()) return;
    drain_.Start(grace_);
    thread_.join();
    CHECK(status_.ok());
  }
  bool Join(std::chrono::milliseconds within) {
    auto done = std::async(std::launch::async, [this] { thread_.join(); });
    return done.wait_for(within) == std::future_status::ready;
  }
  const io::SocketAddress& addr() const { return listener_.addr; }

 private:
  Listener listener_;
  std::chrono::milliseconds grace_;
  DrainTrigger drain_;
  Balancer balancer_{1};
  std::unique_ptr<Worker> worker_;
  std::atomic<bool> ready_{false};
  Status status_;
  std::thread thread_;
};

// RecvError waits for the connection to end and returns errno (0 for a clean EOF).
int RecvError(int fd) {
  char buf[256];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return 0;
    if (n < 0) return errno;
  }
}

TEST_CASE("Outbound relays 1,000 concurrent connections", "[proxy]") {
  EchoServer echo;
  RunningWorker worker([&](int) -> Result<io::SocketAddress> { return echo.addr(); });
  LoopThread clients;
  constexpr int kConns = 1000;
  std::atomic<int> good{0};
  std::promise<void> all_done;
  std::atomic<int> finished{0};
  clients.Run([&] {
    for (int i = 0; i < kConns; ++i) {
      io::testing::SpawnOrDie(clients.loop(), [&, i] {
        io::Loop& loop = clients.loop();
        std::string msg(4096 + i, static_cast<char>('a' + i % 26));
        auto fd = io::TcpSocket(AF_INET);
        bool ok = fd.ok() && io::Connect(loop, fd->get(), worker.addr(), 5s).ok() &&
                  io::SendAll(loop, fd->get(), msg).ok();
        if (ok) {
          // Wait for every connection to be open at once before closing any.
          std::string back;
          char buf[8192];
          while (back.size() < msg.size()) {
            auto n = io::Recv(loop, fd->get(), buf);
            if (!n || *n == 0) break;
            back.append(buf, *n);
          }
          ::shutdown(fd->get(), SHUT_WR);
          auto n = io::Recv(loop, fd->get(), buf);
          ok = back == msg && n.ok() && *n == 0;
        }
        if (ok) good.fetch_add(1);
        if (finished.fetch_add(1) + 1 == kConns) all_done.set_value();
      });
    }
  });
  REQUIRE(all_done.get_future().wait_for(60s) == std::future_status::ready);
  CHECK(good.load() == kConns);
}

TEST_CASE("Outbound refuses destinations on its own ports (loop guard)", "[proxy]") {
  for (uint16_t port : {kOutboundPort, kInboundPlaintextPort, kInboundHbonePort}) {
    INFO(port);
    RunningWorker worker(
        [port](int) -> Result<io::SocketAddress> { return io::SocketAddress::Loopback4(port); });
    UniqueFd c = BlockingConnect(worker.addr());
    CHECK(RecvError(c.get()) == ECONNRESET);
  }
}

TEST_CASE("Outbound resets connections it cannot place", "[proxy]") {
  SECTION("no original destination") {
    RunningWorker worker([](int) -> Result<io::SocketAddress> { return Error{Errc::kNotFound}; });
    UniqueFd c = BlockingConnect(worker.addr());
    CHECK(RecvError(c.get()) == ECONNRESET);
  }
  SECTION("upstream refuses") {
    Listener refusing = io::testing::BindRefusingLoopback();
    const io::SocketAddress closed = refusing.addr;
    RunningWorker worker([closed](int) -> Result<io::SocketAddress> { return closed; });
    UniqueFd c = BlockingConnect(worker.addr());
    CHECK(RecvError(c.get()) == ECONNRESET);
  }
}

TEST_CASE("Connections spread evenly over workers sharing a listener", "[proxy]") {
  EchoServer echo;
  Listener listener = ListenLoopback();
  DrainTrigger drain;
  Balancer balancer(2);
  WorkerOptions options;
  options.outbound.mark = 0;
  options.outbound.original_dst = [&](int) -> Result<io::SocketAddress> { return echo.addr(); };
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  std::atomic<bool> ready[2] = {false, false};
  for (int i = 0; i < 2; ++i) {
    workers.push_back(
        std::make_unique<Worker>(i, listener.fd.get(), options, drain.Watcher(), balancer));
  }
  for (int i = 0; i < 2; ++i)
    threads.emplace_back([&, i] { CHECK(workers[i]->Run(&ready[i]).ok()); });
  while (!ready[0].load() || !ready[1].load()) std::this_thread::sleep_for(1ms);
  std::vector<UniqueFd> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(BlockingConnect(listener.addr));
    REQUIRE(::send(conns.back().get(), "x", 1, 0) == 1);
    char c;
    REQUIRE(::recv(conns.back().get(), &c, 1, MSG_WAITALL) == 1);  // relayed and echoed
  }
  CHECK(balancer.load(0) == 4);
  CHECK(balancer.load(1) == 4);
  conns.clear();
  drain.Start(5s);
  for (auto& t : threads) t.join();
  CHECK(balancer.load(0) == 0);
  CHECK(balancer.load(1) == 0);
}

TEST_CASE("Drain stops accepting and lets a live connection finish", "[proxy]") {
  EchoServer echo;
  RunningWorker worker([&](int) -> Result<io::SocketAddress> { return echo.addr(); }, 10s);
  UniqueFd live = BlockingConnect(worker.addr());
  const std::string first(100 * 1024, 'x');
  REQUIRE(::send(live.get(), first.data(), first.size(), 0) == static_cast<ssize_t>(first.size()));
  worker.StartDrain();
  std::this_thread::sleep_for(100ms);
  // New connections are refused at once.
  UniqueFd late(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHECK(::connect(late.get(), worker.addr().sa(), worker.addr().len()) == -1);
  CHECK(errno == ECONNREFUSED);
  // The live connection still works both ways, then ends cleanly.
  const std::string second = "more data after the drain started";
  REQUIRE(::send(live.get(), second.data(), second.size(), 0) ==
          static_cast<ssize_t>(second.size()));
  ::shutdown(live.get(), SHUT_WR);
  std::string back;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(live.get(), buf, sizeof(buf), 0);
    REQUIRE(n >= 0);
    if (n == 0) break;
    back.append(buf, static_cast<size_t>(n));
  }
  CHECK(back == first + second);
  CHECK(worker.Join(5s));  // the worker ends as soon as its last connection does
}

TEST_CASE("Drain closes a stuck connection at the deadline", "[proxy]") {
  EchoServer echo;
  RunningWorker worker([&](int) -> Result<io::SocketAddress> { return echo.addr(); }, 300ms);
  UniqueFd stuck = BlockingConnect(worker.addr());
  REQUIRE(::send(stuck.get(), "hi", 2, 0) == 2);
  char buf[2];
  REQUIRE(::recv(stuck.get(), buf, 2, MSG_WAITALL) == 2);
  const auto start = std::chrono::steady_clock::now();
  worker.StartDrain();
  CHECK(worker.Join(5s));
  CHECK(std::chrono::steady_clock::now() - start >= 300ms);
  CHECK(RecvError(stuck.get()) == ECONNRESET);
}

}  // namespace
}  // namespace zt::proxy
