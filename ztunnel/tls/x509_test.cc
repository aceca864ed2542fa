#include "ztunnel/tls/x509.h"

#include <catch2/catch.hpp>

#include "ztunnel/tls/testing.h"

namespace zt::tls {
namespace {

using namespace std::chrono_literals;

TEST_CASE("Keys and certificates round-trip through PEM", "[tls]") {
  auto ca = testing::TestCa::Make();
  const std::string key_pem = ca.key.ToPem();
  CHECK(key_pem.find("BEGIN PRIVATE KEY") != std::string::npos);
  auto key = PrivateKey::FromPem(key_pem);
  REQUIRE(key.ok());
  auto cert = Certificate::FromPem(ca.cert.ToPem());
  REQUIRE(cert.ok());
  CHECK(KeyMatchesCertificate(*key, *cert));
  CHECK(cert->is_ca());
  auto chain = Certificate::ChainFromPem(ca.cert.ToPem() + ca.cert.ToPem());
  REQUIRE(chain.ok());
  CHECK(chain->size() == 2);
  CHECK_FALSE(Certificate::FromPem("not a certificate").ok());
  CHECK_FALSE(
      PrivateKey::FromPem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").ok());
}

TEST_CASE("Serial numbers print in decimal and base64 is RFC 4648's", "[tls]") {
  // openssl req -x509 ... -set_serial 1234567890123456789012
  auto cert = Certificate::FromPem(
      "-----BEGIN CERTIFICATE-----\n"
      "MIIBbTCCARKgAwIBAgIJQu0SOwvYIDoUMAoGCCqGSM49BAMCMBExDzANBgNVBAMM\n"
      "BnNlcmlhbDAeFw0yNjEyMDQwMTA3MDFaFw0yNjEyMDUwMTA3MDFaMBExDzANBgNV\n"
      "BAMMBnNlcmlhbDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABF+gQihlzRdIwUMI\n"
      "jwUmo8iQEotLLbJCOBBVndLcgp8Hfpiweu4Gu6xamjoKsXfURc4ixxnkAd1CwDcO\n"
      "GG0UD7ejUzBRMB0GA1UdDgQWBBSn+QO6F1WM/wmK6MJCu2/EzZeOMjAfBgNVHSME\n"
      "GDAWgBSn+QO6F1WM/wmK6MJCu2/EzZeOMjAPBgNVHRMBAf8EBTADAQH/MAoGCCqG\n"
      "SM49BAMCA0kAMEYCIQCPyvxXXDP13pCo+qwmzaM//73b0rsslQSyr3eN6K9xsQIh\n"
      "AL5H7OYq8fNggkkygXzgkxhzjCr9X8cDhMR+Cegoom3a\n"
      "-----END CERTIFICATE-----\n");
  REQUIRE(cert.ok());
  CHECK(cert->SerialDecimal() == "1234567890123456789012");
  CHECK(Base64Encode("") == "");
  CHECK(Base64Encode("f") == "Zg==");
  CHECK(Base64Encode("fo") == "Zm8=");
  CHECK(Base64Encode("foo") == "Zm9v");
  CHECK(Base64Encode("foobar") == "Zm9vYmFy");
  CHECK(Base64Encode(std::string("\xff\x00", 2)) == "/wA=");
}

TEST_CASE("Leaf certificates carry one URI SAN and their validity", "[tls]") {
  auto ca = testing::TestCa::Make();
  const auto from = std::chrono::system_clock::now() - 1h;
  const auto until = from + 25h;
  auto creds = ca.IssueUris({"spiffe://cluster.local/ns/a/sa/b"}, from, until);
  const Certificate& leaf = creds.chain[0];
  CHECK(leaf.UriSans() == std::vector<std::string>{"spiffe://cluster.local/ns/a/sa/b"});
  CHECK_FALSE(leaf.is_ca());
  CHECK(std::chrono::abs(leaf.not_before() - from) < 2s);
  CHECK(std::chrono::abs(leaf.not_after() - until) < 2s);
  CHECK(KeyMatchesCertificate(creds.key, leaf));
  CHECK_FALSE(KeyMatchesCertificate(ca.key, leaf));
}

// Found with fuzz/x509_fuzz.cc: a notAfter of 99991231235959Z (RFC 5280's "no
// expiry", common on roots) overflowed the nanosecond time_point (undefined behaviour;
// in practice a date before 1970, so the chain looked expired to the verify cache).
TEST_CASE("Validity dates past what system_clock holds saturate", "[tls]") {
  auto ca = testing::TestCa::Make();
  Certificate cert = ca.cert;
  REQUIRE(ASN1_TIME_set_string(X509_getm_notAfter(cert.get()), "99991231235959Z"));
  REQUIRE(ASN1_TIME_set_string(X509_getm_notBefore(cert.get()), "00010101000000Z"));
  const auto max = std::chrono::system_clock::time_point::max();
  const auto min = std::chrono::system_clock::time_point::min();
  CHECK(max - cert.not_after() < 1s);
  CHECK(cert.not_before() - min < 1s);
  CHECK(cert.not_before() < std::chrono::system_clock::now());
  CHECK(cert.not_after() > std::chrono::system_clock::now() + 24h * 365 * 200);
}

TEST_CASE("UriSans keeps embedded NUL bytes so callers can reject them", "[tls]") {
  auto ca = testing::TestCa::Make();
  const auto now = std::chrono::system_clock::now();
  const std::string sneaky("spiffe://cluster.local/ns/a/sa/b\0.evil", 38);
  auto creds = ca.IssueUris({sneaky}, now - 1h, now + 1h);
  REQUIRE(creds.chain[0].UriSans().size() == 1);
  CHECK(creds.chain[0].UriSans()[0] == sneaky);
}

}  // namespace
}  // namespace zt::tls
