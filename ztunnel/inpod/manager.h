// InpodManager: what an enrolled pod means to the node process (DESIGN.md §2, §4):
// listeners on 15001, 15006 and 15008 inside the pod's network namespace, marked so
// the pod's rules let them be, served by every worker.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "ztunnel/admin/config_dump.h"
#include "ztunnel/admin/readiness.h"
#include "ztunnel/inpod/zds_client.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/worker.h"
#include "ztunnel/state/state.h"

namespace zt::inpod {

/// InpodManager is called from the ZDS client's thread only (Summary: from any).
class InpodManager : public ZdsHandler {
 public:
  /// `workers` (running) and `state` must outlive this object. `node` is this node's
  /// name: a pod is served only if the config has its workload on this node.
  /// A removed pod's live connections get `grace` to finish before they are closed.
  /// Until the first snapshot, and while a pod waits to be set up, `readiness` (may be
  /// null; must outlive this object) has a pending task.
  InpodManager(std::vector<proxy::Worker*> workers, const state::StateStore& state,
               std::string node, uint32_t mark, std::chrono::milliseconds grace,
               admin::Readiness* readiness = nullptr)
      : workers_(std::move(workers)),
        state_(state),
        node_(std::move(node)),
        mark_(mark),
        grace_(grace),
        readiness_(readiness) {
    if (readiness_ != nullptr) readiness_->Set(kSnapshotTask, true);
  }
  /// kSnapshotTask is pending until the agent's first snapshot has been applied.
  static constexpr const char* kSnapshotTask = "ZDS snapshot";
  ~InpodManager() override;

  std::string AddPod(const PodInfo& pod, io::UniqueFd netns) override;
  std::string KeepPod(const std::string& uid) override;
  std::string DelPod(const std::string& uid) override;
  void SnapshotDone(const std::set<std::string>& uids) override;

  void Tick() override;
  void Connected(bool up) override;

  /// pods counts the pods being served.
  size_t pods() const { return pods_.size(); }
  /// pending counts pods the agent enrolled that could not be set up yet: they are
  /// retried every 5 s (and keep readiness pending).
  size_t pending() const { return pending_.size(); }
  /// set_metrics reports pods started and stopped to `m` (must outlive this object).
  void set_metrics(metrics::Metrics* m) { metrics_ = m; }
  /// set_max_pending bounds the pods kept for retry (0: unbounded). A misbehaving agent
  /// enrolling thousands of unknown pods would otherwise make the node hold a netns fd
  /// and a retry for each; past the bound they are NACKed and not kept.
  void set_max_pending(size_t n) { max_pending_ = n; }
  /// set_require_workload(false) serves a pod before its workload is in the state: with
  /// istiod the pod is enrolled at sandbox creation, before it has the IP istiod needs
  /// to send it (as Istio's ztunnel does, the workload and its certificate follow).
  /// With the local config the agent writes the pod first, so it is required (default).
  void set_require_workload(bool require) { require_workload_ = require; }
  /// set_config_refresh gives a way to read a changed config at once (called on this
  /// thread when an Add names a workload the config does not have yet).
  void set_config_refresh(std::function<void()> refresh) { refresh_config_ = std::move(refresh); }
  /// ConfigChanged says a new config was published: pending pods are retried on the
  /// next Tick rather than at their 5 s retry. Thread-safe.
  void ConfigChanged() { config_changed_.store(true, std::memory_order_release); }
  /// Summary lists served and pending pods for the config dump; thread-safe.
  std::vector<admin::PodSummary> Summary() const;

 private:
  struct Pod {
    PodInfo info;
    io::UniqueFd netns;
    std::vector<io::UniqueFd> listeners;  // what the workers accept on, one per kind and family
  };
  // Stop removes the pod from every worker and waits until they let go of it.
  void Stop(Pod& pod);
  // FindWorkload is the pod's workload on this node in `s`, or null.
  const state::Workload* FindWorkload(const state::State& s, const PodInfo& info) const;
  // Setup serves the pod, or says why it cannot.
  std::string Setup(const PodInfo& info, io::UniqueFd& netns);

  struct Pending {
    PodInfo info;
    io::UniqueFd netns;
    std::string error;
    std::chrono::steady_clock::time_point next_try;
    int attempts = 1;
  };

  std::vector<proxy::Worker*> workers_;
  const state::StateStore& state_;
  std::string node_;
  uint32_t mark_;
  std::chrono::milliseconds grace_;
  admin::Readiness* readiness_;
  // SetPending keeps the readiness task of a pod waiting to be set up.
  void SetPending(const std::string& uid, bool pending) {
    if (readiness_ != nullptr) readiness_->Set("pod " + uid + " set up", pending);
  }
  std::map<std::string, Pod> pods_;
  std::map<std::string, Pending> pending_;
  metrics::Metrics* metrics_ = nullptr;
  size_t max_pending_ = 256;
  bool require_workload_ = true;
  std::function<void()> refresh_config_;
  std::atomic<bool> config_changed_{false};
  // A copy of pods_ and pending_ for other threads, refreshed after every change.
  struct PublishOnExit {
    InpodManager* self;
    ~PublishOnExit() { self->Publish(); }
  };
  void Publish();
  mutable std::mutex summary_mu_;
  std::vector<admin::PodSummary> summary_;
};

}  // namespace zt::inpod
