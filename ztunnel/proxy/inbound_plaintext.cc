#include "ztunnel/proxy/inbound_plaintext.h"

#include "ztunnel/core/log.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/proxy/ports.h"
#include "ztunnel/proxy/relay.h"
#include "ztunnel/proxy/report.h"
#include "ztunnel/proxy/upstream.h"

namespace zt::proxy {
namespace {

void Reset(io::UniqueFd fd) {
  (void)io::SetLingerZero(fd.get());
  fd.reset();
}

}  // namespace

InboundPlaintext::InboundPlaintext(io::Loop& loop, InboundOptions options, const Mesh& mesh,
                                   const SnapshotView& view, ConnectionTracker& tracker,
                                   Balancer& balancer, int index,
                                   std::function<void()> on_connection_end,
                                   std::function<Result<io::SocketAddress>(int fd)> original_dst)
    : loop_(loop),
      options_(std::move(options)),
      mesh_(mesh),
      view_(view),
      tracker_(tracker),
      balancer_(balancer),
      index_(index),
      on_connection_end_(std::move(on_connection_end)),
      original_dst_(std::move(original_dst)) {
  if (!original_dst_) original_dst_ = io::OriginalDst;
}

void InboundPlaintext::ConnectionEnded() {
  balancer_.Release(index_);
  if (on_connection_end_) on_connection_end_();
}

void InboundPlaintext::Serve(int fd) {
  if (!io::Fiber::Spawn(loop_, [this, fd] { ServeFiber(io::UniqueFd(fd)); })) {
    ZT_WARN("proxy", "refusing a plaintext connection: out of memory for a fiber stack");
    Reset(io::UniqueFd(fd));
    ConnectionEnded();
  }
}

void InboundPlaintext::ServeFiber(io::UniqueFd down) {
  bool handed_off = false;
  struct EndGuard {
    InboundPlaintext* self;
    bool& handed_off;
    ~EndGuard() {
      if (!handed_off) self->ConnectionEnded();
    }
  } guard{this, handed_off};
  auto peer = io::PeerAddress(down.get());
  auto dst = original_dst_(down.get());
  const std::string src = peer ? peer->ToString() : "unknown";
  if (!dst) {
    ZT_WARN("proxy", "inbound plaintext connection from {} has no original destination ({})", src,
            dst.error().Message());
    return Reset(std::move(down));
  }
  if (IsProxyPort(dst->port())) {
    ZT_WARN("proxy", "refusing inbound plaintext connection from {} to {}: a proxy port", src,
            dst->ToString());
    return Reset(std::move(down));
  }
  const IpPort target = *dst->ToIpPort();
  auto snapshot = view_.Get();
  const state::Workload* w = mesh_.LocalWorkload(*snapshot, target.ip());
  auto report = std::make_shared<ConnectionReport>(
      mesh_.tcp_metrics, metrics::Reporter::kDestination, "inbound", "TCP");
  // A plaintext peer presents no identity; its workload is known if the config has it.
  const auto peer_ip = peer ? peer->ToIpPort() : std::nullopt;
  report->Source(src, peer_ip ? snapshot->FindWorkload(mesh_.network, peer_ip->ip()) : nullptr, "");
  report->Destination(target.ToString(), w,
                      w != nullptr && w->protocol == state::Protocol::kHbone
                          ? WorkloadIdentity(*w).ToString()
                          : "");
  if (w == nullptr) {
    report->Failed("not a workload on this node");
    return Reset(std::move(down));
  }
  // A plaintext peer has no identity: positive identity matches never admit it.
  state::Connection info;
  if (peer) info.source = peer->ToIpPort()->ip();
  info.destination = target.ip();
  info.destination_port = target.port;
  const state::Decision d = state::Authorize(snapshot->PoliciesFor(*w), info);
  for (const std::string& verdict : d.dry_run) {
    ZT_INFO("authz", "dry-run: {} (src.addr={} dst.addr={} plaintext)", verdict, src,
            target.ToString());
  }
  if (!d.allowed) {
    report->Denied(d.reason, 0);
    return Reset(std::move(down));
  }
  io::UniqueFd netns;  // the pod's namespace in in-pod mode: connect to the app from there
  if (auto ns = io::ForeignNetnsOf(down.get())) netns = std::move(ns).value();
  auto up =
      ConnectUpstream(loop_, *dst,
                      {options_.mark, options_.connect_timeout, options_.keepalive, netns.get(),
                       options_.limiter, peer ? peer->ToIpPort()->ip().ToString() : std::string()},
                      &tracker_);
  const Status connected = up ? Status::Ok() : Status(up.error());
  if (!connected) {
    report->Failed(connected.error().Message());
    return Reset(std::move(down));
  }
  (void)io::SetNoDelay(down.get());
  (void)io::SetKeepalive(down.get(), options_.keepalive);
  handed_off = true;
  std::weak_ptr<int> life = life_;
  auto key = std::make_shared<Relay*>(nullptr);
  report->Opened();
  Relay* relay =
      Relay::Start(loop_, std::move(down), std::move(up).value(), &tracker_,
                   [this, life, key, report](const RelayResult& r) {
                     report->Closed(r.bytes_downstream_to_upstream, r.bytes_upstream_to_downstream,
                                    r.ok ? std::string() : r.error.Message());
                     if (life.expired()) return;
                     live_.erase(*key);
                     ConnectionEnded();
                   });
  *key = relay;
  live_[relay] = Live{w->uid, info, src};
}

void InboundPlaintext::Recheck() {
  auto snapshot = view_.Get();
  std::vector<std::pair<Relay*, std::string>> denied;
  for (const auto& [relay, live] : live_) {
    const state::Workload* w = snapshot->FindByUid(live.workload_uid);
    if (w == nullptr) continue;
    const state::Decision d = state::Authorize(snapshot->PoliciesFor(*w), live.info);
    if (!d.allowed) denied.emplace_back(relay, d.reason);
  }
  for (auto& [relay, reason] : denied) {
    ZT_INFO("access",
            "connection closed by a policy change src.addr={} direction=inbound protocol=TCP "
            "reason=\"{}\"",
            live_.at(relay).src, reason);
    relay->Abort();
  }
}

}  // namespace zt::proxy
