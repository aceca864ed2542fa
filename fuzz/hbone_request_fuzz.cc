// Fuzz target: HBONE CONNECT request handling, the way a request reaches Inbound.
//
// 1. The address parsers the request goes through (core/ip_port.h: IpPort for
//    `:authority`, IpAddr and Cidr, shared with the config and io/) on every header
//    value: whatever they accept must print canonically and parse back to the same.
// 2. A HEADERS block built from the input's header list (HPACK-encoded, optionally
//    split into CONTINUATIONs) sent to a server session: the handler may see the
//    request only if it is a CONNECT to ip:port with a non-zero port, and then with
//    the authority and the baggage/forwarded/traceparent values exactly as sent; a
//    clean CONNECT must reach it.
// 3. When the authority parses: our client's CONNECT carrying the input's
//    baggage/forwarded/traceparent values, through our server: the request arrives
//    byte for byte (values HTTP/2 allows), or not at all (values it forbids).
//
// `forwarded` and `baggage` have no parser of their own: Inbound never reads an
// address or identity from them (peer headers are untrusted); they travel as opaque
// values, which is what 2 and 3 check.
//
// Input: a flags byte, then up to 16 headers, each a name choice byte (a known name,
// or above 0xe0 a raw name as length + bytes) and a value (length + bytes).
#include <nghttp2/nghttp2.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "ztunnel/core/ip_port.h"
#include "ztunnel/h2/frame_writer.h"
#include "ztunnel/h2/session.h"

