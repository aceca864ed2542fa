#include "ztunnel/proxy/cert_view.h"

#include <catch2/catch.hpp>
#include <future>

#include "ztunnel/io/fiber.h"
#include "ztunnel/io/testing.h"
#include "ztunnel/tls/testing.h"

namespace zt::proxy {
namespace {

using io::testing::LoopThread;
using namespace std::chrono_literals;

const tls::SpiffeId kId = tls::SpiffeId::Make("", "ns", "sa");

std::shared_ptr<const identity::WorkloadCert> MakeCert() {
  auto cert = std::make_shared<identity::WorkloadCert>();
  cert->id = kId;
  return cert;
}

void PublishEntry(identity::CertStore& store, std::shared_ptr<const identity::WorkloadCert> cert,
                  uint64_t attempts_failed, const std::string& error = "") {
  identity::CertEntry e;
  e.cert = std::move(cert);
  e.status.attempts_failed = attempts_failed;
  e.status.last_error = error;
  store.Publish(std::make_shared<const identity::CertSet>(
      std::map<std::string, identity::CertEntry>{{kId.ToString(), e}}));
}

struct Answer {
  bool called = false;
  std::shared_ptr<const identity::WorkloadCert> cert;
  std::string error;
};

TEST_CASE("CertView answers at once, on publication, on a new failure, or on timeout", "[proxy]") {
  LoopThread lt;
  identity::CertStore store;
  PublishEntry(store, nullptr, 1, "earlier failure");  // pending, one failure already
  std::unique_ptr<CertView> view;
  Answer a, b;
  lt.Run([&] {
    view = std::make_unique<CertView>(store, lt.loop(), 60s);
    CHECK(view->Find(kId) == nullptr);
    // A failure from before the wait began does not end it: the next attempt may work.
    view->Wait(kId, [&](auto cert, std::string e) { a = {true, cert, e}; });
    view->Wait(kId, [&](auto cert, std::string e) { b = {true, cert, e}; });
    view->Refresh();
  });
  CHECK_FALSE(lt.Run([&] { return a.called; }));
  CHECK(lt.Run([&] { return view->waiting(); }) == 2);

  // A second failure, published: both waiters hear it, with the CA's reason.
  PublishEntry(store, nullptr, 2, "CA: denied");
  lt.Run([&] { view->Refresh(); });
  CHECK(lt.Run([&] { return a.called && b.called && view->waiting() == 0; }));
  CHECK(a.cert == nullptr);
  CHECK(a.error == "no certificate for spiffe://cluster.local/ns/ns/sa/sa: CA: denied");

  // Published: a waiter gets the certificate; later lookups find it at once.
  Answer c, d;
  lt.Run([&] { view->Wait(kId, [&](auto cert, std::string e) { c = {true, cert, e}; }); });
  const auto cert = MakeCert();
  PublishEntry(store, cert, 2);
  lt.Run([&] { view->Refresh(); });
  CHECK(lt.Run([&] { return c.called; }));
  CHECK(c.cert == cert);
  lt.Run([&] {
    view->Wait(kId, [&](auto got, std::string e) { d = {true, got, e}; });
    CHECK(d.called);  // inside Wait
    CHECK(view->Find(kId) == cert);
    view.reset();
  });
}

TEST_CASE("CertView gives up after its bound, and FailAll ends every wait", "[proxy]") {
  LoopThread lt;
  identity::CertStore store;  // nothing tracked: only the bound ends the wait
  std::unique_ptr<CertView> view;
  std::promise<std::string> timed_out;
  Answer failed;
  lt.Run([&] {
    view = std::make_unique<CertView>(store, lt.loop(), 200ms);
    view->Wait(kId, [&](auto, std::string e) { timed_out.set_value(e); });
  });
  auto f = timed_out.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  CHECK(f.get().find("after waiting 200ms") != std::string::npos);
  lt.Run([&] {
    view = std::make_unique<CertView>(store, lt.loop(), 60s);
    view->Wait(kId, [&](auto cert, std::string e) { failed = {true, cert, e}; });
    view->FailAll("draining");
    CHECK(failed.called);
    CHECK(failed.error == "draining");
    CHECK(view->waiting() == 0);
    view.reset();
  });
}

TEST_CASE("AwaitCert suspends only its fiber", "[proxy]") {
  LoopThread lt;
  identity::CertStore store;
  std::unique_ptr<CertView> view;
  std::shared_ptr<const identity::WorkloadCert> got;
  std::string error;
  bool returned = false;
  int neighbour_runs = 0;
  lt.Run([&] {
    view = std::make_unique<CertView>(store, lt.loop(), 60s);
    io::testing::SpawnOrDie(lt.loop(), [&] {
      got = AwaitCert(*view, kId, &error);
      returned = true;
    });
  });
  // The loop runs other work while the fiber waits.
  for (int i = 0; i < 5; ++i) lt.Run([&] { ++neighbour_runs; });
  CHECK(lt.Run([&] { return !returned && neighbour_runs == 5; }));
  const auto cert = MakeCert();
  PublishEntry(store, cert, 0);
  lt.Run([&] { view->Refresh(); });
  CHECK(lt.Run([&] { return returned; }));
  CHECK(got == cert);
  CHECK(error.empty());
  lt.Run([&] { view.reset(); });
}

}  // namespace
}  // namespace zt::proxy
