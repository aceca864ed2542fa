// Writes the generated part of the seed corpora (fuzz/corpus/<target>/gen-*): byte
// streams that our own client and server exchanged, hostile frame sequences built by
// hand, HBONE header lists, ZDS messages and certificates. The hand-written seeds
// (configs, SPIFFE ids, regressions) sit beside them. Run it by hand after changing a
// target's input format, then commit the files:
//   cmake --build build --target fuzz_make_seeds && build/fuzz/fuzz_make_seeds fuzz/corpus
// Certificates use fresh keys, so those files change on every run; the rest is stable.
#include <nghttp2/nghttp2.h>
#include <openssl/mem.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ztunnel/h2/frame_writer.h"
#include "ztunnel/h2/session.h"
#include "ztunnel/inpod/zds.pb.h"
#include "ztunnel/tls/x509.h"

namespace {

namespace h2 = zt::h2;
namespace fs = std::filesystem;
namespace zds = istio::workload::zds;

fs::path g_root;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / ("gen-" + name), std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_seeds: cannot write %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
}

// Header of the h2 targets' inputs: an 8-byte decision seed and a flags byte.
std::string H2Head(uint64_t seed, uint8_t flags) {
  std::string h(8, '\0');
  std::memcpy(h.data(), &seed, 8);
  h.push_back(static_cast<char>(flags));
  return h;
}

// ---- Raw frames, for the hostile sequences: h2/frame_writer.h ----

using h2::testing::FrameWriter;
// Hpack is a writer with its own HPACK table; a block that cannot be encoded is empty.
struct Hpack : FrameWriter {
  std::string Block(const h2::testing::Headers& headers) {
    return FrameWriter::Block(headers).value_or("");
  }
};
constexpr auto Frame = &FrameWriter::Frame;
constexpr auto U32 = &FrameWriter::U32;
const std::string kPreface(FrameWriter::kPreface);

// ---- A real exchange between our client and server sessions ----

struct Observer final : h2::StreamObserver {
  h2::Session* session = nullptr;
  int32_t id = 0;
  std::string data;
  bool ended = false;
  bool closed = false;
  void OnData(std::span<const char> d) override {
    data.append(d.data(), d.size());
    session->Consume(id, d.size());
  }
  void OnEndStream() override { ended = true; }
  void OnStreamClosed(uint32_t) override { closed = true; }
};

struct Exchange final : h2::ServerHandler {
  std::unique_ptr<h2::Session> client = h2::Session::Client(h2::ClientLimits());
  std::unique_ptr<h2::Session> server = h2::Session::Server(h2::ServerLimits(), this);
  std::vector<int> statuses;  // what the server answers, in order of arrival
  size_t answered = 0;
  std::string reply;  // written back on every 200 tunnel, then END_STREAM
  std::map<int32_t, std::unique_ptr<Observer>> server_streams;
  std::vector<std::unique_ptr<Observer>> client_streams;
  std::string to_server, to_client;

  void OnConnect(int32_t stream, const h2::ConnectRequest&) override {
    const int status = answered < statuses.size() ? statuses[answered] : 200;
    ++answered;
    auto o = std::make_unique<Observer>();
    o->session = server.get();
    o->id = stream;
    if (status != 200) {
      (void)server->Respond(stream, status, nullptr);
      return;
    }
    (void)server->Respond(stream, 200, o.get());
    (void)server->Write(stream, reply);
    (void)server->EndStream(stream);
    server_streams[stream] = std::move(o);
  }

  int32_t Open(const std::string& authority = "10.0.0.2:8080") {
    auto o = std::make_unique<Observer>();
    o->session = client.get();
    h2::ConnectRequest r;
    r.authority = *zt::IpPort::Parse(authority);
    r.baggage = "k8s.namespace.name=shop,k8s.pod.name=web-0";
    r.forwarded = "for=\"10.0.0.1:40000\"";
    r.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    auto id = client->Connect(r, o.get());
    o->id = id ? *id : 0;
    const int32_t out = o->id;
    client_streams.push_back(std::move(o));
    return out;
  }

