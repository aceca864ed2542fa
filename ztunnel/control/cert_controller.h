// CertController: the certificates of the workloads this node serves, kept on the
// control thread. It tracks exactly the identities of the node's workloads in the
// current state, asks the CA for them (a slow or remote CA answers later; nothing
// waits for it here), renews them at half-life, and publishes every change to the
// CertStore the workers read.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "ztunnel/identity/ca.h"
#include "ztunnel/identity/cert_manager.h"
#include "ztunnel/identity/cert_store.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/state/state.h"

namespace zt::control {

/// CertController runs on one loop (the control thread's); every call is on it.
class CertController {
 public:
  /// `loop` and `store` outlive the controller; `node` names this node's workloads.
  CertController(io::Loop& loop, std::shared_ptr<identity::CaClient> ca, identity::CertStore& store,
                 std::string node);
  ~CertController();

  /// Reconcile makes the tracked identities those of `s`'s workloads on this node:
  /// new ones are asked for at once, ones no workload has any more are forgotten.
  /// Returns how many of `s`'s workloads are on this node.
  size_t Reconcile(const state::State& s);
  /// set_on_published runs after each published change (the fan-out to workers).
  void set_on_published(std::function<void()> fn) { on_published_ = std::move(fn); }
  /// manager is the certificate manager (status for the config dump and logs).
  const identity::CertManager& manager() const { return manager_; }

 private:
  // Schedule arms the timer for the next due renewal or retry.
  void Schedule();
  void Published();
  // Attempted logs a CA answer: the first failure and every tenth, and the recovery.
  void Attempted(const tls::SpiffeId& id, const identity::CertStatus& st);

  io::Loop& loop_;
  std::string node_;
  identity::CertManager manager_;
  std::unique_ptr<io::Timer> timer_;  // the next renewal or retry
  std::chrono::system_clock::time_point armed_for_ = std::chrono::system_clock::time_point::max();
  std::set<std::string> tracked_;     // SPIFFE URIs
  std::set<std::string> recovering_;  // identities whose last attempt failed
  std::function<void()> on_published_;
  bool schedule_deferred_ = false;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

}  // namespace zt::control
