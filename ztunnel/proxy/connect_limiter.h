// ConnectLimiter: bounds one worker's upstream connects in flight, in all and per
// source (RELIABILITY.md "Overload"). A pending connect holds two file descriptors (the
// client's socket and ours) for up to the connect timeout, so without a bound one pod
// connecting to an address that never answers can exhaust the process' descriptors
// and take every other pod down with it. Past a bound a connect is refused at once
// (the client sees a reset, as from a closed port) and counted.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

#include "ztunnel/core/log_limiter.h"
#include "ztunnel/core/result.h"
#include "ztunnel/metrics/overload.h"

namespace zt::proxy {

/// ConnectLimits are the bounds; 0 means unbounded.
struct ConnectLimits {
  size_t per_worker = 2048;
  size_t per_source = 1024;
};

/// ConnectLimiter belongs to one worker's loop (no lock): use it on that thread only.
class ConnectLimiter {
 public:
  /// `overload` (may be null) must outlive this object.
  explicit ConnectLimiter(ConnectLimits limits, metrics::OverloadMetrics* overload = nullptr)
      : limits_(limits), overload_(overload) {}

  /// Permit is one pending connect's slot; destroying it frees the slot. The limiter
  /// must outlive it.
  class Permit {
   public:
    Permit() = default;
    Permit(Permit&& o) noexcept : limiter_(o.limiter_), source_(std::move(o.source_)) {
      o.limiter_ = nullptr;
    }
    Permit& operator=(Permit&& o) noexcept;
    ~Permit() { Release(); }
    void Release();

   private:
    friend class ConnectLimiter;
    ConnectLimiter* limiter_ = nullptr;
    std::string source_;
  };

  /// Acquire takes a slot for a connect on behalf of `source` (the client's address or
  /// identity); kOverloaded, counted and logged (rate-limited), past a bound.
  Result<Permit> Acquire(const std::string& source);

  /// pending is the number of connects in flight; pending(source) those of one source.
  size_t pending() const { return pending_; }
  size_t pending(const std::string& source) const;
  const ConnectLimits& limits() const { return limits_; }

 private:
  void Free(const std::string& source);

  ConnectLimits limits_;
  metrics::OverloadMetrics* overload_;
  size_t pending_ = 0;
  std::unordered_map<std::string, size_t> by_source_;
  log::LogLimiter log_limiter_;
};

}  // namespace zt::proxy
