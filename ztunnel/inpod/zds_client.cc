#include "ztunnel/inpod/zds_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "ztunnel/core/log.h"
#include "ztunnel/io/netns.h"

namespace zt::inpod {
namespace {

constexpr int kFirstBackoffMs = 10;
constexpr int kMaxBackoffMs = 15000;

io::UniqueFd Connect(const std::string& path, std::string* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    *error = "socket path too long";
    return {};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  io::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = std::strerror(errno);
    return {};
  }
  return fd;
}

}  // namespace

void ZdsClient::Stop() {
  stop_.store(true, std::memory_order_release);
  std::lock_guard lock(mu_);
  if (sock_ >= 0) ::shutdown(sock_, SHUT_RDWR);  // wakes a blocked receive
}

bool ZdsClient::Sleep(int ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!stop_.load(std::memory_order_acquire)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= end) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(end - now, std::chrono::milliseconds(20)));
  }
  return false;
}

void ZdsClient::Run() {
  int backoff = kFirstBackoffMs;
  std::string last_error;
  while (!stop_.load(std::memory_order_acquire)) {
    std::string error;
    io::UniqueFd sock = Connect(path_, &error);
    if (!sock.valid()) {
      if (error != last_error) {
        ZT_WARN("inpod", "cannot connect to the ZDS socket {}: {}; retrying", path_, error);
        last_error = error;
      }
      if (!Sleep(backoff)) return;
      backoff = std::min(backoff * 2, kMaxBackoffMs);
      continue;
    }
    last_error.clear();
    {
      std::lock_guard lock(mu_);
      sock_ = sock.get();
    }
    if (stop_.load()) ::shutdown(sock.get(), SHUT_RDWR);
    connections_.fetch_add(1);
    const bool stopped = Serve(sock.get());
    handler_.Connected(false);
    {
      std::lock_guard lock(mu_);
      sock_ = -1;
    }
    if (stopped) return;
    backoff = kFirstBackoffMs;  // it was up: reconnect quickly
    if (!Sleep(backoff)) return;
  }
}

bool ZdsClient::Serve(int sock) {
  std::string error;
  zds::ZdsHello hello;
  hello.set_version(zds::V1);
  if (!SendMessage(sock, hello, -1, &error)) {
    ZT_WARN("inpod", "ZDS hello failed: {}", error);
    return stop_.load();
  }
  ZT_INFO("inpod", "connected to the ZDS socket {}", path_);
  std::set<std::string> seen;  // uids added or kept during this connection's snapshot
  bool snapshot_done = false;
  for (;;) {
    // Wake up every second for the handler's retries, also while the agent is quiet.
    pollfd p{sock, POLLIN, 0};
    const int ready = ::poll(&p, 1, 1000);
    if (stop_.load(std::memory_order_acquire)) return true;
    if (ready == 0 || (ready < 0 && errno == EINTR)) {
      handler_.Tick();
      continue;
    }
    Datagram d;
    const Receive got = ReceiveDatagram(sock, &d, &error);
    if (stop_.load(std::memory_order_acquire)) return true;
    if (got == Receive::kClosed) {
      ZT_WARN("inpod", "the ZDS peer closed the connection; reconnecting");
      return false;
    }
    std::string nack;
    if (got == Receive::kBad) {
      nack = error;
      if (error == "would block" || d.bytes.empty()) {
        ZT_WARN("inpod", "ZDS receive failed: {}; reconnecting", error);
        return false;
      }
    } else {
      nack = Handle(d, seen, &snapshot_done);
    }
    if (!nack.empty()) ZT_WARN("inpod", "NACK to the ZDS peer: {}", nack);
    zds::WorkloadResponse response;
    response.mutable_ack()->set_error(nack);
    if (!SendMessage(sock, response, -1, &error)) {
      ZT_WARN("inpod", "ZDS ack failed: {}; reconnecting", error);
      return stop_.load();
    }
  }
}

std::string ZdsClient::Handle(Datagram& d, std::set<std::string>& seen, bool* snapshot_done) {
  zds::WorkloadRequest request;
  if (!request.ParseFromString(d.bytes)) return "cannot parse the message as a WorkloadRequest";
  const auto kind = request.payload_case();
  const bool add = kind == zds::WorkloadRequest::kAdd;
  if (!add && !d.fds.empty()) {
    return std::to_string(d.fds.size()) + " file descriptor(s) sent with \"" + Describe(request) +
           "\", which takes none";
  }
  switch (kind) {
    case zds::WorkloadRequest::kAdd: {
      const auto& a = request.add();
      if (a.uid().empty()) return "AddWorkload without a uid";
      if (d.fds.size() != 1) {
        return "AddWorkload for " + a.uid() + " came with " + std::to_string(d.fds.size()) +
               " file descriptors; expected exactly 1 (the pod's network namespace)";
      }
      if (!io::IsNetns(d.fds[0].get())) {
        return "the descriptor sent with AddWorkload for " + a.uid() +
               " is not a network namespace";
      }
      PodInfo pod{a.uid(), a.workload_info().name(), a.workload_info().namespace_(),
                  a.workload_info().service_account()};
      // In the snapshot whether or not it could be set up: the agent has it enrolled.
      if (!*snapshot_done) seen.insert(pod.uid);
      return handler_.AddPod(pod, std::move(d.fds[0]));
    }
    case zds::WorkloadRequest::kKeep: {
      if (request.keep().uid().empty()) return "KeepWorkload without a uid";
      std::string err = handler_.KeepPod(request.keep().uid());
      if (err.empty() && !*snapshot_done) seen.insert(request.keep().uid());
      return err;  // an unknown uid cannot be kept: it is not in the set
    }
    case zds::WorkloadRequest::kDel:
      if (request.del().uid().empty()) return "DelWorkload without a uid";
      seen.erase(request.del().uid());
      return handler_.DelPod(request.del().uid());
    case zds::WorkloadRequest::kSnapshotSent:
      if (*snapshot_done) return "";  // a second one changes nothing
      *snapshot_done = true;
      handler_.SnapshotDone(seen);
      handler_.Connected(true);
      synced_.store(true, std::memory_order_release);
      return "";
    case zds::WorkloadRequest::PAYLOAD_NOT_SET:
      break;
  }
  return "a WorkloadRequest with no known payload";
}

}  // namespace zt::inpod