  void Pump() {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      for (std::string_view b = client->NextOutput(); !b.empty(); b = client->NextOutput()) {
        to_server.append(b);
        (void)server->Receive(b);
        moved = true;
      }
      for (std::string_view b = server->NextOutput(); !b.empty(); b = server->NextOutput()) {
        to_client.append(b);
        (void)client->Receive(b);
        moved = true;
      }
      if (!moved) return;
    }
  }
};

void H2Exchanges() {
  {  // one tunnel, a few bytes each way, both FINs
    Exchange x;
    x.reply = "world";
    const int32_t id = x.Open();
    (void)x.client->Write(id, "hello");
    (void)x.client->EndStream(id);
    x.Pump();
    Write("h2_server", "one-tunnel", H2Head(1, 0) + x.to_server);
    Write("h2_client", "one-tunnel", H2Head(1, 0) + x.to_client);
  }
  {  // three streams: 200, 401, 503; the client resets the open one
    Exchange x;
    x.statuses = {200, 401, 503};
    x.reply = std::string(1000, 'r');
    const int32_t a = x.Open();
    x.Open("[fd00::7]:443");
    x.Open("10.1.2.3:9090");
    x.Pump();
    x.client->Reset(a, h2::kConnectError);
    x.Pump();
    Write("h2_server", "three-streams", H2Head(2, 2) + x.to_server);
    Write("h2_client", "three-streams", H2Head(2, 2) + x.to_client);
  }
  {  // 24 KiB up and back: window updates from Consume, PINGs both ways, GOAWAY
    Exchange x;
    x.reply = std::string(24 << 10, 'b');
    const int32_t id = x.Open();
    (void)x.client->Write(id, std::string(24 << 10, 'a'));
    x.client->SendPing();
    x.server->SendPing();
    x.Pump();
    (void)x.client->EndStream(id);
    x.client->Goaway();
    x.server->Goaway();
    x.Pump();
    Write("h2_server", "bulk-ping-goaway", H2Head(3, 4) + x.to_server);
    Write("h2_client", "bulk-ping-goaway", H2Head(3, 4 | 8) + x.to_client);
  }
}

// ---- Hostile sequences ----

