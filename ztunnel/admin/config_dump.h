// ConfigDump: the JSON behind 15000 /config_dump — what the node process currently
// believes: workloads, services, policies, its certificates and the enrolled pods. The
// shape is Istio's ztunnel's (`istioctl ztunnel-config` reads it), plus a few fields of
// ours (dryRun on policies, failures/lastError on certificates, error on pods).
#pragma once

#include <string>
#include <vector>

#include "ztunnel/identity/cert_store.h"
#include "ztunnel/state/state.h"

namespace zt::admin {

/// CertDump is one certificate of a chain as Istio's dump shows it.
struct CertDump {
  std::string pem;                          // base64 of the PEM text
  std::string serial_number;                // decimal
  std::string valid_from, expiration_time;  // RFC 3339, seconds
};

/// CertSummary is one identity's certificates as an operator sees them.
struct CertSummary {
  std::string identity;
  /// state is Istio's: "Available", "Initializing" or "Unavailable: <why>".
  std::string state;
  std::vector<CertDump> cert_chain;  // leaf first, then intermediates
  std::vector<CertDump> root_certs;
  int failures = 0;  // failed attempts since the last success (a refresh failing)
  std::string last_error;
};

/// SummarizeCerts describes every identity of a published certificate set.
std::vector<CertSummary> SummarizeCerts(const identity::CertSet& certs);

/// PodSummary is one pod the enrollment agent handed over.
struct PodSummary {
  std::string uid, name, namespace_name, service_account;
  bool serving = false;  // false: pending (set up when it can be)
  std::string error;     // why a pending pod cannot be set up yet
};

/// ConfigDumpJson renders the dump (pretty-printed; lists in the state's order, maps
/// by key). Bytes that are not UTF-8 come out as U+FFFD.
std::string ConfigDumpJson(const state::State& state, const std::vector<CertSummary>& certs,
                           const std::vector<PodSummary>& pods);

}  // namespace zt::admin
