#include "ztunnel/control/xds_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <utility>

#include "ztunnel/control/token.h"
#include "ztunnel/core/duration.h"
#include "ztunnel/core/log.h"
#include "ztunnel/xds/convert.h"
#include "ztunnel/xds/discovery.pb.h"

namespace zt::control {
namespace {

constexpr std::string_view kAdsPath =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

// Resets says whether a stream that ended with `s` reconnects at once (Istio's
// ztunnel: a clean end, and statuses that mean the server went away on purpose).
bool Resets(const h2::GrpcStatus& s) {
  switch (s.code) {
    case h2::GrpcCode::kOk:
    case h2::GrpcCode::kUnknown:
    case h2::GrpcCode::kCancelled:
    case h2::GrpcCode::kDeadlineExceeded:
      return true;
    case h2::GrpcCode::kUnavailable:
      return s.message.find("transport is closing") != std::string::npos ||
             s.message.find("received prior goaway") != std::string::npos ||
             s.message.find("GOAWAY") != std::string::npos;
    default:
      return false;
  }
}

}  // namespace

// Stream receives the ADS stream's events.
class XdsClient::Stream final : public h2::GrpcCallObserver {
 public:
  explicit Stream(XdsClient* client) : client_(client) {}
  void OnMessage(std::string message) override { client_->OnResponse(message); }
  void OnClose(const h2::GrpcStatus& status, const h2::Metadata&) override {
    client_->StreamEnded(status);  // may destroy this
  }

