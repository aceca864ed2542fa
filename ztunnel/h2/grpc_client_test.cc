// GrpcClient against an in-memory nghttp2 server that answers as a test scripts it:
// framing across DATA frames, trailers and trailers-only answers, HTTP and RST_STREAM
// mappings, limits. Interop with grpc-go itself is in integration/test_grpc.py.
#include "ztunnel/h2/grpc_client.h"

#include <nghttp2/nghttp2.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace zt::h2 {
namespace {

// ScriptedServer is a raw nghttp2 server: each request's headers and body are kept,
// and `answer` decides what to send back.
class ScriptedServer {
 public:
  struct Request {
    std::map<std::string, std::string> headers;
    std::string body;
    bool ended = false;
  };
  ScriptedServer() {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl,
                const uint8_t* v, size_t vl, uint8_t, void* u) {
          static_cast<ScriptedServer*>(u)
              ->requests[f->hd.stream_id]
              .headers[std::string(reinterpret_cast<const char*>(n), nl)] =
              std::string(reinterpret_cast<const char*>(v), vl);
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t l, void* u) {
          static_cast<ScriptedServer*>(u)->requests[id].body.append(
              reinterpret_cast<const char*>(d), l);
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
              (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            static_cast<ScriptedServer*>(u)->requests[f->hd.stream_id].ended = true;
          }
          return 0;
        });
    nghttp2_session_server_new(&ng, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~ScriptedServer() { nghttp2_session_del(ng); }

  // Headers sends a HEADERS block (END_STREAM when `end`).
  void Headers(int32_t id, std::vector<std::pair<std::string, std::string>> h, bool end) {
    std::vector<nghttp2_nv> nva;
    for (auto& [k, v] : h) {
      nva.push_back({reinterpret_cast<uint8_t*>(k.data()), reinterpret_cast<uint8_t*>(v.data()),
                     k.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    headers_keepalive.push_back(std::move(h));
    nghttp2_submit_headers(ng, end ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, id, nullptr,
                           nva.data(), nva.size(), nullptr);
  }
  // Data sends raw bytes as one DATA frame per piece.
  void Data(int32_t id, const std::string& bytes) {
    pending[id] += bytes;
    nghttp2_data_provider p{};
    p.source.ptr = this;
    p.read_callback = [](nghttp2_session*, int32_t sid, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
      auto* self = static_cast<ScriptedServer*>(src->ptr);
      std::string& left = self->pending[sid];
      const size_t n = std::min({len, left.size(), size_t{7}});  // tiny frames
      std::memcpy(buf, left.data(), n);
      left.erase(0, n);
      if (left.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
      return static_cast<ssize_t>(n);
    };
    nghttp2_submit_data(ng, NGHTTP2_FLAG_NONE, id, &p);
  }
  void Reset(int32_t id, uint32_t code) {
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, code);
  }

  nghttp2_session* ng;
  std::map<int32_t, Request> requests;
  std::map<int32_t, std::string> pending;
  std::vector<std::vector<std::pair<std::string, std::string>>> headers_keepalive;
};

// Pipe moves bytes both ways until neither side has anything to send.
void Pump(GrpcClient& c, ScriptedServer& s) {
  for (int i = 0; i < 100; ++i) {
    bool moved = false;
    const std::string_view out = c.NextOutput();
    if (!out.empty()) {
      moved = true;
      REQUIRE(nghttp2_session_mem_recv(s.ng, reinterpret_cast<const uint8_t*>(out.data()),
                                       out.size()) == static_cast<ssize_t>(out.size()));
    }
    const uint8_t* data;
    for (ssize_t n; (n = nghttp2_session_mem_send(s.ng, &data)) > 0;) {
      moved = true;
      REQUIRE(c.Receive({reinterpret_cast<const char*>(data), static_cast<size_t>(n)}).ok());
    }
    if (!moved) return;
  }
}

std::string Frame(const std::string& m, uint8_t flag = 0) {
  const uint32_t n = static_cast<uint32_t>(m.size());
  std::string out = {static_cast<char>(flag), static_cast<char>(n >> 24),
                     static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n)};
  return out + m;
}

struct Recorder : GrpcCallObserver {
  void OnHeaders(const Metadata& h) override { headers = h; }
  void OnMessage(std::string m) override { messages.push_back(std::move(m)); }
  void OnClose(const GrpcStatus& s, const Metadata& t) override {
    status = s;
    trailers = t;
    closed += 1;
  }
  Metadata headers, trailers;
  std::vector<std::string> messages;
  GrpcStatus status;
  int closed = 0;
};

struct Fixture {
  std::unique_ptr<GrpcClient> client =
      GrpcClient::Create({.authority = "istiod.istio-system.svc:15012"});
  ScriptedServer server;
  Recorder rec;
};

TEST_CASE("A gRPC call sends gRPC's headers and framed messages, and reads streamed answers",
          "[h2][grpc]") {
  Fixture f;
  auto id = f.client->Start("/pkg.Svc/Method", {{"authorization", "Bearer t"}}, &f.rec,
                            std::chrono::milliseconds(1500));
  REQUIRE(id.ok());
  REQUIRE(f.client->Send(*id, "hello").ok());
  REQUIRE(f.client->Send(*id, std::string(70000, 'x')).ok());
  REQUIRE(f.client->CloseSend(*id).ok());
  Pump(*f.client, f.server);
  const auto& req = f.server.requests[*id];
  CHECK(req.headers.at(":method") == "POST");
  CHECK(req.headers.at(":scheme") == "https");
  CHECK(req.headers.at(":path") == "/pkg.Svc/Method");
  CHECK(req.headers.at(":authority") == "istiod.istio-system.svc:15012");
  CHECK(req.headers.at("content-type") == "application/grpc");
  CHECK(req.headers.at("te") == "trailers");
  CHECK(req.headers.at("grpc-timeout") == "1500m");
  CHECK(req.headers.at("authorization") == "Bearer t");
  CHECK(req.body == Frame("hello") + Frame(std::string(70000, 'x')));
  CHECK(req.ended);

  // The answer: messages split across 7-byte DATA frames, then trailers.
  f.server.Headers(*id, {{":status", "200"}, {"content-type", "application/grpc"}, {"x-a", "1"}},
                   false);
  f.server.Data(*id, Frame("one") + Frame("") + Frame(std::string(300, 'y')));
  Pump(*f.client, f.server);
  CHECK(f.rec.closed == 0);
  REQUIRE(f.rec.messages.size() == 3);
  CHECK(f.rec.messages[1].empty());
  CHECK(f.rec.messages[2] == std::string(300, 'y'));
  CHECK(f.rec.headers == Metadata{{"x-a", "1"}});
  f.server.Headers(*id, {{"grpc-status", "0"}, {"x-t", "2"}}, true);
  Pump(*f.client, f.server);
  CHECK(f.rec.closed == 1);
  CHECK(f.rec.status.ok());
  CHECK(f.rec.trailers == Metadata{{"x-t", "2"}});
  CHECK(f.client->active_calls() == 0);
}

TEST_CASE("gRPC statuses: trailers-only, percent-encoded messages, HTTP errors, resets",
          "[h2][grpc]") {
  SECTION("trailers-only") {
    Fixture f;
    auto id = f.client->Start("/a/b", {}, &f.rec);
    Pump(*f.client, f.server);
    f.server.Headers(*id,
                     {{":status", "200"},
                      {"content-type", "application/grpc"},
                      {"grpc-status", "7"},
                      {"grpc-message", "not allowed to impersonate %E2%9C%93 100%25"}},
                     true);
    Pump(*f.client, f.server);
    CHECK(f.rec.closed == 1);
    CHECK(f.rec.status.code == GrpcCode::kPermissionDenied);
    CHECK(f.rec.status.message == "not allowed to impersonate \xE2\x9C\x93 100%");
    CHECK(f.rec.status.ToString().rfind("PERMISSION_DENIED: ", 0) == 0);
    CHECK(f.rec.headers.empty());
  }
  SECTION("an HTTP error without grpc-status") {
    Fixture f;
    auto id = f.client->Start("/a/b", {}, &f.rec);
    Pump(*f.client, f.server);
    f.server.Headers(*id, {{":status", "503"}, {"content-type", "text/plain"}}, true);
    Pump(*f.client, f.server);
    CHECK(f.rec.status.code == GrpcCode::kUnavailable);
    CHECK(f.rec.status.message == "HTTP status 503 without grpc-status");
  }
  SECTION("RST_STREAM") {
    Fixture f;
    auto id = f.client->Start("/a/b", {}, &f.rec);
    Pump(*f.client, f.server);
    f.server.Reset(*id, NGHTTP2_REFUSED_STREAM);
    Pump(*f.client, f.server);
    CHECK(f.rec.status.code == GrpcCode::kUnavailable);
  }
  SECTION("a stream that ends without grpc-status") {
    Fixture f;
    auto id = f.client->Start("/a/b", {}, &f.rec);
    Pump(*f.client, f.server);
    f.server.Headers(*id, {{":status", "200"}, {"content-type", "application/grpc"}}, false);
    f.server.Headers(*id, {{"x", "y"}}, true);
    Pump(*f.client, f.server);
    CHECK(f.rec.status.code == GrpcCode::kInternal);
  }
  SECTION("a content-type that is not gRPC") {
    Fixture f;
    auto id = f.client->Start("/a/b", {}, &f.rec);
    Pump(*f.client, f.server);
    f.server.Headers(*id, {{":status", "200"}, {"content-type", "text/html"}}, false);
    Pump(*f.client, f.server);
    CHECK(f.rec.status.code == GrpcCode::kUnknown);
    CHECK(f.rec.status.message.find("text/html") != std::string::npos);
  }
}

TEST_CASE("gRPC limits: compressed and oversized messages fail their call only", "[h2][grpc]") {
  Fixture f;
  f.client = GrpcClient::Create({.authority = "x", .max_message = 100});
  Recorder other;
  auto id = f.client->Start("/a/b", {}, &f.rec);
  auto id2 = f.client->Start("/a/c", {}, &other);
  Pump(*f.client, f.server);
  for (int32_t i : {*id, *id2}) {
    f.server.Headers(i, {{":status", "200"}, {"content-type", "application/grpc"}}, false);
  }
  f.server.Data(*id, Frame(std::string(101, 'z')));
  f.server.Data(*id2, Frame("c", 1));
  Pump(*f.client, f.server);
  CHECK(f.rec.status.code == GrpcCode::kResourceExhausted);
  CHECK(other.status.code == GrpcCode::kInternal);
  CHECK(other.status.message.find("compressed") != std::string::npos);
  CHECK(f.client->active_calls() == 0);
  // The connection is still good for the next call.
  Recorder third;
  auto id3 = f.client->Start("/a/d", {}, &third);
  REQUIRE(id3.ok());
  Pump(*f.client, f.server);
  f.server.Headers(*id3, {{":status", "200"}, {"grpc-status", "0"}}, true);
  Pump(*f.client, f.server);
  CHECK(third.status.ok());
}

TEST_CASE("Cancel and CloseAll report the local status once", "[h2][grpc]") {
  Fixture f;
  auto id = f.client->Start("/a/b", {}, &f.rec);
  Recorder other;
  auto id2 = f.client->Start("/a/c", {}, &other);
  Pump(*f.client, f.server);
  f.client->Cancel(*id, {GrpcCode::kDeadlineExceeded, "deadline of 5s exceeded"});
  CHECK(f.rec.closed == 1);
  CHECK(f.rec.status.code == GrpcCode::kDeadlineExceeded);
  Pump(*f.client, f.server);  // the RST_STREAM reaches the server; nothing reported twice
  CHECK(f.rec.closed == 1);
  f.client->CloseAll({GrpcCode::kUnavailable, "connection lost"});
  CHECK(other.closed == 1);
  CHECK(other.status.message == "connection lost");
  (void)id2;
}

TEST_CASE("grpc-timeout uses at most 8 digits", "[h2][grpc]") {
  CHECK(FormatGrpcTimeout(std::chrono::milliseconds(0)) == "1m");
  CHECK(FormatGrpcTimeout(std::chrono::milliseconds(99'999'999)) == "99999999m");
  CHECK(FormatGrpcTimeout(std::chrono::milliseconds(100'000'000)) == "100000S");
  CHECK(PercentDecode("a%2") == "a%2");
  CHECK(PercentDecode("%zz%41") == "%zzA");
}

}  // namespace
}  // namespace zt::h2
