#include "ztunnel/identity/cert_manager.h"

#include <catch2/catch.hpp>

#include "ztunnel/tls/session.h"
#include "ztunnel/tls/testing.h"

namespace zt::identity {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

// FakeCa issues short-lived certificates from a test root and can be made to fail, or
// to hold its answers until the test releases them (a CA across the network).
class FakeCa final : public CaClient {
 public:
  explicit FakeCa(system_clock::time_point* now) : now_(now), ca_(tls::testing::TestCa::Make()) {}
  void Issue(const tls::SpiffeId& id, IssueDone done) override {
    ++calls;
    if (holding) {
      held.emplace_back(id, std::move(done));
      return;
    }
    Answer(id, done);
  }
  std::vector<tls::Certificate> Roots() const override { return {ca_.cert}; }
  // ReleaseAll answers every held request, oldest first.
  void ReleaseAll() {
    auto pending = std::move(held);
    held.clear();
    for (auto& [id, done] : pending) Answer(id, done);
  }

  int calls = 0;
  bool failing = false;
  bool holding = false;
  std::chrono::seconds ttl{100};
  std::chrono::seconds backdate{0};
  std::vector<std::pair<tls::SpiffeId, IssueDone>> held;

 private:
  void Answer(const tls::SpiffeId& id, const IssueDone& done) {
    if (failing) return done(Error{Errc::kUnavailable}, "the CA is down");
    done(ca_.IssueUris({id.ToString()}, *now_ - backdate, *now_ + ttl), "");
  }
  system_clock::time_point* now_;
  tls::testing::TestCa ca_;
};

struct Fixture {
  // Whole seconds: certificate times have one-second resolution.
  system_clock::time_point now =
      std::chrono::time_point_cast<std::chrono::seconds>(system_clock::now());
  std::shared_ptr<FakeCa> ca = std::make_shared<FakeCa>(&now);
  CertStore store;
  CertManager manager{ca, store, [this] { return now; }};
  tls::SpiffeId id = tls::SpiffeId::Make("cluster.local", "default", "web");

  // Fetch tracks `who` and polls once: with an answering CA, its certificate is ready.
  std::shared_ptr<const WorkloadCert> Fetch(const tls::SpiffeId& who) {
    manager.Track(who);
    manager.Poll();
    return manager.Current(who);
  }
};

TEST_CASE("Track and Poll issue once per identity, and the set is published", "[identity]") {
  Fixture f;
  int published = 0;
  f.manager.set_on_published([&] { ++published; });
  auto a = f.Fetch(f.id);
  REQUIRE(a != nullptr);
  auto b = f.Fetch(f.id);
  CHECK(a == b);
  CHECK(f.ca->calls == 1);
  CHECK(a->id == f.id);
  CHECK(f.manager.Current(tls::SpiffeId::Make("", "other", "x")) == nullptr);
  // Track published the pending entry; the Poll that issued it published once more.
  CHECK(published == 2);
  const auto set = f.store.Load();
  const CertEntry* e = set->Find(f.id);
  REQUIRE(e != nullptr);
  CHECK(e->cert == a);
  CHECK(e->status.state == CertStatus::State::kValid);
  CHECK(set->Find(tls::SpiffeId::Make("", "other", "x")) == nullptr);
}

TEST_CASE("Certificates are refreshed at half their lifetime", "[identity]") {
  Fixture f;
  auto first = f.Fetch(f.id);
  REQUIRE(first != nullptr);
  CHECK(f.manager.Poll() == f.now + 50s);
  f.now += 49s;
  f.manager.Poll();
  CHECK(f.ca->calls == 1);
  f.now += 1s;
  f.manager.Poll();
  CHECK(f.ca->calls == 2);
  auto current = f.manager.Current(f.id);
  REQUIRE(current != nullptr);
  CHECK(current != first);
  CHECK(current->not_after == f.now + 100s);
  CHECK(f.store.Load()->Find(f.id)->cert == current);
}

TEST_CASE("A backdated not_before does not pull the refresh in", "[identity]") {
  Fixture f;
  f.ca->backdate = std::chrono::seconds(60);  // as LocalCa does for clock skew
  REQUIRE(f.Fetch(f.id) != nullptr);
  CHECK(f.manager.Poll() == f.now + 50s);  // half of the 100 s left, not of 160 s
}

TEST_CASE("When the CA fails the old certificate keeps serving, with backoff", "[identity]") {
  Fixture f;
  auto first = f.Fetch(f.id);
  REQUIRE(first != nullptr);
  f.ca->failing = true;
  f.now += 50s;
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 12; ++i) {
    const auto next = f.manager.Poll();
    waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(next - f.now));
    CHECK(f.manager.Current(f.id) == first);  // still serving the old one
    CHECK(f.store.Load()->Find(f.id)->cert == first);
    f.now = next;
  }
  const std::vector<std::chrono::milliseconds> want = {500ms, 1s,  2s,   4s,   8s,   16s,
                                                       32s,   64s, 128s, 150s, 150s, 150s};
  CHECK(waits == want);
  auto status = f.manager.Status();
  REQUIRE(status.size() == 1);
  CHECK(status[0].second.state == CertStatus::State::kRefreshFailing);
  CHECK(status[0].second.failures == 12);
  CHECK(status[0].second.attempts_failed == 12);
  CHECK_FALSE(status[0].second.last_error.empty());

  f.ca->failing = false;
  f.manager.Poll();
  CHECK(f.manager.Current(f.id) != first);
  CHECK(f.manager.Status()[0].second.state == CertStatus::State::kValid);
  CHECK(f.manager.Status()[0].second.failures == 0);
  CHECK(f.manager.Status()[0].second.attempts_failed == 12);  // never resets
  // The backoff starts over after a success.
  f.ca->failing = true;
  f.now = f.manager.Status()[0].second.next_attempt;  // the refresh comes due and fails
  CHECK(f.manager.Poll() == f.now + 500ms);
}

