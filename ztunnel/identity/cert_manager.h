// CertManager: one certificate per workload identity this node serves, cached,
// refreshed at half its lifetime, and kept serving while the CA is unreachable
// (retries back off from 0.5 s to 150 s), as DESIGN.md §4 asks.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ztunnel/identity/ca.h"

namespace zt::identity {

/// WorkloadCert is one identity's credentials and the TLS contexts built on them.
/// Immutable once published; holders keep it alive with the shared_ptr.
struct WorkloadCert {
  tls::SpiffeId id;
  tls::Credentials credentials;
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
  int failures = 0;
  std::string last_error;
};

/// CertManager is thread-safe. The CA is called without the lock held.
class CertManager {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;
  static constexpr std::chrono::milliseconds kInitialBackoff{500};
  static constexpr std::chrono::milliseconds kMaxBackoff{150'000};

  /// `ca` must be thread-safe; `clock` is injectable for tests.
  explicit CertManager(std::shared_ptr<CaClient> ca, Clock clock = std::chrono::system_clock::now);

  /// Fetch returns the identity's certificate, issuing it on first use. When issuing
  /// fails the identity is still tracked, and Poll keeps retrying with backoff; `*why`
  /// (if given) says what went wrong.
  Result<std::shared_ptr<const WorkloadCert>> Fetch(const tls::SpiffeId& id,
                                                    std::string* why = nullptr);
  /// Current returns the identity's certificate without issuing; null if none yet.
  std::shared_ptr<const WorkloadCert> Current(const tls::SpiffeId& id) const;
  /// Poll refreshes or retries every identity that is due now and returns when the
  /// next one will be due (time_point::max() when nothing is tracked).
  std::chrono::system_clock::time_point Poll();
  /// Forget stops tracking an identity (its last pod left this node).
  void Forget(const tls::SpiffeId& id);
  /// Status reports every tracked identity.
  std::vector<std::pair<tls::SpiffeId, CertStatus>> Status() const;

 private:
  struct Entry {
    std::shared_ptr<const WorkloadCert> cert;
    CertStatus status;
    std::chrono::milliseconds backoff{kInitialBackoff};
    bool in_flight = false;
  };
  // Attempt asks the CA once for `id` and records the outcome.
  Result<std::shared_ptr<const WorkloadCert>> Attempt(const tls::SpiffeId& id,
                                                      std::string* why_out = nullptr);

  std::shared_ptr<CaClient> ca_;
  Clock clock_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // by SPIFFE URI
};

}  // namespace zt::identity
