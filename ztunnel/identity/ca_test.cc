#include "ztunnel/identity/ca.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ztunnel/tls/testing.h"

namespace zt::identity {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// TempDir is a fresh directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/zt-ca-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

void Write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

bool Verifies(const tls::Credentials& creds, const tls::Certificate& root) {
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), root.get());
  bssl::UniquePtr<STACK_OF(X509)> chain(sk_X509_new_null());
  for (const auto& c : creds.chain) {
    X509_up_ref(c.get());  // the stack frees its elements
    sk_X509_push(chain.get(), c.get());
  }
  bssl::UniquePtr<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), creds.chain[0].get(), chain.get());
  return X509_verify_cert(ctx.get()) == 1;
}

TEST_CASE("LocalCa generates a root once, persists it privately and reloads it", "[identity]") {
  TempDir dir;
  std::string why;
  auto ca = LocalCa::Open({dir.path.string(), true, "example.org", 3600s}, &why);
  REQUIRE(ca.ok());
  for (const char* f : {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}) {
    CHECK(fs::exists(dir.path / f));
  }
  struct stat st {};
  REQUIRE(::stat((dir.path / "ca-key.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto again = LocalCa::Open({dir.path.string(), true, "example.org", 3600s}, &why);
  REQUIRE(again.ok());
  CHECK(X509_cmp((*ca)->root().get(), (*again)->root().get()) == 0);  // not regenerated
}

TEST_CASE("LocalCa issues P-256 leaf certificates with one SPIFFE SAN and the TTL", "[identity]") {
  TempDir dir;
  std::string why;
  auto ca = LocalCa::Open({dir.path.string(), true, "cluster.local", 7200s}, &why);
  REQUIRE(ca.ok());
  const auto id = tls::SpiffeId::Make("cluster.local", "default", "reviews");
  auto creds = (*ca)->IssueNow(id, nullptr);
  REQUIRE(creds.ok());
  REQUIRE(creds->chain.size() == 1);  // the root is not sent
  const tls::Certificate& leaf = creds->chain[0];
  CHECK(leaf.UriSans() == std::vector<std::string>{id.ToString()});
  CHECK_FALSE(leaf.is_ca());
  CHECK(leaf.not_after() - leaf.not_before() == 7200s + 60s);  // backdated a minute
  CHECK(EVP_PKEY_id(creds->key.get()) == EVP_PKEY_EC);
  CHECK(Verifies(*creds, (*ca)->root()));
}

TEST_CASE("LocalCa loads Istio's plug-in layout with an intermediate", "[identity]") {
  TempDir dir;
  auto root = tls::testing::TestCa::Make();
  auto mid = root.Intermediate();
  Write(dir.path / "ca-cert.pem", mid.cert.ToPem());
  Write(dir.path / "ca-key.pem", mid.key.ToPem());
  Write(dir.path / "root-cert.pem", root.cert.ToPem());
  Write(dir.path / "cert-chain.pem", mid.cert.ToPem() + root.cert.ToPem());
  std::string why;
  auto ca = LocalCa::Open({dir.path.string(), false, "", 3600s}, &why);
  REQUIRE(ca.ok());
  auto creds = (*ca)->IssueNow(tls::SpiffeId::Make("", "ns", "sa"), nullptr);
  REQUIRE(creds.ok());
  REQUIRE(creds->chain.size() == 2);  // leaf + intermediate
  CHECK(Verifies(*creds, root.cert));
}

TEST_CASE("LocalCa explains what is wrong with a CA directory", "[identity]") {
  TempDir dir;
  std::string why;
  CHECK_FALSE(LocalCa::Open({dir.path.string(), false, "", 3600s}, &why).ok());
  CHECK(why.find("no CA in") != std::string::npos);

  auto a = tls::testing::TestCa::Make();
  auto b = tls::testing::TestCa::Make();
  Write(dir.path / "ca-cert.pem", a.cert.ToPem());
  Write(dir.path / "ca-key.pem", b.key.ToPem());
  Write(dir.path / "root-cert.pem", a.cert.ToPem());
  CHECK_FALSE(LocalCa::Open({dir.path.string(), false, "", 3600s}, &why).ok());
  CHECK(why == "ca-key.pem does not match ca-cert.pem");

  Write(dir.path / "ca-key.pem", a.key.ToPem());
  Write(dir.path / "root-cert.pem", b.cert.ToPem());
  CHECK_FALSE(LocalCa::Open({dir.path.string(), false, "", 3600s}, &why).ok());
  CHECK(why.find("does not chain to root-cert.pem") != std::string::npos);

  Write(dir.path / "ca-cert.pem", "garbage");
  CHECK_FALSE(LocalCa::Open({dir.path.string(), false, "", 3600s}, &why).ok());
  CHECK(why == "ca-cert.pem: not a PEM certificate");
}

// SelfSignedCaWithoutSki is a CA certificate (basicConstraints CA:TRUE) that lacks
// the Subject Key Identifier extension, as some hand-made or legacy roots do.
tls::Certificate SelfSignedCaWithoutSki(const tls::PrivateKey& key) {
  bssl::UniquePtr<X509> x(X509_new());
  REQUIRE(X509_set_version(x.get(), X509_VERSION_3));
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 7);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const uint8_t*>("no-ski"),
                             -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 3600);
  X509_set_pubkey(x.get(), key.get());
  bssl::UniquePtr<BASIC_CONSTRAINTS> bc(BASIC_CONSTRAINTS_new());
  bc->ca = 0xff;
  X509_add1_ext_i2d(x.get(), NID_basic_constraints, bc.get(), 1, 0);
  REQUIRE(X509_sign(x.get(), key.get(), EVP_sha256()));
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x.get());
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio.get(), &data, &len);
  auto cert = tls::Certificate::FromPem(std::string(reinterpret_cast<const char*>(data), len));
  REQUIRE(cert.ok());
  return std::move(cert).value();
}

TEST_CASE("LocalCa refuses a CA certificate without a Subject Key Identifier", "[identity]") {
  // Regression (issue 15, defect 10): it loaded, then every issuance failed with
  // "unavailable; retrying" and the reason was nowhere.
  TempDir dir;
  auto key = tls::PrivateKey::GenerateP256();
  REQUIRE(key.ok());
  const tls::Certificate cert = SelfSignedCaWithoutSki(*key);
  REQUIRE(cert.is_ca());
  Write(dir.path / "ca-cert.pem", cert.ToPem());
  Write(dir.path / "ca-key.pem", key->ToPem());
  Write(dir.path / "root-cert.pem", cert.ToPem());
  std::string why;
  CHECK_FALSE(LocalCa::Open({dir.path.string(), false, "", 3600s}, &why).ok());
  CHECK(why == (dir.path / "ca-cert.pem").string() +
                   ": has no Subject Key Identifier extension, which the certificates it signs "
                   "name it by; reissue it with subjectKeyIdentifier=hash");

  // Signing with such an issuer says why it fails, not just that it did.
  std::string sign_why;
  tls::CertificateSpec spec{"",
                            "",
                            {"spiffe://cluster.local/ns/a/sa/b"},
                            false,
                            std::chrono::system_clock::now(),
                            std::chrono::system_clock::now() + 1h};
  CHECK_FALSE(tls::SignCertificate(spec, *key, &cert, *key, &sign_why).ok());
  CHECK(sign_why.find("authorityKeyIdentifier") != std::string::npos);
}

}  // namespace
}  // namespace zt::identity
