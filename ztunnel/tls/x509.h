// Keys and certificates on BoringSSL: generate, sign, parse, encode. The local CA
// (identity/) and the tests build on these; nothing here does I/O.
#pragma once

#include <openssl/base.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "ztunnel/core/result.h"

namespace zt::tls {

/// PrivateKey owns an EVP_PKEY (ECDSA P-256 for everything we generate).
class PrivateKey {
 public:
  PrivateKey() = default;
  /// GenerateP256 makes a fresh ECDSA P-256 key.
  static Result<PrivateKey> GenerateP256();
  /// FromPem reads a PKCS#8, SEC1 EC or PKCS#1 PEM key.
  static Result<PrivateKey> FromPem(std::string_view pem);
  /// ToPem writes PKCS#8 PEM.
  std::string ToPem() const;
  EVP_PKEY* get() const { return key_.get(); }
  explicit operator bool() const { return key_ != nullptr; }

 private:
  bssl::UniquePtr<EVP_PKEY> key_;
};

/// Certificate owns an X509.
class Certificate {
 public:
  Certificate() = default;
  explicit Certificate(bssl::UniquePtr<X509> cert) : cert_(std::move(cert)) {}
  Certificate(const Certificate& other);
  Certificate& operator=(const Certificate& other);
  Certificate(Certificate&&) = default;
  Certificate& operator=(Certificate&&) = default;

  /// FromPem reads the first certificate in `pem`.
  static Result<Certificate> FromPem(std::string_view pem);
  /// ChainFromPem reads every certificate in `pem`, in order; at least one.
  static Result<std::vector<Certificate>> ChainFromPem(std::string_view pem);
  std::string ToPem() const;
  /// SerialDecimal is the serial number in decimal digits (as Istio's config dump has it).
  std::string SerialDecimal() const;

  /// UriSans lists the URI subject alternative names byte for byte (a NUL stays in).
  std::vector<std::string> UriSans() const;
  std::chrono::system_clock::time_point not_before() const;
  std::chrono::system_clock::time_point not_after() const;
  bool is_ca() const;
  X509* get() const { return cert_.get(); }
  explicit operator bool() const { return cert_ != nullptr; }

 private:
  bssl::UniquePtr<X509> cert_;
};

/// Base64Encode is standard base64 (RFC 4648 §4, padded).
std::string Base64Encode(std::string_view data);

/// CertificateSpec says what to put in a certificate.
struct CertificateSpec {
  /// organization and common_name fill the subject; both empty means an empty subject
  /// (Istio's workload certificates), which makes the SAN extension critical.
  std::string organization;
  std::string common_name;
  std::vector<std::string> uri_sans;
  bool is_ca = false;
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
  /// dns_sans: DNS names (a control plane's serving certificate, as istiod's).
  std::vector<std::string> dns_sans{};
};

/// SignCertificate issues a certificate for `subject_public`'s key, signed by `issuer`
/// with `issuer_key` (ECDSA-SHA256). With `issuer` null it is self-signed by
/// `issuer_key`. Leaf certificates get serverAuth+clientAuth usage, CAs keyCertSign.
/// On failure `*why` (if given) names the step and BoringSSL's reason.
Result<Certificate> SignCertificate(const CertificateSpec& spec, const PrivateKey& subject_public,
                                    const Certificate* issuer, const PrivateKey& issuer_key,
                                    std::string* why = nullptr);

/// CsrPem makes a PKCS#10 certificate request for `key` with these URI SANs and an
/// empty subject (what Istio's CA expects of a workload), signed with ECDSA-SHA256.
Result<std::string> CsrPem(const PrivateKey& key, const std::vector<std::string>& uri_sans);

/// KeyMatchesCertificate checks that `key` is the private half of `cert`'s public key.
bool KeyMatchesCertificate(const PrivateKey& key, const Certificate& cert);

}  // namespace zt::tls
