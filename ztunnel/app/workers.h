// WorkerPool: the proxy workers of the node process, one thread each, sharing the
// outbound listener and a balancer.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "ztunnel/core/drain.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/worker.h"

namespace zt::app {

/// WorkerPool starts the workers and joins them at the end. The workers outlive every
/// worker thread: a worker may post to another until the last one has stopped.
class WorkerPool {
 public:
  /// Starts `count` workers on `outbound_fd` and returns once each serves; a worker
  /// that cannot start is fatal (the others are drained first). `drain` must outlive
  /// the pool.
  WorkerPool(int count, int outbound_fd, const proxy::WorkerOptions& options, DrainTrigger& drain);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// serving lists the running workers (for publishes and the pods' manager).
  const std::vector<proxy::Worker*>& serving() const { return serving_; }
  /// Join waits for every worker thread to end (after the drain has started).
  void Join();

 private:
  proxy::Balancer balancer_;
  std::vector<std::unique_ptr<proxy::Worker>> workers_;
  std::vector<proxy::Worker*> serving_;
  std::vector<std::thread> threads_;
  // What the threads report back; members, as a thread may outlive the constructor.
  std::vector<std::atomic<bool>> ready_;
  std::atomic<int> failed_{0};
};

}  // namespace zt::app
