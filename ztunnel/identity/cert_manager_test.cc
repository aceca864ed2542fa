#include "ztunnel/identity/cert_manager.h"

#include <catch2/catch.hpp>

#include "ztunnel/tls/session.h"
#include "ztunnel/tls/testing.h"

namespace zt::identity {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

// FakeCa issues short-lived certificates from a test root and can be made to fail.
class FakeCa final : public CaClient {
 public:
  explicit FakeCa(system_clock::time_point* now) : now_(now), ca_(tls::testing::TestCa::Make()) {}
  Result<tls::Credentials> Issue(const tls::SpiffeId& id, std::string* reason) override {
    ++calls;
    if (failing) {
      *reason = "the CA is down";
      return Error{Errc::kUnavailable};
    }
    return ca_.IssueUris({id.ToString()}, *now_ - backdate, *now_ + ttl);
  }
  std::vector<tls::Certificate> Roots() const override { return {ca_.cert}; }

  int calls = 0;
  bool failing = false;
  std::chrono::seconds ttl{100};
  std::chrono::seconds backdate{0};

 private:
  system_clock::time_point* now_;
  tls::testing::TestCa ca_;
};

struct Fixture {
  // Whole seconds: certificate times have one-second resolution.
  system_clock::time_point now =
      std::chrono::time_point_cast<std::chrono::seconds>(system_clock::now());
  std::shared_ptr<FakeCa> ca = std::make_shared<FakeCa>(&now);
  CertManager manager{ca, [this] { return now; }};
  tls::SpiffeId id = tls::SpiffeId::Make("cluster.local", "default", "web");
};

TEST_CASE("Fetch issues once per identity and caches", "[identity]") {
  Fixture f;
  auto a = f.manager.Fetch(f.id);
  REQUIRE(a.ok());
  auto b = f.manager.Fetch(f.id);
  REQUIRE(b.ok());
  CHECK(a->get() == b->get());
  CHECK(f.ca->calls == 1);
  CHECK((*a)->id == f.id);
  CHECK(f.manager.Current(tls::SpiffeId::Make("", "other", "x")) == nullptr);
}

TEST_CASE("Certificates are refreshed at half their lifetime", "[identity]") {
  Fixture f;
  auto first = f.manager.Fetch(f.id);
  REQUIRE(first.ok());
  const auto next = f.manager.Poll();
  CHECK(next == f.now + 50s);
  f.now += 49s;
  f.manager.Poll();
  CHECK(f.ca->calls == 1);
  f.now += 1s;
  f.manager.Poll();
  CHECK(f.ca->calls == 2);
  auto current = f.manager.Current(f.id);
  REQUIRE(current != nullptr);
  CHECK(current != *first);
  CHECK(current->not_after == f.now + 100s);
}

TEST_CASE("A backdated not_before does not pull the refresh in", "[identity]") {
  Fixture f;
  f.ca->backdate = std::chrono::seconds(60);  // as LocalCa does for clock skew
  REQUIRE(f.manager.Fetch(f.id).ok());
  CHECK(f.manager.Poll() == f.now + 50s);  // half of the 100 s left, not of 160 s
}

TEST_CASE("When the CA fails the old certificate keeps serving, with backoff", "[identity]") {
  Fixture f;
  auto first = f.manager.Fetch(f.id);
  REQUIRE(first.ok());
  f.ca->failing = true;
  f.now += 50s;
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 12; ++i) {
    const auto next = f.manager.Poll();
    waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(next - f.now));
    CHECK(f.manager.Current(f.id) == *first);  // still serving the old one
    f.now = next;
  }
  const std::vector<std::chrono::milliseconds> want = {500ms, 1s,  2s,   4s,   8s,   16s,
                                                       32s,   64s, 128s, 150s, 150s, 150s};
  CHECK(waits == want);
  auto status = f.manager.Status();
  REQUIRE(status.size() == 1);
  CHECK(status[0].second.state == CertStatus::State::kRefreshFailing);
  CHECK(status[0].second.failures == 12);
  CHECK_FALSE(status[0].second.last_error.empty());

  f.ca->failing = false;
  f.manager.Poll();
  CHECK(f.manager.Current(f.id) != *first);
  CHECK(f.manager.Status()[0].second.state == CertStatus::State::kValid);
  // The backoff starts over after a success.
  f.ca->failing = true;
  f.now = f.manager.Status()[0].second.next_attempt;  // the refresh comes due and fails
  CHECK(f.manager.Poll() == f.now + 500ms);
}

TEST_CASE("A first issue that fails is retried by Poll", "[identity]") {
  Fixture f;
  f.ca->failing = true;
  CHECK_FALSE(f.manager.Fetch(f.id).ok());
  CHECK(f.manager.Status()[0].second.state == CertStatus::State::kPending);
  f.ca->failing = false;
  f.now += 1s;
  f.manager.Poll();
  CHECK(f.manager.Current(f.id) != nullptr);
}

TEST_CASE("Forget stops tracking an identity", "[identity]") {
  Fixture f;
  REQUIRE(f.manager.Fetch(f.id).ok());
  f.manager.Forget(f.id);
  CHECK(f.manager.Current(f.id) == nullptr);
  CHECK(f.manager.Poll() == system_clock::time_point::max());
}

TEST_CASE("Issued contexts authenticate two workloads to each other", "[identity]") {
  Fixture f;
  f.ca->ttl = 3600s;
  f.now = std::chrono::time_point_cast<std::chrono::seconds>(system_clock::now()) - 60s;
  const auto server_id = tls::SpiffeId::Make("cluster.local", "backend", "api");
  auto client = f.manager.Fetch(f.id);
  auto server = f.manager.Fetch(server_id);
  REQUIRE(client.ok());
  REQUIRE(server.ok());
  auto c = tls::TlsSession::Client((*client)->client, {server_id});
  auto s = tls::TlsSession::Server((*server)->server);
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
