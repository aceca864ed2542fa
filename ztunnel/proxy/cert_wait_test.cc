// A mesh-enabled Worker in process (no root): HBONE out through the pool and in
// through the inbound listener, with certificates from a control thread whose CA
// answers some identities only when the test says so. The point: a connection whose
// certificate is not issued yet waits on its own; the worker's other connections,
// established or new, carry on.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "ztunnel/core/drain.h"
#include "ztunnel/identity/cert_manager.h"
#include "ztunnel/io/testing.h"
#include "ztunnel/proxy/test_util.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/tls/testing.h"

namespace zt::proxy {
namespace {

using io::UniqueFd;
using io::testing::LoopThread;
using namespace std::chrono_literals;

// SlowCa signs at once, except for the identities it is told to hold: those wait
// until Release (answers) or Fail (errors) — a CA across a slow network.
class SlowCa final : public identity::CaClient {
 public:
  SlowCa() : ca_(tls::testing::TestCa::Make()) {}
  void Issue(const tls::SpiffeId& id, identity::IssueDone done) override {
    if (slow.count(id.ToString()) != 0) {
      held.emplace_back(id, std::move(done));
      return;
    }
    Answer(id, done);
  }
  std::vector<tls::Certificate> Roots() const override { return {ca_.cert}; }
  void Release(const tls::SpiffeId& who, bool fail = false) {
    slow.erase(who.ToString());
    for (auto it = held.begin(); it != held.end();) {
      if (it->first == who) {
        if (fail) {
          it->second(Error{Errc::kUnavailable}, "the CA refused the CSR");
        } else {
          Answer(it->first, it->second);
        }
        it = held.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::set<std::string> slow;
  std::vector<std::pair<tls::SpiffeId, identity::IssueDone>> held;

 private:
  void Answer(const tls::SpiffeId& id, const identity::IssueDone& done) {
    const auto now = std::chrono::system_clock::now();
    done(ca_.IssueUris({id.ToString()}, now - 1min, now + 1h), "");
  }
  tls::testing::TestCa ca_;
};

state::Workload Hbone(const std::string& uid, const std::string& ip, const std::string& sa) {
  state::Workload w;
  w.uid = uid;
  w.name = uid;
  w.namespace_name = "ns";
  w.service_account = sa;
  w.node = "n";
  w.protocol = state::Protocol::kHbone;
  w.ips.push_back(*IpAddr::Parse(ip));
  return w;
}

// ListenOn listens on `ip`:`port` (0: any port); an invalid fd if the address is taken.
UniqueFd ListenOn(const std::string& ip, uint16_t port) {
  auto addr = io::SocketAddress::Parse(ip + ":" + std::to_string(port));
  auto fd = io::Listen(*addr, io::ListenOptions{});
  return fd ? std::move(fd).value() : UniqueFd();
}

uint16_t PortOf(int fd) { return io::LocalAddress(fd)->port(); }

// Echo serves one echo listener on its own thread until destroyed.
class Echo {
 public:
  explicit Echo(UniqueFd listener) : listener_(std::move(listener)) {
    // io::Listen makes non-blocking sockets (for the ring); this thread blocks in accept.
    ::fcntl(listener_.get(), F_SETFL, ::fcntl(listener_.get(), F_GETFL) & ~O_NONBLOCK);
    thread_ = std::thread([this] {
      std::vector<std::thread> conns;
      for (;;) {
        UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c.valid()) break;
        conns.emplace_back([fd = std::move(c)] {
          char buf[4096];
          for (;;) {
            const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
            if (n <= 0 || ::send(fd.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
          }
        });
      }
      for (auto& t : conns) t.join();
    });
  }
  ~Echo() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
  }
  uint16_t port() const { return PortOf(listener_.get()); }

 private:
  UniqueFd listener_;
  std::thread thread_;
};

// Mesh is one node: a control thread (CertManager on its loop) and one worker.
class MeshNode {
 public:
  MeshNode() {
    // The inbound HBONE port must be the same on 127.0.0.1 and on 127.0.0.4 (a pod's
    // listener): take one the kernel gives on the first and claim it on the second.
    for (int attempt = 0; attempt < 50 && !pod_hbone_.valid(); ++attempt) {
      node_hbone_ = ListenOn("127.0.0.1", 0);
      pod_hbone_ = ListenOn("127.0.0.4", PortOf(node_hbone_.get()));
    }
    REQUIRE(pod_hbone_.valid());
    std::string error;
    auto s = state::State::Build(
        {Hbone("a", "127.0.0.2", "fast"), Hbone("b", "127.0.0.3", "slow"),
         Hbone("d", "127.0.0.1", "server"), Hbone("e", "127.0.0.4", "late-server"),
         Hbone("f", "127.0.0.6", "refused")},
        &error);
    REQUIRE(s != nullptr);
    state_.Publish(s);
    ca_->slow = {kSlow.ToString(), kLate.ToString(), kRefused.ToString()};
    control_.Run([&] {
      certs_ = std::make_unique<identity::CertManager>(ca_, store_);
      for (const auto& w : s->workloads()) certs_->Track(WorkloadIdentity(w));
      certs_->Poll();
      certs_->set_on_published([this] {
        if (worker_ready_.load()) worker_->CertsChanged();
      });
    });
    mesh_.state = &state_;
    mesh_.certs = &store_;
    mesh_.node = "n";
    WorkerOptions options;
    options.mesh = &mesh_;
    options.outbound.mark = 0;  // no CAP_NET_ADMIN needed
    options.outbound.hbone_port = PortOf(node_hbone_.get());
    options.outbound.original_dst = [this](int fd) -> Result<io::SocketAddress> {
      auto peer = io::PeerAddress(fd);
      std::lock_guard lock(mu_);
      auto it = peer ? destinations_.find(peer->ToString()) : destinations_.end();
      if (it == destinations_.end()) return Error{Errc::kNotFound};
      return it->second;
    };
    options.inbound.mark = 0;
    options.pool.mark = 0;
    options.inbound_listen_fd = node_hbone_.get();
    options.cert_wait = 20s;  // longer than any wait here: a timeout would be a failure
    outbound_ = ListenOn("127.0.0.1", 0);
    worker_ = std::make_unique<Worker>(0, outbound_.get(), options, drain_.Watcher(), balancer_);
    thread_ = std::thread([this] { (void)worker_->Run(&worker_ready_); });
    while (!worker_ready_.load()) std::this_thread::sleep_for(1ms);
    worker_->AddPod("e", {{pod_hbone_.get(), Listener::kInboundHbone}});
    worker_->CertsChanged();  // anything published before the worker was ready
  }
  ~MeshNode() {
    drain_.Start(2s);
    thread_.join();
    control_.Run([&] { certs_.reset(); });
  }

  // Connect opens a client connection from `src_ip` whose original destination is
  // `dst` (what the capture rule would have redirected).
  UniqueFd Connect(const std::string& src_ip, const io::SocketAddress& dst) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const auto src = io::SocketAddress::Parse(src_ip + ":0");
    REQUIRE(::bind(fd.get(), src->sa(), src->len()) == 0);
    {
      std::lock_guard lock(mu_);
      destinations_[io::LocalAddress(fd.get())->ToString()] = dst;
    }
    const auto to = io::LocalAddress(outbound_.get());
    REQUIRE(::connect(fd.get(), to->sa(), to->len()) == 0);
    timeval tv{20, 0};  // a liveness bound: a hang fails the test instead of blocking CI
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
  }
  // Release lets the CA answer for `who` (on the control thread, as a CA reply would).
  void Release(const tls::SpiffeId& who, bool fail = false) {
    control_.Run([&] { ca_->Release(who, fail); });
  }

  static inline const tls::SpiffeId kSlow = tls::SpiffeId::Make("", "ns", "slow");
  static inline const tls::SpiffeId kLate = tls::SpiffeId::Make("", "ns", "late-server");
  static inline const tls::SpiffeId kRefused = tls::SpiffeId::Make("", "ns", "refused");

 private:
  UniqueFd node_hbone_, pod_hbone_, outbound_;
  state::StateStore state_;
  identity::CertStore store_;
  std::shared_ptr<SlowCa> ca_ = std::make_shared<SlowCa>();
  LoopThread control_;
  std::unique_ptr<identity::CertManager> certs_;  // on control_ only
  Mesh mesh_;
  DrainTrigger drain_;
  Balancer balancer_{1};
  std::unique_ptr<Worker> worker_;
  std::atomic<bool> worker_ready_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, io::SocketAddress> destinations_;
};

// RoundTrip sends `text` and reads the same number of bytes back.
std::string RoundTrip(int fd, const std::string& text) {
  testing::WriteAll(fd, text);
  std::string got(text.size(), '\0');
  const ssize_t n = ::recv(fd, got.data(), got.size(), MSG_WAITALL);
  return n == static_cast<ssize_t>(got.size()) ? got : "recv: " + std::to_string(n);
}

// Unanswered says nothing came back on `fd` yet (and it is not closed).
bool Unanswered(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 200) == 0;
}

TEST_CASE("A certificate the CA has not issued parks only its own connections", "[proxy][hbone]") {
  Echo echo_d(ListenOn("127.0.0.1", 0));
  Echo echo_e(ListenOn("127.0.0.4", 0));
  MeshNode node;
  const auto to_d = *io::SocketAddress::Parse("127.0.0.1:" + std::to_string(echo_d.port()));
  const auto to_e = *io::SocketAddress::Parse("127.0.0.4:" + std::to_string(echo_e.port()));

  // An established tunnel: a (cert issued) to d (cert issued).
  UniqueFd live = node.Connect("127.0.0.2", to_d);
  REQUIRE(RoundTrip(live.get(), "hello") == "hello");

  // b's own certificate is held by the CA: its outbound connection waits.
  UniqueFd parked_out = node.Connect("127.0.0.3", to_d);
  testing::WriteAll(parked_out.get(), "from b");
  // a to e: a's certificate is there, but e's (the server side) is held: the inbound
  // connection waits.
  UniqueFd parked_in = node.Connect("127.0.0.2", to_e);
  testing::WriteAll(parked_in.get(), "to e");
  CHECK(Unanswered(parked_out.get()));
  CHECK(Unanswered(parked_in.get()));

  // Meanwhile the worker carries on: the established tunnel moves data, and new
  // connections with cached identities open and move data.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(RoundTrip(live.get(), "ping " + std::to_string(i)) == "ping " + std::to_string(i));
    UniqueFd fresh = node.Connect("127.0.0.2", to_d);
    REQUIRE(RoundTrip(fresh.get(), "new " + std::to_string(i)) == "new " + std::to_string(i));
  }
  CHECK(Unanswered(parked_out.get()));
  CHECK(Unanswered(parked_in.get()));

