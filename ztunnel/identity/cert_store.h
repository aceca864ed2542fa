// CertSet and CertStore: the certificates this node holds, published to the workers
// the way the state snapshot is (an immutable set behind an atomic shared_ptr), so a
// worker finds its certificate with no lock and never calls a CA.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ztunnel/tls/context.h"
#include "ztunnel/tls/spiffe.h"
#include "ztunnel/tls/x509.h"

namespace zt::identity {

/// WorkloadCert is one identity's credentials and the TLS contexts built on them.
/// Immutable once published; holders keep it alive with the shared_ptr.
struct WorkloadCert {
  tls::SpiffeId id;
  tls::Credentials credentials;
  /// roots are the trust anchors its contexts verify peers against (the CA's).
  std::vector<tls::Certificate> roots;
  std::shared_ptr<tls::TlsContext> client;  // for connections this identity opens
  std::shared_ptr<tls::TlsContext> server;  // for connections to this identity
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  /// received is when we got it; refresh is due half-way from here to not_after (a
  /// CA may backdate not_before for clock skew, which must not pull the refresh in).
  std::chrono::system_clock::time_point received;
};

/// CertStatus describes one identity for operators (config dump, readiness).
struct CertStatus {
  enum class State : uint8_t { kPending, kValid, kRefreshFailing } state = State::kPending;
  std::chrono::system_clock::time_point not_after{};
  std::chrono::system_clock::time_point next_attempt{};
  /// failures counts failed attempts since the last success.
  int failures = 0;
  /// attempts_failed counts every failed attempt ever: a waiter that saw N fails when
  /// it becomes N+1 (failures resets on success, this never does).
  uint64_t attempts_failed = 0;
  std::string last_error;
};

/// CertEntry is one tracked identity as published: its certificate (null until the
/// first issue succeeds) and its status.
struct CertEntry {
  std::shared_ptr<const WorkloadCert> cert;
  CertStatus status;
};

/// CertSet is an immutable snapshot of every identity this node tracks, by SPIFFE URI.
class CertSet {
 public:
  CertSet() = default;
  explicit CertSet(std::map<std::string, CertEntry> entries) : entries_(std::move(entries)) {}
  /// Find is the entry of `id`, or null when it is not tracked.
  const CertEntry* Find(const tls::SpiffeId& id) const { return Find(id.ToString()); }
  /// Find by SPIFFE URI.
  const CertEntry* Find(const std::string& uri) const {
    auto it = entries_.find(uri);
    return it == entries_.end() ? nullptr : &it->second;
  }
  /// entries are every tracked identity, by SPIFFE URI.
  const std::map<std::string, CertEntry>& entries() const { return entries_; }

 private:
  std::map<std::string, CertEntry> entries_;
};

/// CertStore holds the current CertSet; Load and Publish are safe from any thread.
class CertStore {
 public:
  CertStore() : current_(std::make_shared<const CertSet>()) {}
  /// Load returns the current set (never null).
  std::shared_ptr<const CertSet> Load() const { return current_.load(std::memory_order_acquire); }
  /// Publish replaces the set atomically.
  void Publish(std::shared_ptr<const CertSet> next) {
    current_.store(std::move(next), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const CertSet>> current_;
};

}  // namespace zt::identity
