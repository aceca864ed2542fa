// Fuzz target: ZDS messages as the node process receives them from the enrollment
// agent (inpod/wire.*, inpod/zds_client.*): each message goes through a real
// SOCK_SEQPACKET pair with 0-5 descriptors attached (SendDatagram, ReceiveDatagram),
// then through ZdsClient::Handle, the checks before the handler; the same bytes are
// also read as the other messages of the protocol (ZdsHello, WorkloadResponse: what
// the agent parses from the node).
//
// Checked: the datagram arrives as sent (or is refused for the reason the codec
// documents); the handler gets an Add only with a uid and exactly one descriptor,
// which is a network namespace; Keep/Del only with a uid and no descriptor; the
// snapshot reported is exactly the uids added or kept (and not deleted) before the
// first SnapshotSent; a parsed message serializes and parses back to the same.
//
// Input: up to 16 messages, each a flags byte (bits 0-2: descriptors to attach, bit
// 3: attach /dev/null instead of a network namespace, bits 4-5: make the handler
// refuse), a 2-byte length (0xffff: one byte past the 64 KiB limit) and the bytes.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "ztunnel/inpod/wire.h"
#include "ztunnel/inpod/zds_client.h"
#include "ztunnel/io/netns.h"

namespace {

namespace inpod = zt::inpod;
namespace zds = inpod::zds;
using zt::io::UniqueFd;

struct Pair {
  int a = -1, b = -1;
  Pair() {
    int fds[2];
    ZT_FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
    a = fds[0];
    b = fds[1];
  }
};

struct Handler final : inpod::ZdsHandler {
  bool refuse = false;
  std::set<std::string> enrolled;  // what this fake proxy serves
  std::set<std::string> expected;  // the snapshot Handle should report
  bool snapshot_done = false;
  int snapshots = 0;

  std::string AddPod(const inpod::PodInfo& pod, UniqueFd netns) override {
    ZT_FUZZ_CHECK(!pod.uid.empty());
    ZT_FUZZ_CHECK(netns.valid() && zt::io::IsNetns(netns.get()));
    if (!snapshot_done) expected.insert(pod.uid);
    if (refuse) return "refused by the fuzz handler";
    enrolled.insert(pod.uid);
    return "";
  }
  std::string KeepPod(const std::string& uid) override {
    ZT_FUZZ_CHECK(!uid.empty());
    if (refuse || enrolled.count(uid) == 0) return "unknown pod " + uid;
    if (!snapshot_done) expected.insert(uid);
    return "";
  }
  std::string DelPod(const std::string& uid) override {
    ZT_FUZZ_CHECK(!uid.empty());
    if (!snapshot_done) expected.erase(uid);
    if (enrolled.erase(uid) == 0) return "unknown pod " + uid;
    return "";
  }
  void SnapshotDone(const std::set<std::string>& uids) override {
    ZT_FUZZ_CHECK(++snapshots == 1);  // a second SnapshotSent changes nothing
    ZT_FUZZ_CHECK(uids == expected);
    snapshot_done = true;
  }
};

// Stable re-serialization: parse(serialize(m)) serializes to the same bytes.
template <typename M>
void RoundTrip(const std::string& bytes) {
  M m;
  if (!m.ParseFromString(bytes)) return;
  const std::string once = m.SerializeAsString();
  M again;
  ZT_FUZZ_CHECK(again.ParseFromString(once));
  ZT_FUZZ_CHECK(again.SerializeAsString() == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Pair pair;
  zt::fuzz::Input in(data, size);
  Handler handler;
  inpod::ZdsClient client("/nonexistent", handler);  // never Run: only Handle is used
  std::set<std::string> seen;
  bool snapshot_done = false;

  for (int round = 0; round < 16 && !in.empty(); ++round) {
    const uint8_t flags = in.Byte();
    const uint32_t length = uint32_t{in.Byte()} << 8 | in.Byte();
    std::string bytes(in.Bytes(length));
    if (length == 0xffff) bytes.resize(inpod::kMaxDatagram + 1, '\0');
    const size_t nfds = (flags & 7u) % 6;
    std::vector<UniqueFd> owned;
    std::vector<int> fds;
    for (size_t i = 0; i < nfds; ++i) {
      const char* path = (flags & 8) ? "/dev/null" : "/proc/self/ns/net";
      owned.emplace_back(::open(path, O_RDONLY | O_CLOEXEC));
      ZT_FUZZ_CHECK(owned.back().valid());
      fds.push_back(owned.back().get());
    }
    handler.refuse = (flags & 0x30) == 0x30;

    std::string error;
    const bool sent = inpod::SendDatagram(pair.a, bytes, fds, &error);
    if (nfds > inpod::kMaxFds) {
      ZT_FUZZ_CHECK(!sent && !error.empty());
      continue;
    }
    ZT_FUZZ_CHECK(sent);
    inpod::Datagram d;
    const inpod::Receive got = inpod::ReceiveDatagram(pair.b, &d, &error);
    if (bytes.size() > inpod::kMaxDatagram) {
      ZT_FUZZ_CHECK(got == inpod::Receive::kBad);
      continue;
    }
    if (bytes.empty() && fds.empty()) {
      ZT_FUZZ_CHECK(got == inpod::Receive::kClosed);  // SEQPACKET: reads as the peer's close
      continue;
    }
    ZT_FUZZ_CHECK(got == inpod::Receive::kOk);
    ZT_FUZZ_CHECK(d.bytes == bytes);
    ZT_FUZZ_CHECK(d.fds.size() == fds.size());

    const bool was_done = snapshot_done;
    const std::string nack = client.Handle(d, seen, &snapshot_done);
    ZT_FUZZ_CHECK(!was_done || snapshot_done);
    zds::WorkloadRequest request;
    if (request.ParseFromString(bytes)) {
      (void)inpod::Describe(request);
      if (request.payload_case() == zds::WorkloadRequest::PAYLOAD_NOT_SET) {
        ZT_FUZZ_CHECK(!nack.empty());
      }
      if (request.payload_case() != zds::WorkloadRequest::kAdd && !fds.empty()) {
        ZT_FUZZ_CHECK(!nack.empty());
      }
    } else {
      ZT_FUZZ_CHECK(!nack.empty());
    }
    RoundTrip<zds::WorkloadRequest>(bytes);
    RoundTrip<zds::WorkloadResponse>(bytes);
    RoundTrip<zds::ZdsHello>(bytes);
  }
  return 0;
}
