#include "ztunnel/inpod/wire.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace zt::inpod {

bool SendDatagram(int sock, const std::string& bytes, std::span<const int> fds,
                  std::string* error) {
  if (fds.size() > kMaxFds) {
    *error = "more than " + std::to_string(kMaxFds) + " file descriptors";
    return false;
  }
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(bytes.size())) return true;
    if (n < 0 && errno == EINTR) continue;
    *error = n < 0 ? std::string("send: ") + std::strerror(errno) : "send: short write";
    return false;
  }
}

Receive ReceiveDatagram(int sock, Datagram* out, std::string* error) {
  out->bytes.resize(kMaxDatagram + 1);  // one spare byte: a full buffer means "too big"
  out->fds.clear();
  iovec iov{out->bytes.data(), out->bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    out->bytes.clear();
    if (errno == ECONNRESET) return Receive::kClosed;
    *error = errno == EAGAIN ? "would block" : std::string("receive: ") + std::strerror(errno);
    return Receive::kBad;
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out->fds.emplace_back(fd);
    }
  }
  if (n == 0 && out->fds.empty()) {
    out->bytes.clear();
    return Receive::kClosed;  // SOCK_SEQPACKET: a zero-length read is the peer's close
  }
  out->bytes.resize(static_cast<size_t>(n));
  if ((msg.msg_flags & MSG_TRUNC) != 0 || out->bytes.size() > kMaxDatagram) {
    *error = "message larger than " + std::to_string(kMaxDatagram) + " bytes";
    return Receive::kBad;
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    *error = "more than " + std::to_string(kMaxFds) + " file descriptors";
    return Receive::kBad;
  }
  return Receive::kOk;
}

bool SendMessage(int sock, const google::protobuf::MessageLite& msg, int fd, std::string* error) {
  std::string bytes;
  if (!msg.SerializeToString(&bytes)) {
    *error = "cannot serialize the message";
    return false;
  }
  return SendDatagram(sock, bytes, fd, error);
}

std::string Describe(const zds::WorkloadRequest& r) {
  switch (r.payload_case()) {
    case zds::WorkloadRequest::kAdd:
      return "add uid=" + r.add().uid() + " name=" + r.add().workload_info().namespace_() + "/" +
             r.add().workload_info().name() + " sa=" + r.add().workload_info().service_account();
    case zds::WorkloadRequest::kDel:
      return "del uid=" + r.del().uid();
    case zds::WorkloadRequest::kKeep:
      return "keep uid=" + r.keep().uid();
    case zds::WorkloadRequest::kSnapshotSent:
      return "snapshot-sent";
    case zds::WorkloadRequest::PAYLOAD_NOT_SET:
      break;
  }
  return "empty request";
}

}  // namespace zt::inpod
