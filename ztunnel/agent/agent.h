// The enrollment agent: the istio-cni role on a node (DESIGN.md §4 "ZDS"). It owns the
// ZDS socket node processes connect to, installs and removes the in-pod capture
// rules, and tells every connected node process which pods are enrolled: a full
// snapshot on each (re)connect, then each enroll and unenroll as it happens. Operators
// or the Kubernetes agent (kube/, Go) drive it over a control socket
// (`ztunnel-agent enroll ...`).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "ztunnel/inpod/wire.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/iptables/capture.h"

namespace zt::agent {

/// Options configure one agent.
struct Options {
  std::string zds_socket = "/var/run/ztunnel/ztunnel.sock";
  std::string control_socket = "/var/run/ztunnel/agent.sock";
  iptables::CaptureConfig capture;
  iptables::Tools tools;
  int ack_timeout_ms = 5000;  // a node that does not answer in time is dropped
  // Hold every node's snapshot until a `synced` control request: a restarted agent
  // must not tell node processes "no pods" before it has rebuilt its pod list.
  bool wait_for_sync = false;
  // After unenroll, how long the connmark routing stays (the REDIRECTs go at once) so
  // connections the node process still carries keep working through its drain grace.
  // At least the node process's --drain-timeout.
  std::chrono::milliseconds unenroll_grace{30000};
  // Where the sysctls are reached (a pod's own are opened from inside its netns). In a
  // container /proc/sys is read-only: the chart mounts the host's /proc/sys/net under
  // /host/proc/sys.
  std::string sysctl_dir = "/proc/sys";
};

/// Pod is one enrolled pod; the netns descriptor is kept open for the snapshot. A
/// kept pod (no netns yet: known to be enrolled, its namespace not found again after
/// a restart) goes into snapshots as KeepWorkload.
struct Pod {
  std::string uid, netns_path, name, namespace_name, service_account;
  io::UniqueFd netns;
  bool kept() const { return !netns.valid(); }
};

/// Agent runs on one thread: Start binds, Run serves until Stop (or a signal).
class Agent {
 public:
  explicit Agent(Options options) : options_(std::move(options)) {}
  /// Start creates both sockets (replacing stale socket files). False with *error.
  bool Start(std::string* error);
  /// Run serves until SIGINT/SIGTERM; returns the exit code.
  int Run();

  /// Enroll installs the rules in the pod's netns and tells every node process. A
  /// NACK from one fails the enrollment and takes it back (rules removed, the others
  /// told to delete it): a pod is never left captured and unserved. The reply text
  /// says what happened (the node's NACK reason included).
  bool Enroll(const std::map<std::string, std::string>& fields, std::string* reply);
  /// Keep records a pod that stays enrolled but whose netns is not known yet (after a
  /// restart): snapshots carry it as KeepWorkload, so node processes keep serving it.
  bool Keep(const std::string& uid, std::string* reply);
  /// Unenroll removes the rules and tells every node process.
  // Cleanup removes every pod's capture entirely and at once (an uninstall: no node
  // process will carry their connections), and tells the node processes.
  bool Cleanup(std::string* reply);
  bool Unenroll(const std::string& uid, std::string* reply);
  /// Synced ends --wait-for-sync: waiting node processes get their snapshots.
  bool Synced(std::string* reply);
  /// List is one line per pod: "uid namespace/name sa netns" ("-" as netns: kept).
  std::string List() const;

 private:
  // Node is one node process connection; several may be connected at once (an old
  // and a new node process during an upgrade), each gets every message.
  struct Node {
    io::UniqueFd fd;
    uint64_t id = 0;
    bool snapshot_sent = false;
  };
  void AcceptNode();
  void OnNodeReadable(Node& node);
  void SendSnapshot(Node& node);
  // Broadcast sends one request to every node that has its snapshot. False when one
  // NACKed it (`*nack`: which and why).
  bool Broadcast(const inpod::zds::WorkloadRequest& request, int fd, std::string* nack);
  // Exchange sends one request and waits for its ack. False: the node is gone or
  // silent (it is dropped) — `*nack` is set when it answered with an error.
  bool Exchange(Node& node, const inpod::zds::WorkloadRequest& request, int fd, std::string* nack);
  void DropNode(Node& node, const std::string& why);
  // SetHandover turns net.ipv4.tcp_migrate_req on (or back off) in a pod: when an old
  // node process closes its in-pod listeners during an upgrade, connections still in
  // their accept queues move to the new process's listeners (SO_REUSEPORT group)
  // instead of being reset. Best effort: a failure is logged, never fatal.
  void SetHandover(int netns_fd, const std::string& uid, bool on);
  // Uncapture removes a pod's whole capture (iptables::Uninstall) and the hand-over
  // sysctl with it.
  bool Uncapture(int netns_fd, const std::string& uid, std::string* error);
  void ReapNodes();  // forgets dropped connections
  size_t ServedNodes() const;
  void ServeControl();

  // Leaving is an unenrolled pod whose connmark routing is still in place; its netns
  // stays open until the rest of the capture is removed at `until`.
  struct Leaving {
    io::UniqueFd netns;
    std::chrono::steady_clock::time_point until;
  };
  // FinishLeaving removes the rest of the capture of pods whose grace is over; returns
  // the poll timeout until the next one (-1: none).
  int FinishLeaving();

  Options options_;
  std::map<std::string, Leaving> leaving_;
  io::UniqueFd zds_listen_, control_listen_;
  std::vector<Node> nodes_;
  uint64_t next_node_id_ = 1;
  bool synced_ = true;            // false until `synced` with wait_for_sync
  bool handover_warned_ = false;  // the sysctl failure is logged once at warning
  std::map<std::string, Pod> pods_;
};

/// ParseRequest reads a control request ("verb\nkey=value\n..."); the verb lands in
/// fields["verb"].
std::map<std::string, std::string> ParseRequest(const std::string& text);

}  // namespace zt::agent
