// Route: where an outbound connection goes (DESIGN.md §2 step 2): a service VIP picks
// one of the service's endpoints round-robin and maps the port; a workload address is
// that workload; anything else passes through unchanged.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

#include "ztunnel/core/ip_port.h"
#include "ztunnel/state/state.h"

namespace zt::state {

/// Route is the outcome; pointers point into the State it was resolved from.
struct Route {
  const Workload* workload = nullptr;  // the destination workload, if the mesh knows it
  const Service* service = nullptr;    // the service whose VIP was dialed, if any
  IpPort target;                       // where to connect (or tunnel) to
  std::string error;                   // set when a VIP has no usable endpoint
};

/// RoundRobin rotates endpoint choices per service. One per worker: not thread-safe.
class RoundRobin {
 public:
  /// Next returns an index below `n` (n > 0), the next one for `key`.
  size_t Next(const std::string& key, size_t n) { return next_[key]++ % n; }

 private:
  std::unordered_map<std::string, size_t> next_;
};

/// ResolveRoute routes a connection to `dst` in `network`.
Route ResolveRoute(const State& state, const std::string& network, const IpPort& dst,
                   RoundRobin& rr);

}  // namespace zt::state
