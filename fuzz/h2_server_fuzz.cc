// Fuzz target: the HBONE server session (h2::Session::Server) fed an arbitrary client
// byte stream, as a peer on 15008 could send it after the TLS handshake.
//
// Input: 8 bytes seeding the decisions (how the stream is cut into Receive calls, what
// the handler answers, what the streams do between chunks), one flags byte, then the
// client's bytes. Keeping the decisions in a seed lets the mutator edit frames without
// shifting every decision; flags bit 0 prepends the client preface and an empty
// SETTINGS, so the mutator need not rediscover them.
//
// Checked, besides memory safety: the handler sees only CONNECTs to ip:port with a
// non-zero port, each stream once, and OnStreamReset only for a stream it has not
// answered, at most once (for every unanswered stream after CloseAll); observers hear
// nothing after OnStreamClosed and it comes at most once (exactly once after
// CloseAll); OnData arrives only on open tunnels; DATA frames given to a DataSink are
// well formed. The handler answers every stream at most once, as Inbound does, some
// of them after they were reset (the rapid-reset bound's case).
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "ztunnel/h2/session.h"

namespace {

using zt::fuzz::Rng;
namespace h2 = zt::h2;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::string_view kEmptySettings{"\0\0\0\4\0\0\0\0\0", 9};
// Bounds that keep one input fast: bytes our side writes, output drained per round.
constexpr size_t kMaxWritten = 1 << 20;
constexpr int kMaxOutputsPerRound = 256;

struct Harness;

struct Tunnel final : h2::StreamObserver {
  Harness* h = nullptr;
  int32_t id = 0;
  bool closed = false;
  bool peer_ended = false;
  bool we_ended = false;
  size_t unconsumed = 0;

  void OnData(std::span<const char> data) override;
  void OnEndStream() override {
    ZT_FUZZ_CHECK(!closed);
    peer_ended = true;
  }
  void OnWritable() override;
  void OnStreamClosed(uint32_t /*code*/) override {
    ZT_FUZZ_CHECK(!closed);
    closed = true;
  }
};

struct Harness final : h2::ServerHandler {
  Rng rng;
  // Observers outlive the session: declared before it, destroyed after it.
  std::map<int32_t, std::unique_ptr<Tunnel>> tunnels;
  std::set<int32_t> seen;        // every stream the handler was given
  std::vector<int32_t> pending;  // CONNECTs not answered yet, in arrival order
  std::set<int32_t> unanswered;  // the same, as a set
  std::set<int32_t> reset;       // streams OnStreamReset named
  size_t written = 0;
  std::unique_ptr<h2::Session> session;

  explicit Harness(uint64_t seed) : rng(seed) {}

  void OnConnect(int32_t stream, const h2::ConnectRequest& request) override {
    ZT_FUZZ_CHECK(stream > 0 && (stream & 1) == 1);
    ZT_FUZZ_CHECK(seen.insert(stream).second);
    ZT_FUZZ_CHECK(request.authority.port != 0);
    // What reached us must be what the parser accepts, unchanged.
    const auto again = zt::IpPort::Parse(request.authority.ToString());
    ZT_FUZZ_CHECK(again && *again == request.authority);
    unanswered.insert(stream);
    if (rng.OneIn(2)) {
      pending.push_back(stream);
    } else {
      Answer(stream);  // inside nghttp2's callback, as Inbound does for a 400/401
    }
  }

  void OnStreamReset(int32_t stream) override {
    ZT_FUZZ_CHECK(seen.count(stream) == 1);
    ZT_FUZZ_CHECK(unanswered.count(stream) == 1);  // only streams we still owe an answer
    ZT_FUZZ_CHECK(reset.insert(stream).second);    // once
    // Inbound answers once its cancelled connect comes back; sometimes that is now.
    if (rng.OneIn(4)) {
      auto it = std::find(pending.begin(), pending.end(), stream);
      if (it != pending.end()) {
        pending.erase(it);
        Answer(stream);
      }
    }
  }

  void Answer(int32_t stream) {
    unanswered.erase(stream);
    const uint64_t pick = rng.Below(10);
    if (pick < 6) {
      auto t = std::make_unique<Tunnel>();
      t->h = this;
      t->id = stream;
      if (session->Respond(stream, 200, t.get())) tunnels[stream] = std::move(t);
    } else {
      (void)session->Respond(stream, pick < 8 ? 401 : 503, nullptr);
    }
  }

  void Write(Tunnel* t, size_t n) {
    if (written >= kMaxWritten || t->closed || t->we_ended) return;
    n = std::min(n, kMaxWritten - written);
    std::string bytes(n, static_cast<char>('a' + t->id % 26));
    if (session->Write(t->id, bytes)) written += n;
  }

  Tunnel* AnyOpen() {
    std::vector<Tunnel*> open;
    for (auto& [id, t] : tunnels) {
      if (!t->closed) open.push_back(t.get());
    }
    return open.empty() ? nullptr : open[rng.Below(open.size())];
  }