 private:
  XdsClient* client_;
};

std::unique_ptr<XdsClient> XdsClient::Create(io::Loop& loop, XdsOptions options, Publish publish,
                                             std::string* error) {
  std::unique_ptr<XdsClient> c(new XdsClient(loop, std::move(options), std::move(publish)));
  c->channel_ = GrpcChannel::Create(loop, c->options_.channel, error);
  if (!c->channel_) return nullptr;
  return c;
}

XdsClient::XdsClient(io::Loop& loop, XdsOptions options, Publish publish)
    : loop_(loop),
      options_(std::move(options)),
      publish_(std::move(publish)),
      backoff_(options_.initial_backoff) {}

XdsClient::~XdsClient() {
  retry_.reset();
  channel_.reset();  // drops the stream's call without calling back
  stream_.reset();
}

std::string XdsClient::NodeId() const {
  const std::string ip = options_.instance_ip.empty() ? "1.1.1.1" : options_.instance_ip;
  return fmt::format("ztunnel~{}~{}.{}~{}.svc.cluster.local", ip, options_.pod_name,
                     options_.pod_namespace, options_.pod_namespace);
}

void XdsClient::Start() { OpenStream(); }

void XdsClient::OpenStream() {
  std::string why;
  const std::string token = ReadToken(options_.token_path, &why);
  if (!why.empty()) ZT_WARN("xds", "{}: istiod will refuse the stream", why);
  h2::Metadata md;
  if (!token.empty()) md.emplace_back("authorization", "Bearer " + token);
  md.emplace_back("clusterid", options_.cluster_id);
  for (const auto& h : options_.headers) md.push_back(h);
  stream_ = std::make_unique<Stream>(this);
  ++stats_.streams;
  call_ = channel_->Start(std::string(kAdsPath), std::move(md), stream_.get());
  // Address first, then Authorization, each with what we already have.
  channel_->Send(call_, Request(std::string(xds::kAddressType), true, "", ""));
  channel_->Send(call_, Request(std::string(xds::kAuthorizationType), true, "", ""));
}

std::string XdsClient::Request(const std::string& type_url, bool initial, const std::string& nonce,
                               const std::string& error) const {
  envoy::service::discovery::v3::DeltaDiscoveryRequest req;
  req.set_type_url(type_url);
  if (initial) {
    auto* node = req.mutable_node();
    node->set_id(NodeId());
    auto& fields = *node->mutable_metadata()->mutable_fields();
    const auto put = [&fields](const std::string& k, const std::string& v) {
      fields[k].set_string_value(v);
    };
    for (const auto& [k, v] : options_.metadata) put(k, v);
    put("NAME", options_.pod_name);
    put("NAMESPACE", options_.pod_namespace);
    put("INSTANCE_IPS", options_.instance_ip);
    put("NODE_NAME", options_.node_name);
    auto it = versions_.find(type_url);
    if (it != versions_.end()) {
      for (const auto& [name, version] : it->second) {
        (*req.mutable_initial_resource_versions())[name] = version;
      }
    }
  } else {
    req.set_response_nonce(nonce);
    if (!error.empty()) req.mutable_error_detail()->set_message(error);
  }
  return req.SerializeAsString();
}

void XdsClient::OnResponse(const std::string& bytes) {
  envoy::service::discovery::v3::DeltaDiscoveryResponse resp;
  if (!resp.ParseFromString(bytes)) {
    // Not even the nonce can be read: nothing to ACK; the stream is unusable.
    ZT_WARN("xds", "istiod sent a response that does not decode; reconnecting");
    channel_->Cancel(call_, "undecodable DeltaDiscoveryResponse");
    return;
  }
  ++stats_.responses;
  const std::string& type = resp.type_url();
  const bool address = type == xds::kAddressType;
  const bool authorization = type == xds::kAuthorizationType;
  if (!address && !authorization) {
    ZT_WARN("xds", "ignoring a response of type {} (not subscribed)", type);
    channel_->Send(call_, Request(type, false, resp.nonce(), ""));
    return;
  }
  // Apply to copies: a response whose result cannot be built changes nothing.
  auto workloads = workloads_;
  auto services = services_;
  auto policies = policies_;
  auto versions = versions_[type];
  std::vector<std::string> rejected;
  for (const auto& r : resp.resources()) {
    std::string error;
    if (!r.has_resource()) {
      rejected.push_back(r.name() + ": no resource");
      versions.erase(r.name());
      continue;
    }
    if (address) {
      istio::workload::Address a;
      state::Workload w;
      state::Service s;
      if (!a.ParseFromString(r.resource().value())) {
        error = "does not decode as istio.workload.Address";
      } else if (a.has_workload() && xds::ToWorkload(a.workload(), &w, &error)) {
        // An update is a removal and an insert (the name may have been a service).
        services.erase(r.name());
        workloads[r.name()] = std::move(w);
      } else if (a.has_service() && xds::ToService(a.service(), &s, &error)) {
        workloads.erase(r.name());
        services[r.name()] = std::move(s);
      } else if (!a.has_workload() && !a.has_service()) {
        error = "neither a workload nor a service";
      }
    } else {
      istio::security::Authorization a;
      state::Policy p;
      if (!a.ParseFromString(r.resource().value())) {
        error = "does not decode as istio.security.Authorization";
      } else if (xds::ToPolicy(a, &p, &error)) {
        policies[r.name()] = std::move(p);
      }
    }
    if (!error.empty()) {
      rejected.push_back(r.name() + ": " + error);
      versions.erase(r.name());  // not known: the server sends it again
    } else {
      versions[r.name()] = r.version();
    }
  }
  for (const std::string& name : resp.removed_resources()) {
    versions.erase(name);
    if (address) {
      if (workloads.erase(name) == 0) services.erase(name);
    } else {
      policies.erase(name);
    }
  }
  // Names updated now are the newest claimants of their addresses.
  if (address) {
    for (const auto& r : resp.resources()) updated_[r.name()] = ++sequence_;
    for (const std::string& name : resp.removed_resources()) updated_.erase(name);
  }
  std::string build_error;
  auto next = Build(workloads, services, policies, &build_error);
  if (!next) {
    rejected.push_back("the update as a whole: " + build_error);
  } else {
    workloads_ = std::move(workloads);
    services_ = std::move(services);
    policies_ = std::move(policies);
    versions_[type] = std::move(versions);
    publish_(std::move(next));
  }
  std::string nack;
  for (const std::string& r : rejected) nack += (nack.empty() ? "" : "; ") + r;
  channel_->Send(call_, Request(type, false, resp.nonce(), nack));
  if (!nack.empty()) {
    ++stats_.nacks;
    stats_.last_nack = nack;
    ZT_WARN("xds", "NACK of a {} response ({} resources, {} removed): {}", type,
            resp.resources_size(), resp.removed_resources_size(), nack);
    return;
  }
  ++stats_.acks;
  ZT_DEBUG("xds", "ACK of a {} response: {} resources, {} removed", type, resp.resources_size(),
           resp.removed_resources_size());
  if (address) address_acked_ = true;
  if (authorization) authorization_acked_ = true;
  if (!synced_ && address_acked_ && authorization_acked_) {
    synced_ = true;
    ZT_INFO("xds", "synced with {}: {} workloads, {} services, {} policies",
            options_.channel.address, workloads_.size(), services_.size(), policies_.size());
    if (on_synced_) on_synced_();
  }
  backoff_ = options_.initial_backoff;  // a working stream
}

std::shared_ptr<const state::State> XdsClient::Build(
    const std::map<std::string, state::Workload>& workloads,
    const std::map<std::string, state::Service>& services,
    const std::map<std::string, state::Policy>& policies, std::string* error) {
  // istiod may send two workloads with one address (a pod IP reused while the old pod
  // terminates, a WorkloadEntry on a pod's IP) or two services with one VIP; Istio's
  // ztunnel lets the newest claimant have it. So do we, rather than NACK a valid push.
  const auto newest_first = [this](const auto& map) {
    std::vector<const typename std::decay_t<decltype(map)>::mapped_type*> out;
    std::vector<std::pair<uint64_t, const std::string*>> order;
    for (const auto& [name, v] : map) {
      auto it = updated_.find(name);
      order.emplace_back(it == updated_.end() ? 0 : it->second, &name);
    }
    std::sort(order.begin(), order.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& [seq, name] : order) out.push_back(&map.at(*name));
    return out;
  };
  std::set<std::pair<std::string, IpAddr>> taken;
  std::vector<state::Workload> wl;
  for (const state::Workload* w : newest_first(workloads)) {
    state::Workload copy = *w;
    std::erase_if(copy.ips, [&](const IpAddr& ip) {
      if (taken.emplace(copy.network, ip).second) return false;
      ZT_DEBUG("xds", "workload {}: address {} belongs to a newer workload", copy.uid,
               ip.ToString());
      return true;
    });
    wl.push_back(std::move(copy));
  }
  taken.clear();
  std::vector<state::Service> sv;
  for (const state::Service* s : newest_first(services)) {
    state::Service copy = *s;
    std::erase_if(copy.vips, [&](const state::NetworkAddress& vip) {
      if (taken.emplace(vip.network, vip.ip).second) return false;
      ZT_DEBUG("xds", "service {}: VIP {} belongs to a newer service", copy.Key(),
               vip.ip.ToString());
      return true;
    });
    sv.push_back(std::move(copy));
  }
  std::vector<state::Policy> pl;
  for (const auto& [n, p] : policies) pl.push_back(p);
  return state::State::Build(std::move(wl), std::move(sv), std::move(pl), error);
}

void XdsClient::StreamEnded(const h2::GrpcStatus& status) {
  stats_.last_error = status.ToString();
  // Destroyed after this callback returns (we are inside it).
  loop_.Defer([s = std::shared_ptr<Stream>(std::move(stream_))] {});
  call_ = 0;
  if (Resets(status)) backoff_ = options_.initial_backoff;
  const auto wait = backoff_;
  backoff_ = std::min(backoff_ * 2, options_.max_backoff);
  ZT_WARN("xds", "the stream to {} ended ({}); reconnecting in {}, keeping the last state",
          options_.channel.address, status.ToString(), FormatDuration(wait));
  retry_ = std::make_unique<io::Timer>(loop_);
  retry_->Start(wait, [this](bool fired) {
    if (fired) OpenStream();
  });
}

}  // namespace zt::control
