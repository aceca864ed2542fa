// Workload: one mesh (or non-mesh) endpoint as the local config file or a control
// plane describes it (DESIGN.md §4 "Local config file"). Plain data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ztunnel/core/ip_port.h"

namespace zt::state {

/// Protocol is how a workload receives mesh traffic.
enum class Protocol : uint8_t {
  kTcp,    // plain TCP: no tunnel, traffic passes through
  kHbone,  // HTTP/2 CONNECT over mutual TLS to port 15008
};

/// ProtocolName is the config spelling ("TCP", "HBONE").
const char* ProtocolName(Protocol p);

/// Workload is immutable once inside a State snapshot.
struct Workload {
  std::string uid;
  std::string name;
  std::string namespace_name;
  /// service_account, trust_domain: empty means "default" / "cluster.local" (Istio's
  /// defaults), applied where the identity is built.
  std::string service_account;
  std::string trust_domain;
  std::string network;
  /// node names the node that runs the workload; its ztunnel serves it.
  std::string node;
  /// Telemetry labels (Istio's clusterId, workloadName, canonicalName and
  /// canonicalRevision: the app and version labels); empty = unknown.
  std::string cluster_id;
  std::string workload_name;
  std::string canonical_name;
  std::string canonical_revision;
  /// workload_type is Istio's lower-case kind of workload (deployment, cronjob, pod,
  /// job): the X of the k8s.X.name baggage key. Empty means deployment, xDS's default.
  std::string workload_type;
  /// Locality: region and zone (cloud.region, cloud.availability_zone in baggage).
  std::string region;
  std::string zone;
  std::vector<IpAddr> ips;
  Protocol protocol = Protocol::kTcp;
  /// authorization_policies names WorkloadSelector policies that select this
  /// workload, as "namespace/name".
  std::vector<std::string> authorization_policies;
  /// services: the services this workload is an endpoint of, by "namespace/hostname",
  /// each with its port map (service port -> target port on this workload).
  std::map<std::string, std::map<uint16_t, uint16_t>> services;
};

/// NetworkAddress is an address within a network ("" = the default network).
struct NetworkAddress {
  std::string network;
  IpAddr ip;
  bool operator==(const NetworkAddress&) const = default;
};

/// Service is a set of endpoints behind virtual IPs (a Kubernetes Service).
struct Service {
  std::string name;
  std::string namespace_name;
  std::string hostname;
  std::vector<NetworkAddress> vips;
  /// ports maps service port -> target port; a target of 0 means "the same port".
  std::map<uint16_t, uint16_t> ports;
  /// subject_alt_names are extra identities a destination may present (SPIFFE URIs).
  std::vector<std::string> subject_alt_names;
  /// Key is "namespace/hostname", as workloads name the services they serve.
  std::string Key() const { return namespace_name + "/" + hostname; }
};

}  // namespace zt::state
