// Access log: one line per connection at its end (DESIGN.md §4 "Telemetry"): addresses,
// workloads, namespaces and identities of both sides, direction, bytes each way,
// duration, and the error or the denial reason. Text by default, JSON with
// --log-format json (fields become keys).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace zt::metrics {

/// ConnectionRecord is what the access log says about one connection.
struct ConnectionRecord {
  /// outcome: "complete", "failed", "denied" or "closed by a policy change".
  std::string outcome = "complete";
  std::string direction;  // "outbound" or "inbound"
  std::string protocol;   // "HBONE" or "TCP"
  std::string src_addr, dst_addr;
  std::string src_workload, src_namespace, src_identity;
  std::string dst_workload, dst_namespace, dst_identity;
  std::string dst_service;  // the service hostname when addressed by its VIP
  /// bytes_sent go towards the destination, bytes_recv come back from it.
  uint64_t bytes_sent = 0;
  uint64_t bytes_recv = 0;
  std::chrono::milliseconds duration{0};
  int response = 0;    // the HBONE status on a refusal (401, 503), else 0
  std::string error;   // what failed
  std::string reason;  // why a policy denied it
};

/// LogConnection writes the record at info level, target "access".
void LogConnection(const ConnectionRecord& record);

}  // namespace zt::metrics
