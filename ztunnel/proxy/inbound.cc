#include "ztunnel/proxy/inbound.h"

#include <sys/socket.h>

#include <optional>

#include "ztunnel/core/log.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/proxy/hbone_stream.h"
#include "ztunnel/proxy/ports.h"
#include "ztunnel/proxy/report.h"
#include "ztunnel/proxy/upstream.h"
#include "ztunnel/state/authz.h"

namespace zt::proxy {
// Handler answers the CONNECTs of one HBONE connection, for one local workload.
class Inbound::Handler final : public h2::ServerHandler,
                               public std::enable_shared_from_this<Handler> {
 public:
  Handler(Inbound* inbound, const state::Workload& workload, std::string peer_addr,
          std::optional<IpAddr> peer_ip)
      : inbound_(inbound),
        uid_(workload.uid),
        name_(workload.name),
        namespace_(workload.namespace_name),
        peer_addr_(std::move(peer_addr)),
        peer_ip_(peer_ip) {}

  void OnConnect(int32_t stream, const h2::ConnectRequest& request) override {
    HboneConnection* conn = conn_;
    if (conn == nullptr) return;
    const std::string peer_id = conn->peer().ToString();
    auto snapshot = inbound_->view_.Get();
    const state::Workload* target =
        snapshot->FindWorkload(inbound_->mesh_.network, request.authority.ip());
    auto report = std::make_shared<ConnectionReport>(
        inbound_->mesh_.tcp_metrics, metrics::Reporter::kDestination, "inbound", "HBONE");
    report->MutualTls();
    report->Source(peer_addr_,
                   peer_ip_ ? snapshot->FindWorkload(inbound_->mesh_.network, *peer_ip_) : nullptr,
                   peer_id);
    report->Destination(request.authority.ToString(), target,
                        target != nullptr ? WorkloadIdentity(*target).ToString() : "");
    std::string why;
    if (IsOwnPort(request.authority.port)) {
      why = "port " + std::to_string(request.authority.port) +
            " is one of ztunnel's own ports (a tunnel there would loop into ztunnel)";
    } else if (target == nullptr || target->node != inbound_->mesh_.node) {
      why = "it is not the address of a workload on this node";
    } else if (target->uid != uid_) {
      // The peer authenticated this connection to one workload; it may not reach another.
      why = "it belongs to " + target->uid + ", not to " + uid_ +
            " whose certificate this "
            "connection was opened with";
    }
    if (!why.empty()) {
      ZT_WARN("proxy", "rejected CONNECT {} from {} ({}) with 400: {}",
              request.authority.ToString(), peer_addr_, peer_id, why);
      report->Failed(why, 400);
      (void)conn->h2().Respond(stream, 400, nullptr);
      conn->ScheduleFlush();
      return;
    }
    // L4 authorization for the destination workload (DESIGN.md §4).
    const tls::SpiffeId& peer = conn->peer();
    state::Connection info;
    info.principal = peer.Principal();
    info.peer_namespace = peer.ns;
    info.peer_service_account = peer.service_account;
    if (peer_ip_) info.source = *peer_ip_;
    info.destination = request.authority.ip();
    info.destination_port = request.authority.port;
    const state::Decision decision = state::Authorize(snapshot->PoliciesFor(*target), info);
    for (const std::string& verdict : decision.dry_run) {
      ZT_INFO("authz", "dry-run: {} (src.addr={} src.identity={} dst.addr={})", verdict, peer_addr_,
              peer_id, request.authority.ToString());
    }
    if (!decision.allowed) {
      report->Denied(decision.reason, 401);
      (void)conn->h2().Respond(stream, 401, nullptr);
      conn->ScheduleFlush();
      return;
    }
    // The 200 describes the destination in baggage, as Istio's ztunnel answers.
    std::string baggage = inbound_->options_.response_baggage ? Baggage(*target) : std::string();
    // Connect on a fiber; by the time it finishes, the connection may be gone.
    const bool spawned = io::Fiber::Spawn(
        inbound_->loop_, [self = shared_from_this(), stream, target = request.authority, peer_id,
                          info, report, baggage = std::move(baggage)] {
          self->OpenTunnel(stream, target, peer_id, info, report, baggage);
        });
    if (!spawned) {
      report->Failed("out of memory for a fiber stack", 503);
      (void)conn->h2().Respond(stream, 503, nullptr);
      conn->ScheduleFlush();
    }
  }

  void OnStreamReset(int32_t stream) override {
    // The peer gave up on this CONNECT (or the connection is going): stop dialing.
    if (auto it = connecting_.find(stream); it != connecting_.end()) it->second->Cancel();
  }

  HboneConnection* conn_ = nullptr;  // null once the connection is gone
  io::UniqueFd netns_;               // the pod's namespace in in-pod mode, else invalid

 private:
  void OpenTunnel(int32_t stream, IpPort target, const std::string& peer_id,
                  const state::Connection& info, std::shared_ptr<ConnectionReport> report,
                  const std::string& baggage) {
    Inbound& in = *inbound_;
    const auto dst = io::SocketAddress::FromIpPort(target);
    // Bounded per peer identity: the workload on whose behalf the tunnel is opened.
    // Cancelled if the stream is reset meanwhile (rapid reset must not keep dialing).
    auto cancel = std::make_shared<ConnectCancel>();
    connecting_[stream] = cancel;
    auto up = ConnectUpstream(in.loop_, dst,
                              {in.options_.mark, in.options_.connect_timeout, in.options_.keepalive,
                               netns_.get(), in.options_.limiter, peer_id, cancel.get()},
                              &in.tracker_);
    connecting_.erase(stream);
    if (cancel->cancelled) {
      report->Failed("the peer reset the stream before the tunnel was up");
      if (conn_ != nullptr) (void)conn_->h2().Respond(stream, 503, nullptr);  // settles it
      return;
    }
    const Status connected = up ? Status::Ok() : Status(up.error());
    HboneConnection* conn = conn_;
    if (conn == nullptr) return report->Failed("the HBONE connection closed during set-up");
    if (!connected) {
      report->Failed(connected.error().Message(), 503);
      (void)conn->h2().Respond(stream, 503, nullptr);
      conn->ScheduleFlush();
      return;
    }
    std::weak_ptr<int> life = in.life_;
    // The stream's own address, known once it exists: its key in tunnels_.
    auto key = std::make_shared<HboneStream*>(nullptr);
    report->Opened();
    HboneStream* hs = HboneStream::Create(
        conn, std::move(up).value(), &in.tracker_, [&in, life, key, report](const StreamResult& r) {
          if (!life.expired()) in.tunnels_.erase(*key);
          // Towards the destination workload is what the stream delivered to it.
          report->Closed(r.bytes_from_stream, r.bytes_to_stream, r.ok ? std::string() : r.error);
        });
    if (!conn->h2().Respond(stream, 200, hs, baggage)) return hs->Refuse("stream gone");
    *key = hs;
    in.tunnels_[hs] = LiveTunnel{uid_, info, peer_addr_, peer_id};
    hs->Attach(stream, false);
    conn->ScheduleFlush();
  }

  Inbound* inbound_;
  std::string uid_;
  std::string name_;
  std::string namespace_;
  std::string peer_addr_;
  std::optional<IpAddr> peer_ip_;  // the TCP peer: the source address policies see
  // Upstream connects in flight, by stream, so a reset stream can cancel its own.
  std::unordered_map<int32_t, std::shared_ptr<ConnectCancel>> connecting_;
};

Inbound::Inbound(io::Loop& loop, InboundOptions options, const Mesh& mesh, const SnapshotView& view,
                 CertView& certs, ConnectionTracker& tracker, Balancer& balancer, int index,
                 std::function<void()> on_connection_end)
    : loop_(loop),
      options_(std::move(options)),
      mesh_(mesh),
      view_(view),
      certs_(certs),
      tracker_(tracker),
      balancer_(balancer),
      index_(index),
      on_connection_end_(std::move(on_connection_end)) {}

Inbound::~Inbound() {
  for (auto& [conn, handler] : live_) handler->conn_ = nullptr;
}

void Inbound::ConnectionEnded() {
  balancer_.Release(index_);
  if (on_connection_end_) on_connection_end_();
}

void Inbound::Serve(int raw_fd) { Admit(io::UniqueFd(raw_fd), false); }

void Inbound::Admit(io::UniqueFd fd, bool waited) {
  auto local = io::LocalAddress(fd.get());
  auto peer = io::PeerAddress(fd.get());
  const std::string peer_text = peer ? peer->ToString() : "unknown";
  auto refuse = [&](const std::string& why) {
    ZT_WARN("proxy", "refused HBONE connection from {} to {}: {}", peer_text,
            local ? local->ToString() : "unknown", why);
    (void)io::SetLingerZero(fd.get());
    fd.reset();
    ConnectionEnded();
  };
  if (options_.max_handshakes != 0 && handshakes_ >= options_.max_handshakes) {
    // Past the bound, before any TLS work: a flood of half-open handshakes must not
    // grow memory without bound or stall the tunnels this worker already carries.
    if (options_.overload != nullptr) options_.overload->Refused(metrics::Refusal::kHandshakes);
    uint64_t held = 0;
    if (refusal_log_.Allow(&held)) {
      ZT_WARN("proxy",
              "refused HBONE connection from {}: {} TLS handshakes in flight on this worker, its "
              "bound (and {} more refused since the last such line)",
              peer_text, handshakes_, held);
    }
    (void)io::SetLingerZero(fd.get());
    fd.reset();
    return ConnectionEnded();
  }
  if (!local) return refuse("no local address: " + local.error().Message());
  auto snapshot = view_.Get();
  const state::Workload* w = mesh_.LocalWorkload(*snapshot, local->ToIpPort()->ip());
  if (w == nullptr) return refuse("no workload on this node has address " + local->IpString());
  const tls::SpiffeId id = WorkloadIdentity(*w);
  auto cert = certs_.Find(id);
  if (!cert && waited) return refuse("no certificate for " + id.ToString());
  if (!cert) {
    // Not issued yet (a pod that just arrived, a CA across the network): park the
    // connection, not the worker. It holds a handshake slot meanwhile, so a flood of
    // them is bounded like handshakes are.
    ++handshakes_;
    auto parked = std::make_shared<io::UniqueFd>(std::move(fd));
    std::weak_ptr<int> alive = life_;
    certs_.Wait(id, [this, alive, parked, peer_text](
                        std::shared_ptr<const identity::WorkloadCert> ready, std::string why) {
      if (alive.expired()) return;
      --handshakes_;
      if (!ready) {
        ZT_WARN("proxy", "refused HBONE connection from {}: {}", peer_text, why);
        (void)io::SetLingerZero(parked->get());
        parked->reset();
        return ConnectionEnded();
      }
      Admit(std::move(*parked), true);
    });
    return;
  }
  (void)io::SetKeepalive(fd.get(), options_.keepalive);

  std::optional<IpAddr> peer_ip;
  if (peer) {
    if (auto ip_port = peer->ToIpPort()) peer_ip = ip_port->ip();
  }
  auto handler = std::make_shared<Handler>(this, *w, peer_text, peer_ip);
  // In-pod mode: the listener lives in the destination pod's namespace, and so must
  // the connection to the app.
  if (auto ns = io::ForeignNetnsOf(fd.get())) handler->netns_ = std::move(ns).value();
  ++handshakes_;
  auto handshaking = std::make_shared<bool>(true);
  HboneConnection* conn = HboneConnection::StartServer(
      loop_, std::move(fd), cert->server, handler.get(), &tracker_,
      {.ready =
           [this, handshaking](HboneConnection*) {
             *handshaking = false;
             --handshakes_;
           },
       .closed =
           [this, handshaking](HboneConnection* c, const std::string&) {
             if (*handshaking) --handshakes_;
             auto it = live_.find(c);
             if (it != live_.end()) {
               it->second->conn_ = nullptr;
               live_.erase(it);
             }
             ConnectionEnded();
           }},
      options_.timeouts);
  handler->conn_ = conn;
  live_.emplace(conn, std::move(handler));
  // Accepted before the listener was shut: serve the peer's streams in flight, then drain.
  if (draining_) conn->Drain();
}

void Inbound::Recheck() {
  auto snapshot = view_.Get();
  std::vector<std::pair<HboneStream*, std::string>> denied;
  for (const auto& [stream, t] : tunnels_) {
    const state::Workload* w = snapshot->FindByUid(t.workload_uid);
    if (w == nullptr) continue;  // gone from the config: its pod's removal drains it
    const state::Decision d = state::Authorize(snapshot->PoliciesFor(*w), t.info);
    if (!d.allowed) denied.emplace_back(stream, d.reason);
  }
  for (auto& [stream, reason] : denied) {
    const LiveTunnel& t = tunnels_.at(stream);
    ZT_INFO(
        "access",
        "connection closed by a policy change src.addr={} src.identity={} dst.addr={} "
        "direction=inbound reason=\"{}\"",
        t.peer_addr, t.peer_id,
        IpPort{t.info.destination.v6, t.info.destination.addr, t.info.destination_port}.ToString(),
        reason);
    stream->Terminate("policy change: " + reason);
  }
}

void Inbound::Drain() {
  draining_ = true;
  std::vector<HboneConnection*> conns;
  for (auto& [conn, handler] : live_) conns.push_back(conn);
  for (HboneConnection* c : conns) c->Drain();
}

}  // namespace zt::proxy
