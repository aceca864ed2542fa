// Fuzz target: the HBONE client session (h2::Session::Client) after it opened a few
// CONNECT streams, fed an arbitrary server byte stream, as a remote node's 15008
// could answer (or a peer impersonating one, up to the TLS layer).
//
// Input: 8 bytes seeding the decisions (chunking, stream actions), one flags byte,
// then the server's bytes. Flags: bits 0-1 how many CONNECTs open first (1-4), bit 2
// prepend an empty SETTINGS (the server preface), bit 3 use a DataSink, bit 4
// CloseAll at the end.
//
// Checked, besides memory safety: at most one response per stream, before any data;
// data only on tunnels answered 200; nothing after OnStreamClosed, which comes at
// most once (exactly once after CloseAll); Connect refuses rather than exceeding the
// stream limits.
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "ztunnel/h2/session.h"

namespace {

using zt::fuzz::Rng;
namespace h2 = zt::h2;

constexpr std::string_view kEmptySettings{"\0\0\0\4\0\0\0\0\0", 9};
constexpr size_t kMaxWritten = 1 << 20;
constexpr int kMaxOutputsPerRound = 256;

struct Harness;

struct Tunnel final : h2::StreamObserver {
  Harness* h = nullptr;
  int32_t id = 0;
  int status = -1;  // none yet
  bool closed = false;
  bool peer_ended = false;
  bool we_ended = false;
  size_t unconsumed = 0;

  void OnResponse(int s) override {
    ZT_FUZZ_CHECK(!closed);
    ZT_FUZZ_CHECK(status == -1);  // one response per stream
    // nghttp2 lets any three digits through ("006"): whatever is not 200 is a refusal.
    ZT_FUZZ_CHECK(s >= 0 && s <= 999);
    status = s;
  }
  void OnData(std::span<const char> data) override {
    ZT_FUZZ_CHECK(!closed);
    ZT_FUZZ_CHECK(!peer_ended);
    ZT_FUZZ_CHECK(status == 200);  // a refusal's body is not tunnelled bytes
    unconsumed += data.size();
  }
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

struct Harness {
  Rng rng;
  std::vector<std::unique_ptr<Tunnel>> tunnels;  // outlive the session
  size_t written = 0;
  std::unique_ptr<h2::Session> session;

  explicit Harness(uint64_t seed) : rng(seed) {}

  void Open() {
    auto t = std::make_unique<Tunnel>();
    t->h = this;
    h2::ConnectRequest r;
    r.authority = *zt::IpPort::Parse(rng.OneIn(2) ? "10.0.0.2:8080" : "[fd00::2]:443");
    r.baggage = "k8s.namespace.name=ns,k8s.pod.name=pod";
    r.forwarded = "for=\"10.0.0.1:4000\"";
    r.traceparent = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";
    const size_t before = session->active_streams();
    auto id = session->Connect(r, t.get());
    if (!id) {
      ZT_FUZZ_CHECK(session->active_streams() == before);
      return;
    }
    ZT_FUZZ_CHECK(*id > 0 && (*id & 1) == 1);
    ZT_FUZZ_CHECK(session->active_streams() <= 100);
    t->id = *id;
    tunnels.push_back(std::move(t));
  }

  void Write(Tunnel* t, size_t n) {
    if (written >= kMaxWritten || t->closed || t->we_ended) return;
    n = std::min(n, kMaxWritten - written);
    std::string bytes(n, 'x');
    if (session->Write(t->id, bytes)) written += n;
  }

  Tunnel* AnyOpen() {
    std::vector<Tunnel*> open;
    for (auto& t : tunnels) {
      if (!t->closed) open.push_back(t.get());
    }
    return open.empty() ? nullptr : open[rng.Below(open.size())];
  }

  void Act() {
    switch (rng.Below(10)) {
      case 0:
      case 1:
        // HboneStream writes once the tunnel is up, and may queue before that too.
        if (Tunnel* t = AnyOpen()) Write(t, rng.OneIn(4) ? rng.Below(200000) : rng.Below(64));
        break;
      case 2:
        if (Tunnel* t = AnyOpen(); t != nullptr && !t->we_ended) {
          t->we_ended = session->EndStream(t->id).ok();
        }
        break;
      case 3:
        if (Tunnel* t = AnyOpen())
          session->Reset(t->id, rng.OneIn(2) ? h2::kConnectError : h2::kCancel);
        break;
      case 4:
      case 5:
        if (Tunnel* t = AnyOpen(); t != nullptr && t->unconsumed > 0) {
          const size_t n = 1 + rng.Below(t->unconsumed);
          session->Consume(t->id, n);
          t->unconsumed -= n;
        }
        break;
      case 6:
        if (session->can_open() && tunnels.size() < 64) Open();
        break;
      case 7:
        if (!session->PingOutstanding()) session->SendPing();
        break;
      case 8:
        (void)session->peer_max_streams();
        (void)session->Buffered(static_cast<int32_t>(rng.Below(16)));
        break;
      case 9:
        if (rng.OneIn(8)) session->Goaway();
        break;
    }
  }

  void Drain() {
    for (int i = 0; i < kMaxOutputsPerRound; ++i) {
      if (session->NextOutput().empty()) break;
    }
  }
};

void Tunnel::OnWritable() {
  ZT_FUZZ_CHECK(!closed);
  if (h->rng.OneIn(2)) h->Write(this, h->rng.Below(70000));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t seed = 0;
  std::memcpy(&seed, data, std::min<size_t>(size, 8));
  const uint8_t flags = size > 8 ? data[8] : 0;
  const size_t head = std::min<size_t>(size, 9);
  std::string stream;
  if (flags & 4) stream.append(kEmptySettings);
  stream.append(reinterpret_cast<const char*>(data + head), size - head);

  Harness h(seed);
  h.session = h2::Session::Client(h2::ClientLimits());
  ZT_FUZZ_CHECK(h.session != nullptr);
  if (flags & 8) {
    h.session->SetDataSink([&h](std::span<const char> frame) {
      ZT_FUZZ_CHECK(frame.size() >= 9);
      const auto* b = reinterpret_cast<const uint8_t*>(frame.data());
      const size_t length = size_t{b[0]} << 16 | size_t{b[1]} << 8 | b[2];
      ZT_FUZZ_CHECK(length == frame.size() - 9);
      ZT_FUZZ_CHECK(b[3] == 0);
      return !h.rng.OneIn(4);
    });
  }
  // Before the server's SETTINGS arrive, the peer's limit is nghttp2's default.
  for (int i = 0, n = 1 + (flags & 3); i < n; ++i) h.Open();
  h.Drain();

  size_t at = 0;
  while (at < stream.size()) {
    const size_t n = h.rng.OneIn(4) ? 1 + h.rng.Below(4096) : 1 + h.rng.Below(16);
    const size_t take = std::min(n, stream.size() - at);
    const bool ok = h.session->Receive({stream.data() + at, take}).ok();
    at += take;
    if (!ok) break;
    for (uint64_t k = h.rng.Below(4); k > 0; --k) h.Act();
    if (!h.rng.OneIn(8)) h.Drain();
  }
  h.Drain();
  (void)h.session->alive();
  if (flags & 16) {
    h.session->CloseAll(h2::kCancel);
    for (auto& t : h.tunnels) ZT_FUZZ_CHECK(t->closed);
    ZT_FUZZ_CHECK(h.session->active_streams() == 0);
  }
  h.session.reset();
  return 0;
}
