// Worker: one data-plane thread: its own io_uring loop, its share of the listeners,
// its connections, and its part of the drain.
#pragma once

#include <atomic>
#include <memory>

#include "ztunnel/core/drain.h"
#include "ztunnel/core/result.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/outbound.h"

namespace zt::proxy {

/// WorkerOptions configure one worker.
struct WorkerOptions {
  io::LoopOptions loop{};
  OutboundOptions outbound{};
};

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

 private:
  void BeginDrain();
  void MaybeFinish();

  int index_;
  int outbound_listen_fd_;
  WorkerOptions options_;
  DrainWatcher drain_;
  Balancer& balancer_;
  std::unique_ptr<io::Loop> loop_;
  ConnectionTracker tracker_;
  std::unique_ptr<Outbound> outbound_;
  std::unique_ptr<io::Timer> deadline_;
  bool draining_ = false;
  bool accept_stopped_ = false;
};

}  // namespace zt::proxy