void H2Hostile() {
  const std::string settings = Frame(NGHTTP2_SETTINGS, 0, 0, "");
  const std::string settings_ack = Frame(NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, "");
  {  // server side: what a client might send
    Hpack hp;
    const std::string open = kPreface + settings;
    Write("h2_server", "bad-authorities",
          H2Head(4, 0) + open + hp.Connect(1, "example.com:443") + hp.Connect(3, "10.0.0.1:0") +
              hp.Connect(5, "[fd00::1]") + hp.Connect(7, "10.0.0.1:65536") +
              hp.Connect(9, "[fd00::1]:80"));
    Write("h2_server", "get-not-connect",
          H2Head(5, 0) + open +
              Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
                    hp.Block({{":method", "GET"},
                              {":scheme", "https"},
                              {":path", "/"},
                              {":authority", "10.0.0.1:80"}})));
    const std::string block =
        hp.Block({{":method", "CONNECT"}, {":authority", "10.0.0.2:80"}, {"baggage", "a=b"}});
    Write("h2_server", "continuation",
          H2Head(6, 0) + open + Frame(NGHTTP2_HEADERS, 0, 1, block.substr(0, 3)) +
              Frame(NGHTTP2_CONTINUATION, 0, 1, block.substr(3, 3)) +
              Frame(NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, block.substr(6)));
    std::string endless = open + Frame(NGHTTP2_HEADERS, 0, 1, block.substr(0, 2));
    for (int i = 0; i < 12; ++i) endless += Frame(NGHTTP2_CONTINUATION, 0, 1, "");
    Write("h2_server", "continuation-flood", H2Head(7, 0) + endless);
    Write("h2_server", "empty-data",
          H2Head(8, 0) + open + hp.Connect(1) + Frame(NGHTTP2_DATA, 0, 1, "") +
              Frame(NGHTTP2_DATA, 0, 1, "") + Frame(NGHTTP2_DATA, 0, 1, ""));
    std::string rapid = open;
    for (int32_t s = 1; s < 80; s += 2) {
      rapid += hp.Connect(s) + Frame(NGHTTP2_RST_STREAM, 0, s, U32(h2::kCancel));
    }
    Write("h2_server", "rapid-reset", H2Head(9, 0) + rapid);
    std::string pings = open;
    for (int i = 0; i < 40; ++i) pings += Frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
    for (int i = 0; i < 10; ++i) pings += settings;
    Write("h2_server", "ping-settings-flood", H2Head(10, 0) + pings);
    std::string updates = open + hp.Connect(1);
    for (int i = 0; i < 120; ++i) updates += Frame(NGHTTP2_WINDOW_UPDATE, 0, i % 2, U32(1));
    Write("h2_server", "window-update-flood", H2Head(11, 0) + updates);
    // Padded DATA, PRIORITY, an unknown frame type, a PUSH_PROMISE (clients cannot).
    std::string padded(1, '\x04');
    padded += "data";
    padded += std::string(4, '\0');
    Write("h2_server", "odd-frames",
          H2Head(12, 0) + open + hp.Connect(1) +
              Frame(NGHTTP2_DATA, NGHTTP2_FLAG_PADDED, 1, padded) +
              Frame(NGHTTP2_PRIORITY, 0, 3, U32(1) + "\x10") + Frame(0x42, 0, 0, "unknown") +
              settings_ack + Frame(NGHTTP2_PUSH_PROMISE, NGHTTP2_FLAG_END_HEADERS, 1, U32(2)));
    // Large SETTINGS: tiny max frame size is illegal, a big window is not.
    std::string s;
    s += std::string("\0\4", 2) + U32(0x7fffffff);  // INITIAL_WINDOW_SIZE
    s += std::string("\0\5", 2) + U32(16384);       // MAX_FRAME_SIZE
    s += std::string("\0\3", 2) + U32(1);           // MAX_CONCURRENT_STREAMS
    Write("h2_server", "settings-values",
          H2Head(13, 0) + kPreface + Frame(NGHTTP2_SETTINGS, 0, 0, s) + hp.Connect(1) +
              Frame(NGHTTP2_WINDOW_UPDATE, 0, 0, U32(0x7fff0000)) +
              Frame(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "bye"));
  }
  {  // client side: what a server might answer to streams 1, 3, 5
    Hpack hp;
    Write("h2_client", "refusal-with-body",
          H2Head(20, 1 | 4) + hp.Response(1, "401") + Frame(NGHTTP2_DATA, 0, 1, "denied") +
              Frame(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "!"));
    Write("h2_client", "informational-then-200",
          H2Head(21, 4) + hp.Response(1, "100") + hp.Response(1, "200") +
              Frame(NGHTTP2_DATA, 0, 1, "tunnel bytes"));
    Write("h2_client", "data-before-response",
          H2Head(22, 4) + Frame(NGHTTP2_DATA, 0, 1, "early") + hp.Response(1, "200"));
    Write("h2_client", "goaway-reset",
          H2Head(23, 2 | 4) + hp.Response(1, "200") + hp.Response(3, "503") +
              Frame(NGHTTP2_RST_STREAM, 0, 5, U32(h2::kRefusedStream)) +
              Frame(NGHTTP2_GOAWAY, 0, 0, U32(1) + U32(0) + "draining"));
    std::string s;
    s += std::string("\0\3", 2) + U32(1);  // MAX_CONCURRENT_STREAMS 1
    s += std::string("\0\4", 2) + U32(1);  // INITIAL_WINDOW_SIZE 1
    Write("h2_client", "tight-settings",
          H2Head(24, 3) + Frame(NGHTTP2_SETTINGS, 0, 0, s) + hp.Response(1, "200") +
              Frame(NGHTTP2_WINDOW_UPDATE, 0, 1, U32(100)) + settings_ack);
    Write("h2_client", "push-promise",
          H2Head(25, 4) + hp.Response(1, "200") +
              Frame(NGHTTP2_PUSH_PROMISE, NGHTTP2_FLAG_END_HEADERS, 1,
                    U32(2) + hp.Block({{":method", "GET"}, {":path", "/"}})));
    const std::string block = hp.Block({{":status", "200"}, {"server", "fuzz"}});
    Write("h2_client", "response-continuation",
          H2Head(26, 4) + Frame(NGHTTP2_HEADERS, 0, 1, block.substr(0, 1)) +
              Frame(NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, block.substr(1)) +
              Frame(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "x") +
              Frame(NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, std::string(8, '\0')));
  }
}

