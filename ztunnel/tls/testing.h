// Test helper: a throwaway certificate authority issuing workload credentials.
// For tests only; the product's CA is identity/'s local CA.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "ztunnel/tls/context.h"
#include "ztunnel/tls/spiffe.h"
#include "ztunnel/tls/x509.h"

namespace zt::tls::testing {

/// TestCa issues certificates; failures throw (a test failure).
struct TestCa {
  PrivateKey key;
  Certificate cert;

  /// Make creates a self-signed root valid for ten years.
  static TestCa Make(const std::string& organization = "cluster.local") {
    TestCa ca;
    auto key = PrivateKey::GenerateP256();
    if (!key) throw std::runtime_error("key generation failed");
    ca.key = std::move(key).value();
    const auto now = std::chrono::system_clock::now();
    CertificateSpec spec{organization,
                         "",
                         {},
                         true,
                         now - std::chrono::hours(1),
                         now + std::chrono::hours(24 * 3650)};
    auto cert = SignCertificate(spec, ca.key, nullptr, ca.key);
    if (!cert) throw std::runtime_error("root signing failed");
    ca.cert = std::move(cert).value();
    return ca;
  }

  /// Intermediate makes a CA signed by this one.
  TestCa Intermediate() const {
    TestCa sub;
    sub.key = std::move(PrivateKey::GenerateP256()).value();
    const auto now = std::chrono::system_clock::now();
    CertificateSpec spec{"intermediate",
                         "",
                         {},
                         true,
                         now - std::chrono::hours(1),
                         now + std::chrono::hours(24 * 365)};
    auto cert = SignCertificate(spec, sub.key, &cert_ref(), key);
    if (!cert) throw std::runtime_error("intermediate signing failed");
    sub.cert = std::move(cert).value();
    return sub;
  }

  /// IssueUris issues a leaf with exactly these URI SANs, valid [from, until).
  Credentials IssueUris(const std::vector<std::string>& uris,
                        std::chrono::system_clock::time_point from,
                        std::chrono::system_clock::time_point until) const {
    return IssueLeaf({"", "", uris, false, from, until});
  }

  /// IssueDns issues a serving certificate with these DNS SANs (as istiod's), valid for
  /// a day from an hour ago.
  Credentials IssueDns(const std::vector<std::string>& names) const {
    const auto now = std::chrono::system_clock::now();
    return IssueLeaf(
        {"", "", {}, false, now - std::chrono::hours(1), now + std::chrono::hours(24), names});
  }

  /// Issue issues a workload certificate for `id`, valid for a day from an hour ago.
  Credentials Issue(const SpiffeId& id) const {
    const auto now = std::chrono::system_clock::now();
    return IssueUris({id.ToString()}, now - std::chrono::hours(1), now + std::chrono::hours(24));
  }

 private:
  const Certificate& cert_ref() const { return cert; }
  Credentials IssueLeaf(const CertificateSpec& spec) const {
    auto leaf_key = PrivateKey::GenerateP256();
    if (!leaf_key) throw std::runtime_error("key generation failed");
    auto leaf = SignCertificate(spec, *leaf_key, &cert_ref(), key);
    if (!leaf) throw std::runtime_error("leaf signing failed");
    Credentials out;
    out.chain.push_back(std::move(leaf).value());
    out.key = std::move(leaf_key).value();
    return out;
  }
};

}  // namespace zt::tls::testing
