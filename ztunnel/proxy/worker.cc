#include "ztunnel/proxy/worker.h"

#include "ztunnel/core/log.h"
#include "ztunnel/io/ops.h"

namespace zt::proxy {

Worker::Worker(int index, int outbound_listen_fd, WorkerOptions options, DrainWatcher drain)
    : index_(index),
      outbound_listen_fd_(outbound_listen_fd),
      options_(std::move(options)),
      drain_(std::move(drain)) {}

Status Worker::Run(std::atomic<bool>* ready) {
  auto loop = io::Loop::Create(options_.loop);
  if (!loop) return loop.error();
  loop_ = loop->get();
  Outbound outbound(*loop_, outbound_listen_fd_, options_.outbound, tracker_);
  io::Timer deadline(*loop_);
  outbound_ = &outbound;
  deadline_ = &deadline;
  tracker_.OnEmpty([this] { MaybeFinish(); });
  outbound.Start();
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
    MaybeFinish();
  });
}

void Worker::MaybeFinish() {
  if (!draining_ || !accept_stopped_ || tracker_.size() != 0) return;
  deadline_->Cancel();
  loop_->Stop();
}

}  // namespace zt::proxy
