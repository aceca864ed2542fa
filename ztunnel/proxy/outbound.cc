#include "ztunnel/proxy/outbound.h"

#include <sys/socket.h>

#include <cerrno>

#include "ztunnel/core/log.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/proxy/hbone_stream.h"
#include "ztunnel/proxy/ports.h"
#include "ztunnel/proxy/relay.h"
#include "ztunnel/proxy/report.h"
#include "ztunnel/proxy/upstream.h"
#include "ztunnel/state/route.h"

namespace zt::proxy {
namespace {

// Refuse reports a failed connection to the client with a reset, as a direct
// connection to a closed port would.
void Refuse(io::UniqueFd downstream) {
  (void)io::SetLingerZero(downstream.get());
  downstream.reset();
}

}  // namespace

// Conn is one captured connection while it is being set up.
struct Outbound::Conn {
  io::UniqueFd downstream;
  // The source pod's namespace when the connection came in on a listener inside
  // one (in-pod mode): upstream sockets are made there too. Invalid otherwise.
  io::UniqueFd netns;
  io::SocketAddress src;
  io::SocketAddress dst;
  std::string src_text;
  // What the access log and metrics will say; shared with the completion callback.
  std::shared_ptr<ConnectionReport> report;
  // Every way out of set-up counts the connection as ended, unless the relay took it.
  bool handed_off = false;
};

Outbound::Outbound(io::Loop& loop, OutboundOptions options, ConnectionTracker& tracker,
                   Balancer& balancer, int index, std::function<void()> on_connection_end,
                   const Mesh* mesh, const SnapshotView* view, CertView* certs, Pool* pool)
    : loop_(loop),
      options_(std::move(options)),
      tracker_(tracker),
      balancer_(balancer),
      index_(index),
      on_connection_end_(std::move(on_connection_end)),
      mesh_(mesh),
      view_(view),
      certs_(certs),
      pool_(pool) {
  if (!options_.original_dst) options_.original_dst = io::OriginalDst;
}

Outbound::~Outbound() = default;

void Outbound::Serve(int fd) {
  // Spawn runs the fiber at once, so the raw fd cannot leak in between.
  if (!io::Fiber::Spawn(loop_, [this, fd] { ServeFiber(io::UniqueFd(fd)); })) {
    ZT_WARN("proxy", "refusing a connection: out of memory for a fiber stack");
    Refuse(io::UniqueFd(fd));
    ConnectionEnded();
  }
}

void Outbound::ConnectionEnded() {
  balancer_.Release(index_);
  if (on_connection_end_) on_connection_end_();
}

void Outbound::ServeFiber(io::UniqueFd downstream) {
  Conn c;
  c.downstream = std::move(downstream);
  struct EndGuard {
    Outbound* self;
    Conn& c;
    ~EndGuard() {
      if (!c.handed_off) self->ConnectionEnded();
    }
  } end_guard{this, c};
  auto src = io::PeerAddress(c.downstream.get());
  auto dst = options_.original_dst(c.downstream.get());
  if (src) c.src = *src;
  c.src_text = src ? src->ToString() : "unknown";
  if (!dst) {
    ZT_WARN("proxy", "outbound connection from {} has no original destination ({}); closing",
            c.src_text, dst.error().Message());
    return Refuse(std::move(c.downstream));
  }
  c.dst = *dst;
  if (IsProxyPort(dst->port())) {
    ZT_WARN("proxy", "refusing outbound connection from {} to {}: it targets a proxy port (loop)",
            c.src_text, dst->ToString());
    return Refuse(std::move(c.downstream));
  }
  (void)io::SetNoDelay(c.downstream.get());
  (void)io::SetKeepalive(c.downstream.get(), options_.keepalive);
  if (auto ns = io::ForeignNetnsOf(c.downstream.get())) c.netns = std::move(ns).value();
  c.report = std::make_shared<ConnectionReport>(mesh_ != nullptr ? mesh_->tcp_metrics : nullptr,
                                                metrics::Reporter::kSource, "outbound", "TCP");

  if (mesh_ != nullptr && view_ != nullptr && certs_ != nullptr && pool_ != nullptr) {
    auto snapshot = view_->Get();
    const auto src_ip = c.src.ToIpPort();
    const state::Workload* src_workload =
        src_ip ? mesh_->LocalWorkload(*snapshot, src_ip->ip()) : nullptr;
    c.report->Source(c.src_text, src_workload,
                     src_workload != nullptr && src_workload->protocol == state::Protocol::kHbone
                         ? WorkloadIdentity(*src_workload).ToString()
                         : "");
    const state::Route route =
        state::ResolveRoute(*snapshot, mesh_->network, *dst->ToIpPort(), round_robin_);
    c.report->Service(route.service);
    if (!route.error.empty()) {
      c.report->Destination(c.dst.ToString(), nullptr, "");
      c.report->Failed(route.error);
      return Refuse(std::move(c.downstream));
    }
    c.dst = io::SocketAddress::FromIpPort(route.target);
    const bool hbone =
        route.workload != nullptr && route.workload->protocol == state::Protocol::kHbone;
    c.report->Destination(c.dst.ToString(), route.workload,
                          hbone ? WorkloadIdentity(*route.workload).ToString() : "");
    if (hbone) return Tunnel(c, *snapshot, *route.workload, route.service);
  } else {
    c.report->Source(c.src_text, nullptr, "");
    c.report->Destination(c.dst.ToString(), nullptr, "");
  }
  Passthrough(c);
}

void Outbound::Passthrough(Conn& c) {
  const auto src_ip = c.src.ToIpPort();
  auto upstream =
      ConnectUpstream(loop_, c.dst,
                      {options_.mark, options_.connect_timeout, options_.keepalive, c.netns.get(),
                       options_.limiter, src_ip ? src_ip->ip().ToString() : c.src_text},
                      &tracker_);
  if (!upstream) {
    c.report->Failed(upstream.error().Message());
    return Refuse(std::move(c.downstream));
  }
  ZT_DEBUG("proxy", "outbound {} -> {} connected", c.src_text, c.dst.ToString());
  c.handed_off = true;
  c.report->Opened();
  Relay::Start(loop_, std::move(c.downstream), std::move(upstream).value(), &tracker_,
               [this, report = c.report](const RelayResult& r) {
                 report->Closed(r.bytes_downstream_to_upstream, r.bytes_upstream_to_downstream,
                                r.ok ? std::string() : r.error.Message());
                 ConnectionEnded();
               });
}

void Outbound::Tunnel(Conn& c, const state::State& state, const state::Workload& dst_workload,
                      const state::Service* service) {
  const IpPort dst_ip = *c.dst.ToIpPort();
  c.report->SetProtocol("HBONE");
  c.report->MutualTls();
  const auto fail = [&](const std::string& why) {
    c.report->Failed(why);
    Refuse(std::move(c.downstream));
  };
  // The tunnel speaks for the source workload, so it must be one this node serves.
  const auto src_ip = c.src.ToIpPort();
  const state::Workload* src_workload =
      src_ip ? mesh_->LocalWorkload(state, src_ip->ip()) : nullptr;
  if (src_workload == nullptr) {
    return fail("the source " + c.src_text +
                " is not a workload on this node, so it has no identity to tunnel with");
  }
  std::string error;
  // A certificate not issued yet parks this fiber (not the worker) until it is.
  auto cert = AwaitCert(*certs_, WorkloadIdentity(*src_workload), &error);
  if (!cert) return fail(error);

  PoolKey key;
  key.source = cert->id;
  key.expected = {WorkloadIdentity(dst_workload)};
  if (service != nullptr) {
    // The service may name more identities its endpoints can present.
    for (const std::string& san : service->subject_alt_names) {
      if (auto id = tls::SpiffeId::Parse(san)) {
        key.expected.push_back(*std::move(id));
      } else {
        ZT_WARN("proxy", "service {}: ignoring subjectAltName \"{}\": not a SPIFFE id",
                service->Key(), san);
      }
    }
  }
  key.destination = c.dst;
  key.destination.set_port(options_.hbone_port);
  key.netns = c.netns.get();
  auto conn = pool_->Acquire(key, cert->client, &error);
  if (!conn) return fail(error);

  auto status = std::make_shared<int>(0);  // the CONNECT answer, once it came
  HboneStream* hs = HboneStream::Create(*conn, std::move(c.downstream), &tracker_,
                                        [this, report = c.report, status](const StreamResult& r) {
                                          if (report->opened()) {
                                            report->Closed(r.bytes_to_stream, r.bytes_from_stream,
                                                           r.ok ? std::string() : r.error);
                                          } else {
                                            report->Failed(r.error, *status);
                                          }
                                          ConnectionEnded();
                                        });
  hs->on_response = [report = c.report, status](int code) {
    *status = code;
    if (code == 200) report->Opened();
  };
  c.handed_off = true;  // the stream's callback ends the connection from here on
  auto id = (*conn)->h2().Connect(MakeConnectRequest(src_workload, *src_ip, dst_ip), hs);
  if (!id) return hs->Refuse("cannot open a stream: " + id.error().Message());
  hs->Attach(*id, true);
  (*conn)->ScheduleFlush();
}

}  // namespace zt::proxy