namespace {

namespace h2 = zt::h2;
using zt::Cidr;
using zt::IpAddr;
using zt::IpPort;

const char* const kNames[] = {
    ":method",   ":authority",   "baggage", "forwarded",  "traceparent", ":scheme",       ":path",
    ":protocol", "x-request-id", "host",    "connection", "te",          "content-length"};
constexpr size_t kNameCount = sizeof(kNames) / sizeof(kNames[0]);

void CheckParsers(std::string_view text) {
  if (auto p = IpPort::Parse(text)) {
    auto again = IpPort::Parse(p->ToString());
    ZT_FUZZ_CHECK(again && *again == *p);
    ZT_FUZZ_CHECK(p->ToString() == IpPort::Parse(p->ToString())->ToString());
    ZT_FUZZ_CHECK(IpAddr::Parse(p->IpString()) == p->ip());
    ZT_FUZZ_CHECK(text.find('\0') == std::string_view::npos);
  }
  if (auto ip = IpAddr::Parse(text)) {
    ZT_FUZZ_CHECK(IpAddr::Parse(ip->ToString()) == *ip);
    ZT_FUZZ_CHECK(text.find('\0') == std::string_view::npos);
    // A bare address is a CIDR of one.
    auto one = Cidr::Parse(text);
    ZT_FUZZ_CHECK(one && one->Contains(*ip) && one->prefix == (ip->v6 ? 128 : 32));
  }
  if (auto c = Cidr::Parse(text)) {
    auto again = Cidr::Parse(c->ToString());
    ZT_FUZZ_CHECK(again && *again == *c);
    ZT_FUZZ_CHECK(c->Contains(c->base));
    ZT_FUZZ_CHECK(c->prefix <= (c->base.v6 ? 128 : 32));
    IpAddr other = c->base;
    other.v6 = !other.v6;
    ZT_FUZZ_CHECK(!c->Contains(other));  // never across families
  }
}

// A value HTTP/2 lets through unchanged (RFC 9113 §8.2.1, as nghttp2 checks it).
bool CleanValue(std::string_view v) {
  if (!v.empty() &&
      (v.front() == ' ' || v.front() == '\t' || v.back() == ' ' || v.back() == '\t')) {
    return false;
  }
  for (unsigned char c : v) {
    if (c == 0x7f || (c < 0x20 && c != '\t')) return false;
  }
  return true;
}

struct Recorder final : h2::ServerHandler {
  std::vector<std::pair<int32_t, h2::ConnectRequest>> got;
  h2::Session* session = nullptr;
  void OnConnect(int32_t stream, const h2::ConnectRequest& request) override {
    got.emplace_back(stream, request);
    (void)session->Respond(stream, 503, nullptr);
  }
};

void Drain(h2::Session& s, std::string* out = nullptr) {
  for (int i = 0; i < 64; ++i) {
    const std::string_view b = s.NextOutput();
    if (b.empty()) return;
    if (out != nullptr) out->append(b);
  }
}

using h2::testing::FrameWriter;
constexpr auto Frame = &FrameWriter::Frame;

// Encode HPACK-encodes `headers` with a fresh table (nullopt if nghttp2 refuses).
std::optional<std::string> Encode(const h2::testing::Headers& headers) {
  return FrameWriter().Block(headers);
}

// Part 2: a request from raw headers.
void RawRequest(uint8_t flags, const std::vector<std::pair<std::string, std::string>>& headers) {
  auto block = Encode(headers);
  if (!block) return;
  std::string wire("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  wire += Frame(NGHTTP2_SETTINGS, 0, 0, "");
  const uint8_t end_stream = (flags & 2) ? NGHTTP2_FLAG_END_STREAM : 0;
  if ((flags & 4) && block->size() > 1) {
    const size_t half = block->size() / 2;
    wire += Frame(NGHTTP2_HEADERS, end_stream, 1, block->substr(0, half));
    wire += Frame(NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, block->substr(half));
  } else {
    wire += Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | end_stream, 1, *block);
  }

  Recorder rec;
  auto server = h2::Session::Server(h2::ServerLimits(), &rec);
  ZT_FUZZ_CHECK(server != nullptr);
  rec.session = server.get();
  (void)server->Receive(wire);
  Drain(*server);

  // What the request said, last value winning as Session keeps it.
  std::optional<std::string> method, authority;
  std::string baggage, forwarded, traceparent;
  bool clean = !(flags & 2);  // CONNECT with END_STREAM at once is legal, but keep it simple
  size_t methods = 0, authorities = 0, header_bytes = 0;
  bool regular_seen = false;
  for (const auto& [n, v] : headers) {
    header_bytes += n.size() + v.size() + 32;
    // RFC 9113 §8.3: pseudo-header fields come before every regular one.
    if (!n.empty() && n[0] == ':' && regular_seen) clean = false;
    if (n.empty() || n[0] != ':') regular_seen = true;
    if (n == ":method") {
      method = v;
      ++methods;
    } else if (n == ":authority") {
      authority = v;
      ++authorities;
    } else if (n == "baggage") {
      baggage = v;
    } else if (n == "forwarded") {
      forwarded = v;
    } else if (n == "traceparent") {
      traceparent = v;
    } else if (n != "x-request-id") {
      clean = false;  // pseudo-headers CONNECT forbids, connection-specific ones, raw names
    }
    if (!CleanValue(v)) clean = false;
  }
  if (rec.got.empty()) {
    auto target = authority ? IpPort::Parse(*authority) : std::nullopt;
    const bool valid = clean && methods == 1 && authorities == 1 && *method == "CONNECT" &&
                       target && target->port != 0 && header_bytes < 60000;
    ZT_FUZZ_CHECK(!valid);  // a clean CONNECT to ip:port must reach the handler
    return;
  }
  ZT_FUZZ_CHECK(rec.got.size() == 1);
  const auto& [stream, request] = rec.got[0];
  ZT_FUZZ_CHECK(stream == 1);
  ZT_FUZZ_CHECK(method == "CONNECT");
  ZT_FUZZ_CHECK(authority.has_value());
  auto target = IpPort::Parse(*authority);
  ZT_FUZZ_CHECK(target && target->port != 0 && *target == request.authority);
  ZT_FUZZ_CHECK(request.baggage == baggage);
  ZT_FUZZ_CHECK(request.forwarded == forwarded);
  ZT_FUZZ_CHECK(request.traceparent == traceparent);
}

// Part 3: our client's CONNECT through our server.
void RoundTrip(const IpPort& target, std::string baggage, std::string forwarded,
               std::string traceparent) {
  auto client = h2::Session::Client(h2::ClientLimits());
  Recorder rec;
  auto server = h2::Session::Server(h2::ServerLimits(), &rec);
  ZT_FUZZ_CHECK(client != nullptr && server != nullptr);
  rec.session = server.get();
  struct Quiet final : h2::StreamObserver {
    void OnData(std::span<const char>) override {}
    void OnEndStream() override {}
    void OnStreamClosed(uint32_t) override {}
  } observer;
  h2::ConnectRequest sent{target, baggage, forwarded, traceparent};
  auto id = client->Connect(sent, &observer);
  ZT_FUZZ_CHECK(id.ok());
  std::string wire;
  Drain(*client, &wire);
  (void)server->Receive(wire);
  Drain(*server);
  const bool clean = CleanValue(baggage) && CleanValue(forwarded) && CleanValue(traceparent) &&
                     baggage.size() + forwarded.size() + traceparent.size() < 60000;
  if (!clean) {
    ZT_FUZZ_CHECK(rec.got.size() <= 1);
    return;
  }
  if (target.port == 0) {
    ZT_FUZZ_CHECK(rec.got.empty());  // answered 400 by the session itself
    return;
  }
  ZT_FUZZ_CHECK(rec.got.size() == 1);
  const h2::ConnectRequest& r = rec.got[0].second;
  ZT_FUZZ_CHECK(r.authority == target);
  ZT_FUZZ_CHECK(r.baggage == baggage);
  ZT_FUZZ_CHECK(r.forwarded == forwarded);
  ZT_FUZZ_CHECK(r.traceparent == traceparent);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zt::fuzz::Input in(data, size);
  const uint8_t flags = in.Byte();
  std::vector<std::pair<std::string, std::string>> headers;
  while (!in.empty() && headers.size() < 16) {
    const uint8_t pick = in.Byte();
    std::string name = pick >= 0xe0 ? std::string(in.String()) : kNames[pick % kNameCount];
    headers.emplace_back(std::move(name), std::string(in.String()));
  }
  for (const auto& [n, v] : headers) CheckParsers(v);

  RawRequest(flags, headers);

  if (flags & 1) {
    std::optional<IpPort> target;
    std::string baggage, forwarded, traceparent;
    for (const auto& [n, v] : headers) {
      if (n == ":authority") target = IpPort::Parse(v);
      if (n == "baggage") baggage = v;
      if (n == "forwarded") forwarded = v;
      if (n == "traceparent") traceparent = v;
    }
    if (target) RoundTrip(*target, baggage, forwarded, traceparent);
  }
  return 0;
}