// ---- HBONE request header lists (see hbone_request_fuzz.cc for the format) ----

std::string Headers(uint8_t flags, const std::vector<std::pair<int, std::string>>& headers) {
  std::string out(1, static_cast<char>(flags));
  for (const auto& [pick, value] : headers) {
    out.push_back(static_cast<char>(pick));
    out.push_back(static_cast<char>(value.size()));
    out += value;
  }
  return out;
}

void HboneRequests() {
  enum {
    kMethod,
    kAuthority,
    kBaggage,
    kForwarded,
    kTraceparent,
    kScheme,
    kPath,
    kProtocol,
    kRequestId,
    kHost,
    kConnection,
    kTe
  };
  const std::string tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  Write("hbone_request", "connect-v4",
        Headers(1, {{kMethod, "CONNECT"},
                    {kAuthority, "10.0.0.2:8080"},
                    {kBaggage, "k8s.namespace.name=shop,k8s.pod.name=web-0"},
                    {kForwarded, "for=\"10.0.0.1:40000\""},
                    {kTraceparent, tp}}));
  Write("hbone_request", "connect-v6",
        Headers(1 | 4, {{kMethod, "CONNECT"},
                        {kAuthority, "[fd00::5]:443"},
                        {kForwarded, "for=\"[fd00::1]:1234\";proto=https"},
                        {kRequestId, "abc"}}));
  Write("hbone_request", "bad-authorities",
        Headers(0, {{kMethod, "CONNECT"},
                    {kAuthority, "example.com:443"},
                    {kBaggage, "10.0.0.0/8"},
                    {kForwarded, "fd00::/64"},
                    {kTraceparent, "::ffff:10.0.0.1"},
                    {kRequestId, "10.0.0.1:0"},
                    {kRequestId, "[fd00::1]"},
                    {kRequestId, "10.0.0.1:65536"},
                    {kRequestId, " 10.0.0.1:80"},
                    {kRequestId, "1.2.3.4/33"}}));
  Write("hbone_request", "port-zero",
        Headers(1, {{kMethod, "CONNECT"}, {kAuthority, "10.0.0.1:0"}}));
  Write("hbone_request", "get-request",
        Headers(2, {{kMethod, "GET"},
                    {kScheme, "https"},
                    {kPath, "/"},
                    {kAuthority, "10.0.0.1:80"},
                    {kHost, "10.0.0.1"}}));
  Write("hbone_request", "extended-connect",
        Headers(0, {{kMethod, "CONNECT"},
                    {kProtocol, "websocket"},
                    {kScheme, "https"},
                    {kPath, "/chat"},
                    {kAuthority, "10.0.0.1:80"}}));
  Write("hbone_request", "forbidden-values",
        Headers(1, {{kMethod, "CONNECT"},
                    {kAuthority, "10.0.0.3:80"},
                    {kBaggage, "a=b\r\nx: y"},
                    {kForwarded, " for=1.2.3.4"},
                    {kConnection, "close"},
                    {kTe, "trailers"}}));
  std::string raw = Headers(0, {{kMethod, "CONNECT"}, {kAuthority, "10.0.0.4:80"}});
  raw += "\xf0\x05X-Bad\x01v";  // a raw (upper-case) name
  Write("hbone_request", "raw-name", raw);
}

// ---- ZDS messages (see zds_fuzz.cc for the format) ----

std::string Zds(uint8_t flags, const std::string& bytes) {
  std::string out(1, static_cast<char>(flags));
  out.push_back(static_cast<char>(bytes.size() >> 8));
  out.push_back(static_cast<char>(bytes.size()));
  return out + bytes;
}

std::string Add(const std::string& uid, const std::string& name) {
  zds::WorkloadRequest r;
  r.mutable_add()->set_uid(uid);
  r.mutable_add()->mutable_workload_info()->set_name(name);
  r.mutable_add()->mutable_workload_info()->set_namespace_("shop");
  r.mutable_add()->mutable_workload_info()->set_service_account("web");
  return r.SerializeAsString();
}

