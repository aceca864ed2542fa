// OverloadMetrics: what the node process refused or put off to protect itself and its
// other pods (RELIABILITY.md "Overload"): accept back-offs when file descriptors run
// out, and new work refused past a bound. Every series exists from the start (each
// label set is registered up front), so the data path only bumps an atomic counter:
// no lock, no map lookup, no allocation.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace prometheus {
class Counter;
class Registry;
}  // namespace prometheus

namespace zt::metrics {

/// AcceptKind names the listener an accept back-off happened on.
enum class AcceptKind : uint8_t { kOutbound, kInboundHbone, kInboundPlaintext, kCount };

/// Refusal says why new work was refused at once instead of queued without bound.
enum class Refusal : uint8_t {
  kPendingConnectsWorker,  // a worker's pending upstream connects are at their bound
  kPendingConnectsSource,  // one source workload's pending connects are at their bound
  kHandshakes,             // a worker's inbound TLS handshakes in flight are at their bound
  kRapidReset,             // an HTTP/2 peer reset streams too fast (CVE-2023-44487)
  kPendingPods,            // the enrollment agent sent more pods than may wait to be set up
  kCount
};

/// RefusalName is the `reason` label of `r`.
std::string_view RefusalName(Refusal r);

/// OverloadMetrics is thread-safe (each call is one atomic add); it must outlive every
/// worker that reports to it.
class OverloadMetrics {
 public:
  explicit OverloadMetrics(prometheus::Registry& registry);
  /// AcceptBackoff counts one pause of a listener's accepts because the process (or
  /// the system) ran out of file descriptors or memory.
  void AcceptBackoff(AcceptKind kind);
  /// Refused counts one connection or stream refused for reason `r`.
  void Refused(Refusal r);

 private:
  std::array<prometheus::Counter*, static_cast<size_t>(AcceptKind::kCount)> backoffs_{};
  std::array<prometheus::Counter*, static_cast<size_t>(Refusal::kCount)> refused_{};
};

}  // namespace zt::metrics
