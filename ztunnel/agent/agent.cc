#include "ztunnel/agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "ztunnel/core/log.h"
#include "ztunnel/io/netns.h"

namespace zt::agent {
namespace {

namespace zds = inpod::zds;

bool Listen(const std::string& path, io::UniqueFd* out, std::string* error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    *error = "socket path too long: " + path;
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  io::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ::unlink(path.c_str());  // a stale file from an earlier run
  if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 16) != 0) {
    *error = "listening on " + path + ": " + std::strerror(errno);
    return false;
  }
  *out = std::move(fd);
  return true;
}

// AddRequest is the AddWorkload message for `pod` (its netns travels beside it).
zds::WorkloadRequest AddRequest(const Pod& pod) {
  zds::WorkloadRequest add;
  add.mutable_add()->set_uid(pod.uid);
  auto* info = add.mutable_add()->mutable_workload_info();
  info->set_name(pod.name);
  info->set_namespace_(pod.namespace_name);
  info->set_service_account(pod.service_account);
  return add;
}

bool WaitReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

}  // namespace

std::map<std::string, std::string> ParseRequest(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream lines(text);
  std::string line;
  if (std::getline(lines, line)) out["verb"] = line;
  while (std::getline(lines, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

bool Agent::Start(std::string* error) {
  return Listen(options_.zds_socket, &zds_listen_, error) &&
         Listen(options_.control_socket, &control_listen_, error);
}

int Agent::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  io::UniqueFd signals(::signalfd(-1, &mask, SFD_CLOEXEC));
  ZT_INFO("agent", "serving ZDS on {} and control on {}", options_.zds_socket,
          options_.control_socket);
  for (;;) {
    pollfd fds[4] = {{signals.get(), POLLIN, 0},
                     {zds_listen_.get(), POLLIN, 0},
                     {control_listen_.get(), POLLIN, 0},
                     {node_.valid() ? node_.get() : -1, POLLIN, 0}};
    if (::poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      ZT_ERROR("agent", "poll: {}", std::strerror(errno));
      return 1;
    }
    if (fds[0].revents != 0) break;
    if (fds[1].revents != 0) AcceptNode();
    if (fds[2].revents != 0) ServeControl();
    if (fds[3].revents != 0 && node_.valid()) OnNodeReadable();
  }
  // Pods stay enrolled and captured across an agent restart, as with istio-cni: the
  // rules live in the pods, not in this process.
  ZT_INFO("agent", "stopping; {} pod(s) stay enrolled", pods_.size());
  ::unlink(options_.zds_socket.c_str());
  ::unlink(options_.control_socket.c_str());
  return 0;
}

void Agent::AcceptNode() {
  io::UniqueFd conn(::accept4(zds_listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return;
  // A node process that restarted may connect before its old connection is seen to
  // close: the newest connection is the node process.
  if (node_.valid()) DropNode("a new node process connection replaces it");
  if (!WaitReadable(conn.get(), options_.ack_timeout_ms)) {
    ZT_WARN("agent", "node process connected but sent no hello within {} ms",
            options_.ack_timeout_ms);
    return;
  }
  inpod::Datagram d;
  std::string error;
  zds::ZdsHello hello;
  if (inpod::ReceiveDatagram(conn.get(), &d, &error) != inpod::Receive::kOk ||
      !hello.ParseFromString(d.bytes) || hello.version() != zds::V1) {
    ZT_WARN("agent", "node process sent no valid ZdsHello (V1): {}",
            error.empty() ? "bad message" : error);
    return;
  }
  node_ = std::move(conn);
  ZT_INFO("agent", "node process connected; sending the snapshot of {} pod(s)", pods_.size());
  SendSnapshot();
}

void Agent::SendSnapshot() {
  for (auto& [uid, pod] : pods_) {
    std::string nack;
    if (!Exchange(AddRequest(pod), pod.netns.get(), &nack)) {
      if (!node_.valid()) return;
      ZT_WARN("agent", "node process refused pod {}: {}", uid, nack);
    }
  }
  zds::WorkloadRequest done;
  done.mutable_snapshot_sent();
  std::string nack;
  if (!Exchange(done, -1, &nack) && node_.valid()) {
    ZT_WARN("agent", "node process refused the snapshot end: {}", nack);
  }
}

bool Agent::Exchange(const zds::WorkloadRequest& request, int fd, std::string* nack) {
  if (!node_.valid()) return false;
  std::string error;
  if (!inpod::SendMessage(node_.get(), request, fd, &error)) {
    DropNode(error);
    return false;
  }
  if (!WaitReadable(node_.get(), options_.ack_timeout_ms)) {
    DropNode("no answer to \"" + inpod::Describe(request) + "\" within " +
             std::to_string(options_.ack_timeout_ms) + " ms");
    return false;
  }
  inpod::Datagram d;
  zds::WorkloadResponse response;
  const inpod::Receive got = inpod::ReceiveDatagram(node_.get(), &d, &error);
  if (got != inpod::Receive::kOk || !response.ParseFromString(d.bytes) || !response.has_ack()) {
    DropNode(got == inpod::Receive::kClosed ? "it closed the connection"
                                            : "it answered with something other than an ack");
    return false;
  }
  if (!response.ack().error().empty()) {
    *nack = response.ack().error();
    return false;
  }
  return true;
}

void Agent::OnNodeReadable() {
  // Between exchanges the node process has nothing to say; readable means it left.
  inpod::Datagram d;
  std::string error;
  const inpod::Receive got = inpod::ReceiveDatagram(node_.get(), &d, &error);
  DropNode(got == inpod::Receive::kClosed ? "it closed the connection"
                                          : "it sent an unexpected message");
}

void Agent::DropNode(const std::string& why) {
  if (!node_.valid()) return;
  ZT_WARN("agent", "dropping the node process connection: {}", why);
  node_.reset();
}

bool Agent::Enroll(const std::map<std::string, std::string>& fields, std::string* reply) {
  auto get = [&](const char* key) {
    auto it = fields.find(key);
    return it == fields.end() ? std::string() : it->second;
  };
  Pod pod;
  pod.uid = get("uid");
  pod.netns_path = get("netns");
  pod.name = get("name");
  pod.namespace_name = get("namespace");
  pod.service_account = get("service_account");
  for (auto [value, flag] : {std::pair{&pod.uid, "--uid"},
                             {&pod.netns_path, "--netns"},
                             {&pod.name, "--name"},
                             {&pod.namespace_name, "--namespace"},
                             {&pod.service_account, "--service-account"}}) {
    if (value->empty()) {
      *reply = std::string(flag) + " is required";
      return false;
    }
  }
  if (auto it = pods_.find(pod.uid); it != pods_.end() && it->second.netns_path != pod.netns_path) {
    *reply = "uid " + pod.uid + " is already enrolled with netns " + it->second.netns_path;
    return false;
  }
  auto ns = io::OpenNetns(pod.netns_path);
  if (!ns) {
    *reply =
        pod.netns_path + (ns.error().code == Errc::kInvalidArgument ? " is not a network namespace"
                                                                    : ": " + ns.error().Message());
    return false;
  }
  pod.netns = std::move(ns).value();
  std::string error;
  if (!iptables::Install(pod.netns.get(), options_.capture, options_.tools, &error)) {
    *reply = "installing the capture rules in " + pod.netns_path + " failed: " + error;
    return false;
  }
  const bool again = pods_.count(pod.uid) != 0;
  const std::string uid = pod.uid;
  pods_[uid] = std::move(pod);
  ZT_INFO("agent", "enrolled pod {} ({}/{}), rules installed", uid, pods_[uid].namespace_name,
          pods_[uid].name);
  *reply = again ? "pod " + uid + " was already enrolled; rules checked"
                 : "pod " + uid + " enrolled; capture rules installed";
  if (!node_.valid()) {
    *reply += "; no node process connected: it gets the pod in its snapshot";
    return true;
  }
  std::string nack;
  if (Exchange(AddRequest(pods_[uid]), pods_[uid].netns.get(), &nack)) {
    *reply += "; node process acknowledged";
  } else {
    *reply += nack.empty() ? "; node process lost: it gets the pod in its snapshot"
                           : "; node process refused it: " + nack;
  }
  return true;
}

bool Agent::Unenroll(const std::string& uid, std::string* reply) {
  auto it = pods_.find(uid);
  if (it == pods_.end()) {
    *reply = "no enrolled pod with uid " + uid;
    return false;
  }
  std::string error;
  const bool removed = iptables::Uninstall(it->second.netns.get(), options_.tools, &error);
  pods_.erase(it);
  *reply = removed ? "pod " + uid + " unenrolled; capture rules removed"
                   : "pod " + uid + " unenrolled, but removing its rules failed: " + error;
  ZT_INFO("agent", "{}", *reply);
  if (node_.valid()) {
    zds::WorkloadRequest del;
    del.mutable_del()->set_uid(uid);
    std::string nack;
    if (!Exchange(del, -1, &nack) && !nack.empty()) {
      *reply += "; node process answered: " + nack;
    }
  }
  return removed;
}

std::string Agent::List() const {
  std::string out;
  for (const auto& [uid, pod] : pods_) {
    out += uid + " " + pod.namespace_name + "/" + pod.name + " " + pod.service_account + " " +
           pod.netns_path + "\n";
  }
  return out;
}

void Agent::ServeControl() {
  io::UniqueFd conn(::accept4(control_listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid() || !WaitReadable(conn.get(), 2000)) return;
  inpod::Datagram d;
  std::string error;
  if (inpod::ReceiveDatagram(conn.get(), &d, &error) != inpod::Receive::kOk) return;
  const auto fields = ParseRequest(d.bytes);
  const std::string verb = fields.count("verb") ? fields.at("verb") : "";
  std::string reply;
  bool ok = false;
  if (verb == "enroll") {
    ok = Enroll(fields, &reply);
  } else if (verb == "unenroll") {
    ok = Unenroll(fields.count("uid") ? fields.at("uid") : "", &reply);
  } else if (verb == "list") {
    ok = true;
    reply = List();
  } else {
    reply = "unknown request \"" + verb + "\"";
  }
  if (!ok) ZT_WARN("agent", "{} refused: {}", verb, reply);
  (void)inpod::SendDatagram(conn.get(), (ok ? "ok\n" : "error\n") + reply, -1, &error);
}

}  // namespace zt::agent
