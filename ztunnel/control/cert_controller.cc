#include "ztunnel/control/cert_controller.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "ztunnel/core/log.h"

namespace zt::control {

using std::chrono::system_clock;

CertController::CertController(io::Loop& loop, std::shared_ptr<identity::CaClient> ca,
                               identity::CertStore& store, std::string node)
    : loop_(loop), node_(std::move(node)), manager_(std::move(ca), store) {
  manager_.set_on_published([this] { Published(); });
  manager_.set_on_attempt(
      [this](const tls::SpiffeId& id, const identity::CertStatus& st) { Attempted(id, st); });
}

CertController::~CertController() = default;

size_t CertController::Reconcile(const state::State& s) {
  std::set<std::string> wanted;
  std::vector<tls::SpiffeId> ids;
  size_t local = 0;
  for (const state::Workload& w : s.workloads()) {
    if (w.node != node_) continue;
    ++local;
    // As proxy::WorkloadIdentity: Istio's defaults for an empty domain or account.
    tls::SpiffeId id = tls::SpiffeId::Make(w.trust_domain, w.namespace_name, w.service_account);
    if (wanted.insert(id.ToString()).second) ids.push_back(std::move(id));
  }
  identity::CertManager::Batch batch(manager_);  // one published set for the whole change
  for (const std::string& uri : tracked_) {
    if (wanted.count(uri) != 0) continue;
    if (auto id = tls::SpiffeId::Parse(uri)) {
      ZT_INFO("identity", "forgetting the certificate of {}: no workload on this node has it", uri);
      manager_.Forget(*id);
    }
  }
  for (const tls::SpiffeId& id : ids) manager_.Track(id);
  tracked_ = std::move(wanted);
  manager_.Poll();
  Schedule();
  return local;
}

void CertController::Attempted(const tls::SpiffeId& id, const identity::CertStatus& st) {
  if (st.failures == 0) {
    if (st.attempts_failed > 0 && recovering_.erase(id.ToString()) != 0) {
      ZT_INFO("identity", "issued a certificate for {} after failed attempts", id.ToString());
    }
    return;
  }
  recovering_.insert(id.ToString());
  // The first failure, then every tenth: a CA down for an hour logs ~30 lines per identity.
  if (st.failures == 1 || st.failures % 10 == 0) {
    ZT_WARN("identity", "cannot issue a certificate for {} ({} failed attempt(s)): {}; {}",
            id.ToString(), st.failures, st.last_error,
            st.state == identity::CertStatus::State::kRefreshFailing
                ? "the current one keeps serving; retrying"
                : "its connections wait; retrying");
  }
}

void CertController::Published() {
  if (on_published_) on_published_();
  // A CA answer changes when the next renewal is due: re-arm once this turn is over
  // (not inside the manager's own call).
  if (schedule_deferred_) return;
  schedule_deferred_ = true;
  std::weak_ptr<int> alive = life_;
  loop_.Defer([this, alive] {
    if (alive.expired()) return;
    schedule_deferred_ = false;
    Schedule();
  });
}

void CertController::Schedule() {
  const auto next = manager_.NextDue();
  if (next == armed_for_) return;
  armed_for_ = next;
  timer_.reset();  // a pending timer may be destroyed: its callback then never runs
  if (next == system_clock::time_point::max()) return;
  const auto delay = std::max(next - system_clock::now(), system_clock::duration::zero());
  timer_ = std::make_unique<io::Timer>(loop_);
  timer_->Start(std::chrono::duration_cast<std::chrono::nanoseconds>(delay), [this](bool fired) {
    if (!fired) return;
    armed_for_ = system_clock::time_point::max();
    manager_.Poll();
    Schedule();
  });
}

}  // namespace zt::control
