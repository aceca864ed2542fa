// State: an immutable snapshot of what the node knows (workloads today; services and
// policies follow), and the store that publishes snapshots to the workers.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ztunnel/core/ip_port.h"
#include "ztunnel/core/result.h"
#include "ztunnel/state/authz.h"
#include "ztunnel/state/policy_program.h"
#include "ztunnel/state/workload.h"

namespace zt::state {

/// Endpoint is a workload serving a service, with its port map for that service
/// (service port -> target port; empty: every service port, mapped by the service).
struct Endpoint {
  const Workload* workload;
  const std::map<uint16_t, uint16_t>* ports;
};

/// State is built once, then only read (from any thread).
class State {
 public:
  /// Build indexes `workloads`. Duplicate uids or an address claimed twice in one
  /// network are errors: `*error` names them and null is returned.
  static std::shared_ptr<const State> Build(std::vector<Workload> workloads, std::string* error) {
    return Build(std::move(workloads), {}, {}, error);
  }
  /// Build with services and policies too. Duplicate policies (namespace/name) or
  /// services (namespace/hostname), and a VIP claimed twice, are errors.
  static std::shared_ptr<const State> Build(std::vector<Workload> workloads,
                                            std::vector<Service> services,
                                            std::vector<Policy> policies, std::string* error);

  /// FindWorkload returns the workload with `ip` in `network`, or null.
  const Workload* FindWorkload(const std::string& network, const IpAddr& ip) const;
  /// FindByUid returns the workload with `uid`, or null.
  const Workload* FindByUid(const std::string& uid) const;
  const std::vector<Workload>& workloads() const { return workloads_; }
  /// FindService returns the service with virtual IP `ip` in `network`, or null.
  const Service* FindService(const std::string& network, const IpAddr& ip) const;
  /// FindServiceByKey returns the service "namespace/hostname", or null.
  const Service* FindServiceByKey(const std::string& key) const {
    auto it = service_by_key_.find(key);
    return it == service_by_key_.end() ? nullptr : it->second;
  }
  /// Endpoints lists the workloads serving `s` (those naming it in `services`).
  const std::vector<Endpoint>& Endpoints(const Service& s) const;
  const std::vector<Service>& services() const { return services_; }
  /// PoliciesFor lists the policies in force for `w`: Global ones, Namespace ones of
  /// its namespace, and the WorkloadSelector ones it names. Dry-run ones included.
  /// `w` must be a workload of this State.
  PolicySet PoliciesFor(const Workload& w) const;
  /// policies lists every policy, grouped by namespace (not in file order).
  const std::vector<Policy>& policies() const { return policies_; }
  /// FindPolicy returns the policy "namespace/name", or null.
  const Policy* FindPolicy(const std::string& key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : it->second;
  }

 private:
  using NetworkIp = NetworkAddress;
  struct NetworkIpHash {
    size_t operator()(const NetworkIp& k) const {
      return std::hash<std::string>{}(k.network) * 31 + std::hash<IpAddr>{}(k.ip);
    }
  };
  std::vector<Workload> workloads_;
  std::vector<Service> services_;
  std::vector<std::vector<Endpoint>> endpoints_;  // parallel to services_
  std::unordered_map<NetworkIp, const Service*, NetworkIpHash> service_by_vip_;
  std::unordered_map<std::string, const Service*> service_by_key_;
  std::vector<Policy> policies_;
  std::unordered_map<std::string, const Policy*> by_key_;
  // Compiled once per snapshot: Global policies, each namespace's, and per workload
  // (parallel to workloads_) its namespace's program and the WorkloadSelector
  // policies it names.
  PolicyProgram global_;
  std::unordered_map<std::string, PolicyProgram> by_namespace_;
  std::vector<const PolicyProgram*> namespace_policies_;
  std::vector<PolicyProgram> selected_policies_;
  std::unordered_map<NetworkIp, const Workload*, NetworkIpHash> by_ip_;
  std::unordered_map<std::string, const Workload*> by_uid_;
};

/// StateStore holds the current snapshot. Readers take a reference per connection
/// and keep it while they use pointers into it; a publish never blocks them long.
class StateStore {
 public:
  StateStore() : current_(Empty()) {}
  /// Load returns the current snapshot (never null).
  std::shared_ptr<const State> Load() const { return current_.load(std::memory_order_acquire); }
  /// Publish replaces the snapshot atomically.
  void Publish(std::shared_ptr<const State> next) {
    current_.store(std::move(next), std::memory_order_release);
  }

 private:
  static std::shared_ptr<const State> Empty();
  std::atomic<std::shared_ptr<const State>> current_;
};

}  // namespace zt::state