  // One thing the application side does between two receives.
  void Act() {
    switch (rng.Below(10)) {
      case 0:
      case 1:
        if (!pending.empty()) {
          const size_t i = rng.Below(pending.size());
          const int32_t stream = pending[i];
          pending.erase(pending.begin() + static_cast<ptrdiff_t>(i));
          Answer(stream);  // may be gone already (reset by the peer): an error, no crash
        }
        break;
      case 2:
      case 3:
        if (Tunnel* t = AnyOpen()) Write(t, rng.Below(4) == 0 ? rng.Below(200000) : rng.Below(64));
        break;
      case 4:
        if (Tunnel* t = AnyOpen(); t != nullptr && !t->we_ended) {
          t->we_ended = session->EndStream(t->id).ok();
        }
        break;
      case 5:
        if (Tunnel* t = AnyOpen())
          session->Reset(t->id, rng.OneIn(2) ? h2::kConnectError : h2::kCancel);
        break;
      case 6:
      case 7:
        if (Tunnel* t = AnyOpen(); t != nullptr && t->unconsumed > 0) {
          const size_t n = 1 + rng.Below(t->unconsumed);
          session->Consume(t->id, n);
          t->unconsumed -= n;
        }
        break;
      case 8:
        if (!session->PingOutstanding()) session->SendPing();
        break;
      case 9:
        if (rng.OneIn(8)) session->Goaway(rng.OneIn(2) ? h2::kNoError : h2::kEnhanceYourCalm);
        // A stream id the session never saw: an error, nothing else.
        (void)session->Respond(static_cast<int32_t>(rng.Below(1000)) * 2 + 2, 200, nullptr);
        break;
    }
  }

  void Drain() {
    for (int i = 0; i < kMaxOutputsPerRound; ++i) {
      if (session->NextOutput().empty()) break;
    }
  }
};

void Tunnel::OnData(std::span<const char> data) {
  ZT_FUZZ_CHECK(!closed);
  ZT_FUZZ_CHECK(!peer_ended);
  unconsumed += data.size();
}

void Tunnel::OnWritable() {
  ZT_FUZZ_CHECK(!closed);
  // Writing from inside the callback is allowed (HboneStream resumes its reads here).
  if (h->rng.OneIn(2)) h->Write(this, h->rng.Below(70000));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t seed = 0;
  const size_t seed_bytes = std::min<size_t>(size, 8);
  std::memcpy(&seed, data, seed_bytes);
  const uint8_t flags = size > 8 ? data[8] : 0;
  const size_t head = std::min<size_t>(size, 9);
  std::string stream;
  if (flags & 1) {
    stream.append(kPreface);
    stream.append(kEmptySettings);
  }
  stream.append(reinterpret_cast<const char*>(data + head), size - head);

  Harness h(seed);
  h.session = h2::Session::Server(h2::ServerLimits(), &h);
  ZT_FUZZ_CHECK(h.session != nullptr);
  if (flags & 2) {
    h.session->SetDataSink([&h](std::span<const char> frame) {
      ZT_FUZZ_CHECK(frame.size() >= 9);
      const auto* b = reinterpret_cast<const uint8_t*>(frame.data());
      const size_t length = size_t{b[0]} << 16 | size_t{b[1]} << 8 | b[2];
      ZT_FUZZ_CHECK(length == frame.size() - 9);
      ZT_FUZZ_CHECK(b[3] == 0);  // DATA
      return !h.rng.OneIn(4);    // sometimes "ciphertext is full": offered again later
    });
  }
  h.Drain();  // our SETTINGS

  size_t at = 0;
  while (at < stream.size()) {
    // Mostly small pieces (frame headers split anywhere), sometimes large ones.
    const size_t n = h.rng.OneIn(4) ? 1 + h.rng.Below(4096) : 1 + h.rng.Below(16);
    const size_t take = std::min(n, stream.size() - at);
    const bool ok = h.session->Receive({stream.data() + at, take}).ok();
    at += take;
    if (!ok) break;  // the connection is over; what is queued (a GOAWAY) still goes out
    for (uint64_t k = h.rng.Below(4); k > 0; --k) h.Act();
    // Sometimes the peer does not read for a while (the ack-flood bound's case).
    if (!h.rng.OneIn(8)) h.Drain();
  }
  h.Drain();
  (void)h.session->alive();
  (void)h.session->can_open();
  if (flags & 4) {
    h.session->CloseAll(h2::kCancel);
    for (auto& [id, t] : h.tunnels) ZT_FUZZ_CHECK(t->closed);
    for (int32_t id : h.unanswered) ZT_FUZZ_CHECK(h.reset.count(id) == 1);
    ZT_FUZZ_CHECK(h.session->active_streams() == 0);
    ZT_FUZZ_CHECK(h.session->NextOutput().empty());
  }
  h.session.reset();
  return 0;
}
