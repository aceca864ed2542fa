// ZDS datagrams on a SOCK_SEQPACKET socket: one protobuf message each, file
// descriptors alongside (SCM_RIGHTS). Both the agent and the node process use this.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "ztunnel/inpod/zds.pb.h"
#include "ztunnel/io/fd.h"

namespace zt::inpod {

namespace zds = ::istio::workload::zds;

/// kMaxDatagram bounds one message; a larger one is refused, not truncated.
inline constexpr size_t kMaxDatagram = 64 * 1024;
/// kMaxFds bounds the descriptors accepted with one message (all are closed if more).
inline constexpr size_t kMaxFds = 4;

/// Datagram is one received message: its bytes and the descriptors that came with it.
struct Datagram {
  std::string bytes;
  std::vector<io::UniqueFd> fds;
};

/// Outcome of a receive: kOk, kClosed (the peer hung up), or kBad with a reason.
enum class Receive { kOk, kClosed, kBad };

/// SendDatagram sends `bytes` with `fds` attached (at most kMaxFds). False with *error
/// on failure (the peer gone, the socket full).
bool SendDatagram(int sock, const std::string& bytes, std::span<const int> fds, std::string* error);
/// SendDatagram with one descriptor, or none when fd < 0.
inline bool SendDatagram(int sock, const std::string& bytes, int fd, std::string* error) {
  return SendDatagram(sock, bytes, std::span<const int>(&fd, fd >= 0 ? 1 : 0), error);
}

/// ReceiveDatagram reads one datagram (blocking, unless the socket is non-blocking:
/// then EAGAIN is kBad with "would block"). Oversized datagrams and truncated
/// descriptor lists are kBad; descriptors are owned by `out` either way.
Receive ReceiveDatagram(int sock, Datagram* out, std::string* error);

/// SendMessage serializes `msg` and sends it (with `fd` when fd >= 0).
bool SendMessage(int sock, const google::protobuf::MessageLite& msg, int fd, std::string* error);

/// Describe renders a request for logs ("add uid=... name=ns/name sa=...").
std::string Describe(const zds::WorkloadRequest& request);

}  // namespace zt::inpod
