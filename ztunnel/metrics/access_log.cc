#include "ztunnel/metrics/access_log.h"

#include <vector>

#include "ztunnel/core/log.h"

namespace zt::metrics {

void LogConnection(const ConnectionRecord& r) {
  if (!log::Enabled(log::Level::kInfo)) return;
  // Empty fields are left out, so a line says only what is known; the order is fixed.
  std::vector<log::Field> f;
  f.reserve(20);
  auto add = [&](std::string_view key, const std::string& value) {
    if (!value.empty()) f.push_back({key, value});
  };
  add("src.addr", r.src_addr);
  add("src.workload", r.src_workload);
  add("src.namespace", r.src_namespace);
  add("src.identity", r.src_identity);
  add("dst.addr", r.dst_addr);
  add("dst.service", r.dst_service);
  add("dst.workload", r.dst_workload);
  add("dst.namespace", r.dst_namespace);
  add("dst.identity", r.dst_identity);
  add("direction", r.direction);
  add("protocol", r.protocol);
  if (r.outcome == "complete" || r.outcome == "closed by a policy change") {
    f.push_back({"bytes_sent", std::to_string(r.bytes_sent), true});
    f.push_back({"bytes_recv", std::to_string(r.bytes_recv), true});
  }
  f.push_back({"duration", std::to_string(r.duration.count()) + "ms"});
  if (r.response != 0) f.push_back({"response", std::to_string(r.response), true});
  add("reason", r.reason);
  add("error", r.error);
  log::LogFields(log::Level::kInfo, "access", "connection " + r.outcome, f);
}

}  // namespace zt::metrics
