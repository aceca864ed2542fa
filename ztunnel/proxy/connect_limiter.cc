#include "ztunnel/proxy/connect_limiter.h"

#include "ztunnel/core/log.h"

namespace zt::proxy {

ConnectLimiter::Permit& ConnectLimiter::Permit::operator=(Permit&& o) noexcept {
  if (this != &o) {
    Release();
    limiter_ = o.limiter_;
    source_ = std::move(o.source_);
    o.limiter_ = nullptr;
  }
  return *this;
}

void ConnectLimiter::Permit::Release() {
  if (limiter_ != nullptr) std::exchange(limiter_, nullptr)->Free(source_);
}

Result<ConnectLimiter::Permit> ConnectLimiter::Acquire(const std::string& source) {
  const bool worker_full = limits_.per_worker != 0 && pending_ >= limits_.per_worker;
  size_t& mine = by_source_[source];
  const bool source_full = limits_.per_source != 0 && mine >= limits_.per_source;
  if (worker_full || source_full) {
    if (mine == 0) by_source_.erase(source);
    const auto reason = worker_full ? metrics::Refusal::kPendingConnectsWorker
                                    : metrics::Refusal::kPendingConnectsSource;
    if (overload_ != nullptr) overload_->Refused(reason);
    uint64_t held = 0;
    if (log_limiter_.Allow(&held)) {
      if (worker_full) {
        ZT_WARN("proxy",
                "refusing a connection from {}: this worker has {} upstream connects pending, "
                "its bound (and {} more refused since the last such line)",
                source, pending_, held);
      } else {
        ZT_WARN("proxy",
                "refusing a connection from {}: it has {} upstream connects pending, its bound "
                "per source (and {} more refused since the last such line)",
                source, mine, held);
      }
    }
    return Error{Errc::kOverloaded};
  }
  ++mine;
  ++pending_;
  Permit p;
  p.limiter_ = this;
  p.source_ = source;
  return p;
}

size_t ConnectLimiter::pending(const std::string& source) const {
  auto it = by_source_.find(source);
  return it == by_source_.end() ? 0 : it->second;
}

void ConnectLimiter::Free(const std::string& source) {
  --pending_;
  auto it = by_source_.find(source);
  if (it != by_source_.end() && --it->second == 0) by_source_.erase(it);
}

}  // namespace zt::proxy
