#include "ztunnel/h2/session.h"

#include <nghttp2/nghttp2.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "ztunnel/h2/testing.h"

namespace zt::h2 {
namespace {

using testing::Frames;

// --- helpers ----------------------------------------------------------------------

// Recorder is a StreamObserver that keeps everything it is told.
struct Recorder : StreamObserver {
  Session* session = nullptr;
  int32_t stream = 0;
  bool consume = true;
  int status = 0;
  std::string data;
  bool ended = false;
  bool closed = false;
  uint32_t close_code = 0xffff;
  int writable = 0;

  void OnResponse(int s) override { status = s; }
  void OnData(std::span<const char> d) override {
    data.append(d.data(), d.size());
    if (consume) session->Consume(stream, d.size());
  }
  void OnEndStream() override { ended = true; }
  void OnWritable() override { ++writable; }
  void OnStreamClosed(uint32_t code) override {
    closed = true;
    close_code = code;
  }
};

// Server answers every CONNECT with `status` and records it.
struct Server : ServerHandler {
  std::unique_ptr<Session> session = Session::Server(ServerLimits(), this);
  int status = 200;
  bool answer = true;
  std::vector<ConnectRequest> requests;
  std::vector<int32_t> resets;  // OnStreamReset, in order
  std::map<int32_t, std::unique_ptr<Recorder>> streams;

  void OnStreamReset(int32_t stream) override { resets.push_back(stream); }

