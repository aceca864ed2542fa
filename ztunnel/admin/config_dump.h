// ConfigDump: the JSON behind 15000 /config_dump — what the node process currently
// believes: workloads, services, policies, its certificates and the enrolled pods.
#pragma once

#include <string>
#include <vector>

#include "ztunnel/identity/cert_store.h"
#include "ztunnel/state/state.h"

namespace zt::admin {

/// CertSummary is one identity's certificate as an operator sees it.
struct CertSummary {
  std::string identity;
  std::string state;      // "valid", "pending" or "refresh failing"
  std::string not_after;  // RFC 3339, "" while pending
  int failures = 0;
  std::string last_error;
};

/// SummarizeCerts describes every identity of a published certificate set.
std::vector<CertSummary> SummarizeCerts(const identity::CertSet& certs);

/// PodSummary is one pod the enrollment agent handed over.
struct PodSummary {
  std::string uid, name, namespace_name;
  std::string state;  // "serving" or "pending"
  std::string error;  // why a pending pod cannot be set up yet
};

/// ConfigDumpJson renders the dump (pretty-printed, stable key order).
std::string ConfigDumpJson(const state::State& state, const std::vector<CertSummary>& certs,
                           const std::vector<PodSummary>& pods);

}  // namespace zt::admin
