#include "ztunnel/identity/cert_manager.h"

#include <algorithm>

namespace zt::identity {
namespace {

using std::chrono::system_clock;

// Build turns issued credentials into a published certificate with its contexts.
Result<std::shared_ptr<const WorkloadCert>> Build(const tls::SpiffeId& id, tls::Credentials creds,
                                                  const std::vector<tls::Certificate>& roots,
                                                  system_clock::time_point now, std::string* why) {
  if (creds.chain.empty()) {
    *why = "the CA answered with no certificate";
    return Error{Errc::kInvalidArgument};
  }
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
  cert->roots = roots;
  return std::shared_ptr<const WorkloadCert>(std::move(cert));
}

// RefreshAt is half-way through the certificate's remaining lifetime when received.
system_clock::time_point RefreshAt(const WorkloadCert& cert) {
  const auto from = std::max(cert.not_before, cert.received);
  return from + (cert.not_after - from) / 2;
}

}  // namespace

CertManager::CertManager(std::shared_ptr<CaClient> ca, CertStore& store, Clock clock)
    : ca_(std::move(ca)),
      store_(store),
      clock_(std::move(clock)),
      self_(std::make_shared<CertManager*>(this)) {}

CertManager::~CertManager() = default;

void CertManager::Track(const tls::SpiffeId& id) {
  const std::string key = id.ToString();
  if (entries_.count(key) != 0) return;
  Entry e;
  e.id = id;
  e.generation = next_generation_++;
  e.status.next_attempt = system_clock::time_point::min();
  entries_.emplace(key, std::move(e));
  Publish();
}

void CertManager::Forget(const tls::SpiffeId& id) {
  if (entries_.erase(id.ToString()) != 0) Publish();
}

std::shared_ptr<const WorkloadCert> CertManager::Current(const tls::SpiffeId& id) const {
  auto it = entries_.find(id.ToString());
  return it == entries_.end() ? nullptr : it->second.cert;
}

void CertManager::Attempt(const std::string& key) {
  Entry& e = entries_.at(key);
  e.in_flight = true;
  std::weak_ptr<CertManager*> self = self_;
  const uint64_t generation = e.generation;
  ca_->Issue(e.id, [self, key, generation](Result<tls::Credentials> issued, std::string reason) {
    if (auto alive = self.lock()) (*alive)->Finish(key, generation, std::move(issued), reason);
  });
}

void CertManager::Finish(const std::string& key, uint64_t generation,
                         Result<tls::Credentials> issued, std::string reason) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.generation != generation) return;  // forgotten
  Entry& e = it->second;
  e.in_flight = false;
  std::string why;
  std::shared_ptr<const WorkloadCert> built;
  const auto now = clock_();
  if (!issued) {
    why = "CA: " + (reason.empty() ? issued.error().Message() : reason);
  } else if (auto cert = Build(e.id, std::move(issued).value(), ca_->Roots(), now, &why); cert) {
    built = std::move(cert).value();
  } else if (why.empty()) {
    why = "cannot build TLS contexts";
  }
  if (built) {
    e.cert = std::move(built);
    e.backoff = kInitialBackoff;
    e.status.state = CertStatus::State::kValid;
    e.status.not_after = e.cert->not_after;
    e.status.next_attempt = RefreshAt(*e.cert);
    e.status.failures = 0;
    e.status.last_error.clear();
  } else {
    // Keep serving the old certificate (if any); retry after the backoff, doubled each time.
    e.status.failures += 1;
    e.status.attempts_failed += 1;
    e.status.last_error = why;
    e.status.next_attempt = now + e.backoff;
    e.status.state = e.cert ? CertStatus::State::kRefreshFailing : CertStatus::State::kPending;
    e.backoff = std::min(e.backoff * 2, std::chrono::milliseconds(kMaxBackoff));
  }
  if (on_attempt_) on_attempt_(e.id, e.status);
  Publish();
}

system_clock::time_point CertManager::Poll() {
  Batch batch(*this);  // one set for the whole Poll, not one per identity
  const auto now = clock_();
  std::vector<std::string> due;
  for (const auto& [key, e] : entries_) {
    if (!e.in_flight && e.status.next_attempt <= now) due.push_back(key);
  }
  // By key: an answer given inline (the local CA) updates entries_ as we go.
  for (const auto& key : due) {
    if (entries_.count(key) != 0) Attempt(key);
  }
  return NextDue();
}

system_clock::time_point CertManager::NextDue() const {
  auto next = system_clock::time_point::max();
  for (const auto& [key, e] : entries_) {
    if (!e.in_flight) next = std::min(next, e.status.next_attempt);
  }
  return next;
}

std::vector<std::pair<tls::SpiffeId, CertStatus>> CertManager::Status() const {
  std::vector<std::pair<tls::SpiffeId, CertStatus>> out;
  for (const auto& [key, e] : entries_) out.emplace_back(e.id, e.status);
  return out;
}

size_t CertManager::in_flight() const {
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(),
                                           [](const auto& kv) { return kv.second.in_flight; }));
}

void CertManager::Publish() {
  if (deferring_) {
    dirty_ = true;  // the Batch publishes at its end
    return;
  }
  dirty_ = false;
  std::map<std::string, CertEntry> entries;
  for (const auto& [key, e] : entries_) entries.emplace(key, CertEntry{e.cert, e.status});
  store_.Publish(std::make_shared<const CertSet>(std::move(entries)));
  if (on_published_) on_published_();
}

}  // namespace zt::identity
