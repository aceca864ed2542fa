// SPIFFE identities as Istio uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<sa>.
#pragma once

#include <string>
#include <string_view>

#include "ztunnel/core/result.h"

namespace zt::tls {

/// SpiffeId is a workload identity. Parsing is strict: certificates carry these, and
/// a lenient parser is how identity confusion starts.
struct SpiffeId {
  std::string trust_domain;
  std::string ns;
  std::string service_account;

  /// Make builds an identity with Istio's defaults: an empty trust domain means
  /// "cluster.local", an empty service account means "default".
  static SpiffeId Make(std::string_view trust_domain, std::string_view ns,
                       std::string_view service_account);
  /// Parse reads "spiffe://td/ns/NS/sa/SA". On failure `*reason` (if given) says why:
  /// wrong scheme, embedded NUL, bad trust domain, missing ns or sa part, and so on.
  static Result<SpiffeId> Parse(std::string_view uri, std::string* reason = nullptr);

  /// ToString renders the URI form.
  std::string ToString() const;
  /// Principal is the identity without "spiffe://", as authorization policies name it.
  std::string Principal() const;
  bool operator==(const SpiffeId&) const = default;
};

}  // namespace zt::tls
