#include "ztunnel/identity/cert_manager.h"

#include <algorithm>

namespace zt::identity {
namespace {

using std::chrono::system_clock;

// Build turns issued credentials into a published certificate with its contexts.
Result<std::shared_ptr<const WorkloadCert>> Build(const tls::SpiffeId& id, tls::Credentials creds,
                                                  const std::vector<tls::Certificate>& roots,
                                                  system_clock::time_point now, std::string* why) {
  auto cert = std::make_shared<WorkloadCert>();
  cert->id = id;
  cert->received = now;
  cert->not_before = creds.chain.front().not_before();
  cert->not_after = creds.chain.front().not_after();
  auto client = tls::TlsContext::Create(tls::Role::kClient, creds, roots, id.trust_domain, why);
  if (!client) return client.error();
  auto server = tls::TlsContext::Create(tls::Role::kServer, creds, roots, id.trust_domain, why);
  if (!server) return server.error();
  cert->client = std::move(client).value();
  cert->server = std::move(server).value();
  cert->credentials = std::move(creds);
  return std::shared_ptr<const WorkloadCert>(std::move(cert));
}

// RefreshAt is half-way through the certificate's remaining lifetime when received.
system_clock::time_point RefreshAt(const WorkloadCert& cert) {
  const auto from = std::max(cert.not_before, cert.received);
  return from + (cert.not_after - from) / 2;
}

}  // namespace

CertManager::CertManager(std::shared_ptr<CaClient> ca, Clock clock)
    : ca_(std::move(ca)), clock_(std::move(clock)) {}

Result<std::shared_ptr<const WorkloadCert>> CertManager::Fetch(const tls::SpiffeId& id,
                                                               std::string* why) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id.ToString());
    if (it != entries_.end() && it->second.cert) return it->second.cert;
    if (it == entries_.end()) entries_.emplace(id.ToString(), Entry{});
  }
  return Attempt(id, why);
}

std::shared_ptr<const WorkloadCert> CertManager::Current(const tls::SpiffeId& id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id.ToString());
  return it == entries_.end() ? nullptr : it->second.cert;
}

Result<std::shared_ptr<const WorkloadCert>> CertManager::Attempt(const tls::SpiffeId& id,
                                                                 std::string* why_out) {
  const std::string key = id.ToString();
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return Error{Errc::kNotFound};
    if (it->second.in_flight) return Error{Errc::kUnavailable};
    it->second.in_flight = true;
  }
  std::string why;
  std::shared_ptr<const WorkloadCert> built;
  std::string ca_reason;
  auto issued = ca_->Issue(id, &ca_reason);
  if (!issued) {
    why = "CA: " + (ca_reason.empty() ? issued.error().Message() : ca_reason);
  } else if (auto cert = Build(id, std::move(issued).value(), ca_->Roots(), clock_(), &why); cert) {
    built = std::move(cert).value();
  } else if (why.empty()) {
    why = "cannot build TLS contexts";
  }
  const auto now = clock_();
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return Error{Errc::kCancelled};  // forgotten meanwhile
  Entry& e = it->second;
  e.in_flight = false;
  if (built) {
    e.cert = std::move(built);
    e.backoff = kInitialBackoff;
    e.status = CertStatus{CertStatus::State::kValid, e.cert->not_after, RefreshAt(*e.cert), 0, ""};
    return e.cert;
  }
  // Keep serving the old certificate (if any); retry after the backoff, doubled each time.
  e.status.failures += 1;
  e.status.last_error = why;
  if (why_out != nullptr) *why_out = why;
  e.status.next_attempt = now + e.backoff;
  e.status.state = e.cert ? CertStatus::State::kRefreshFailing : CertStatus::State::kPending;
  e.backoff = std::min(e.backoff * 2, std::chrono::milliseconds(kMaxBackoff));
  return Error{Errc::kUnavailable};
}

system_clock::time_point CertManager::Poll() {
  std::vector<tls::SpiffeId> due;
  {
    std::lock_guard lock(mu_);
    const auto now = clock_();
    for (const auto& [key, e] : entries_) {
      if (!e.in_flight && e.status.next_attempt <= now) {
        due.push_back(e.cert ? e.cert->id : std::move(tls::SpiffeId::Parse(key)).value());
      }
    }
  }
  for (const auto& id : due) (void)Attempt(id);
  std::lock_guard lock(mu_);
  auto next = system_clock::time_point::max();
  for (const auto& [key, e] : entries_) next = std::min(next, e.status.next_attempt);
  return next;
}

void CertManager::Forget(const tls::SpiffeId& id) {
  std::lock_guard lock(mu_);
  entries_.erase(id.ToString());
}

std::vector<std::pair<tls::SpiffeId, CertStatus>> CertManager::Status() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<tls::SpiffeId, CertStatus>> out;
  for (const auto& [key, e] : entries_) {
    out.emplace_back(std::move(tls::SpiffeId::Parse(key)).value(), e.status);
  }
  return out;
}

}  // namespace zt::identity
