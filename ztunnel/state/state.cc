#include "ztunnel/state/state.h"

#include <fmt/format.h>

#include <algorithm>

namespace zt::state {

const char* ProtocolName(Protocol p) { return p == Protocol::kHbone ? "HBONE" : "TCP"; }

std::shared_ptr<const State> State::Build(std::vector<Workload> workloads,
                                          std::vector<Service> services,
                                          std::vector<Policy> policies, std::string* error) {
  // make_shared cannot reach the private constructor; the pointers below point into
  // workloads_, which never changes after this function.
  std::shared_ptr<State> s(new State());
  s->workloads_ = std::move(workloads);
  // Copy the policies grouped by namespace: the deep copies allocate each
  // namespace's rules next to each other, so deciding a connection walks memory
  // that is close together instead of chasing pointers across the whole heap.
  std::stable_sort(policies.begin(), policies.end(), [](const Policy& a, const Policy& b) {
    return a.namespace_name < b.namespace_name;
  });
  s->policies_.reserve(policies.size());
  for (const Policy& p : policies) s->policies_.push_back(p);
  policies.clear();
  for (Policy& p : s->policies_) PreparePolicy(p);
  s->services_ = std::move(services);
  s->endpoints_.resize(s->services_.size());
  std::unordered_map<std::string, size_t> service_index;
  for (size_t i = 0; i < s->services_.size(); ++i) {
    const Service& svc = s->services_[i];
    s->service_by_key_.emplace(svc.Key(), &svc);
    if (!service_index.emplace(svc.Key(), i).second) {
      if (error != nullptr) *error = fmt::format("duplicate service \"{}\"", svc.Key());
      return nullptr;
    }
    for (const NetworkAddress& vip : svc.vips) {
      auto [it, inserted] = s->service_by_vip_.emplace(vip, &svc);
      if (!inserted) {
        if (error != nullptr) {
          *error = fmt::format("VIP {} in network \"{}\" belongs to both \"{}\" and \"{}\"",
                               vip.ip.ToString(), vip.network, it->second->Key(), svc.Key());
        }
        return nullptr;
      }
    }
  }
  for (const Workload& w : s->workloads_) {
    for (const auto& [key, ports] : w.services) {
      // A workload may name a service this config does not define (yet): it simply
      // is no endpoint of anything until that service appears.
      if (auto it = service_index.find(key); it != service_index.end()) {
        s->endpoints_[it->second].push_back({&w, &ports});
      }
    }
  }
  std::vector<const Policy*> global;
  std::unordered_map<std::string, std::vector<const Policy*>> by_namespace;
  for (const Policy& p : s->policies_) {
    if (!s->by_key_.emplace(p.Key(), &p).second) {
      if (error != nullptr) *error = fmt::format("duplicate policy \"{}\"", p.Key());
      return nullptr;
    }
    if (p.scope == PolicyScope::kGlobal) global.push_back(&p);
    if (p.scope == PolicyScope::kNamespace) by_namespace[p.namespace_name].push_back(&p);
  }
  s->global_ = PolicyProgram(global);
  for (const auto& [ns, list] : by_namespace) s->by_namespace_.emplace(ns, PolicyProgram(list));
  s->namespace_policies_.reserve(s->workloads_.size());
  s->selected_policies_.resize(s->workloads_.size());
  for (size_t i = 0; i < s->workloads_.size(); ++i) {
    const Workload& w = s->workloads_[i];
    auto ns = s->by_namespace_.find(w.namespace_name);
    s->namespace_policies_.push_back(ns == s->by_namespace_.end() ? nullptr : &ns->second);
    std::vector<const Policy*> selected;
    for (const std::string& key : w.authorization_policies) {
      auto it = s->by_key_.find(key);
      if (it != s->by_key_.end() && it->second->scope == PolicyScope::kWorkloadSelector) {
        selected.push_back(it->second);
      }
    }
    if (!selected.empty()) s->selected_policies_[i] = PolicyProgram(selected);
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

const Service* State::FindService(const std::string& network, const IpAddr& ip) const {
  auto it = service_by_vip_.find(NetworkIp{network, ip});
  return it == service_by_vip_.end() ? nullptr : it->second;
}

const std::vector<Endpoint>& State::Endpoints(const Service& s) const {
  return endpoints_[static_cast<size_t>(&s - services_.data())];
}

PolicySet State::PoliciesFor(const Workload& w) const {
  const size_t i = static_cast<size_t>(&w - workloads_.data());
  PolicySet set;
  if (!global_.empty()) set.global = &global_;
  set.in_namespace = namespace_policies_[i];
  if (!selected_policies_[i].empty()) set.selected = &selected_policies_[i];
  return set;
}

const Workload* State::FindByUid(const std::string& uid) const {
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? nullptr : it->second;
}

std::shared_ptr<const State> StateStore::Empty() { return State::Build({}, nullptr); }

}  // namespace zt::state
