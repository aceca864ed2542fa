#include "ztunnel/inpod/manager.h"

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "ztunnel/core/log.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/proxy/ports.h"

namespace zt::inpod {
InpodManager::~InpodManager() {
  for (auto& [uid, pod] : pods_) Stop(pod);
}

constexpr std::chrono::seconds kRetryEvery{5};

std::vector<admin::PodSummary> InpodManager::Summary() const {
  std::lock_guard lock(summary_mu_);
  return summary_;
}

void InpodManager::Publish() {
  std::vector<admin::PodSummary> out;
  for (const auto& [uid, pod] : pods_) {
    out.push_back(
        {uid, pod.info.name, pod.info.namespace_name, pod.info.service_account, true, ""});
  }
  for (const auto& [uid, p] : pending_) {
    out.push_back(
        {uid, p.info.name, p.info.namespace_name, p.info.service_account, false, p.error});
  }
  std::lock_guard lock(summary_mu_);
  summary_ = std::move(out);
}

std::string InpodManager::AddPod(const PodInfo& info, io::UniqueFd netns) {
  PublishOnExit publish{this};
  if (auto it = pods_.find(info.uid); it != pods_.end()) {
    if (io::InodeOf(it->second.netns.get()) == io::InodeOf(netns.get()))
      return "";       // already served
    Stop(it->second);  // the same uid in a new namespace: the pod was recreated
    pods_.erase(it);
  }
  pending_.erase(info.uid);
  SetPending(info.uid, false);
  std::string error = Setup(info, netns);
  if (error.empty()) return "";
  if (max_pending_ != 0 && pending_.size() >= max_pending_) {
    // Not kept: the netns fd closes with this call and nothing retries it.
    if (metrics_ != nullptr) metrics_->overload().Refused(metrics::Refusal::kPendingPods);
    return error + "; not kept for retry: " + std::to_string(pending_.size()) +
           " pods already wait to be set up (--max-pending-pods)";
  }
  SetPending(info.uid, true);
  // NACKed, but not forgotten: the config may name the workload soon.
  pending_[info.uid] =
      Pending{info, std::move(netns), error, std::chrono::steady_clock::now() + kRetryEvery};
  return error + " (retrying every 5 s)";
}

const state::Workload* InpodManager::FindWorkload(const state::State& s,
                                                  const PodInfo& info) const {
  for (const state::Workload& w : s.workloads()) {
    if (w.namespace_name == info.namespace_name && w.name == info.name &&
        (w.node.empty() || w.node == node_)) {
      return &w;
    }
  }
  return nullptr;
}

void InpodManager::Tick() {
  PublishOnExit publish{this};
  const auto now = std::chrono::steady_clock::now();
  // A new config may name what the pending pods were waiting for: retry them now.
  const bool config_changed = config_changed_.exchange(false, std::memory_order_acq_rel);
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& p = it->second;
    if (now < p.next_try && !config_changed) {
      ++it;
      continue;
    }
    std::string error = Setup(p.info, p.netns);
    if (error.empty()) {
      ZT_INFO("inpod", "pod {} set up after {} attempt(s)", p.info.uid, p.attempts + 1);
      SetPending(p.info.uid, false);
      it = pending_.erase(it);
      continue;
    }
    if (error != p.error) ZT_WARN("inpod", "pod {} still cannot be set up: {}", p.info.uid, error);
    p.error = error;
    ++p.attempts;
    p.next_try = now + kRetryEvery;
    ++it;
  }
}