TEST_CASE("A first issue that fails is published as pending and retried by Poll", "[identity]") {
  Fixture f;
  f.ca->failing = true;
  CHECK(f.Fetch(f.id) == nullptr);
  CHECK(f.manager.Status()[0].second.state == CertStatus::State::kPending);
  const CertEntry* e = f.store.Load()->Find(f.id);
  REQUIRE(e != nullptr);
  CHECK(e->cert == nullptr);
  CHECK(e->status.attempts_failed == 1);
  CHECK(e->status.last_error == "CA: the CA is down");
  f.ca->failing = false;
  f.now += 1s;
  f.manager.Poll();
  CHECK(f.manager.Current(f.id) != nullptr);
}

TEST_CASE("Forget stops tracking an identity", "[identity]") {
  Fixture f;
  REQUIRE(f.Fetch(f.id) != nullptr);
  f.manager.Forget(f.id);
  CHECK(f.manager.Current(f.id) == nullptr);
  CHECK(f.store.Load()->Find(f.id) == nullptr);
  CHECK(f.manager.Poll() == system_clock::time_point::max());
}

TEST_CASE("A CA that answers later: one request in flight, the answer is published", "[identity]") {
  Fixture f;
  f.ca->holding = true;
  f.manager.Track(f.id);
  CHECK(f.manager.Poll() == system_clock::time_point::max());  // in flight: nothing due
  f.manager.Poll();
  CHECK(f.ca->calls == 1);  // not asked twice while the first is unanswered
  CHECK(f.manager.in_flight() == 1);
  CHECK(f.store.Load()->Find(f.id)->cert == nullptr);
  int published = 0;
  f.manager.set_on_published([&] { ++published; });
  f.ca->ReleaseAll();
  CHECK(published == 1);
  CHECK(f.manager.in_flight() == 0);
  REQUIRE(f.store.Load()->Find(f.id)->cert != nullptr);
  CHECK(f.manager.NextDue() == f.now + 50s);
}

TEST_CASE("An answer for a forgotten identity, or after the manager is gone, is dropped",
          "[identity]") {
  Fixture f;
  f.ca->holding = true;
  f.manager.Track(f.id);
  f.manager.Poll();
  f.manager.Forget(f.id);
  f.manager.Track(f.id);  // tracked again: a new request, the old answer is stale
  f.manager.Poll();
  REQUIRE(f.ca->held.size() == 2);
  auto stale = std::move(f.ca->held.front());
  f.ca->held.erase(f.ca->held.begin());
  f.ca->failing = true;
  stale.second(Error{Errc::kUnavailable}, "stale");
  CHECK(f.manager.Status()[0].second.attempts_failed == 0);  // the stale failure was dropped
  CHECK(f.manager.in_flight() == 1);
  f.ca->failing = false;
  {
    auto ca = std::make_shared<FakeCa>(&f.now);
    ca->holding = true;
    CertStore store;
    auto manager = std::make_unique<CertManager>(ca, store, [&f] { return f.now; });
    manager->Track(f.id);
    manager->Poll();
    manager.reset();
    ca->ReleaseAll();  // must not touch the destroyed manager (ASan would say)
    CHECK(store.Load()->Find(f.id)->cert == nullptr);
  }
}

TEST_CASE("Issued contexts authenticate two workloads to each other", "[identity]") {
  Fixture f;
  f.ca->ttl = 3600s;
  f.now = std::chrono::time_point_cast<std::chrono::seconds>(system_clock::now()) - 60s;
  const auto server_id = tls::SpiffeId::Make("cluster.local", "backend", "api");
  auto client = f.Fetch(f.id);
  auto server = f.Fetch(server_id);
  REQUIRE(client != nullptr);
  REQUIRE(server != nullptr);
  auto c = tls::TlsSession::Client(client->client, {server_id});
  auto s = tls::TlsSession::Server(server->server);
  std::vector<char> buf(65536);
  for (int i = 0; i < 10 && !(c->handshake_done() && s->handshake_done()); ++i) {
    c->Handshake();
    s->Handshake();
    s->PushCiphertext({buf.data(), c->PullCiphertext(buf)});
    c->PushCiphertext({buf.data(), s->PullCiphertext(buf)});
  }
  CHECK(c->handshake_done());
  CHECK(s->handshake_done());
  CHECK(s->peer() == f.id);
  CHECK(c->peer() == server_id);
}

}  // namespace
}  // namespace zt::identity
