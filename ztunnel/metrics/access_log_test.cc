#include "ztunnel/metrics/access_log.h"

#include <catch2/catch.hpp>

#include "ztunnel/core/testing.h"

namespace zt::metrics {
namespace {

ConnectionRecord Complete() {
  ConnectionRecord r;
  r.direction = "inbound";
  r.protocol = "HBONE";
  r.src_addr = "10.0.0.1:40000";
  r.src_identity = "spiffe://cluster.local/ns/shop/sa/web";
  r.dst_addr = "10.0.0.2:8080";
  r.dst_workload = "backend";
  r.dst_namespace = "shop";
  r.bytes_sent = 1000;
  r.bytes_recv = 20;
  r.duration = std::chrono::milliseconds(15);
  return r;
}

TEST_CASE("An access log line names both sides, bytes each way and duration", "[metrics]") {
  const std::string line = testing::CaptureStderr([] { LogConnection(Complete()); });
  CHECK(line.find("\tinfo\taccess\tconnection complete src.addr=10.0.0.1:40000 "
                  "src.identity=spiffe://cluster.local/ns/shop/sa/web dst.addr=10.0.0.2:8080 "
                  "dst.workload=backend dst.namespace=shop direction=inbound protocol=HBONE "
                  "bytes_sent=1000 bytes_recv=20 duration=15ms\n") != std::string::npos);
}

TEST_CASE("A denial logs the status and the reason, a failure its error", "[metrics]") {
  ConnectionRecord denied = Complete();
  denied.outcome = "denied";
  denied.response = 401;
  denied.reason = "denied by shop/deny-web";
  ConnectionRecord failed = Complete();
  failed.outcome = "failed";
  failed.error = "connection refused";
  const std::string out = testing::CaptureStderr([&] {
    LogConnection(denied);
    LogConnection(failed);
  });
  CHECK(out.find("connection denied src.addr") != std::string::npos);
  CHECK(out.find(R"(response=401 reason="denied by shop/deny-web")") != std::string::npos);
  CHECK(out.find(R"(connection failed src.addr)") != std::string::npos);
  CHECK(out.find(R"(duration=15ms error="connection refused")") != std::string::npos);
  CHECK(out.find("bytes_sent") == std::string::npos);  // nothing moved
}

TEST_CASE("With --log-format json the access log is one JSON object", "[metrics]") {
  log::SetFormat(log::Format::kJson);
  const std::string line = testing::CaptureStderr([] { LogConnection(Complete()); });
  log::SetFormat(log::Format::kText);
  CHECK(line.starts_with("{\"time\":"));
  CHECK(line.find(R"("scope":"access","message":"connection complete",)"
                  R"("src.addr":"10.0.0.1:40000",)") != std::string::npos);
  CHECK(line.find(R"("bytes_sent":1000,"bytes_recv":20,"duration":"15ms"})") != std::string::npos);
}

}  // namespace
}  // namespace zt::metrics
