#include "ztunnel/agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "ztunnel/core/duration.h"
#include "ztunnel/core/log.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/iptables/run.h"

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

// DelRequest is the DelWorkload message for `uid`.
zds::WorkloadRequest DelRequest(const std::string& uid) {
  zds::WorkloadRequest del;
  del.mutable_del()->set_uid(uid);
  return del;
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
  synced_ = !options_.wait_for_sync;
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
  ZT_INFO("agent", "serving ZDS on {} and control on {}{}", options_.zds_socket,
          options_.control_socket,
          synced_ ? "" : "; snapshots wait until the pod list is rebuilt (`synced`)");
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{signals.get(), POLLIN, 0},
                {zds_listen_.get(), POLLIN, 0},
                {control_listen_.get(), POLLIN, 0}});
    std::vector<uint64_t> ids;
    for (const Node& n : nodes_) {
      fds.push_back({n.fd.get(), POLLIN, 0});
      ids.push_back(n.id);
    }
    if (::poll(fds.data(), fds.size(), FinishLeaving()) < 0) {
      if (errno == EINTR) continue;
      ZT_ERROR("agent", "poll: {}", std::strerror(errno));
      return 1;
    }
    if (fds[0].revents != 0) break;
    if (fds[1].revents != 0) AcceptNode();
    if (fds[2].revents != 0) ServeControl();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (fds[3 + i].revents == 0) continue;
      // The handlers above may have dropped or added connections: find it by id.
      for (Node& n : nodes_) {
        if (n.id == ids[i] && n.fd.valid()) OnNodeReadable(n);
      }
    }
    ReapNodes();
  }
  // Pods stay enrolled and captured across an agent restart, as with istio-cni: the
  // rules live in the pods, not in this process. Pods still leaving lose their
  // remaining rules now rather than keep them for ever.
  for (auto& [uid, pod] : leaving_) {
    std::string error;
    if (!Uncapture(pod.netns.get(), uid, &error)) {
      ZT_WARN("agent", "removing the rest of pod {}'s capture failed: {}", uid, error);
    }
  }
  leaving_.clear();
  ZT_INFO("agent", "stopping; {} pod(s) stay enrolled", pods_.size());
  ::unlink(options_.zds_socket.c_str());
  ::unlink(options_.control_socket.c_str());
  return 0;
}

