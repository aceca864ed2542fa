// CertManager: one certificate per workload identity this node serves, refreshed at
// half its lifetime and kept serving while the CA is unreachable (retries back off
// from 0.5 s to 150 s), as DESIGN.md §4 asks. It lives on the control thread and
// publishes every change as a new CertSet; workers only ever read the published set.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ztunnel/identity/ca.h"
#include "ztunnel/identity/cert_store.h"

namespace zt::identity {

/// CertManager is not thread-safe: every call, and every CA answer, is on one thread.
class CertManager {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;
  static constexpr std::chrono::milliseconds kInitialBackoff{500};
  static constexpr std::chrono::milliseconds kMaxBackoff{150'000};

  /// `ca` answers on this manager's thread; `store` receives every change and must
  /// outlive the manager; `clock` is injectable for tests.
  CertManager(std::shared_ptr<CaClient> ca, CertStore& store,
              Clock clock = std::chrono::system_clock::now);
  ~CertManager();

  /// Track starts tracking `id` (no-op if tracked); the next Poll asks the CA.
  void Track(const tls::SpiffeId& id);
  /// Forget stops tracking an identity (its last pod left this node); an answer still
  /// in flight for it is dropped.
  void Forget(const tls::SpiffeId& id);
  /// Poll asks the CA for every identity that is due (new, half-life reached, or a
  /// failed attempt's backoff over) and not already asked; it returns when the next
  /// one will be due (time_point::max() when nothing is tracked or all are in flight).
  std::chrono::system_clock::time_point Poll();
  /// NextDue is when Poll next has work: the earliest due identity not in flight
  /// (time_point::max() when there is none).
  std::chrono::system_clock::time_point NextDue() const;
  /// Current returns the identity's certificate; null if none yet.
  std::shared_ptr<const WorkloadCert> Current(const tls::SpiffeId& id) const;
  /// Tracked reports whether `id` is tracked.
  bool Tracked(const tls::SpiffeId& id) const { return entries_.count(id.ToString()) != 0; }
  /// Status reports every tracked identity.
  std::vector<std::pair<tls::SpiffeId, CertStatus>> Status() const;
  /// set_on_published runs after each change is published (a certificate issued or
  /// renewed, an attempt failed, an identity tracked or forgotten).
  void set_on_published(std::function<void()> fn) { on_published_ = std::move(fn); }
  /// set_on_attempt runs after each CA answer for a tracked identity, with its status.
  void set_on_attempt(std::function<void(const tls::SpiffeId&, const CertStatus&)> fn) {
    on_attempt_ = std::move(fn);
  }
  /// in_flight counts the CA requests not answered yet.
  size_t in_flight() const;

  /// Batch defers publishing while it lives: the Track, Forget and Poll calls of one
  /// reconcile publish one set at its end instead of one per call (a node with 1,000
  /// identities would otherwise copy the set 1,000 times at start). Nests.
  class Batch {
   public:
    explicit Batch(CertManager& m) : m_(m), outer_(std::exchange(m.deferring_, true)) {}
    ~Batch() {
      m_.deferring_ = outer_;
      if (!outer_ && m_.dirty_) m_.Publish();
    }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

   private:
    CertManager& m_;
    bool outer_;
  };

 private:
  struct Entry {
    tls::SpiffeId id;
    std::shared_ptr<const WorkloadCert> cert;
    CertStatus status;
    std::chrono::milliseconds backoff{kInitialBackoff};
    bool in_flight = false;
    uint64_t generation = 0;  // which Track this entry is: a stale answer is dropped
  };
  // Attempt asks the CA for `key`'s identity; the answer lands in Finish.
  void Attempt(const std::string& key);
  void Finish(const std::string& key, uint64_t generation, Result<tls::Credentials> issued,
              std::string reason);
  void Publish();

  std::shared_ptr<CaClient> ca_;
  CertStore& store_;
  Clock clock_;
  std::map<std::string, Entry> entries_;  // by SPIFFE URI
  uint64_t next_generation_ = 1;
  std::function<void()> on_published_;
  std::function<void(const tls::SpiffeId&, const CertStatus&)> on_attempt_;
  // CA answers hold a weak reference: one arriving after the manager is gone is dropped.
  std::shared_ptr<CertManager*> self_;
  bool deferring_ = false;  // inside a Batch (Poll is one): publish once at its end
  bool dirty_ = false;
};

}  // namespace zt::identity
