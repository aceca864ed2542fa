#include "ztunnel/proxy/worker.h"

#include "ztunnel/core/log.h"

namespace zt::proxy {

Worker::Worker(int index, int outbound_listen_fd, WorkerOptions options, DrainWatcher drain,
               Balancer& balancer)
    : index_(index),
      outbound_listen_fd_(outbound_listen_fd),
      options_(std::move(options)),
      drain_(std::move(drain)),
      balancer_(balancer) {}

Worker::~Worker() {
  // Members that submit to the ring go before the ring.
  outbound_.reset();
  deadline_.reset();
  loop_.reset();
}

Status Worker::Run(std::atomic<bool>* ready) {
  auto loop = io::Loop::Create(options_.loop);
  if (!loop) {
    // A worker that never accepts must not hold the others' drain open.
    balancer_.StoppedAccepting();
    return loop.error();
  }
  loop_ = std::move(loop).value();
  outbound_ = std::make_unique<Outbound>(*loop_, outbound_listen_fd_, options_.outbound, tracker_,
                                         balancer_, index_, [this] { MaybeFinish(); });
  deadline_ = std::make_unique<io::Timer>(*loop_);
  balancer_.Join(
      index_, loop_.get(), [this](int fd) { outbound_->ServeHanded(fd); },
      [this] { MaybeFinish(); });
  outbound_->Start();
  const uint64_t sub = drain_.Subscribe([this] { loop_->Post([this] { BeginDrain(); }); });
  if (ready != nullptr) ready->store(true);
  loop_->Run();
  drain_.Unsubscribe(sub);
  ZT_DEBUG("proxy", "worker {} stopped", index_);
  return Status::Ok();
}

void Worker::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  const auto left = drain_.deadline() - DrainClock::now();
  ZT_DEBUG("proxy", "worker {} draining {} connections", index_, tracker_.size());
  deadline_->Start(left, [this](bool fired) {
    if (!fired) return;
    if (tracker_.size() > 0) {
      ZT_WARN("proxy", "drain deadline reached: closing {} connections", tracker_.size());
      tracker_.AbortAll();
    }
  });
  outbound_->StopAccepting([this] {
    accept_stopped_ = true;
    balancer_.StoppedAccepting();
    MaybeFinish();
  });
}

void Worker::MaybeFinish() {
  // Finish only when nobody can hand us a connection any more and ours have ended.
  if (!draining_ || !accept_stopped_ || balancer_.accepting() != 0 || balancer_.load(index_) != 0) {
    return;
  }
  deadline_->Cancel();
  loop_->Stop();
}

}  // namespace zt::proxy
