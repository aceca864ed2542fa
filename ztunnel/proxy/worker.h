// Worker: one data-plane thread: its own io_uring loop, its share of the listeners,
// its connections, and its part of the drain.
#pragma once

#include <atomic>

#include "ztunnel/core/drain.h"
#include "ztunnel/core/result.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/proxy/outbound.h"

namespace zt::proxy {

/// WorkerOptions configure one worker.
struct WorkerOptions {
  io::LoopOptions loop{};
  OutboundOptions outbound{};
};

/// Worker::Run runs on the worker's own thread until the drain has finished there:
/// accepting stopped, and every connection ended or aborted at the deadline.
class Worker {
 public:
  /// `outbound_listen_fd` is shared by all workers and must outlive Run().
  Worker(int index, int outbound_listen_fd, WorkerOptions options, DrainWatcher drain);

  /// Run returns an error if the loop cannot start; `ready` is set once it serves.
  Status Run(std::atomic<bool>* ready = nullptr);

 private:
  void BeginDrain();
  void MaybeFinish();

  int index_;
  int outbound_listen_fd_;
  WorkerOptions options_;
  DrainWatcher drain_;
  io::Loop* loop_ = nullptr;
  ConnectionTracker tracker_;
  Outbound* outbound_ = nullptr;
  io::Timer* deadline_ = nullptr;
  bool draining_ = false;
  bool accept_stopped_ = false;
};

}  // namespace zt::proxy
