// The enrollment agent: the istio-cni role on a node (DESIGN.md §4 "ZDS"). It owns the
// ZDS socket the node process connects to, installs and removes the in-pod capture
// rules, and tells the node process which pods are enrolled: a full snapshot on every
// (re)connect, then each enroll and unenroll as it happens. Operators (or a CNI
// plugin) drive it over a control socket (`ztunnel-agent enroll ...`).
#pragma once

#include <map>
#include <string>

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
};

/// Pod is one enrolled pod; the netns descriptor is kept open for the snapshot.
struct Pod {
  std::string uid, netns_path, name, namespace_name, service_account;
  io::UniqueFd netns;
};

/// Agent runs on one thread: Start binds, Run serves until Stop (or a signal).
class Agent {
 public:
  explicit Agent(Options options) : options_(std::move(options)) {}
  /// Start creates both sockets (replacing stale socket files). False with *error.
  bool Start(std::string* error);
  /// Run serves until SIGINT/SIGTERM; returns the exit code.
  int Run();

  /// Enroll installs the rules in the pod's netns and tells the node process. The
  /// reply text says what happened (the node's NACK reason included).
  bool Enroll(const std::map<std::string, std::string>& fields, std::string* reply);
  /// Unenroll removes the rules and tells the node process.
  bool Unenroll(const std::string& uid, std::string* reply);
  /// List is one line per pod: "uid namespace/name sa netns".
  std::string List() const;

 private:
  void AcceptNode();
  void OnNodeReadable();
  void SendSnapshot();
  // Exchange sends one request and waits for its ack. False: the node is gone or
  // silent (it is dropped) — `*nack` is set when it answered with an error.
  bool Exchange(const inpod::zds::WorkloadRequest& request, int fd, std::string* nack);
  void DropNode(const std::string& why);
  void ServeControl();

  Options options_;
  io::UniqueFd zds_listen_, control_listen_, node_;
  std::map<std::string, Pod> pods_;
};

/// ParseRequest reads a control request ("verb\nkey=value\n..."); the verb lands in
/// fields["verb"].
std::map<std::string, std::string> ParseRequest(const std::string& text);

}  // namespace zt::agent
