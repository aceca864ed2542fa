#include "ztunnel/proxy/connect_limiter.h"

#include <prometheus/registry.h>

#include <catch2/catch.hpp>
#include <vector>

namespace zt::proxy {
namespace {

TEST_CASE("ConnectLimiter bounds pending connects per source and per worker", "[proxy]") {
  ConnectLimiter limiter({.per_worker = 5, .per_source = 3});
  std::vector<ConnectLimiter::Permit> held;
  for (int i = 0; i < 3; ++i) {
    auto p = limiter.Acquire("10.0.0.1");
    REQUIRE(p.ok());
    held.push_back(std::move(p).value());
  }
  // The fourth from the same source is refused; another source still gets through.
  auto refused = limiter.Acquire("10.0.0.1");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == Errc::kOverloaded);
  CHECK(limiter.pending("10.0.0.1") == 3);
  for (int i = 0; i < 2; ++i) {
    auto p = limiter.Acquire("10.0.0.2");
    REQUIRE(p.ok());
    held.push_back(std::move(p).value());
  }
  // The worker's bound: nobody else now.
  CHECK_FALSE(limiter.Acquire("10.0.0.3").ok());
  CHECK(limiter.pending() == 5);
  CHECK(limiter.pending("10.0.0.3") == 0);

  // Finishing a connect frees its slot, for its source and the worker.
  held.erase(held.begin());
  CHECK(limiter.pending() == 4);
  CHECK(limiter.pending("10.0.0.1") == 2);
  auto again = limiter.Acquire("10.0.0.1");
  CHECK(again.ok());
  held.clear();
  again = ConnectLimiter::Permit();  // move-assigning releases the old slot
  CHECK(limiter.pending() == 0);
  CHECK(limiter.pending("10.0.0.1") == 0);
}

TEST_CASE("ConnectLimiter counts refusals by reason", "[proxy]") {
  prometheus::Registry registry;
  metrics::OverloadMetrics overload(registry);
  ConnectLimiter limiter({.per_worker = 0, .per_source = 1}, &overload);
  auto first = limiter.Acquire("a");
  REQUIRE(first.ok());
  CHECK_FALSE(limiter.Acquire("a").ok());
  CHECK_FALSE(limiter.Acquire("a").ok());
  double per_source = 0;
  for (const auto& family : registry.Collect()) {
    if (family.name != "ztunnel_overload_refused_total") continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.value == "pending_connects_per_source") per_source = m.counter.value;
      }
    }
  }
  CHECK(per_source == 2);
}

}  // namespace
}  // namespace zt::proxy
