#include "ztunnel/control/cert_controller.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <future>

#include "ztunnel/config/local_config.h"
#include "ztunnel/io/testing.h"
#include "ztunnel/tls/testing.h"

namespace zt::control {
namespace {

using io::testing::LoopThread;

// HeldCa answers only when the test releases it, on the loop (a CA across the network).
class HeldCa final : public identity::CaClient {
 public:
  HeldCa() : ca_(tls::testing::TestCa::Make()) {}
  void Issue(const tls::SpiffeId& id, identity::IssueDone done) override {
    asked.push_back(id.ToString());
    held.emplace_back(id, std::move(done));
  }
  std::vector<tls::Certificate> Roots() const override { return {ca_.cert}; }
  void ReleaseAll() {
    auto pending = std::move(held);
    held.clear();
    const auto now = std::chrono::system_clock::now();
    for (auto& [id, done] : pending) {
      done(ca_.IssueUris({id.ToString()}, now - std::chrono::minutes(1),
                         now + std::chrono::hours(1)),
           "");
    }
  }
  std::vector<std::string> asked;
  std::vector<std::pair<tls::SpiffeId, identity::IssueDone>> held;

 private:
  tls::testing::TestCa ca_;
};

std::shared_ptr<const state::State> Parse(const std::string& yaml) {
  std::string error;
  auto s = config::ParseLocalConfig(yaml, &error);
  if (!s) throw std::runtime_error(error);
  return s;
}

const char* kTwoNodes = R"(
workloads:
- {uid: a, name: a, namespace: ns1, serviceAccount: sa1, workloadIps: [10.0.0.1], node: n, protocol: HBONE}
- {uid: b, name: b, namespace: ns1, serviceAccount: sa1, workloadIps: [10.0.0.2], node: n, protocol: HBONE}
- {uid: c, name: c, namespace: ns2, serviceAccount: sa2, workloadIps: [10.0.0.3], node: n, protocol: HBONE}
- {uid: d, name: d, namespace: ns3, serviceAccount: sa3, workloadIps: [10.0.0.4], node: other, protocol: HBONE}
)";

// Held is a CertController for node "n" on a loop, with a HeldCa, counting publishes.
struct Held {
  LoopThread lt;
  std::shared_ptr<HeldCa> ca = std::make_shared<HeldCa>();
  identity::CertStore store;
  std::unique_ptr<CertController> cc;
  int published = 0;
  ~Held() {
    lt.Run([&] { cc.reset(); });
  }
  /// Start builds the controller and reconciles `yaml`; returns its local workloads.
  size_t Start(const std::string& yaml) {
    return lt.Run([&] {
      cc = std::make_unique<CertController>(lt.loop(), ca, store, "n");
      cc->set_on_published([&] { ++published; });
      return cc->Reconcile(*Parse(yaml));
    });
  }
};

TEST_CASE("A reconcile publishes one certificate set, however many identities change",
          "[control]") {
  Held h;
  auto& [lt, ca, store, cc, published] = h;
  std::string many = "workloads:\n";
  for (int i = 0; i < 50; ++i) {
    many += fmt::format(
        "- {{uid: w{0}, name: w{0}, namespace: ns{0}, serviceAccount: sa, workloadIps: "
        "[10.0.1.{0}], node: n, protocol: HBONE}}\n",
        i);
  }
  h.Start(many);
  CHECK(lt.Run([&] { return ca->asked.size(); }) == 50);
  CHECK(lt.Run([&] { return published; }) == 1);
  CHECK(store.Load()->entries().size() == 50);
  // All of them leave and one arrives: again one set.
  lt.Run([&] {
    published = 0;
    cc->Reconcile(*Parse(kTwoNodes));
  });
  CHECK(lt.Run([&] { return published; }) == 1);
  CHECK(store.Load()->entries().size() == 2);
}

TEST_CASE("CertController tracks this node's identities, once each, and forgets departed ones",
          "[control]") {
  Held h;
  auto& [lt, ca, store, cc, published] = h;
  CHECK(h.Start(kTwoNodes) == 3);
  // Two identities on this node (a and b share one); none for the other node's workload.
  std::vector<std::string> want = {"spiffe://cluster.local/ns/ns1/sa/sa1",
                                   "spiffe://cluster.local/ns/ns2/sa/sa2"};
  CHECK(lt.Run([&] { return ca->asked; }) == want);
  auto set = store.Load();
  REQUIRE(set->entries().size() == 2);
  CHECK(set->Find(want[0])->cert == nullptr);  // asked, not answered: pending, published
  CHECK(set->Find(want[0])->status.state == identity::CertStatus::State::kPending);

  lt.Run([&] {
    published = 0;
    ca->ReleaseAll();
  });
  CHECK(lt.Run([&] { return published; }) == 2);  // each answer published as it came
  set = store.Load();
  CHECK(set->Find(want[0])->cert != nullptr);
  CHECK(set->Find(want[1])->cert != nullptr);

  // c leaves: its identity is forgotten; sa1 stays (no new request for it).
  lt.Run([&] {
    cc->Reconcile(*Parse(R"(
workloads:
- {uid: a, name: a, namespace: ns1, serviceAccount: sa1, workloadIps: [10.0.0.1], node: n, protocol: HBONE}
)"));
  });
  set = store.Load();
  CHECK(set->entries().size() == 1);
  CHECK(set->Find(want[1]) == nullptr);
  CHECK(lt.Run([&] { return ca->asked.size(); }) == 2);
}

TEST_CASE("CertController renews at half-life on its own timer", "[control]") {
  LoopThread lt;
  // A real local CA with 2 s certificates: the renewal is due half-way, after ~1 s.
  char tmpl[] = "/tmp/zt-control-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::string why;
  auto ca = identity::LocalCa::Open({dir, true, "cluster.local", std::chrono::seconds(2)}, &why);
  REQUIRE(ca.ok());
  identity::CertStore store;
  std::unique_ptr<CertController> cc;
  std::promise<void> renewed;
  int published = 0;
  lt.Run([&] {
    cc = std::make_unique<CertController>(lt.loop(), *ca, store, "n");
    cc->Reconcile(*Parse(kTwoNodes));
    cc->set_on_published([&] {
      if (++published == 1) renewed.set_value();
    });
  });
  const auto first = store.Load()->Find(tls::SpiffeId::Make("", "ns1", "sa1"))->cert;
  REQUIRE(first != nullptr);
  REQUIRE(renewed.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  const auto second = store.Load()->Find(tls::SpiffeId::Make("", "ns1", "sa1"))->cert;
  REQUIRE(second != nullptr);
  CHECK(second != first);
  lt.Run([&] { cc.reset(); });
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zt::control