  void OnConnect(int32_t stream, const ConnectRequest& request) override {
    requests.push_back(request);
    auto rec = std::make_unique<Recorder>();
    rec->session = session.get();
    rec->stream = stream;
    if (answer) REQUIRE(session->Respond(stream, status, rec.get()).ok());
    streams[stream] = std::move(rec);
  }
};

// Pump moves bytes both ways, `chunk` at a time, until nothing moves.
void Pump(Session& a, Session& b, size_t chunk = 1 << 20) {
  for (int round = 0; round < 1000000; ++round) {
    bool moved = false;
    for (auto [from, to] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
      std::string pending;
      for (std::string_view out = from->NextOutput(); !out.empty(); out = from->NextOutput()) {
        pending.append(out);
      }
      for (size_t i = 0; i < pending.size(); i += chunk) {
        (void)to->Receive({pending.data() + i, std::min(chunk, pending.size() - i)});
        moved = true;
      }
    }
    if (!moved) return;
  }
}

ConnectRequest Request(const char* authority) {
  return ConnectRequest{*IpPort::Parse(authority), "k8s.namespace.name=default",
                        "for=\"10.0.0.1:5555\"",
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"};
}

// ParsedFrame is one frame the server sent back.
struct ParsedFrame {
  uint8_t type;
  uint8_t flags;
  int32_t stream;
  std::string payload;
};

std::vector<ParsedFrame> Parse(const std::string& all) {
  std::vector<ParsedFrame> frames;
  for (size_t i = 0; i + 9 <= all.size();) {
    const auto* b = reinterpret_cast<const uint8_t*>(all.data() + i);
    const size_t len = (size_t{b[0]} << 16) | (size_t{b[1]} << 8) | b[2];
    const int32_t stream =
        static_cast<int32_t>(((b[5] & 0x7f) << 24) | (b[6] << 16) | (b[7] << 8) | b[8]);
    frames.push_back({b[3], b[4], stream, all.substr(i + 9, len)});
    i += 9 + len;
  }
  return frames;
}

// Collect takes what `s` has to send, without delivering it.
std::string Collect(Session& s) {
  std::string out;
  for (std::string_view o = s.NextOutput(); !o.empty(); o = s.NextOutput()) out.append(o);
  return out;
}

std::vector<ParsedFrame> Drain(Session& s) { return Parse(Collect(s)); }

uint32_t Code(const ParsedFrame& f, size_t offset = 0) {
  const auto* p = reinterpret_cast<const uint8_t*>(f.payload.data() + offset);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool HasGoaway(const std::vector<ParsedFrame>& frames, uint32_t* code = nullptr) {
  for (const auto& f : frames) {
    if (f.type == NGHTTP2_GOAWAY) {
      if (code != nullptr) *code = Code(f, 4);
      return true;
    }
  }
  return false;
}

// --- tunnels between our client and our server ----------------------------------

TEST_CASE("A CONNECT tunnel carries bytes both ways and half-closes cleanly", "[h2]") {
  for (size_t chunk : {size_t{1} << 20, size_t{1}}) {
    INFO("chunk " << chunk);
    Server server;
    auto client = Session::Client(ClientLimits());
    Recorder rec;
    rec.session = client.get();
    auto id = client->Connect(Request("10.0.0.2:8080"), &rec);
    REQUIRE(id.ok());
    rec.stream = *id;
    Pump(*client, *server.session, chunk);
    REQUIRE(server.requests.size() == 1);
    CHECK(server.requests[0].authority.ToString() == "10.0.0.2:8080");
    CHECK(server.requests[0].baggage == "k8s.namespace.name=default");
    CHECK(server.requests[0].forwarded == "for=\"10.0.0.1:5555\"");
    CHECK(server.requests[0].traceparent.size() == 55);
    CHECK(rec.status == 200);

    const size_t size = chunk == 1 ? 3000 : 3 << 20;
    std::string up(size, 'u'), down(size + 7, 'd');
    for (size_t i = 0; i < up.size(); ++i) up[i] = static_cast<char>(i * 31);
    Recorder& srv = *server.streams.begin()->second;
    REQUIRE(client->Write(*id, up).ok());
    REQUIRE(client->EndStream(*id).ok());  // client FIN first
    Pump(*client, *server.session, chunk);
    CHECK(srv.data == up);
    CHECK(srv.ended);
    CHECK_FALSE(srv.closed);  // the other direction is still open
    REQUIRE(server.session->Write(*id, down).ok());
    REQUIRE(server.session->EndStream(*id).ok());
    Pump(*client, *server.session, chunk);
    CHECK(rec.data == down);
    CHECK(rec.ended);
    CHECK(rec.closed);
    CHECK(rec.close_code == kNoError);
    CHECK(srv.closed);
    CHECK(client->active_streams() == 0);
  }
}

// SinkWire is a DataSink that appends frames to `bytes` (where the pump also puts what
// NextOutput returns, in order) and refuses every `refuse_every`-th frame at first.
struct SinkWire {
  std::string bytes;
  int offers = 0;
  int refuse_every = 3;
  int frames = 0;
  void Attach(Session& s) {
    s.SetDataSink([this](std::span<const char> frame) {
      if (refuse_every > 0 && ++offers % refuse_every == 0) return false;
      REQUIRE(frame.size() >= 9);
      CHECK(static_cast<uint8_t>(frame[3]) == NGHTTP2_DATA);
      bytes.append(frame.data(), frame.size());
      ++frames;
      return true;
    });
  }
};

void PumpWithSinks(Session& a, SinkWire& wa, Session& b, SinkWire& wb, size_t chunk) {
  for (int round = 0; round < 1000000; ++round) {
    bool moved = false;
    for (auto [from, wire, to] : {std::tuple{&a, &wa, &b}, std::tuple{&b, &wb, &a}}) {
      wire->bytes.clear();
      for (std::string_view out = from->NextOutput(); !out.empty(); out = from->NextOutput()) {
        wire->bytes.append(out);
      }
      // A refused frame stays queued: ask once more so the round is not cut short.
      for (std::string_view out = from->NextOutput(); !out.empty(); out = from->NextOutput()) {
        wire->bytes.append(out);
      }
      const std::string pending = std::move(wire->bytes);
      wire->bytes.clear();
      for (size_t i = 0; i < pending.size(); i += chunk) {
        REQUIRE(to->Receive({pending.data() + i, std::min(chunk, pending.size() - i)}).ok());
        moved = true;
      }
    }
    if (!moved) return;
  }
}

TEST_CASE("DATA frames through a DataSink arrive byte-exact and in order", "[h2]") {
  for (size_t chunk : {size_t{1} << 20, size_t{1}}) {
    INFO("chunk " << chunk);
    Server server;
    auto client = Session::Client(ClientLimits());
    SinkWire client_wire, server_wire;
    client_wire.Attach(*client);
    server_wire.Attach(*server.session);
    Recorder rec;
    rec.session = client.get();
    auto id = client->Connect(Request("10.0.0.2:8080"), &rec);
    REQUIRE(id.ok());
    rec.stream = *id;
    PumpWithSinks(*client, client_wire, *server.session, server_wire, chunk);
    REQUIRE(rec.status == 200);
    Recorder& srv = *server.streams.begin()->second;

    // Larger than a stream window (4 MiB), so flow control interleaves WINDOW_UPDATEs.
    const size_t size = chunk == 1 ? 100000 : 6 << 20;
    std::string up(size, '\0'), down(size + 13, '\0');
    for (size_t i = 0; i < up.size(); ++i) up[i] = static_cast<char>(i * 31 + i / 7);
    for (size_t i = 0; i < down.size(); ++i) down[i] = static_cast<char>(i * 17 + 3);
    // Written in uneven pieces, some while frames are in flight.
    for (size_t off = 0; off < up.size();) {
      const size_t n = std::min<size_t>(up.size() - off, 70001);
      REQUIRE(client->Write(*id, {up.data() + off, n}).ok());
      REQUIRE(server.session->Write(*id, {down.data() + off, n}).ok());
      off += n;
      if (off % 3 == 0) PumpWithSinks(*client, client_wire, *server.session, server_wire, chunk);
    }
    REQUIRE(server.session->Write(*id, {down.data() + up.size(), 13}).ok());
    REQUIRE(client->EndStream(*id).ok());
    REQUIRE(server.session->EndStream(*id).ok());
    PumpWithSinks(*client, client_wire, *server.session, server_wire, chunk);
    CHECK(srv.data == up);
    CHECK(rec.data == down);
    CHECK(srv.ended);
    CHECK(rec.ended);
    CHECK(rec.closed);
    CHECK(rec.close_code == kNoError);
    CHECK(srv.closed);
    CHECK(client_wire.frames > 0);  // the bytes did go through the sink
    CHECK(server_wire.frames > 0);
  }
}

TEST_CASE("Refusals reach the client as a status and a closed stream", "[h2]") {
  for (int status : {401, 503}) {
    Server server;
    server.status = status;
    auto client = Session::Client(ClientLimits());
    Recorder rec;
    rec.session = client.get();
    REQUIRE(client->Connect(Request("10.0.0.2:8080"), &rec).ok());
    Pump(*client, *server.session);
    CHECK(rec.status == status);
    CHECK(rec.closed);
  }
}

TEST_CASE("A reset travels as RST_STREAM with its code", "[h2]") {
  Server server;
  auto client = Session::Client(ClientLimits());
  Recorder rec;
  rec.session = client.get();
  auto id = client->Connect(Request("10.0.0.2:8080"), &rec);
  REQUIRE(id.ok());
  Pump(*client, *server.session);
  client->Reset(*id, kConnectError);
  Pump(*client, *server.session);
  Recorder& srv = *server.streams.begin()->second;
  CHECK(srv.closed);
  CHECK(srv.close_code == kConnectError);
  CHECK(rec.closed);
}

TEST_CASE("Flow control holds the sender until the receiver consumes", "[h2]") {
  Server server;
  auto client = Session::Client(ClientLimits());
  Recorder rec;
  rec.session = client.get();
  auto id = client->Connect(Request("10.0.0.2:8080"), &rec);
  REQUIRE(id.ok());
  Pump(*client, *server.session);
  Recorder& srv = *server.streams.begin()->second;
  srv.consume = false;  // the upstream is slow
  const std::string big(6 << 20, 'x');
  REQUIRE(client->Write(*id, big).ok());
  Pump(*client, *server.session);
  CHECK(srv.data.size() == 4u << 20);  // exactly the stream window
  CHECK(client->Buffered(*id) == big.size() - (4u << 20));
  server.session->Consume(*id, srv.data.size());
  Pump(*client, *server.session);
  CHECK(srv.data.size() == big.size());
  CHECK(client->Buffered(*id) == 0);
  CHECK(rec.writable >= 1);  // told when its queue drained
}

TEST_CASE("Settings: the client learns the server's stream limit and keeps to 100", "[h2]") {
  Server server;
  server.answer = false;
  auto client = Session::Client(ClientLimits());
  std::vector<Recorder> recs(101);
  REQUIRE(client->Connect(Request("10.0.0.2:1"), &recs[0]).ok());
  Pump(*client, *server.session);
  CHECK(client->peer_max_streams() == 200);
  for (int i = 1; i < 100; ++i) REQUIRE(client->Connect(Request("10.0.0.2:1"), &recs[i]).ok());
  auto over = client->Connect(Request("10.0.0.2:1"), &recs[100]);
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().code == Errc::kResourceExhausted);
}

TEST_CASE("Keepalive PINGs are acknowledged", "[h2]") {
  Server server;
  auto client = Session::Client(ClientLimits());
  Pump(*client, *server.session);
  client->SendPing();
  CHECK(client->PingOutstanding());
  Pump(*client, *server.session);
  CHECK_FALSE(client->PingOutstanding());
}

TEST_CASE("A draining server still serves the stream the client opened as it drained", "[h2]") {
  Server server;
  auto client = Session::Client(ClientLimits());
  Pump(*client, *server.session);
  // The client opens a stream while the server's GOAWAY is on its way: they cross.
  Recorder rec;
  rec.session = client.get();
  auto id = client->Connect(Request("10.0.0.2:8080"), &rec);
  REQUIRE(id.ok());
  rec.stream = *id;
  const std::string crossing = Collect(*client);
  server.session->Goaway(kNoError);
  CHECK(server.session->draining());
  const std::string notice = Collect(*server.session);
  REQUIRE(client->Receive(notice));  // GOAWAY(2^31-1) and a PING
  CHECK_FALSE(client->can_open());   // no new streams on this connection
  REQUIRE(server.session->Receive(crossing));
  REQUIRE(server.requests.size() == 1);  // served, not refused
  Pump(*client, *server.session);        // the PING's ack, then the final GOAWAY
  CHECK(rec.status == 200);
  CHECK_FALSE(rec.closed);
  Recorder& srv = *server.streams.begin()->second;
  REQUIRE(client->Write(*id, std::string("bytes after the drain began")).ok());
  REQUIRE(client->EndStream(*id).ok());
  REQUIRE(server.session->Write(*id, std::string("and back")).ok());
  REQUIRE(server.session->EndStream(*id).ok());
  Pump(*client, *server.session);
  CHECK(srv.data == "bytes after the drain began");
  CHECK(rec.data == "and back");
  CHECK(rec.close_code == kNoError);
  // Both GOAWAYs were sent; with no stream left the server is done.
  CHECK_FALSE(server.session->alive());
}

TEST_CASE("The final GOAWAY names the last stream the server processed", "[h2]") {
  Server server;
  auto client = Session::Client(ClientLimits());
  Recorder rec;
  rec.session = client.get();
  auto id = client->Connect(Request("10.0.0.2:8080"), &rec);
  REQUIRE(id.ok());
  Pump(*client, *server.session);
  server.session->Goaway(kNoError);
  const std::string first_wire = Collect(*server.session);
  const auto first = Parse(first_wire);
  std::vector<uint32_t> last_ids;
  std::vector<uint8_t> order;  // GOAWAY before PING: the ack proves the GOAWAY was read
  for (const auto& f : first) {
    if (f.type == NGHTTP2_GOAWAY) last_ids.push_back(Code(f) & 0x7fffffff);
    if (f.type == NGHTTP2_GOAWAY || f.type == NGHTTP2_PING) order.push_back(f.type);
  }
  CHECK(last_ids == std::vector<uint32_t>{0x7fffffff});
  CHECK(order == std::vector<uint8_t>{NGHTTP2_GOAWAY, NGHTTP2_PING});
  CHECK(server.session->drain_finishing());
  // The client acks the PING: now the GOAWAY with the real last stream id.
  Session* c = client.get();
  REQUIRE(c->Receive(first_wire));
  REQUIRE(server.session->Receive(Collect(*c)));
  last_ids.clear();
  for (const auto& f : Drain(*server.session)) {
    if (f.type == NGHTTP2_GOAWAY) last_ids.push_back(Code(f) & 0x7fffffff);
  }
  CHECK(last_ids == std::vector<uint32_t>{static_cast<uint32_t>(*id)});
  CHECK_FALSE(server.session->drain_finishing());
}

TEST_CASE("A drain whose PING is never acked can be finished without it", "[h2]") {
  Server server;
  auto client = Session::Client(ClientLimits());
  Pump(*client, *server.session);
  server.session->Goaway(kNoError);
  (void)Drain(*server.session);  // the peer never answers
  REQUIRE(server.session->drain_finishing());
  server.session->FinishDrain();
  CHECK_FALSE(server.session->drain_finishing());
  std::vector<uint32_t> last_ids;
  for (const auto& f : Drain(*server.session)) {
    if (f.type == NGHTTP2_GOAWAY) last_ids.push_back(Code(f) & 0x7fffffff);
  }
  CHECK(last_ids == std::vector<uint32_t>{0});
  CHECK_FALSE(server.session->alive());  // no stream: done
}

TEST_CASE("A keepalive PING's ack does not count as the drain PING's, nor the reverse", "[h2]") {
  Server server;
  auto client = Session::Client(ClientLimits());
  Pump(*client, *server.session);
  server.session->SendPing();
  server.session->Goaway(kNoError);
  Pump(*client, *server.session);  // both acked
  CHECK_FALSE(server.session->PingOutstanding());
  CHECK_FALSE(server.session->drain_finishing());
}

// --- hostile peers ----------------------------------------------------------------

TEST_CASE("Requests that are not CONNECT to ip:port get 400", "[h2]") {
  Server server;
  Frames f;
  std::string wire = Frames::Preface();
  wire += Frames::Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
                        f.Block({{":method", "GET"},
                                 {":scheme", "http"},
                                 {":path", "/"},
                                 {":authority", "10.0.0.2:80"}}));
  wire += f.Connect(3, "example.com:80");
  wire += f.Connect(5, "10.0.0.2");
  wire += f.Connect(7, "10.0.0.2:0");
  REQUIRE(server.session->Receive(wire).ok());
  CHECK(server.requests.empty());  // none reached the handler
  int rejected = 0;
  for (const auto& frame : Drain(*server.session)) {
    if (frame.type == NGHTTP2_HEADERS) ++rejected;  // each answered with :status 400
  }
  CHECK(rejected == 4);
  CHECK(server.session->alive());
}

TEST_CASE("Streams past max concurrent streams are refused", "[h2]") {
  Server server;
  server.answer = false;  // upstream connects stall: streams stay open
  Frames f;
  std::string wire = Frames::Preface();
  for (int32_t i = 0; i < 201; ++i) wire += f.Connect(1 + 2 * i);
  REQUIRE(server.session->Receive(wire).ok());
  CHECK(server.requests.size() == 200);
  bool refused = false;
  for (const auto& frame : Drain(*server.session)) {
    if (frame.type == NGHTTP2_RST_STREAM && frame.stream == 401) {
      refused = Code(frame) == kRefusedStream;
    }
  }
  CHECK(refused);
}

TEST_CASE("A rapid-reset flood closes the connection", "[h2]") {
  Server server;
  server.answer = false;
  Frames f;
  REQUIRE(server.session->Receive(Frames::Preface()).ok());
  bool closed = false;
  for (int32_t i = 0; i < 10000 && !closed; ++i) {
    const int32_t id = 1 + 2 * i;
    std::string wire = f.Connect(id) + Frames::Rst(id, kCancel);
    closed = !server.session->Receive(wire).ok() || !server.session->alive();
    if (i % 100 == 0) Drain(*server.session);  // a reader that keeps up
  }
  auto frames = Drain(*server.session);
  CHECK((closed || !server.session->alive()));
  CHECK(server.requests.size() < 10000);
}

TEST_CASE("Streams reset before they are answered: the 21st ends the connection", "[h2]") {
  // Regression (issue 15, defect 6): each CONNECT is authorized and dialed before
  // its answer; HEADERS+RST_STREAM pairs made the server dial thousands of times.
  Server server;
  server.answer = false;  // the handler's upstream connects are still pending
  Frames f;
  std::string wire = Frames::Preface();
  for (int32_t i = 0; i < 10000; ++i) {
    const int32_t id = 1 + 2 * i;
    wire += f.Connect(id) + Frames::Rst(id, kCancel);
  }
  CHECK_FALSE(server.session->Receive(wire).ok());  // all of it in one read
  CHECK(server.requests.size() == 21);
  CHECK(server.resets.size() == 20);  // each told, so its connect can be cancelled
  CHECK(server.session->failure().find("rapid reset") != std::string::npos);
  uint32_t code = 0;
  CHECK(HasGoaway(Drain(*server.session), &code));
  CHECK(code == kEnhanceYourCalm);
  server.session->CloseAll(kCancel);  // the connection's teardown: the last one too
  CHECK(server.resets.size() == 21);
}

TEST_CASE("Resets the handler has settled do not add up", "[h2]") {
  // A client that cancels a tunnel now and then (its app gave up) is not an attacker:
  // once the handler answered the reset stream, it no longer counts.
  Server server;
  server.answer = false;
  Frames f;
  REQUIRE(server.session->Receive(Frames::Preface()).ok());
  for (int32_t i = 0; i < 500; ++i) {
    const int32_t id = 1 + 2 * i;
    REQUIRE(server.session->Receive(f.Connect(id) + Frames::Rst(id, kCancel)).ok());
    // The connect was cancelled and its fiber answers the (gone) stream.
    CHECK(server.session->Respond(id, 503, nullptr).error().code == Errc::kNotFound);
    Drain(*server.session);
  }
  CHECK(server.session->alive());
  CHECK(server.resets.size() == 500);
}

TEST_CASE("An endless CONTINUATION sequence closes the connection", "[h2]") {
  Server server;
  Frames f;
  std::string wire = Frames::Preface();
  wire += Frames::Frame(NGHTTP2_HEADERS, 0, 1, f.Block({{":method", "CONNECT"}}));
  for (int i = 0; i < 50; ++i) {
    wire += Frames::Frame(NGHTTP2_CONTINUATION, 0, 1, f.Block({{"x-pad", std::to_string(i)}}));
  }
  (void)server.session->Receive(wire);
  uint32_t code = 0;
  const bool goaway = HasGoaway(Drain(*server.session), &code);
  CHECK_FALSE(server.session->alive());
  CHECK(goaway);
  CHECK(server.requests.empty());
}

TEST_CASE("A small header block that decodes past the limit is reset", "[h2]") {
  Server server;
  Frames f;
  // One 2,000-byte header enters the HPACK table once, then costs a byte per repeat.
  const std::string big(2000, 'b');
  std::vector<std::pair<std::string, std::string>> headers = {{":method", "CONNECT"},
                                                              {":authority", "10.0.0.2:80"}};
  for (int i = 0; i < 40; ++i) headers.push_back({"x-big", big});  // 80 KB decoded
  const std::string block = f.Block(headers);
  CHECK(block.size() < 3000);
  std::string wire = Frames::Preface() +
                     Frames::Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, block) +
                     f.Connect(3);
  (void)server.session->Receive(wire);
  bool reset = false;
  for (const auto& frame : Drain(*server.session)) {
    if (frame.type == NGHTTP2_RST_STREAM && frame.stream == 1) reset = true;
  }
  CHECK(reset);
  REQUIRE(server.requests.size() == 1);  // only stream 3 reached the handler
}

TEST_CASE("Empty DATA frames beyond the limit close the connection", "[h2]") {
  Server server;
  Frames f;
  std::string wire = Frames::Preface() + f.Connect(1);
  for (int i = 0; i < 3; ++i) wire += Frames::Frame(NGHTTP2_DATA, 0, 1, "");
  (void)server.session->Receive(wire);
  uint32_t code = 0;
  CHECK(HasGoaway(Drain(*server.session), &code));
  CHECK(code == kEnhanceYourCalm);
  CHECK_FALSE(server.session->alive());
  CHECK(server.session->failure() == "flood of empty DATA frames");
}

TEST_CASE("A WINDOW_UPDATE flood closes the connection", "[h2]") {
  Server server;
  std::string wire = Frames::Preface();
  const std::string increment("\x00\x00\x00\x01", 4);
  for (int i = 0; i < 100; ++i) wire += Frames::Frame(NGHTTP2_WINDOW_UPDATE, 0, 0, increment);
  REQUIRE(server.session->Receive(wire).ok());
  CHECK(server.session->alive());  // up to the base allowance is fine
  (void)server.session->Receive(Frames::Frame(NGHTTP2_WINDOW_UPDATE, 0, 0, increment));
  uint32_t code = 0;
  CHECK(HasGoaway(Drain(*server.session), &code));
  CHECK(code == kEnhanceYourCalm);
  CHECK_FALSE(server.session->alive());
  CHECK(server.session->failure() == "flood of WINDOW_UPDATE frames");
}

TEST_CASE("A PING flood from a peer that does not read closes the connection", "[h2]") {
  Server server;
  std::string wire = Frames::Preface();
  for (int i = 0; i < 1001; ++i) wire += Frames::Frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
  // Nothing is drained: the acks pile up until the bound.
  CHECK_FALSE(server.session->Receive(wire).ok());
  CHECK_FALSE(server.session->alive());
  CHECK_FALSE(server.session->failure().empty());
}

TEST_CASE("Garbage instead of the HTTP/2 preface fails the session", "[h2]") {
  Server server;
  CHECK_FALSE(server.session->Receive(std::string_view("GET / HTTP/1.1\r\n\r\n")).ok());
  CHECK_FALSE(server.session->alive());
}

}  // namespace
}  // namespace zt::h2
