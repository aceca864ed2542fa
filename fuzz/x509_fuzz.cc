// Fuzz target: reading certificates and keys (tls/x509.h) and what the peer check
// takes from a certificate: its URI SANs (byte for byte, a NUL stays in) read as
// SPIFFE ids, its validity and whether it is a CA. BoringSSL itself is not
// instrumented here (it is built once by scripts/setup.sh); the code under test is
// ours on top of it, fed certificates a peer or a CA directory could hold.
//
// Input: a mode byte, then the bytes: mode 0 DER certificate, 1 PEM certificate,
// 2 PEM chain, 3 PEM private key (then matched against a fixed certificate).
#include <openssl/err.h>
#include <openssl/x509.h>

#include <chrono>
#include <string>

#include "fuzz/fuzz_input.h"
#include "ztunnel/tls/spiffe.h"
#include "ztunnel/tls/x509.h"

namespace {

using zt::tls::Certificate;
using zt::tls::PrivateKey;

void Inspect(const Certificate& cert) {
  for (const std::string& uri : cert.UriSans()) {
    std::string why;
    auto id = zt::tls::SpiffeId::Parse(uri, &why);
    if (id) {
      ZT_FUZZ_CHECK(id->ToString() == uri);
      ZT_FUZZ_CHECK(uri.find('\0') == std::string::npos);
    } else {
      ZT_FUZZ_CHECK(!why.empty());
    }
  }
  // TlsSession's cache keeps a verified chain no longer than every certificate's
  // validity: these must be usable time points for any certificate.
  const auto nb = cert.not_before();
  const auto na = cert.not_after();
  const auto now = std::chrono::system_clock::now();
  (void)(std::max(nb, now) < std::min(na, now + std::chrono::minutes(10)));
  (void)cert.is_ca();
  const std::string pem = cert.ToPem();
  if (!pem.empty()) {
    auto again = Certificate::FromPem(pem);
    ZT_FUZZ_CHECK(again.ok());
    ZT_FUZZ_CHECK(again->UriSans() == cert.UriSans());
    ZT_FUZZ_CHECK(again->is_ca() == cert.is_ca());
  }
  const Certificate copy(cert);  // shares the X509
  ZT_FUZZ_CHECK(copy.get() == cert.get());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zt::fuzz::Input in(data, size);
  const uint8_t mode = in.Byte() % 4;
  const std::string_view bytes = in.Rest();
  switch (mode) {
    case 0: {
      const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
      bssl::UniquePtr<X509> x(d2i_X509(nullptr, &p, static_cast<long>(bytes.size())));
      if (x) Inspect(Certificate(std::move(x)));
      break;
    }
    case 1:
      if (auto cert = Certificate::FromPem(bytes)) Inspect(*cert);
      break;
    case 2:
      if (auto chain = Certificate::ChainFromPem(bytes)) {
        ZT_FUZZ_CHECK(!chain->empty());
        for (const Certificate& c : *chain) Inspect(c);
      }
      break;
    case 3:
      if (auto key = PrivateKey::FromPem(bytes)) {
        const std::string pem = key->ToPem();
        ZT_FUZZ_CHECK(!pem.empty());
        ZT_FUZZ_CHECK(PrivateKey::FromPem(pem).ok());
      }
      break;
  }
  ERR_clear_error();  // BoringSSL's error queue is per thread: keep it from growing
  return 0;
}
