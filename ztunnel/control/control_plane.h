// ControlPlane: everything of the node process that is not the data path, on a
// thread of its own with its own io_uring loop. It loads the local config and
// re-reads it when it changes, keeps the certificates of this node's workloads (the
// CA answers on this thread, never on a worker), gives heap back after bursts, and
// publishes immutable inputs for the workers: the state snapshot and the certificate
// set. Workers never call into it; they read what it published.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "ztunnel/control/istio_ca.h"
#include "ztunnel/control/xds_client.h"
#include "ztunnel/core/result.h"
#include "ztunnel/identity/ca.h"
#include "ztunnel/identity/cert_manager.h"
#include "ztunnel/identity/cert_store.h"
#include "ztunnel/state/state.h"

namespace zt::control {

/// ControlOptions configure the control plane.
struct ControlOptions {
  /// local_config is the local config file (Istio's LOCAL_XDS_PATH format); unused
  /// when `xds` is set.
  std::string local_config;
  /// node is this node's name: its workloads get certificates here.
  std::string node;
  /// config_poll is how often the file is checked (a stat): a policy written by the
  /// Kubernetes agent must reach live connections well within a second.
  std::chrono::milliseconds config_poll{100};
  /// xds, when set, takes the state from istiod over delta xDS instead of the file.
  std::optional<XdsOptions> xds;
  /// istio_ca, when set, takes certificates from Istio's CA instead of `ca`.
  std::optional<IstioCaOptions> istio_ca;
};

/// ControlHooks are how the control plane tells the rest of the process what it did.
/// Each runs on the control thread and must not block for long.
struct ControlHooks {
  /// config_reloaded: a changed local config was applied (true) or rejected (false).
  std::function<void(bool applied)> config_reloaded;
  /// state_published: a new state snapshot is in state() (tell the workers).
  std::function<void()> state_published;
  /// certs_published: a new certificate set is in certs() (tell the workers).
  std::function<void()> certs_published;
  /// synced: with xDS, the first full push was accepted (readiness).
  std::function<void()> synced;
};

/// CertReport is one identity's status, for the config dump.
struct CertReport {
  tls::SpiffeId id;
  identity::CertStatus status;
};

/// ControlPlane: Start, then read state() and certs() from any thread.
class ControlPlane {
 public:
  /// Start loads the local config and issues the certificates of this node's workloads
  /// (a local CA answers at once; a remote one later), then runs the control thread.
  /// With xDS it starts the stream and returns at once (the state is empty until the
  /// first push: see ControlHooks::synced). `ca` is unused with `istio_ca`. On failure
  /// `*error` names the file and the problem.
  static std::unique_ptr<ControlPlane> Start(ControlOptions options,
                                             std::shared_ptr<identity::CaClient> ca,
                                             std::string* error);
  /// The destructor stops the control thread.
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  /// state is the published state snapshot store.
  const state::StateStore& state() const { return state_; }
  /// certs is the published certificate store.
  const identity::CertStore& certs() const { return certs_; }
  /// local_workloads counts the first config's workloads on this node.
  size_t local_workloads() const { return local_workloads_; }
  /// synced is true once the state is complete: the file was read, or xDS synced.
  bool synced() const { return synced_.load(); }
  /// SetHooks replaces the hooks; from any thread but the control thread. It returns
  /// once the control thread uses them, and calls the publish hooks once (the
  /// listeners catch up with anything published before).
  void SetHooks(ControlHooks hooks);
  /// ReloadNow checks the local config at once and returns after a change (if any) is
  /// published: the ZDS thread calls it for a pod the agent just wrote into the file.
  /// From any thread but the control thread.
  void ReloadNow();
  /// Stop ends the control thread (idempotent).
  void Stop();

 private:
  class Runner;
  ControlPlane() = default;
  void Run(std::function<void(bool ok)> started, ControlOptions options,
           std::shared_ptr<identity::CaClient> ca, std::string* error);
  // RunOnControl runs fn on the control thread and waits for it.
  void RunOnControl(std::function<void()> fn);

  state::StateStore state_;
  identity::CertStore certs_;
  size_t local_workloads_ = 0;
  std::atomic<bool> synced_{false};
  Runner* runner_ = nullptr;  // lives on the control thread's stack while it runs
  std::thread thread_;
};

}  // namespace zt::control
