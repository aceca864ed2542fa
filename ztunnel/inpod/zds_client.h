// The node process's side of ZDS (DESIGN.md §4): connect to the agent's socket, say
// hello, then answer every request with an ack or a NACK naming what was wrong.
// Requests are checked here (one parseable message, exactly one network-namespace
// descriptor with each Add and none otherwise, a uid); what a pod means to the proxy
// is the handler's business.
#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <string>

#include "ztunnel/inpod/wire.h"
#include "ztunnel/io/fd.h"

namespace zt::inpod {

/// PodInfo is what the agent says about a pod.
struct PodInfo {
  std::string uid, name, namespace_name, service_account;
};

/// ZdsHandler receives checked requests on the client's thread. A non-empty return
/// NACKs the request with that reason.
class ZdsHandler {
 public:
  virtual ~ZdsHandler() = default;
  /// AddPod sets the pod up in `netns` (a network namespace, owned by the callee now).
  virtual std::string AddPod(const PodInfo& pod, io::UniqueFd netns) = 0;
  /// KeepPod: the pod is still enrolled (snapshot); unknown uids are an error.
  virtual std::string KeepPod(const std::string& uid) = 0;
  /// DelPod drains and removes the pod; unknown uids are an error.
  virtual std::string DelPod(const std::string& uid) = 0;
  /// SnapshotDone: `uids` (added or kept since this connection began) are all the
  /// enrolled pods; any other pod is to be drained.
  virtual void SnapshotDone(const std::set<std::string>& uids) = 0;
  /// Connected is called with true once a connection's snapshot is done, and with
  /// false when that connection ends.
  virtual void Connected(bool /*up*/) {}
  /// Tick runs about once a second on the client's thread, for retries.
  virtual void Tick() {}
};

/// ZdsClient runs on its own thread (Run) until Stop.
class ZdsClient {
 public:
  ZdsClient(std::string socket_path, ZdsHandler& handler)
      : path_(std::move(socket_path)), handler_(handler) {}
  /// Run connects, serves, and reconnects with backoff (10 ms doubling to 15 s) until
  /// Stop is called.
  void Run();
  /// Stop makes Run return soon; safe from any thread.
  void Stop();
  /// synced is true once a snapshot has been received (readiness).
  bool synced() const { return synced_.load(std::memory_order_acquire); }
  /// connections counts successful connects (tests, logs).
  int connections() const { return connections_.load(); }
  /// Handle checks one datagram and calls the handler; returns the NACK reason or "".
  /// `seen` and `*snapshot_done` are the connection's snapshot state (empty and false
  /// when it begins). Public for the fuzz target (fuzz/zds_fuzz.cc); Run calls it.
  std::string Handle(Datagram& d, std::set<std::string>& seen, bool* snapshot_done);

 private:
  // Serve handles one connection until it ends; true if it ended by Stop.
  bool Serve(int sock);
  // Sleep waits up to `ms` or until Stop; false when stopped.
  bool Sleep(int ms);

  const std::string path_;
  ZdsHandler& handler_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> synced_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;  // guards sock_ for Stop
  int sock_ = -1;
};

}  // namespace zt::inpod
