// Worker: one data-plane thread: its own io_uring loop, its share of the listeners,
// its connections (and HBONE pool), and its part of the drain.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>

#include "ztunnel/core/drain.h"
#include "ztunnel/core/result.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/metrics/overload.h"
#include "ztunnel/proxy/acceptor.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/cert_view.h"
#include "ztunnel/proxy/connect_limiter.h"
#include "ztunnel/proxy/inbound.h"
#include "ztunnel/proxy/inbound_plaintext.h"
#include "ztunnel/proxy/mesh.h"
#include "ztunnel/proxy/outbound.h"
#include "ztunnel/proxy/pool.h"

namespace zt::proxy {

/// WorkerOptions configure one worker.
struct WorkerOptions {
  io::LoopOptions loop{};
  OutboundOptions outbound{};
  InboundOptions inbound{};
  PoolOptions pool{};
  /// mesh, when set, enables HBONE: tunnels out through the pool, and the inbound
  /// HBONE listener. Without it every outbound connection is a plain passthrough.
  const Mesh* mesh = nullptr;
  /// inbound_listen_fd is the shared HBONE listener (needs `mesh`); -1 for none.
  int inbound_listen_fd = -1;
  /// inbound_plaintext_listen_fd is the shared 15006 listener (needs `mesh`); -1: none.
  int inbound_plaintext_listen_fd = -1;
  /// overload, when set, counts accept back-offs and refusals past a bound; it must
  /// outlive the worker.
  metrics::OverloadMetrics* overload = nullptr;
  /// connect_limits bound the worker's upstream connects in flight (ConnectLimiter).
  ConnectLimits connect_limits{};
  /// cert_wait bounds how long a connection waits for its workload's certificate when
  /// the control thread has not issued it yet (the connection is parked, not the worker).
  std::chrono::milliseconds cert_wait{10'000};
};

/// PodListener is one of a pod's listening sockets (in-pod mode), created inside the
/// pod's network namespace by the caller, who keeps it open until every worker's
/// RemovePod has finished.
struct PodListener {
  int fd;
  Listener kind;
};
using PodListeners = std::vector<PodListener>;

/// Worker::Run runs on the worker's own thread until the drain has finished there:
/// no worker accepts any more, and every connection assigned to this one has ended or
/// was aborted at the deadline. The Worker object (and its loop) must outlive the
/// threads of every other worker sharing the balancer: they may still post to it.
class Worker {
 public:
  /// `outbound_listen_fd` and `balancer` are shared by all workers and must outlive Run().
  Worker(int index, int outbound_listen_fd, WorkerOptions options, DrainWatcher drain,
         Balancer& balancer);
  ~Worker();

  /// Run returns an error if the loop cannot start; `ready` is set once it serves.
  Status Run(std::atomic<bool>* ready = nullptr);
  /// StateChanged tells the worker a new state was published: it takes the new
  /// snapshot and authorizes live inbound connections again. Thread-safe; call only
  /// after Run reported ready.
  void StateChanged();
  /// CertsChanged tells the worker a new certificate set was published: it takes it and
  /// wakes the connections waiting for one. Thread-safe; call only after Run reported
  /// ready.
  void CertsChanged();
  /// AddPod starts accepting on a pod's listeners (needs a mesh). Thread-safe; call
  /// only after Run reported ready.
  void AddPod(const std::string& uid, PodListeners listeners);
  /// RemovePod stops accepting on them; `done` runs on this worker's thread once the
  /// kernel has released them (at once if the pod is unknown or already stopped).
  /// The pod's live connections (those whose socket is in the namespace with inode
  /// `netns_inode`) get `grace` to finish; the rest are then closed. No other pod's.
  void RemovePod(const std::string& uid, uint64_t netns_inode, std::chrono::milliseconds grace,
                 std::function<void()> done);

 private:
  void Serve(int fd, Listener listener);
  void BeginDrain();
  void AcceptorStopped();
  void MaybeFinish();

  int index_;
  int outbound_listen_fd_;
  WorkerOptions options_;
  DrainWatcher drain_;
  Balancer& balancer_;
  std::unique_ptr<io::Loop> loop_;
  ConnectionTracker tracker_;
  std::unique_ptr<ConnectLimiter> connect_limiter_;
  std::unique_ptr<SnapshotView> view_;   // with a mesh: this worker's state snapshot
  std::unique_ptr<CertView> cert_view_;  // with a mesh: its certificates and their waiters
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<Outbound> outbound_;
  std::unique_ptr<Inbound> inbound_;
  std::unique_ptr<InboundPlaintext> plaintext_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  // Per pod (in-pod mode): its acceptors; stopped ones wait here until released.
  std::map<std::string, std::vector<std::unique_ptr<Acceptor>>> pod_acceptors_;
  std::set<std::string> removing_;  // pods whose acceptors are stopping already
  // Removed pods' grace periods, one per removal (a uid removed, re-added and removed
  // again has two, each for its own namespace); at the end their connections close.
  std::map<uint64_t, std::unique_ptr<io::Timer>> pod_drains_;
  uint64_t next_pod_drain_ = 0;
  std::unique_ptr<io::Timer> deadline_;
  std::unique_ptr<io::Timer> pool_wait_;
  size_t acceptors_running_ = 0;
  bool draining_ = false;
  bool past_deadline_ = false;  // the drain deadline fired: new connections are refused
  bool accept_stopped_ = false;
  bool finishing_ = false;
};

}  // namespace zt::proxy
