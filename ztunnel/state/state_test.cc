#include "ztunnel/state/state.h"

#include <catch2/catch.hpp>
#include <thread>

namespace zt::state {
namespace {

Workload Make(std::string uid, std::string ip, std::string network = "") {
  Workload w;
  w.uid = std::move(uid);
  w.network = std::move(network);
  w.ips.push_back(*IpAddr::Parse(ip));
  return w;
}

TEST_CASE("State finds workloads by network and address, and by uid", "[state]") {
  std::string error;
  auto s = State::Build({Make("a", "10.0.0.1"), Make("b", "10.0.0.2"), Make("c", "10.0.0.1", "n2")},
                        &error);
  REQUIRE(s);
  CHECK(s->FindWorkload("", *IpAddr::Parse("10.0.0.1"))->uid == "a");
  CHECK(s->FindWorkload("n2", *IpAddr::Parse("10.0.0.1"))->uid == "c");
  CHECK(s->FindWorkload("", *IpAddr::Parse("10.0.0.3")) == nullptr);
  CHECK(s->FindWorkload("n3", *IpAddr::Parse("10.0.0.2")) == nullptr);
  CHECK(s->FindByUid("b")->ips.front().ToString() == "10.0.0.2");
  CHECK(s->FindByUid("z") == nullptr);
}

TEST_CASE("State refuses duplicate uids and shared addresses, naming them", "[state]") {
  std::string error;
  CHECK(State::Build({Make("a", "10.0.0.1"), Make("a", "10.0.0.2")}, &error) == nullptr);
  CHECK(error == "duplicate workload uid \"a\"");
  CHECK(State::Build({Make("a", "10.0.0.1"), Make("b", "10.0.0.1")}, &error) == nullptr);
  CHECK(error == "address 10.0.0.1 in network \"\" belongs to both \"a\" and \"b\"");
}

TEST_CASE("StateStore publishes whole snapshots to concurrent readers", "[state]") {
  StateStore store;
  CHECK(store.Load()->workloads().empty());
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  std::thread reader([&] {
    while (!stop.load()) {
      auto s = store.Load();
      // Each snapshot is either empty or has both workloads: never half of one.
      const size_t n = s->workloads().size();
      if (n != 0 && n != 2) torn.fetch_add(1);
      if (n == 2 && s->FindByUid("b") == nullptr) torn.fetch_add(1);
    }
  });
  for (int i = 0; i < 2000; ++i) {
    store.Publish(State::Build({Make("a", "10.0.0.1"), Make("b", "10.0.0.2")}, nullptr));
    store.Publish(State::Build({}, nullptr));
  }
  stop.store(true);
  reader.join();
  CHECK(torn.load() == 0);
}

}  // namespace
}  // namespace zt::state
