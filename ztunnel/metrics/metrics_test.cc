#include "ztunnel/metrics/metrics.h"

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

namespace zt::metrics {
namespace {

// Line returns the exposition line of `name` whose labels contain every `parts`, or "".
std::string Line(const std::string& text, const std::string& name,
                 const std::vector<std::string>& parts) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string line = text.substr(pos, end - pos);
    pos = end == std::string::npos ? text.size() : end + 1;
    if (!line.starts_with(name + "{")) continue;
    bool all = true;
    for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
    if (all) return line;
  }
  return "";
}

double Value(const std::string& line) { return std::stod(line.substr(line.rfind(' ') + 1)); }

state::Workload Workload(const char* name, const char* ns) {
  state::Workload w;
  w.name = name;
  w.namespace_name = ns;
  return w;
}

TEST_CASE("TCP metrics carry Istio's names and full label set at each reporter", "[metrics]") {
  Metrics m;
  state::Workload client = Workload("sleep-7d9f", "shop");
  client.workload_name = "sleep";
  client.canonical_name = "sleep-app";
  client.canonical_revision = "v1";
  client.cluster_id = "east";
  const state::Workload server = Workload("backend", "shop");

  ConnectionLabels l;
  l.reporter = Reporter::kSource;
  l.source = PeerFrom(&client, "spiffe://cluster.local/ns/shop/sa/sleep");
  l.destination = PeerFrom(&server, "spiffe://cluster.local/ns/shop/sa/backend");
  l.destination_service = "backend.shop.svc.cluster.local";
  l.destination_service_namespace = "shop";
  l.destination_service_name = "backend";
  l.mutual_tls = true;
  ConnectionCounters* c = m.tcp().Opened(l);
  TcpMetrics::Closed(c, 1000, 20);
  TcpMetrics::Closed(m.tcp().Opened(l), 5, 7);
  ConnectionLabels d = l;
  d.reporter = Reporter::kDestination;
  TcpMetrics::Closed(m.tcp().Opened(d), 1000, 20);

  const std::string text = m.Render();
  const std::vector<std::string> source_labels = {
      R"(reporter="source")",
      R"(source_workload="sleep")",
      R"(source_workload_namespace="shop")",
      R"(source_principal="spiffe://cluster.local/ns/shop/sa/sleep")",
      R"(source_app="sleep-app")",
      R"(source_version="v1")",
      R"(source_cluster="east")",
      R"(source_canonical_service="sleep-app")",
      R"(source_canonical_revision="v1")",
      R"(destination_workload="backend")",
      R"(destination_workload_namespace="shop")",
      R"(destination_principal="spiffe://cluster.local/ns/shop/sa/backend")",
      R"(destination_app="backend")",
      R"(destination_version="latest")",
      R"(destination_cluster="Kubernetes")",
      R"(destination_canonical_service="backend")",
      R"(destination_canonical_revision="latest")",
      R"(destination_service="backend.shop.svc.cluster.local")",
      R"(destination_service_namespace="shop")",
      R"(destination_service_name="backend")",
      R"(request_protocol="tcp")",
      R"(response_flags="-")",
      R"(connection_security_policy="mutual_tls")"};
  const std::string opened = Line(text, "istio_tcp_connections_opened_total", source_labels);
  REQUIRE_FALSE(opened.empty());
  CHECK(Value(opened) == 2);
  CHECK(Value(Line(text, "istio_tcp_connections_closed_total", source_labels)) == 2);
  CHECK(Value(Line(text, "istio_tcp_received_bytes_total", source_labels)) == 1005);
  CHECK(Value(Line(text, "istio_tcp_sent_bytes_total", source_labels)) == 27);
  CHECK(Value(Line(text, "istio_tcp_connections_opened_total", {R"(reporter="destination")"})) ==
        1);
  CHECK(text.find("# TYPE istio_tcp_connections_opened_total counter") != std::string::npos);
}

TEST_CASE("Unknown peers and failures are labelled, never left empty", "[metrics]") {
  Metrics m;
  ConnectionLabels l;
  l.reporter = Reporter::kDestination;
  l.destination = PeerFrom(nullptr, "");
  l.response_flags = "DENY";
  m.tcp().Failed(l);
  m.tcp().Failed(l);
  const std::string text = m.Render();
  const std::string failed = Line(text, "istio_tcp_connections_failed_total",
                                  {R"(source_workload="unknown")", R"(source_principal="unknown")",
                                   R"(destination_service="unknown")", R"(response_flags="DENY")",
                                   R"(connection_security_policy="unknown")"});
  REQUIRE_FALSE(failed.empty());
  CHECK(Value(failed) == 2);
  CHECK(text.find("=\"\"") == std::string::npos);
}

TEST_CASE("Workers report concurrently without losing counts", "[metrics]") {
  Metrics m;
  ConnectionLabels l;
  l.source = PeerFrom(nullptr, "spiffe://cluster.local/ns/a/sa/b");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) TcpMetrics::Closed(m.tcp().Opened(l), 3, 1);
    });
  }
  for (auto& t : threads) t.join();
  const std::string text = m.Render();
  CHECK(Value(Line(text, "istio_tcp_connections_closed_total", {})) == 4000);
  CHECK(Value(Line(text, "istio_tcp_received_bytes_total", {})) == 12000);
}

TEST_CASE("Enrollment, reload and process metrics are exported", "[metrics]") {
  Metrics m;
  m.ProxyStarted();
  m.ProxyStarted();
  m.ProxyStopped();
  m.ConfigReload(true);
  m.ConfigReload(false);
  m.ConfigReload(false);
  m.RecordBuild("1.2.3");
  CHECK(m.Render().find("\nztunnel_inpod_connected 0") != std::string::npos);
  m.AgentConnected(true);
  const std::string text = m.Render();
  CHECK(text.find("\nztunnel_inpod_connected 1") != std::string::npos);
  CHECK(Value(Line(text, "istio_build", {R"(component="ztunnel")", R"(tag="1.2.3")"})) == 1);
  CHECK(text.find("\nworkload_manager_active_proxy_count 1") != std::string::npos);
  CHECK(text.find("\nworkload_manager_proxies_started_total 2") != std::string::npos);
  CHECK(text.find("\nworkload_manager_proxies_stopped_total 1") != std::string::npos);
  CHECK(Value(Line(text, "ztunnel_local_config_reloads_total", {R"(result="rejected")"})) == 2);
  CHECK(Value(Line(text, "ztunnel_local_config_reloads_total", {R"(result="applied")"})) == 1);
  for (const char* name : {"process_resident_memory_bytes ", "process_cpu_seconds_total ",
                           "process_open_fds ", "process_start_time_seconds "}) {
    const size_t at = text.find(std::string("\n") + name);
    REQUIRE(at != std::string::npos);
    CHECK(std::stod(text.substr(at + 1 + std::string(name).size())) > 0);
  }
}

}  // namespace
}  // namespace zt::metrics
