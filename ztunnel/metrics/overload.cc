#include "ztunnel/metrics/overload.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <string>

namespace zt::metrics {
namespace {

std::string_view AcceptKindName(AcceptKind k) {
  switch (k) {
    case AcceptKind::kOutbound:
      return "outbound";
    case AcceptKind::kInboundHbone:
      return "inbound";
    case AcceptKind::kInboundPlaintext:
      return "inbound_plaintext";
    case AcceptKind::kCount:
      break;
  }
  return "unknown";
}

}  // namespace

std::string_view RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kPendingConnectsWorker:
      return "pending_connects";
    case Refusal::kPendingConnectsSource:
      return "pending_connects_per_source";
    case Refusal::kHandshakes:
      return "handshakes_in_flight";
    case Refusal::kRapidReset:
      return "rapid_reset";
    case Refusal::kPendingPods:
      return "pending_pods";
    case Refusal::kCount:
      break;
  }
  return "unknown";
}

OverloadMetrics::OverloadMetrics(prometheus::Registry& registry) {
  auto& backoffs = prometheus::BuildCounter()
                       .Name("ztunnel_accept_backoffs_total")
                       .Help(
                           "Times a listener paused accepting because file descriptors or "
                           "memory ran out (EMFILE, ENFILE, ENOMEM, ENOBUFS)")
                       .Register(registry);
  for (size_t i = 0; i < backoffs_.size(); ++i) {
    backoffs_[i] =
        &backoffs.Add({{"listener", std::string(AcceptKindName(static_cast<AcceptKind>(i)))}});
  }
  auto& refused = prometheus::BuildCounter()
                      .Name("ztunnel_overload_refused_total")
                      .Help("Connections or streams refused at once because a bound was reached")
                      .Register(registry);
  for (size_t i = 0; i < refused_.size(); ++i) {
    refused_[i] = &refused.Add({{"reason", std::string(RefusalName(static_cast<Refusal>(i)))}});
  }
}

void OverloadMetrics::AcceptBackoff(AcceptKind kind) {
  backoffs_[static_cast<size_t>(kind)]->Increment();
}

void OverloadMetrics::Refused(Refusal r) { refused_[static_cast<size_t>(r)]->Increment(); }

}  // namespace zt::metrics
