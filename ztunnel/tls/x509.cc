#include "ztunnel/tls/x509.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>

namespace zt::tls {
namespace {

Error CryptoError() { return Error{Errc::kInvalidArgument}; }

std::string BioToString(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!BIO_mem_contents(bio, &data, &len)) return {};
  return std::string(reinterpret_cast<const char*>(data), len);
}

std::chrono::system_clock::time_point FromAsn1Time(const ASN1_TIME* t) {
  // This BoringSSL has no ASN1_TIME_to_posix: measure the distance from the epoch.
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int secs = 0;
  if (t == nullptr || !epoch || !ASN1_TIME_diff(&days, &secs, epoch.get(), t)) return {};
  // system_clock counts nanoseconds in 64 bits (years 1677-2262), while certificates
  // say 99991231235959Z for "no expiry" (RFC 5280): saturate instead of overflowing.
  using Clock = std::chrono::system_clock;
  constexpr int64_t kMax =
      std::chrono::duration_cast<std::chrono::seconds>(Clock::duration::max()).count();
  constexpr int64_t kMin =
      std::chrono::duration_cast<std::chrono::seconds>(Clock::duration::min()).count();
  const int64_t since_epoch = std::clamp(int64_t{days} * 86400 + secs, kMin, kMax);
  return Clock::time_point(std::chrono::seconds(since_epoch));
}

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value));
  return ext && X509_add_ext(cert, ext.get(), -1);
}

// AddSans adds one subjectAltName extension with the URI and DNS names given.
bool AddSans(X509* cert, const std::vector<std::string>& uris, const std::vector<std::string>& dns,
             bool critical) {
  bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  if (!names) return false;
  const auto add = [&](const std::string& text, int type) {
    bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
    bssl::UniquePtr<ASN1_IA5STRING> str(ASN1_IA5STRING_new());
    if (!name || !str || !ASN1_STRING_set(str.get(), text.data(), static_cast<int>(text.size()))) {
      return false;
    }
    GENERAL_NAME_set0_value(name.get(), type, str.release());
    if (!sk_GENERAL_NAME_push(names.get(), name.get())) return false;
    name.release();
    return true;
  };
  for (const std::string& uri : uris) {
    if (!add(uri, GEN_URI)) return false;
  }
  for (const std::string& name : dns) {
    if (!add(name, GEN_DNS)) return false;
  }
  return X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), critical ? 1 : 0, 0) == 1;
}

}  // namespace

Result<PrivateKey> PrivateKey::GenerateP256() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (!ec || !EC_KEY_generate_key(ec.get())) return CryptoError();
  PrivateKey out;
  out.key_.reset(EVP_PKEY_new());
  if (!out.key_ || !EVP_PKEY_assign_EC_KEY(out.key_.get(), ec.release())) return CryptoError();
  return out;
}

Result<PrivateKey> PrivateKey::FromPem(std::string_view pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PrivateKey out;
  out.key_.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!out.key_) return CryptoError();
  return out;
}

std::string PrivateKey::ToPem() const {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PKCS8PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr,
                                     nullptr)) {
    return {};
  }
  return BioToString(bio.get());
}

Certificate::Certificate(const Certificate& other) {
  if (other.cert_) {
    X509_up_ref(other.cert_.get());
    cert_.reset(other.cert_.get());
  }
}

Certificate& Certificate::operator=(const Certificate& other) {
  if (this != &other) {
    Certificate copy(other);
    cert_ = std::move(copy.cert_);
  }
  return *this;
}

Result<Certificate> Certificate::FromPem(std::string_view pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return CryptoError();
  return Certificate(std::move(cert));
}

Result<std::vector<Certificate>> Certificate::ChainFromPem(std::string_view pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<Certificate> out;
  for (;;) {
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    out.emplace_back(std::move(cert));
  }
  ERR_clear_error();  // the loop ends on "no start line"
  if (out.empty()) return CryptoError();
  return out;
}

std::string Certificate::ToPem() const {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(bio.get(), cert_.get())) return {};
  return BioToString(bio.get());
}

std::string Certificate::SerialDecimal() const {
  bssl::UniquePtr<BIGNUM> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert_.get()), nullptr));
  if (!bn) return {};
  bssl::UniquePtr<char> text(BN_bn2dec(bn.get()));
  return text ? std::string(text.get()) : std::string();
}

std::string Base64Encode(std::string_view data) {
  size_t len = 0;
  if (!EVP_EncodedLength(&len, data.size())) return {};
  std::string out(len, '\0');
  const size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                                   reinterpret_cast<const uint8_t*>(data.data()), data.size());
  out.resize(n);
  return out;
}

std::vector<std::string> Certificate::UriSans() const {
  std::vector<std::string> out;
  bssl::UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert_.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_STRING* s = name->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  return out;
}

std::chrono::system_clock::time_point Certificate::not_before() const {
  return FromAsn1Time(X509_get0_notBefore(cert_.get()));
}

std::chrono::system_clock::time_point Certificate::not_after() const {
  return FromAsn1Time(X509_get0_notAfter(cert_.get()));
}

bool Certificate::is_ca() const { return X509_check_ca(cert_.get()) > 0; }

