// CertView: one worker's copy of the published certificates, and the connections
// waiting for one that is not issued yet. Lookups take no lock (the worker's own
// shared_ptr to an immutable CertSet); a miss never calls a CA: the connection is
// parked here until the control thread publishes the certificate, a failed attempt
// for it, or the wait times out. Its neighbours on the worker run on meanwhile.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "ztunnel/identity/cert_store.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"

namespace zt::proxy {

/// CertView lives on one worker's loop; every call is on that loop's thread.
class CertView {
 public:
  /// CertReady receives the certificate, or null and why there is none.
  using CertReady =
      std::function<void(std::shared_ptr<const identity::WorkloadCert> cert, std::string error)>;

  /// `store` and `loop` outlive the view; a waiter gives up after `max_wait`.
  CertView(const identity::CertStore& store, io::Loop& loop, std::chrono::milliseconds max_wait);
  /// Waiters still parked are dropped without being called (the loop is ending).
  ~CertView();
  CertView(const CertView&) = delete;
  CertView& operator=(const CertView&) = delete;

  /// Find returns `id`'s certificate, or null when none is published yet.
  std::shared_ptr<const identity::WorkloadCert> Find(const tls::SpiffeId& id) const;
  /// Wait calls `ready` once `id` has a certificate: inside Wait if it has one now,
  /// else when it is published. It calls `ready(nullptr, why)` when an attempt to
  /// issue it fails after the wait began, when the wait exceeds `max_wait`, or on
  /// FailAll.
  void Wait(const tls::SpiffeId& id, CertReady ready);
  /// Refresh takes the store's current set and wakes the waiters it answers.
  void Refresh();
  /// FailAll ends every wait with `why` (the worker is past its drain deadline).
  void FailAll(const std::string& why);
  /// waiting counts the parked waiters.
  size_t waiting() const { return waiters_.size(); }

 private:
  struct Waiter {
    tls::SpiffeId id;
    std::string uri;
    uint64_t failures_seen = 0;  // the entry's attempts_failed when the wait began
    CertReady ready;
    std::unique_ptr<io::Timer> timer;
  };
  // TakeAnswered moves out the waiters the current set answers, with their answers.
  void Answer(uint64_t key, std::shared_ptr<const identity::WorkloadCert> cert, std::string error);

  const identity::CertStore& store_;
  io::Loop& loop_;
  std::chrono::milliseconds max_wait_;
  std::shared_ptr<const identity::CertSet> current_;
  std::map<uint64_t, Waiter> waiters_;
  uint64_t next_key_ = 0;
};

/// AwaitCert is Wait for code on a fiber: it returns `id`'s certificate, suspending the
/// fiber while it waits, or null with `*error` set. Call only from a fiber on the
/// view's loop.
std::shared_ptr<const identity::WorkloadCert> AwaitCert(CertView& view, const tls::SpiffeId& id,
                                                        std::string* error);

}  // namespace zt::proxy
