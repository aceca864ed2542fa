#include "ztunnel/identity/ca.h"

#include <fcntl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace zt::identity {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCaCert = "ca-cert.pem";
constexpr const char* kCaKey = "ca-key.pem";
constexpr const char* kRootCert = "root-cert.pem";
constexpr const char* kCertChain = "cert-chain.pem";

Error Fail(std::string* reason, std::string why) {
  if (reason != nullptr) *reason = std::move(why);
  return Error{Errc::kInvalidArgument};
}

bool ReadFile(const fs::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// WriteFile writes atomically (temp file + rename) with the given mode.
bool WriteFile(const fs::path& path, const std::string& data, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  const bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                  ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

bool SameCert(const tls::Certificate& a, const tls::Certificate& b) {
  return X509_cmp(a.get(), b.get()) == 0;
}

Status Generate(const fs::path& dir, const std::string& trust_domain, std::string* reason) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail(reason, "cannot create " + dir.string() + ": " + ec.message());
  auto key = tls::PrivateKey::GenerateP256();
  if (!key) return Fail(reason, "cannot generate the CA key");
  const auto now = std::chrono::system_clock::now();
  tls::CertificateSpec spec{
      trust_domain, "ztunnel local CA",          {},
      true,         now - std::chrono::hours(1), now + std::chrono::hours(24 * 3650)};
  auto root = tls::SignCertificate(spec, *key, nullptr, *key);
  if (!root) return Fail(reason, "cannot sign the CA certificate");
  const std::string pem = root->ToPem();
  // The key first, private; the certificates after it, so a crash never leaves
  // certificates without their key.
  if (!WriteFile(dir / kCaKey, key->ToPem(), 0600) || !WriteFile(dir / kCaCert, pem, 0644) ||
      !WriteFile(dir / kRootCert, pem, 0644) || !WriteFile(dir / kCertChain, pem, 0644)) {
    return Fail(reason,
                "cannot write the CA files in " + dir.string() + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<LocalCa>> LocalCa::Open(const LocalCaOptions& options, std::string* reason) {
  const fs::path dir = options.directory;
  if (options.directory.empty()) return Fail(reason, "no CA directory given");
  if (!fs::exists(dir / kCaCert) && !fs::exists(dir / kCaKey)) {
    if (!options.generate) {
      return Fail(reason, "no CA in " + dir.string() + " (expected " + kCaCert + ", " + kCaKey +
                              ", " + kRootCert + ", " + kCertChain +
                              "); ask for one to be generated or plug in Istio's cacerts");
    }
    if (Status s = Generate(dir, options.trust_domain, reason); !s) return s.error();
  }

  std::string text;
  std::shared_ptr<LocalCa> ca(new LocalCa());
  ca->leaf_ttl_ = options.leaf_ttl;
  const auto read = [&](const char* name) -> bool {
    if (!ReadFile(dir / name, &text)) {
      Fail(reason, (dir / name).string() + ": cannot read: " + std::strerror(errno));
      return false;
    }
    return true;
  };
  if (!read(kCaCert)) return Error{Errc::kInvalidArgument};
  auto ca_cert = tls::Certificate::FromPem(text);
  if (!ca_cert) return Fail(reason, std::string(kCaCert) + ": not a PEM certificate");
  if (!ca_cert->is_ca()) return Fail(reason, std::string(kCaCert) + ": not a CA certificate");
  // Every leaf names its issuer by key id (authorityKeyIdentifier); a CA without one
  // would load fine and then fail every issuance.
  if (X509_get0_subject_key_id(ca_cert->get()) == nullptr) {
    return Fail(reason, (dir / kCaCert).string() +
                            ": has no Subject Key Identifier extension, which the certificates "
                            "it signs name it by; reissue it with subjectKeyIdentifier=hash");
  }
  if (!read(kCaKey)) return Error{Errc::kInvalidArgument};
  auto ca_key = tls::PrivateKey::FromPem(text);
  if (!ca_key) return Fail(reason, std::string(kCaKey) + ": not a PEM private key");
  if (!tls::KeyMatchesCertificate(*ca_key, *ca_cert)) {
    return Fail(reason, std::string(kCaKey) + " does not match " + kCaCert);
  }
  if (!read(kRootCert)) return Error{Errc::kInvalidArgument};
  auto root = tls::Certificate::FromPem(text);
  if (!root) return Fail(reason, std::string(kRootCert) + ": not a PEM certificate");
  std::vector<tls::Certificate> chain;
  if (fs::exists(dir / kCertChain)) {
    if (!read(kCertChain)) return Error{Errc::kInvalidArgument};
    auto parsed = tls::Certificate::ChainFromPem(text);
    if (!parsed) return Fail(reason, std::string(kCertChain) + ": no PEM certificates");
    chain = std::move(parsed).value();
  } else {
    chain.push_back(*ca_cert);
  }
  if (!SameCert(chain.front(), *ca_cert)) {
    return Fail(reason, std::string(kCertChain) + " must start with " + kCaCert);
  }
  // Peers will not be sent the root: they have it.
  if (SameCert(chain.back(), *root)) chain.pop_back();

  // The signing certificate must chain to the root, or nothing we issue will verify.
  bssl::UniquePtr<X509_STORE> store(X509_STORE_new());
  bssl::UniquePtr<STACK_OF(X509)> untrusted(sk_X509_new_null());
  X509_STORE_add_cert(store.get(), root->get());
  // The stack owns its elements (its deleter frees them): give it references.
  for (const auto& c : chain) {
    X509_up_ref(c.get());
    sk_X509_push(untrusted.get(), c.get());
  }
  bssl::UniquePtr<X509_STORE_CTX> vctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(vctx.get(), store.get(), ca_cert->get(), untrusted.get());
  if (X509_verify_cert(vctx.get()) != 1) {
    return Fail(reason, std::string(kCaCert) + " does not chain to " + kRootCert + ": " +
                            X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx.get())));
  }
  ca->ca_cert_ = std::move(ca_cert).value();
  ca->ca_key_ = std::move(ca_key).value();
  ca->root_ = std::move(root).value();
  ca->chain_ = std::move(chain);
  return ca;
}

void LocalCa::Issue(const tls::SpiffeId& id, IssueDone done) {
  std::string reason;
  auto issued = IssueNow(id, &reason);
  done(std::move(issued), std::move(reason));
}

Result<tls::Credentials> LocalCa::IssueNow(const tls::SpiffeId& id, std::string* reason) {
  auto key = tls::PrivateKey::GenerateP256();
  if (!key) {
    if (reason != nullptr) *reason = "cannot generate a P-256 key";
    return key.error();
  }
  const auto now = std::chrono::system_clock::now();
  // Backdate a little so peers with a slightly slow clock accept the certificate.
  tls::CertificateSpec spec{
      "", "", {id.ToString()}, false, now - std::chrono::minutes(1), now + leaf_ttl_};
  auto leaf = tls::SignCertificate(spec, *key, &ca_cert_, ca_key_, reason);
  if (!leaf) return leaf.error();
  tls::Credentials out;
  out.chain.push_back(std::move(leaf).value());
  for (const auto& c : chain_) out.chain.push_back(c);
  out.key = std::move(key).value();
  return out;
}

}  // namespace zt::identity
