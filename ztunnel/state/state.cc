#include "ztunnel/state/state.h"

#include <fmt/format.h>

namespace zt::state {

const char* ProtocolName(Protocol p) { return p == Protocol::kHbone ? "HBONE" : "TCP"; }

std::shared_ptr<const State> State::Build(std::vector<Workload> workloads,
                                          std::vector<Policy> policies, std::string* error) {
  // make_shared cannot reach the private constructor; the pointers below point into
  // workloads_, which never changes after this function.
  std::shared_ptr<State> s(new State());
  s->workloads_ = std::move(workloads);
  s->policies_ = std::move(policies);
  for (const Policy& p : s->policies_) {
    if (!s->by_key_.emplace(p.Key(), &p).second) {
      if (error != nullptr) *error = fmt::format("duplicate policy \"{}\"", p.Key());
      return nullptr;
    }
    if (p.scope == PolicyScope::kGlobal) s->global_.push_back(&p);
    if (p.scope == PolicyScope::kNamespace) s->by_namespace_[p.namespace_name].push_back(&p);
  }
  for (const Workload& w : s->workloads_) {
    if (!s->by_uid_.emplace(w.uid, &w).second) {
      if (error != nullptr) *error = fmt::format("duplicate workload uid \"{}\"", w.uid);
      return nullptr;
    }
    for (const IpAddr& ip : w.ips) {
      auto [it, inserted] = s->by_ip_.emplace(NetworkIp{w.network, ip}, &w);
      if (!inserted) {
        if (error != nullptr) {
          *error = fmt::format("address {} in network \"{}\" belongs to both \"{}\" and \"{}\"",
                               ip.ToString(), w.network, it->second->uid, w.uid);
        }
        return nullptr;
      }
    }
  }
  return s;
}

const Workload* State::FindWorkload(const std::string& network, const IpAddr& ip) const {
  auto it = by_ip_.find(NetworkIp{network, ip});
  return it == by_ip_.end() ? nullptr : it->second;
}

std::vector<const Policy*> State::PoliciesFor(const Workload& w) const {
  std::vector<const Policy*> out = global_;
  if (auto it = by_namespace_.find(w.namespace_name); it != by_namespace_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
  for (const std::string& key : w.authorization_policies) {
    auto it = by_key_.find(key);
    if (it != by_key_.end() && it->second->scope == PolicyScope::kWorkloadSelector) {
      out.push_back(it->second);
    }
  }
  return out;
}

const Workload* State::FindByUid(const std::string& uid) const {
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? nullptr : it->second;
}

std::shared_ptr<const State> StateStore::Empty() { return State::Build({}, nullptr); }

}  // namespace zt::state
