#include "ztunnel/app/workers.h"

#include <atomic>
#include <chrono>

#include "ztunnel/app/startup.h"
#include "ztunnel/core/log.h"

namespace zt::app {

WorkerPool::WorkerPool(int count, int outbound_fd, const proxy::WorkerOptions& options,
                       DrainTrigger& drain)
    : balancer_(count), ready_(static_cast<size_t>(count)) {
  for (int i = 0; i < count; ++i) {
    workers_.push_back(
        std::make_unique<proxy::Worker>(i, outbound_fd, options, drain.Watcher(), balancer_));
    serving_.push_back(workers_.back().get());
  }
  for (size_t i = 0; i < workers_.size(); ++i) {
    threads_.emplace_back([this, i] {
      if (Status s = workers_[i]->Run(&ready_[i]); !s) {
        ZT_ERROR("proxy", "worker {} could not start: {}", i, s.error().Message());
        failed_.fetch_add(1);
      }
    });
  }
  for (auto& r : ready_) {
    while (!r.load() && failed_.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (failed_.load() > 0) {
    drain.Start(std::chrono::milliseconds(0));
    Join();
    Fatal("a worker failed to start (see the log above)");
  }
}

WorkerPool::~WorkerPool() { Join(); }

void WorkerPool::Join() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

}  // namespace zt::app
