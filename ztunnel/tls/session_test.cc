#include "ztunnel/tls/session.h"

#include <openssl/ssl.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/tls/testing.h"

namespace zt::tls {
namespace {

using namespace std::chrono_literals;
using Progress = TlsSession::Progress;
using testing::TestCa;

const SpiffeId kClientId = SpiffeId::Make("cluster.local", "frontend", "web");
const SpiffeId kServerId = SpiffeId::Make("cluster.local", "backend", "api");

std::shared_ptr<TlsContext> Context(Role role, const Credentials& creds, const TestCa& root,
                                    const std::string& trust_domain = "cluster.local") {
  std::string why;
  auto ctx = TlsContext::Create(role, creds, {root.cert}, trust_domain, &why);
  if (!ctx) FAIL("context: " << why);
  return *ctx;
}

// Move passes up to `chunk` bytes of ciphertext from one session to the other.
bool Move(TlsSession& from, TlsSession& to, size_t chunk) {
  std::vector<char> buf(chunk);
  const size_t n = from.PullCiphertext(buf);
  to.PushCiphertext({buf.data(), n});
  return n > 0;
}

struct Outcome {
  Progress client;
  Progress server;
};

// Handshake runs both sides, moving `chunk` bytes at a time, until both are done, one
// failed, or nothing moves any more.
Outcome Handshake(TlsSession& client, TlsSession& server, size_t chunk = 1 << 20) {
  Outcome o{Progress::kWantIo, Progress::kWantIo};
  for (int step = 0; step < 200000; ++step) {
    o.client = client.Handshake();
    o.server = server.Handshake();
    const bool moved = Move(client, server, chunk) | Move(server, client, chunk);
    if (o.client == Progress::kDone && o.server == Progress::kDone && !moved) return o;
    if ((o.client == Progress::kFailed || o.server == Progress::kFailed) && !moved) return o;
    if (!moved && o.client == Progress::kDone && o.server == Progress::kWantIo) continue;
  }
  return o;
}

// ReadAll reads what `to` can decrypt after moving everything from `from`.
std::string Transfer(TlsSession& from, TlsSession& to, size_t chunk, Progress* last = nullptr) {
  std::string out;
  std::vector<char> buf(16384);
  for (;;) {
    const bool moved = Move(from, to, chunk);
    size_t n = 0;
    Progress p;
    while ((p = to.Read(buf, &n)) == Progress::kDone) out.append(buf.data(), n);
    if (last != nullptr) *last = p;
    if (p != Progress::kWantIo || !moved) return out;
  }
}

TEST_CASE("Mutual TLS 1.3 handshake, identities, data and close_notify", "[tls]") {
  auto ca = TestCa::Make();
  for (size_t chunk : {size_t{1} << 20, size_t{1}}) {  // whole flights, then one byte at a time
    INFO("chunk " << chunk);
    auto client = TlsSession::Client(Context(Role::kClient, ca.Issue(kClientId), ca), {kServerId});
    auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
    Outcome o = Handshake(*client, *server, chunk);
    REQUIRE(o.client == Progress::kDone);
    REQUIRE(o.server == Progress::kDone);
    CHECK(client->peer() == kServerId);
    CHECK(server->peer() == kClientId);

    std::string big(300 * 1024, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + 3);
    REQUIRE(client->Write(big) == Progress::kDone);
    CHECK(Transfer(*client, *server, chunk == 1 ? 97 : chunk) == big);
    REQUIRE(server->Write(std::string_view("pong")) == Progress::kDone);
    CHECK(Transfer(*server, *client, chunk) == "pong");

    client->Close();
    Progress last;
    CHECK(Transfer(*client, *server, chunk, &last).empty());
    CHECK(last == Progress::kClosed);
  }
}

TEST_CASE("A chain through an intermediate CA verifies", "[tls]") {
  auto root = TestCa::Make();
  auto mid = root.Intermediate();
  Credentials server_creds = mid.Issue(kServerId);
  server_creds.chain.push_back(mid.cert);  // present leaf + intermediate
  Credentials client_creds = mid.Issue(kClientId);
  client_creds.chain.push_back(mid.cert);
  auto client = TlsSession::Client(Context(Role::kClient, client_creds, root), {kServerId});
  auto server = TlsSession::Server(Context(Role::kServer, server_creds, root));
  Outcome o = Handshake(*client, *server);
  CHECK(o.client == Progress::kDone);
  CHECK(o.server == Progress::kDone);
}

// ServerRejects runs a handshake the server must refuse and returns its error; the
// client learns of it from the alert.
TlsError ServerRejects(TlsSession& client, TlsSession& server) {
  Outcome o = Handshake(client, server);
  CHECK(o.server == Progress::kFailed);
  // TLS 1.3: the client may think it is done; its next read sees the server's alert.
  Progress last;
  Transfer(server, client, 1 << 20, &last);
  CHECK((o.client == Progress::kFailed || last == Progress::kFailed));
  return server.error();
}

TEST_CASE("The client rejects a server that is not an expected identity", "[tls]") {
  auto ca = TestCa::Make();
  auto client = TlsSession::Client(Context(Role::kClient, ca.Issue(kClientId), ca),
                                   {SpiffeId::Make("cluster.local", "backend", "other")});
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  Outcome o = Handshake(*client, *server);
  CHECK(o.client == Progress::kFailed);
  CHECK(client->error() == TlsError::kSanMismatch);
  CHECK(client->error_detail().find("spiffe://cluster.local/ns/backend/sa/api") !=
        std::string::npos);
  CHECK(o.server == Progress::kFailed);
  CHECK(server->error() == TlsError::kPeerRejected);
}

TEST_CASE("The server rejects a client from another trust domain", "[tls]") {
  auto ca = TestCa::Make();
  auto client = TlsSession::Client(
      Context(Role::kClient, ca.Issue(SpiffeId::Make("evil.example", "frontend", "web")), ca),
      {kServerId});
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  CHECK(ServerRejects(*client, *server) == TlsError::kWrongTrustDomain);
}

TEST_CASE("An expired or not yet valid server certificate is rejected", "[tls]") {
  auto ca = TestCa::Make();
  const auto now = std::chrono::system_clock::now();
  struct Case {
    std::chrono::system_clock::time_point from, until;
    TlsError want;
  } cases[] = {{now - 48h, now - 24h, TlsError::kExpired},
               {now + 24h, now + 48h, TlsError::kNotYetValid}};
  for (const Case& c : cases) {
    auto client = TlsSession::Client(Context(Role::kClient, ca.Issue(kClientId), ca), {kServerId});
    auto server = TlsSession::Server(
        Context(Role::kServer, ca.IssueUris({kServerId.ToString()}, c.from, c.until), ca));
    Outcome o = Handshake(*client, *server);
    CHECK(o.client == Progress::kFailed);
    CHECK(client->error() == c.want);
  }
}

TEST_CASE("A certificate from an untrusted root is rejected, both ways", "[tls]") {
  auto ca = TestCa::Make();
  auto other = TestCa::Make("attacker");
  {
    auto client = TlsSession::Client(Context(Role::kClient, ca.Issue(kClientId), ca), {kServerId});
    auto server = TlsSession::Server(Context(Role::kServer, other.Issue(kServerId), ca));
    Outcome o = Handshake(*client, *server);
    CHECK(o.client == Progress::kFailed);
    CHECK(client->error() == TlsError::kUntrustedRoot);
  }
  {
    auto client =
        TlsSession::Client(Context(Role::kClient, other.Issue(kClientId), ca), {kServerId});
    auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
    CHECK(ServerRejects(*client, *server) == TlsError::kUntrustedRoot);
  }
}

TEST_CASE("A client without a certificate is rejected", "[tls]") {
  auto ca = TestCa::Make();
  auto client = TlsSession::Client(Context(Role::kClient, Credentials{}, ca), {kServerId});
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  CHECK(ServerRejects(*client, *server) == TlsError::kNoPeerCertificate);
}

TEST_CASE("A client offering only TLS 1.2 is rejected", "[tls]") {
  auto ca = TestCa::Make();
  auto client_ctx = Context(Role::kClient, ca.Issue(kClientId), ca);
  REQUIRE(SSL_CTX_set_min_proto_version(client_ctx->get(), TLS1_2_VERSION));
  REQUIRE(SSL_CTX_set_max_proto_version(client_ctx->get(), TLS1_2_VERSION));
  auto client = TlsSession::Client(client_ctx, {kServerId});
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  Outcome o = Handshake(*client, *server);
  CHECK(o.server == Progress::kFailed);
  CHECK(server->error() == TlsError::kProtocolVersion);
  CHECK(o.client == Progress::kFailed);
}

TEST_CASE("A client that does not offer h2 is rejected", "[tls]") {
  auto ca = TestCa::Make();
  auto client_ctx = Context(Role::kClient, ca.Issue(kClientId), ca);
  const uint8_t http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  REQUIRE(SSL_CTX_set_alpn_protos(client_ctx->get(), http11, sizeof(http11)) == 0);
  auto client = TlsSession::Client(client_ctx, {kServerId});
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  Outcome o = Handshake(*client, *server);
  CHECK(o.server == Progress::kFailed);
  CHECK(server->error() == TlsError::kAlpnMismatch);
}

TEST_CASE("A client that offers no ALPN at all is served as h2, as Istio serves it", "[tls]") {
  // Regression (issue 15, defect 11): such a client was closed after the handshake.
  auto ca = TestCa::Make();
  auto client_ctx = Context(Role::kClient, ca.Issue(kClientId), ca);
  REQUIRE(SSL_CTX_set_alpn_protos(client_ctx->get(), nullptr, 0) == 0);  // no extension
  auto client = TlsSession::Client(client_ctx, {kServerId});
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  Outcome o = Handshake(*client, *server);
  CHECK(o.server == Progress::kDone);
  CHECK(server->error() == TlsError::kNone);
  CHECK(server->peer() == kClientId);
  // Our own client still insists on h2 from a server: it offered it.
  CHECK(o.client == Progress::kFailed);
  CHECK(client->error() == TlsError::kAlpnMismatch);
}

TEST_CASE("The ClientHello offers no SHA-1 signature algorithms", "[tls]") {
  // Regression (issue 15, defect 11): BoringSSL's default list offered rsa_pkcs1_sha1.
  auto ca = TestCa::Make();
  auto client = TlsSession::Client(Context(Role::kClient, ca.Issue(kClientId), ca), {kServerId});
  (void)client->Handshake();
  std::vector<char> buf(16384);
  const size_t n = client->PullCiphertext(buf);
  REQUIRE(n > 9);
  // Record header (5), handshake header (4), then the ClientHello body.
  const auto* p = reinterpret_cast<const uint8_t*>(buf.data());
  size_t off = 5 + 4 + 2 + 32;
  off += 1 + p[off];                                // session id
  off += 2 + ((size_t{p[off]} << 8) | p[off + 1]);  // cipher suites
  off += 1 + p[off];                                // compression methods
  const size_t end = off + 2 + ((size_t{p[off]} << 8) | p[off + 1]);
  off += 2;
  std::vector<uint16_t> sigalgs;
  while (off + 4 <= end && off + 4 <= n) {
    const uint16_t type = static_cast<uint16_t>((p[off] << 8) | p[off + 1]);
    const size_t len = (size_t{p[off + 2]} << 8) | p[off + 3];
    if (type == 13) {  // signature_algorithms
      for (size_t i = off + 6; i + 1 < off + 4 + len; i += 2) {
        sigalgs.push_back(static_cast<uint16_t>((p[i] << 8) | p[i + 1]));
      }
    }
    off += 4 + len;
  }
  REQUIRE_FALSE(sigalgs.empty());
  for (uint16_t alg : sigalgs) {
    INFO("signature algorithm 0x" << std::hex << alg);
    CHECK((alg >> 8) != 0x02);  // 0x0201 rsa_pkcs1_sha1, 0x0203 ecdsa_sha1: SHA-1 is 0x02..
  }
  CHECK(sigalgs.front() == 0x0403);  // ecdsa_secp256r1_sha256 first: our certificates' kind
}

TEST_CASE("Malformed SPIFFE SANs are rejected", "[tls]") {
  auto ca = TestCa::Make();
  const auto now = std::chrono::system_clock::now();
  const std::vector<std::vector<std::string>> bad_sans = {
      {std::string("spiffe://cluster.local/ns/backend/sa/api\0x", 42)},  // embedded NUL
      {"https://cluster.local/ns/backend/sa/api"},                       // wrong scheme
      {"spiffe://cluster.local/ns/backend"},                             // no sa part
      {"spiffe://cluster.local/sa/api"},                                 // no ns part
      {},                                                                // no URI SAN
      {kServerId.ToString(), "spiffe://cluster.local/ns/x/sa/y"},        // two identities
  };
  for (const auto& sans : bad_sans) {
    INFO(sans.size());
    auto client = TlsSession::Client(Context(Role::kClient, ca.Issue(kClientId), ca), {kServerId});
    auto server =
        TlsSession::Server(Context(Role::kServer, ca.IssueUris(sans, now - 1h, now + 1h), ca));
    Outcome o = Handshake(*client, *server);
    CHECK(o.client == Progress::kFailed);
    CHECK(client->error() == TlsError::kBadSan);
  }
}

TEST_CASE("Garbage instead of a handshake fails cleanly", "[tls]") {
  auto ca = TestCa::Make();
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  server->PushCiphertext(std::string_view("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(server->Handshake() == Progress::kFailed);
  CHECK(server->error() == TlsError::kProtocol);
  CHECK_FALSE(server->error_detail().empty());
}

TEST_CASE("Contexts refuse unusable credentials with a reason", "[tls]") {
  auto ca = TestCa::Make();
  auto other = TestCa::Make();
  std::string why;
  Credentials mismatched = ca.Issue(kServerId);
  mismatched.key = std::move(other.key);
  CHECK_FALSE(TlsContext::Create(Role::kServer, mismatched, {ca.cert}, "cluster.local", &why).ok());
  CHECK(why == "the private key does not match the certificate");
  CHECK_FALSE(
      TlsContext::Create(Role::kServer, Credentials{}, {ca.cert}, "cluster.local", &why).ok());
  CHECK(why == "a server needs a certificate");
  CHECK_FALSE(
      TlsContext::Create(Role::kClient, ca.Issue(kClientId), {}, "cluster.local", &why).ok());
  CHECK(why == "no trust roots");
}

}  // namespace
}  // namespace zt::tls

namespace zt::tls {
namespace {

TEST_CASE("A repeat peer reuses its chain verification, identity checks still apply", "[tls]") {
  auto ca = TestCa::Make();
  auto client_ctx = Context(Role::kClient, ca.Issue(kClientId), ca);
  auto server_ctx = Context(Role::kServer, ca.Issue(kServerId), ca);
  for (int i = 0; i < 3; ++i) {
    auto client = TlsSession::Client(client_ctx, {kServerId});
    auto server = TlsSession::Server(server_ctx);
    Outcome o = Handshake(*client, *server);
    REQUIRE(o.client == Progress::kDone);
    REQUIRE(o.server == Progress::kDone);
    CHECK(server->peer() == kClientId);
    CHECK(client->peer() == kServerId);
  }
  CHECK(server_ctx->verified_reuses() == 2);
  CHECK(client_ctx->verified_reuses() == 2);
  // The remembered server chain is still checked against what this client expects.
  auto client = TlsSession::Client(client_ctx, {SpiffeId::Make("cluster.local", "x", "y")});
  auto server = TlsSession::Server(server_ctx);
  Outcome o = Handshake(*client, *server);
  CHECK(o.client == Progress::kFailed);
  CHECK(client->error() == TlsError::kSanMismatch);
  CHECK(client_ctx->verified_reuses() == 3);
}

TEST_CASE("A reused chain verification ends when the certificate expires", "[tls]") {
  auto ca = TestCa::Make();
  auto client_ctx = Context(Role::kClient, ca.Issue(kClientId), ca);
  const auto now = std::chrono::system_clock::now();
  // X.509 times have whole seconds: valid until the start of the second after next.
  const auto until =
      std::chrono::system_clock::from_time_t(std::chrono::system_clock::to_time_t(now) + 2);
  auto server_ctx =
      Context(Role::kServer, ca.IssueUris({kServerId.ToString()}, now - 1h, until), ca);
  {
    auto client = TlsSession::Client(client_ctx, {kServerId});
    auto server = TlsSession::Server(server_ctx);
    REQUIRE(Handshake(*client, *server).client == Progress::kDone);
  }
  std::this_thread::sleep_until(until + 100ms);
  auto client = TlsSession::Client(client_ctx, {kServerId});
  auto server = TlsSession::Server(server_ctx);
  Outcome o = Handshake(*client, *server);
  CHECK(o.client == Progress::kFailed);
  CHECK(client->error() == TlsError::kExpired);
  CHECK(client_ctx->verified_reuses() == 0);
}

}  // namespace
}  // namespace zt::tls

namespace zt::tls {
namespace {

TEST_CASE("Lent ciphertext is read in place and its unread rest is kept", "[tls]") {
  auto ca = TestCa::Make();
  auto client = TlsSession::Client(Context(Role::kClient, ca.Issue(kClientId), ca), {kServerId});
  auto server = TlsSession::Server(Context(Role::kServer, ca.Issue(kServerId), ca));
  REQUIRE(Handshake(*client, *server).server == Progress::kDone);
  std::string sent(100000, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + i * 7 % 26);
  REQUIRE(client->Write({sent.data(), sent.size()}) == Progress::kDone);
  const std::string wire = client->TakeCiphertext({});
  std::string got;
  std::vector<char> buf(16384);
  // Lend odd-sized pieces, as receive buffers would cut the stream, and read what
  // each makes decryptable before returning it.
  for (size_t off = 0; off < wire.size();) {
    const size_t n = std::min<size_t>(7777, wire.size() - off);
    std::string piece = wire.substr(off, n);
    server->LendCiphertext({piece.data(), piece.size()});
    size_t r = 0;
    while (server->Read(buf, &r) == Progress::kDone) got.append(buf.data(), r);
    server->ReturnLent();
    piece.assign(piece.size(), 'X');  // the session must not read it after the return
    off += n;
  }
  size_t r = 0;
  while (server->Read(buf, &r) == Progress::kDone) got.append(buf.data(), r);
  CHECK(got == sent);
}

}  // namespace
}  // namespace zt::tls

namespace zt::tls {
namespace {

// PlainServer is a BoringSSL server that asks no client certificate (as istiod's
// discovery port), fed through memory BIOs.
struct PlainServer {
  explicit PlainServer(const Credentials& creds) {
    ctx.reset(SSL_CTX_new(TLS_method()));
    SSL_CTX_use_certificate(ctx.get(), creds.chain[0].get());
    SSL_CTX_use_PrivateKey(ctx.get(), creds.key.get());
    SSL_CTX_set_alpn_select_cb(
        ctx.get(),
        [](SSL*, const uint8_t** out, uint8_t* out_len, const uint8_t* in, unsigned in_len, void*) {
          static const uint8_t kH2[] = {2, 'h', '2'};
          return SSL_select_next_proto(const_cast<uint8_t**>(out), out_len, kH2, 3, in, in_len) ==
                         OPENSSL_NPN_NEGOTIATED
                     ? SSL_TLSEXT_ERR_OK
                     : SSL_TLSEXT_ERR_ALERT_FATAL;
        },
        nullptr);
    ssl.reset(SSL_new(ctx.get()));
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl.get(), rbio, wbio);
    SSL_set_accept_state(ssl.get());
  }
  // Run moves bytes between the client session and this server until both are done
  // or one failed; returns the client's last progress.
  TlsSession::Progress Run(TlsSession& client) {
    TlsSession::Progress p = TlsSession::Progress::kWantIo;
    std::vector<char> buf(1 << 16);
    for (int i = 0; i < 50; ++i) {
      p = client.Handshake();
      const size_t n = client.PullCiphertext(buf);
      if (n > 0) BIO_write(rbio, buf.data(), static_cast<int>(n));
      SSL_do_handshake(ssl.get());
      const int m = BIO_read(wbio, buf.data(), static_cast<int>(buf.size()));
      if (m > 0) client.PushCiphertext({buf.data(), static_cast<size_t>(m)});
      if (p != TlsSession::Progress::kWantIo && m <= 0) break;
    }
    return p;
  }
  bssl::UniquePtr<SSL_CTX> ctx;
  bssl::UniquePtr<SSL> ssl;
  BIO* rbio;
  BIO* wbio;
};

std::shared_ptr<TlsContext> ControlCtx(const testing::TestCa& ca) {
  auto ctx = TlsContext::Create(Role::kClient, Credentials{}, {ca.cert}, "");
  REQUIRE(ctx.ok());
  return *ctx;
}

TEST_CASE("A control-plane client checks the server's DNS name, not a SPIFFE id", "[tls]") {
  const auto ca = testing::TestCa::Make();
  const auto creds = ca.IssueDns({"istiod.istio-system.svc", "localhost"});
  {
    PlainServer server(creds);
    auto client = TlsSession::ClientForHost(ControlCtx(ca), "istiod.istio-system.svc");
    CHECK(server.Run(*client) == TlsSession::Progress::kDone);
    const char* sni = SSL_get_servername(server.ssl.get(), TLSEXT_NAMETYPE_host_name);
    REQUIRE(sni != nullptr);
    CHECK(std::string(sni) == "istiod.istio-system.svc");
  }
  {
    PlainServer server(creds);
    auto client = TlsSession::ClientForHost(ControlCtx(ca), "istiod.other.svc");
    CHECK(server.Run(*client) == TlsSession::Progress::kFailed);
    CHECK(client->error() == TlsError::kSanMismatch);
    CHECK(client->error_detail() == "the server's certificate does not name istiod.other.svc");
  }
  {
    // An IP address is checked against IP SANs, which istiod's certificate has none of.
    PlainServer server(creds);
    auto client = TlsSession::ClientForHost(ControlCtx(ca), "127.0.0.1");
    CHECK(server.Run(*client) == TlsSession::Progress::kFailed);
    CHECK(client->error() == TlsError::kSanMismatch);
  }
  {
    const auto other = testing::TestCa::Make();
    PlainServer server(creds);
    auto client = TlsSession::ClientForHost(ControlCtx(other), "localhost");
    CHECK(server.Run(*client) == TlsSession::Progress::kFailed);
    CHECK(client->error() == TlsError::kUntrustedRoot);
  }
}

}  // namespace
}  // namespace zt::tls