std::string InpodManager::Setup(const PodInfo& info, io::UniqueFd& netns) {
  // The pod must be a workload of this node in the config, or it has no identity.
  auto snapshot = state_.Load();
  const state::Workload* workload = FindWorkload(*snapshot, info);
  if (workload == nullptr && refresh_config_) {
    // The Kubernetes agent writes a new pod into the config just before it enrolls
    // it: read the file now rather than NACK and wait for the next poll.
    refresh_config_();
    snapshot = state_.Load();
    workload = FindWorkload(*snapshot, info);
  }
  if (workload == nullptr && require_workload_) {
    return "no workload " + info.namespace_name + "/" + info.name + " on node \"" + node_ +
           "\" in the config";
  }
  if (workload != nullptr && !info.service_account.empty() &&
      workload->service_account != info.service_account) {
    return "pod " + info.namespace_name + "/" + info.name + " runs as service account \"" +
           info.service_account + "\" but the config says \"" + workload->service_account + "\"";
  }
  Pod pod{info, {}, {}};
  const int netns_fd = netns.get();
  proxy::PodListeners listeners;
  // IPv4 always; IPv6 when the pod has it (its rules capture IPv6 too). V6ONLY lets
  // [::]:P sit beside 0.0.0.0:P.
  struct Want {
    std::string addr;
    proxy::Listener kind;
    bool v6;
  };
  const Want wants[] = {
      {"127.0.0.1:" + std::to_string(proxy::kOutboundPort), proxy::Listener::kOutbound, false},
      {"0.0.0.0:" + std::to_string(proxy::kInboundHbonePort), proxy::Listener::kInboundHbone,
       false},
      {"0.0.0.0:" + std::to_string(proxy::kInboundPlaintextPort),
       proxy::Listener::kInboundPlaintext, false},
      {"[::1]:" + std::to_string(proxy::kOutboundPort), proxy::Listener::kOutbound, true},
      {"[::]:" + std::to_string(proxy::kInboundHbonePort), proxy::Listener::kInboundHbone, true},
      {"[::]:" + std::to_string(proxy::kInboundPlaintextPort), proxy::Listener::kInboundPlaintext,
       true},
  };
  bool v6_missing = false;
  for (const Want& want : wants) {
    if (want.v6 && v6_missing) continue;
    const io::ListenOptions options{
        .backlog = 4096, .reuse_port = true, .mark = mark_, .netns_fd = netns_fd, .v6only = true};
    auto l = io::Listen(*io::SocketAddress::Parse(want.addr), options);
    if (!l) {
      const int sys = l.error().sys;
      if (want.v6 && (sys == EADDRNOTAVAIL || sys == EAFNOSUPPORT)) {
        v6_missing = true;  // no IPv6 in this pod
        continue;
      }
      return "cannot listen on " + want.addr +
             " in the pod's network namespace: " + l.error().Message();
    }
    listeners.push_back({l->get(), want.kind});
    pod.listeners.push_back(std::move(l).value());
  }
  pod.netns = std::move(netns);
  for (proxy::Worker* w : workers_) w->AddPod(info.uid, listeners);
  if (metrics_ != nullptr) metrics_->ProxyStarted();
  ZT_INFO("inpod", "serving pod {} ({}/{}, {}) in its network namespace", info.uid,
          info.namespace_name, info.name,
          workload != nullptr ? workload->uid : "its workload has not arrived from istiod yet");
  pods_.emplace(info.uid, std::move(pod));
  return "";
}

std::string InpodManager::KeepPod(const std::string& uid) {
  // Acked either way, as Istio's ztunnel does: an agent that restarted keeps pods it
  // knows are enrolled; one this process never saw has nothing to keep.
  if (pods_.count(uid) == 0 && pending_.count(uid) == 0) {
    ZT_INFO("inpod", "keep for pod {}, which this process does not serve: nothing to keep", uid);
  }
  return "";
}

std::string InpodManager::DelPod(const std::string& uid) {
  PublishOnExit publish{this};
  if (pending_.erase(uid) != 0) {
    SetPending(uid, false);
    return "";  // never set up: nothing to stop
  }
  auto it = pods_.find(uid);
  if (it == pods_.end()) {
    // Acked, as Istio's ztunnel does: the pod is not served, which is what was asked.
    ZT_DEBUG("inpod", "delete for pod {}, which this process does not serve", uid);
    return "";
  }
  Stop(it->second);
  ZT_INFO("inpod", "stopped serving pod {} ({}/{})", uid, it->second.info.namespace_name,
          it->second.info.name);
  pods_.erase(it);
  return "";
}

void InpodManager::Connected(bool up) {
  if (metrics_ != nullptr) metrics_->AgentConnected(up);
}

void InpodManager::SnapshotDone(const std::set<std::string>& uids) {
  PublishOnExit publish{this};
  std::vector<std::string> gone;
  for (const auto& [uid, pod] : pods_) {
    if (uids.count(uid) == 0) gone.push_back(uid);
  }
  for (const auto& [uid, pod] : pending_) {
    if (uids.count(uid) == 0) gone.push_back(uid);
  }
  for (const std::string& uid : gone) {
    ZT_INFO("inpod", "pod {} is not in the agent's snapshot: draining it", uid);
    (void)DelPod(uid);
  }
  if (readiness_ != nullptr) readiness_->Set(kSnapshotTask, false);
}

void InpodManager::Stop(Pod& pod) {
  if (metrics_ != nullptr) metrics_->ProxyStopped();
  // Shared: a worker answering after the timeout below must find it alive.
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
  };
  auto wait = std::make_shared<Wait>();
  wait->left = workers_.size();
  for (proxy::Worker* w : workers_) {
    w->RemovePod(pod.info.uid, io::InodeOf(pod.netns.get()), grace_, [wait] {
      std::lock_guard lock(wait->mu);
      if (--wait->left == 0) wait->cv.notify_all();
    });
  }
  std::unique_lock lock(wait->mu);
  // The workers answer within a loop turn; a stuck one must not hang enrollment for
  // ever, but the listeners then stay open (leaked) rather than closed under it.
  if (!wait->cv.wait_for(lock, std::chrono::seconds(10), [&] { return wait->left == 0; })) {
    ZT_ERROR("inpod", "workers did not release pod {} within 10 s", pod.info.uid);
    for (io::UniqueFd& l : pod.listeners) (void)l.release();
  }
}

}  // namespace zt::inpod