void Agent::AcceptNode() {
  io::UniqueFd conn(::accept4(zds_listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return;
  if (!WaitReadable(conn.get(), options_.ack_timeout_ms)) {
    ZT_WARN("agent", "node process connected but sent no hello within {} ms",
            options_.ack_timeout_ms);
    return;
  }
  inpod::Datagram d;
  std::string error;
  zds::ZdsHello hello;
  if (inpod::ReceiveDatagram(conn.get(), &d, &error) != inpod::Receive::kOk ||
      !hello.ParseFromString(d.bytes)) {
    ZT_WARN("agent", "node process sent no valid ZdsHello: {}",
            error.empty() ? "bad message" : error);
    return;
  }
  // Any version is accepted, as istio-cni does: the messages that follow are the same.
  if (hello.version() != zds::V1) {
    ZT_INFO("agent", "node process says ZDS version {}; speaking V1", hello.version());
  }
  // Every connection is kept: a second node process (an upgrade's new one, or one
  // that restarted before its old connection is seen to close) must not make the
  // first reconnect in a loop.
  nodes_.push_back(Node{std::move(conn), next_node_id_++, false});
  Node& node = nodes_.back();
  if (!synced_) {
    ZT_INFO("agent", "node process {} connected; its snapshot waits for the pod list", node.id);
    return;
  }
  ZT_INFO("agent", "node process {} connected; sending the snapshot of {} pod(s)", node.id,
          pods_.size());
  SendSnapshot(node);
}

void Agent::SendSnapshot(Node& node) {
  for (auto& [uid, pod] : pods_) {
    std::string nack;
    zds::WorkloadRequest request;
    if (pod.kept()) {
      request.mutable_keep()->set_uid(uid);
    } else {
      request = AddRequest(pod);
    }
    if (!Exchange(node, request, pod.netns.get(), &nack)) {
      if (!node.fd.valid()) return;
      // It stays enrolled: the node process retries it (the config may name it soon).
      ZT_WARN("agent", "node process {} refused pod {} in its snapshot: {}", node.id, uid, nack);
    }
  }
  zds::WorkloadRequest done;
  done.mutable_snapshot_sent();
  std::string nack;
  if (!Exchange(node, done, -1, &nack) && node.fd.valid()) {
    ZT_WARN("agent", "node process {} refused the snapshot end: {}", node.id, nack);
  }
  if (node.fd.valid()) node.snapshot_sent = true;
}

bool Agent::Broadcast(const zds::WorkloadRequest& request, int fd, std::string* nack) {
  bool ok = true;
  for (Node& node : nodes_) {
    if (!node.fd.valid() || !node.snapshot_sent) continue;
    std::string why;
    if (!Exchange(node, request, fd, &why) && !why.empty()) {
      ok = false;
      if (!nack->empty()) *nack += "; ";
      *nack += nodes_.size() > 1 ? "node process " + std::to_string(node.id) + ": " + why : why;
    }
  }
  return ok;
}

bool Agent::Exchange(Node& node, const zds::WorkloadRequest& request, int fd, std::string* nack) {
  if (!node.fd.valid()) return false;
  std::string error;
  if (!inpod::SendMessage(node.fd.get(), request, fd, &error)) {
    DropNode(node, error);
    return false;
  }
  if (!WaitReadable(node.fd.get(), options_.ack_timeout_ms)) {
    DropNode(node, "no answer to \"" + inpod::Describe(request) + "\" within " +
                       std::to_string(options_.ack_timeout_ms) + " ms");
    return false;
  }
  inpod::Datagram d;
  zds::WorkloadResponse response;
  const inpod::Receive got = inpod::ReceiveDatagram(node.fd.get(), &d, &error);
  if (got != inpod::Receive::kOk || !response.ParseFromString(d.bytes) || !response.has_ack()) {
    DropNode(node, got == inpod::Receive::kClosed ? "it closed the connection"
                                                  : "it answered with something other than an ack");
    return false;
  }
  if (!response.ack().error().empty()) {
    *nack = response.ack().error();
    return false;
  }
  return true;
}

void Agent::OnNodeReadable(Node& node) {
  // Between exchanges the node process has nothing to say; readable means it left.
  inpod::Datagram d;
  std::string error;
  const inpod::Receive got = inpod::ReceiveDatagram(node.fd.get(), &d, &error);
  DropNode(node, got == inpod::Receive::kClosed ? "it closed the connection"
                                                : "it sent an unexpected message");
}

void Agent::DropNode(Node& node, const std::string& why) {
  if (!node.fd.valid()) return;
  ZT_WARN("agent", "dropping node process connection {}: {}", node.id, why);
  node.fd.reset();
}

void Agent::ReapNodes() {
  std::erase_if(nodes_, [](const Node& n) { return !n.fd.valid(); });
}

size_t Agent::ServedNodes() const {
  size_t n = 0;
  for (const Node& node : nodes_) n += node.fd.valid() && node.snapshot_sent ? 1 : 0;
  return n;
}

void Agent::SetHandover(int netns_fd, const std::string& uid, bool on) {
  const std::string path = options_.sysctl_dir + "/net/ipv4/tcp_migrate_req";
  std::string error;
  if (iptables::WriteInNetns(netns_fd, path, on ? "1" : "0", &error)) return;
  if (on && !std::exchange(handover_warned_, true)) {
    ZT_WARN("agent",
            "pod {}: cannot turn on tcp_migrate_req ({}); connections queued on a node "
            "process's listeners when it hands over in an upgrade may be reset. Further "
            "pods are logged at debug",
            uid, error);
  } else {
    ZT_DEBUG("agent", "pod {}: cannot set tcp_migrate_req to {}: {}", uid, on ? 1 : 0, error);
  }
}

bool Agent::Uncapture(int netns_fd, const std::string& uid, std::string* error) {
  if (!iptables::Uninstall(netns_fd, options_.tools, error)) return false;
  SetHandover(netns_fd, uid, false);
  return true;
}

int Agent::FinishLeaving() {
  const auto now = std::chrono::steady_clock::now();
  int timeout = -1;
  for (auto it = leaving_.begin(); it != leaving_.end();) {
    if (it->second.until > now) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(it->second.until - now).count();
      timeout = timeout < 0 ? static_cast<int>(left) : std::min(timeout, static_cast<int>(left));
      ++it;
      continue;
    }
    std::string error;
    if (Uncapture(it->second.netns.get(), it->first, &error)) {
      ZT_INFO("agent", "pod {}: drain grace over, the rest of its capture removed", it->first);
    } else {
      // The pod (and its netns) may be gone already: nothing is left to leak then.
      ZT_INFO("agent", "pod {}: removing the rest of its capture: {}", it->first, error);
    }
    it = leaving_.erase(it);
  }
  return timeout < 0 ? -1 : timeout + 1;
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
  auto ns = io::OpenNetns(pod.netns_path);
  if (!ns) {
    *reply =
        pod.netns_path + (ns.error().code == Errc::kInvalidArgument ? " is not a network namespace"
                                                                    : ": " + ns.error().Message());
    return false;
  }
  pod.netns = std::move(ns).value();
  auto existing = pods_.find(pod.uid);
  // The same pod may be named by another path to its netns (/proc/<pid>/ns/net after
  // a restart, the CNI's /var/run/netns/cni-… at creation): the namespace decides.
  if (existing != pods_.end() && !existing->second.kept() &&
      io::InodeOf(existing->second.netns.get()) != io::InodeOf(pod.netns.get())) {
    *reply = "uid " + pod.uid + " is already enrolled with netns " + existing->second.netns_path;
    return false;
  }
  const bool again = existing != pods_.end() && !existing->second.kept();
  // Enrolled again within its grace: Install puts the redirects back beside the
  // routing that stayed.
  leaving_.erase(pod.uid);
  std::string error;
  if (!iptables::Install(pod.netns.get(), options_.capture, options_.tools, &error)) {
    *reply = "installing the capture rules in " + pod.netns_path + " failed: " + error;
    return false;
  }
  SetHandover(pod.netns.get(), pod.uid, true);
  if (again) {
    ZT_INFO("agent", "pod {} was already enrolled; rules checked", pod.uid);
    *reply = "pod " + pod.uid + " was already enrolled; rules checked";
    return true;
  }
  const std::string uid = pod.uid;
  const bool was_kept = existing != pods_.end();
  std::string nack;
  if (!Broadcast(AddRequest(pod), pod.netns.get(), &nack)) {
    // Take it back: captured traffic nobody serves would be refused.
    std::string undo;
    if (!was_kept && !Uncapture(pod.netns.get(), uid, &undo)) {
      ZT_ERROR("agent", "removing the rules of refused pod {} failed: {}", uid, undo);
    }
    if (!was_kept) {
      // Node processes that did take it must drop it again.
      std::string ignored;
      (void)Broadcast(DelRequest(uid), -1, &ignored);
    }
    *reply = "node process refused pod " + uid + ": " + nack +
             (was_kept ? "; it stays kept" : "; enrollment taken back, capture rules removed");
    return false;
  }
  pods_[uid] = std::move(pod);
  ZT_INFO("agent", "enrolled pod {} ({}/{}), rules installed", uid, pods_[uid].namespace_name,
          pods_[uid].name);
  *reply = "pod " + uid + " enrolled; capture rules installed";
  const size_t served = ServedNodes();
  if (served == 0) {
    *reply += synced_ ? "; no node process connected: it gets the pod in its snapshot"
                      : "; node processes get it in their snapshot once synced";
  } else {
    *reply += served == 1 ? "; node process acknowledged"
                          : "; " + std::to_string(served) + " node processes acknowledged";
  }
  return true;
}

bool Agent::Keep(const std::string& uid, std::string* reply) {
  if (uid.empty()) {
    *reply = "--uid is required";
    return false;
  }
  if (auto it = pods_.find(uid); it != pods_.end()) {
    *reply = "pod " + uid + (it->second.kept() ? " is already kept" : " is enrolled");
    return true;
  }
  pods_[uid].uid = uid;
  *reply = "pod " + uid + " kept until its network namespace is found";
  ZT_INFO("agent", "{}", *reply);
  return true;
}

bool Agent::Unenroll(const std::string& uid, std::string* reply) {
  auto it = pods_.find(uid);
  if (it == pods_.end()) {
    *reply = "no enrolled pod with uid " + uid;
    return false;
  }
  std::string error;
  const bool kept = it->second.kept();
  // New connections go direct at once; those the node process carries keep their
  // routing for the grace (FinishLeaving removes it).
  const bool removed =
      kept || iptables::StopCapturing(it->second.netns.get(), options_.tools, &error);
  if (!kept) {
    leaving_[uid] = Leaving{std::move(it->second.netns),
                            std::chrono::steady_clock::now() + options_.unenroll_grace};
  }
  pods_.erase(it);
  *reply = kept      ? "pod " + uid + " (kept, without a known netns) unenrolled"
           : removed ? "pod " + uid + " unenrolled; capture rules removed (connection routing " +
                           "kept for " + FormatDuration(options_.unenroll_grace) + ")"
                     : "pod " + uid + " unenrolled, but removing its rules failed: " + error;
  ZT_INFO("agent", "{}", *reply);
  std::string nack;
  if (!Broadcast(DelRequest(uid), -1, &nack)) *reply += "; node process answered: " + nack;
  return removed;
}

bool Agent::Cleanup(std::string* reply) {
  int removed = 0, failed = 0;
  std::string first_error;
  auto uninstall = [&](const std::string& uid, int netns_fd) {
    std::string error;
    if (Uncapture(netns_fd, uid, &error)) {
      ++removed;
    } else {
      // A pod whose netns is gone has nothing left to leak.
      ++failed;
      if (first_error.empty()) first_error = "pod " + uid + ": " + error;
    }
  };
  for (auto& [uid, pod] : pods_) {
    if (!pod.kept()) uninstall(uid, pod.netns.get());
    std::string nack;
    (void)Broadcast(DelRequest(uid), -1, &nack);
  }
  for (auto& [uid, leaving] : leaving_) uninstall(uid, leaving.netns.get());
  pods_.clear();
  leaving_.clear();
  *reply = fmt::format("capture removed from {} pods", removed);
  if (failed > 0)
    *reply += fmt::format(" ({} could not be entered; first: {})", failed, first_error);
  ZT_INFO("agent", "cleanup: {}", *reply);
  return true;
}

bool Agent::Synced(std::string* reply) {
  if (synced_) {
    *reply = "already synced";
    return true;
  }
  synced_ = true;
  size_t sent = 0;
  for (Node& node : nodes_) {
    if (!node.fd.valid() || node.snapshot_sent) continue;
    SendSnapshot(node);
    ++sent;
  }
  ReapNodes();
  *reply = "synced; snapshot of " + std::to_string(pods_.size()) + " pod(s) sent to " +
           std::to_string(sent) + " node process(es)";
  ZT_INFO("agent", "{}", *reply);
  return true;
}

std::string Agent::List() const {
  std::string out;
  for (const auto& [uid, pod] : pods_) {
    if (pod.kept()) {
      out += uid + " - - -\n";
      continue;
    }
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
  } else if (verb == "keep") {
    ok = Keep(fields.count("uid") ? fields.at("uid") : "", &reply);
  } else if (verb == "cleanup") {
    ok = Cleanup(&reply);
  } else if (verb == "synced") {
    ok = Synced(&reply);
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
