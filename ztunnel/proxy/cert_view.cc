#include "ztunnel/proxy/cert_view.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "ztunnel/core/duration.h"
#include "ztunnel/io/fiber.h"

namespace zt::proxy {

CertView::CertView(const identity::CertStore& store, io::Loop& loop,
                   std::chrono::milliseconds max_wait)
    : store_(store), loop_(loop), max_wait_(max_wait), current_(store.Load()) {}

CertView::~CertView() = default;

std::shared_ptr<const identity::WorkloadCert> CertView::Find(const tls::SpiffeId& id) const {
  const identity::CertEntry* e = current_->Find(id);
  return e == nullptr ? nullptr : e->cert;
}

void CertView::Wait(const tls::SpiffeId& id, CertReady ready) {
  const identity::CertEntry* e = current_->Find(id);
  if (e != nullptr && e->cert) return ready(e->cert, "");
  const uint64_t key = next_key_++;
  Waiter& w = waiters_[key];
  w.id = id;
  w.uri = id.ToString();
  w.failures_seen = e == nullptr ? 0 : e->status.attempts_failed;
  w.ready = std::move(ready);
  w.timer = std::make_unique<io::Timer>(loop_);
  w.timer->Start(max_wait_, [this, key](bool fired) {
    if (!fired) return;
    auto it = waiters_.find(key);
    if (it == waiters_.end()) return;
    Answer(key, nullptr,
           fmt::format("no certificate for {} after waiting {} (the CA has not answered)",
                       it->second.uri, FormatDuration(max_wait_)));
  });
}

void CertView::Refresh() {
  current_ = store_.Load();
  std::vector<std::tuple<uint64_t, std::shared_ptr<const identity::WorkloadCert>, std::string>>
      answered;
  for (const auto& [key, w] : waiters_) {
    const identity::CertEntry* e = current_->Find(w.uri);
    if (e == nullptr) continue;  // not tracked (yet): the timeout bounds the wait
    if (e->cert) {
      answered.emplace_back(key, e->cert, "");
    } else if (e->status.attempts_failed > w.failures_seen) {
      answered.emplace_back(key, nullptr,
                            fmt::format("no certificate for {}: {}", w.uri, e->status.last_error));
    }
  }
  // Answered after the scan: a callback may park another connection.
  for (auto& [key, cert, error] : answered) Answer(key, std::move(cert), std::move(error));
}

void CertView::FailAll(const std::string& why) {
  std::vector<uint64_t> keys;
  for (const auto& [key, w] : waiters_) keys.push_back(key);
  for (uint64_t key : keys) {
    if (waiters_.count(key) != 0) Answer(key, nullptr, why);
  }
}

void CertView::Answer(uint64_t key, std::shared_ptr<const identity::WorkloadCert> cert,
                      std::string error) {
  auto it = waiters_.find(key);
  if (it == waiters_.end()) return;
  CertReady ready = std::move(it->second.ready);
  // Erasing cancels the timer (a Timer may be destroyed inside its own callback).
  waiters_.erase(it);
  ready(std::move(cert), std::move(error));
}

std::shared_ptr<const identity::WorkloadCert> AwaitCert(CertView& view, const tls::SpiffeId& id,
                                                        std::string* error) {
  if (auto cert = view.Find(id)) return cert;
  io::Fiber* self = io::Fiber::Current();
  struct Outcome {
    bool done = false;
    bool suspended = false;
    std::shared_ptr<const identity::WorkloadCert> cert;
    std::string error;
  };
  // Shared: the view drops an unanswered waiter (and its copy) when the loop ends.
  auto outcome = std::make_shared<Outcome>();
  view.Wait(id,
            [self, outcome](std::shared_ptr<const identity::WorkloadCert> cert, std::string why) {
              outcome->cert = std::move(cert);
              outcome->error = std::move(why);
              outcome->done = true;
              if (outcome->suspended) self->Resume();
            });
  if (!outcome->done) {
    outcome->suspended = true;
    self->Suspend();
  }
  if (!outcome->cert && error != nullptr) *error = outcome->error;
  return outcome->cert;
}

}  // namespace zt::proxy