Result<Certificate> SignCertificate(const CertificateSpec& spec, const PrivateKey& subject_public,
                                    const Certificate* issuer, const PrivateKey& issuer_key,
                                    std::string* why) {
  // Failed names the step that failed, with BoringSSL's reason when it gave one.
  const auto failed = [why](const char* step) {
    if (why != nullptr) {
      const char* reason = ERR_reason_error_string(ERR_peek_last_error());
      *why = std::string("cannot ") + step + (reason != nullptr ? std::string(": ") + reason : "");
    }
    ERR_clear_error();
    return CryptoError();
  };
  bssl::UniquePtr<X509> cert(X509_new());
  if (!cert || !X509_set_version(cert.get(), X509_VERSION_3)) return CryptoError();
  // 128 random bits, positive: a serial no two certificates share.
  uint8_t serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof(serial_bytes));
  serial_bytes[0] &= 0x7f;
  bssl::UniquePtr<BIGNUM> serial_bn(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  ASN1_INTEGER* serial = X509_get_serialNumber(cert.get());
  if (!serial_bn || !BN_to_ASN1_INTEGER(serial_bn.get(), serial)) return CryptoError();

  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (!spec.organization.empty() &&
      !X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(spec.organization.data()),
                                  static_cast<int>(spec.organization.size()), -1, 0)) {
    return CryptoError();
  }
  if (!spec.common_name.empty() &&
      !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(spec.common_name.data()),
                                  static_cast<int>(spec.common_name.size()), -1, 0)) {
    return CryptoError();
  }
  X509_NAME* issuer_name = issuer ? X509_get_subject_name(issuer->get()) : subject;
  if (!X509_set_issuer_name(cert.get(), issuer_name)) return CryptoError();

  if (!ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                     std::chrono::system_clock::to_time_t(spec.not_before)) ||
      !ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                     std::chrono::system_clock::to_time_t(spec.not_after)) ||
      !X509_set_pubkey(cert.get(), subject_public.get())) {
    return CryptoError();
  }

  X509* issuer_cert = issuer ? issuer->get() : cert.get();
  if (!AddExtension(cert.get(), issuer_cert, NID_subject_key_identifier, "hash")) {
    return failed("add the subjectKeyIdentifier extension");
  }
  if (!AddExtension(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always")) {
    return failed(
        "add the authorityKeyIdentifier extension (the issuer needs a subjectKeyIdentifier)");
  }
  bool ok;
  if (spec.is_ca) {
    ok = AddExtension(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:TRUE") &&
         AddExtension(cert.get(), issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    ok = AddExtension(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:FALSE") &&
         AddExtension(cert.get(), issuer_cert, NID_key_usage,
                      "critical,digitalSignature,keyEncipherment") &&
         AddExtension(cert.get(), issuer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  if (!ok) return failed("add the basicConstraints and key usage extensions");
  const bool empty_subject = spec.organization.empty() && spec.common_name.empty();
  if ((!spec.uri_sans.empty() || !spec.dns_sans.empty()) &&
      !AddSans(cert.get(), spec.uri_sans, spec.dns_sans, empty_subject)) {
    return failed("add the subjectAltName");
  }
  if (!X509_sign(cert.get(), issuer_key.get(), EVP_sha256())) return failed("sign");
  return Certificate(std::move(cert));
}

bool KeyMatchesCertificate(const PrivateKey& key, const Certificate& cert) {
  bssl::UniquePtr<EVP_PKEY> pub(X509_get_pubkey(cert.get()));
  return pub && EVP_PKEY_cmp(pub.get(), key.get()) == 1;
}

Result<std::string> CsrPem(const PrivateKey& key, const std::vector<std::string>& uri_sans) {
  bssl::UniquePtr<X509_REQ> req(X509_REQ_new());
  if (!req || !X509_REQ_set_version(req.get(), 0) || !X509_REQ_set_pubkey(req.get(), key.get())) {
    return CryptoError();
  }
  bssl::UniquePtr<GENERAL_NAMES> names(sk_GENERAL_NAME_new_null());
  for (const std::string& uri : uri_sans) {
    bssl::UniquePtr<GENERAL_NAME> name(GENERAL_NAME_new());
    bssl::UniquePtr<ASN1_IA5STRING> str(ASN1_IA5STRING_new());
    if (!name || !str || !ASN1_STRING_set(str.get(), uri.data(), static_cast<int>(uri.size()))) {
      return CryptoError();
    }
    GENERAL_NAME_set0_value(name.get(), GEN_URI, str.release());
    if (!sk_GENERAL_NAME_push(names.get(), name.get())) return CryptoError();
    name.release();
  }
  bssl::UniquePtr<STACK_OF(X509_EXTENSION)> exts(sk_X509_EXTENSION_new_null());
  // Critical: the subject is empty, so the SAN is the whole identity (RFC 5280 4.2.1.6).
  bssl::UniquePtr<X509_EXTENSION> san(X509V3_EXT_i2d(NID_subject_alt_name, 1, names.get()));
  if (!exts || !san || !sk_X509_EXTENSION_push(exts.get(), san.get())) return CryptoError();
  san.release();
  if (!X509_REQ_add_extensions(req.get(), exts.get()) ||
      !X509_REQ_sign(req.get(), key.get(), EVP_sha256())) {
    return CryptoError();
  }
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_X509_REQ(bio.get(), req.get())) return CryptoError();
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio.get(), &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace zt::tls
