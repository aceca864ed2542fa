#include "ztunnel/metrics/tcp.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <mutex>
#include <unordered_map>

namespace zt::metrics {
namespace {

const std::string& OrUnknown(const std::string& v) {
  static const std::string unknown = "unknown";
  return v.empty() ? unknown : v;
}

void AddPeer(prometheus::Labels& l, const char* side, const PeerLabels& p) {
  const std::string s(side);
  l[s + "_workload"] = OrUnknown(p.workload);
  l[s + "_workload_namespace"] = OrUnknown(p.workload_namespace);
  l[s + "_principal"] = OrUnknown(p.principal);
  l[s + "_app"] = OrUnknown(p.app);
  l[s + "_version"] = OrUnknown(p.version);
  l[s + "_cluster"] = OrUnknown(p.cluster);
  l[s + "_canonical_service"] = OrUnknown(p.canonical_service);
  l[s + "_canonical_revision"] = OrUnknown(p.canonical_revision);
}

prometheus::Labels ToLabels(const ConnectionLabels& c) {
  prometheus::Labels l;
  l["reporter"] = c.reporter == Reporter::kSource ? "source" : "destination";
  AddPeer(l, "source", c.source);
  AddPeer(l, "destination", c.destination);
  l["destination_service"] = OrUnknown(c.destination_service);
  l["destination_service_namespace"] = OrUnknown(c.destination_service_namespace);
  l["destination_service_name"] = OrUnknown(c.destination_service_name);
  l["request_protocol"] = "tcp";
  l["response_flags"] = c.response_flags.empty() ? "-" : c.response_flags;
  l["connection_security_policy"] = c.mutual_tls ? "mutual_tls" : "unknown";
  return l;
}

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& r, const char* name,
                                                 const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

}  // namespace

PeerLabels PeerFrom(const state::Workload* w, std::string principal) {
  PeerLabels p;
  p.principal = std::move(principal);
  if (w == nullptr) return p;
  p.workload = w->workload_name.empty() ? w->name : w->workload_name;
  p.workload_namespace = w->namespace_name;
  // Istio's defaults: app/canonical service fall back to the workload name, version
  // and canonical revision to "latest".
  p.canonical_service = w->canonical_name.empty() ? p.workload : w->canonical_name;
  p.app = p.canonical_service;
  p.canonical_revision = w->canonical_revision.empty() ? "latest" : w->canonical_revision;
  p.version = p.canonical_revision;
  p.cluster = w->cluster_id.empty() ? "Kubernetes" : w->cluster_id;
  return p;
}

struct TcpMetrics::Cache {
  std::mutex mu;
  // Key: the label values joined; value: the series, stable for the process' life.
  std::unordered_map<std::string, std::unique_ptr<ConnectionCounters>> series;
};

TcpMetrics::TcpMetrics(prometheus::Registry& registry)
    : opened_(
          Counter(registry, "istio_tcp_connections_opened_total", "Total TCP connections opened")),
      closed_(
          Counter(registry, "istio_tcp_connections_closed_total", "Total TCP connections closed")),
      sent_(Counter(registry, "istio_tcp_sent_bytes_total",
                    "Bytes sent during response in case of a TCP connection")),
      received_(Counter(registry, "istio_tcp_received_bytes_total",
                        "Bytes received during request in case of a TCP connection")),
      failed_(Counter(registry, "istio_tcp_connections_failed_total",
                      "Total TCP connections that failed to open")),
      cache_(std::make_unique<Cache>()) {}

TcpMetrics::~TcpMetrics() = default;

ConnectionCounters* TcpMetrics::Series(const ConnectionLabels& labels) {
  // The cache key is the raw values, joined: building the label map (27 entries) is
  // left for the first connection of a label set.
  std::string key;
  key.reserve(512);
  auto add = [&key](const std::string& v) {
    key += v;
    key += '\x1f';  // a separator no label value contains
  };
  for (const PeerLabels* p : {&labels.source, &labels.destination}) {
    for (const std::string* v :
         {&p->workload, &p->workload_namespace, &p->principal, &p->app, &p->version, &p->cluster,
          &p->canonical_service, &p->canonical_revision}) {
      add(*v);
    }
  }
  add(labels.destination_service);
  add(labels.destination_service_namespace);
  add(labels.destination_service_name);
  add(labels.response_flags);
  key += labels.reporter == Reporter::kSource ? 's' : 'd';
  key += labels.mutual_tls ? 'm' : 'u';
  std::lock_guard<std::mutex> lock(cache_->mu);
  auto& slot = cache_->series[key];
  if (!slot) {
    const prometheus::Labels l = ToLabels(labels);
    slot = std::make_unique<ConnectionCounters>();
    slot->opened = &opened_.Add(l);
    slot->closed = &closed_.Add(l);
    slot->sent = &sent_.Add(l);
    slot->received = &received_.Add(l);
    slot->failed = &failed_.Add(l);
  }
  return slot.get();
}

ConnectionCounters* TcpMetrics::Opened(const ConnectionLabels& labels) {
  ConnectionCounters* c = Series(labels);
  c->opened->Increment();
  return c;
}

void TcpMetrics::Closed(ConnectionCounters* counters, uint64_t received, uint64_t sent) {
  if (counters == nullptr) return;
  counters->closed->Increment();
  counters->received->Increment(static_cast<double>(received));
  counters->sent->Increment(static_cast<double>(sent));
}

void TcpMetrics::Failed(const ConnectionLabels& labels) { Series(labels)->failed->Increment(); }

}  // namespace zt::metrics