void ZdsMessages() {
  zds::WorkloadRequest keep, del, snapshot, empty;
  keep.mutable_keep()->set_uid("uid-a");
  del.mutable_del()->set_uid("uid-a");
  snapshot.mutable_snapshot_sent();
  zds::ZdsHello hello;
  hello.set_version(zds::V1);
  zds::WorkloadResponse ack, nack;
  ack.mutable_ack();
  nack.mutable_ack()->set_error("pod uid-a: not in the local config");
  Write("zds", "snapshot",
        Zds(1, Add("uid-a", "web-0")) + Zds(1, Add("uid-b", "web-1")) +
            Zds(0, keep.SerializeAsString()) + Zds(0, snapshot.SerializeAsString()) +
            Zds(0, del.SerializeAsString()) + Zds(0, snapshot.SerializeAsString()));
  Write("zds", "bad-descriptors",
        Zds(0, Add("uid-a", "no-fd")) + Zds(2, Add("uid-b", "two-fds")) +
            Zds(1 | 8, Add("uid-c", "dev-null")) + Zds(1, del.SerializeAsString()) +
            Zds(5, keep.SerializeAsString()));
  Write("zds", "no-uid",
        Zds(1, Add("", "x")) + Zds(0, std::string("\x12\x00", 2)) +
            Zds(0, empty.SerializeAsString()) + Zds(0, "\x01\x02garbage"));
  Write("zds", "other-messages",
        Zds(0, hello.SerializeAsString()) + Zds(0, ack.SerializeAsString()) +
            Zds(0, nack.SerializeAsString()) + Zds(0x30 | 1, Add("uid-r", "refused")));
  Write("zds", "oversize", Zds(0, "") + std::string("\0\xff\xff", 3));
}

// ---- Certificates and keys (mode byte: 0 DER, 1 PEM, 2 PEM chain, 3 PEM key) ----

std::string Der(const zt::tls::Certificate& c) {
  uint8_t* out = nullptr;
  const int n = i2d_X509(c.get(), &out);
  std::string der(reinterpret_cast<char*>(out), n > 0 ? static_cast<size_t>(n) : 0);
  OPENSSL_free(out);
  return der;
}

void Certificates() {
  using zt::tls::CertificateSpec;
  using zt::tls::PrivateKey;
  const auto now = std::chrono::system_clock::now();
  auto ca_key = PrivateKey::GenerateP256();
  auto leaf_key = PrivateKey::GenerateP256();
  if (!ca_key || !leaf_key) std::exit(1);
  CertificateSpec ca_spec{"fuzz", "root", {}, true, now, now + std::chrono::hours(24 * 365)};
  auto ca = SignCertificate(ca_spec, *ca_key, nullptr, *ca_key);
  if (!ca) std::exit(1);
  auto leaf = [&](std::vector<std::string> sans) {
    CertificateSpec spec{"", "", std::move(sans), false, now, now + std::chrono::hours(24)};
    auto c = SignCertificate(spec, *leaf_key, &*ca, *ca_key);
    if (!c) std::exit(1);
    return std::move(c).value();
  };
  const auto good = leaf({"spiffe://cluster.local/ns/shop/sa/web"});
  Write("x509", "leaf-der", std::string(1, '\0') + Der(good));
  Write("x509", "leaf-pem", std::string(1, '\1') + good.ToPem());
  Write("x509", "chain-pem", std::string(1, '\2') + good.ToPem() + ca->ToPem());
  Write("x509", "ca-der", std::string(1, '\0') + Der(*ca));
  Write("x509", "nul-san-der",
        std::string(1, '\0') + Der(leaf({std::string("spiffe://cluster.local/ns/a\0/sa/b", 32)})));
  Write("x509", "two-sans-der",
        std::string(1, '\0') + Der(leaf({"spiffe://td/ns/a/sa/b", "https://example.com/x"})));
  Write("x509", "key-pem", std::string(1, '\3') + leaf_key->ToPem());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  H2Exchanges();
  H2Hostile();
  HboneRequests();
  ZdsMessages();
  Certificates();
  std::printf("make_seeds: wrote the generated seeds under %s\n", g_root.c_str());
  return 0;
}