  // The CA answers: each parked connection goes on, nothing it sent was lost.
  node.Release(MeshNode::kSlow);
  std::string got(6, '\0');
  REQUIRE(::recv(parked_out.get(), got.data(), got.size(), MSG_WAITALL) == 6);
  CHECK(got == "from b");
  CHECK(RoundTrip(parked_out.get(), " again") == " again");
  node.Release(MeshNode::kLate);
  got.assign(4, '\0');
  REQUIRE(::recv(parked_in.get(), got.data(), got.size(), MSG_WAITALL) == 4);
  CHECK(got == "to e");
  CHECK(RoundTrip(live.get(), "still") == "still");
}

TEST_CASE("A failed issue ends the connections waiting for it at once", "[proxy][hbone]") {
  Echo echo_d(ListenOn("127.0.0.1", 0));
  MeshNode node;
  const auto to_d = *io::SocketAddress::Parse("127.0.0.1:" + std::to_string(echo_d.port()));
  UniqueFd parked = node.Connect("127.0.0.6", to_d);
  CHECK(Unanswered(parked.get()));
  node.Release(MeshNode::kRefused, /*fail=*/true);
  // Refused as a closed port would be (a reset), well before the 20 s wait bound.
  char c;
  const ssize_t n = ::recv(parked.get(), &c, 1, 0);
  CHECK(n <= 0);
  CHECK((n == 0 || errno == ECONNRESET));
  // The worker serves the others as before.
  UniqueFd fresh = node.Connect("127.0.0.2", to_d);
  CHECK(RoundTrip(fresh.get(), "ok") == "ok");
}

}  // namespace
}  // namespace zt::proxy
