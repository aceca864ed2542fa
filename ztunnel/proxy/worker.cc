#include "ztunnel/proxy/worker.h"

#include <unistd.h>

#include "ztunnel/core/log.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/io/socket.h"

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
  acceptors_.clear();
  pod_acceptors_.clear();
  pod_drains_.clear();
  cert_view_.reset();  // drops parked connections' waits (and their timers)
  plaintext_.reset();
  inbound_.reset();
  outbound_.reset();
  pool_.reset();
  view_.reset();
  connect_limiter_.reset();
  pool_wait_.reset();
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
  const auto ended = [this] { MaybeFinish(); };
  connect_limiter_ = std::make_unique<ConnectLimiter>(options_.connect_limits, options_.overload);
  options_.outbound.limiter = connect_limiter_.get();
  options_.inbound.limiter = connect_limiter_.get();
  options_.inbound.overload = options_.overload;
  options_.pool.limiter = connect_limiter_.get();
  if (options_.mesh != nullptr) {
    view_ = std::make_unique<SnapshotView>(*options_.mesh->state);
    cert_view_ = std::make_unique<CertView>(*options_.mesh->certs, *loop_, options_.cert_wait);
    pool_ = std::make_unique<Pool>(*loop_, options_.pool, &tracker_);
  }
  outbound_ =
      std::make_unique<Outbound>(*loop_, options_.outbound, tracker_, balancer_, index_, ended,
                                 options_.mesh, view_.get(), cert_view_.get(), pool_.get());
  acceptors_.push_back(std::make_unique<Acceptor>(
      *loop_, outbound_listen_fd_, balancer_, index_, Listener::kOutbound, "outbound",
      [this](int fd) { outbound_->Serve(fd); }, options_.overload));
  if (options_.mesh != nullptr) {
    // Also without node-level listeners: pods' listeners (in-pod mode) use them.
    inbound_ = std::make_unique<Inbound>(*loop_, options_.inbound, *options_.mesh, *view_,
                                         *cert_view_, tracker_, balancer_, index_, ended);
    plaintext_ = std::make_unique<InboundPlaintext>(*loop_, options_.inbound, *options_.mesh,
                                                    *view_, tracker_, balancer_, index_, ended);
  }
  if (options_.mesh != nullptr && options_.inbound_listen_fd >= 0) {
    acceptors_.push_back(std::make_unique<Acceptor>(
        *loop_, options_.inbound_listen_fd, balancer_, index_, Listener::kInboundHbone,
        "inbound HBONE", [this](int fd) { inbound_->Serve(fd); }, options_.overload));
  }
  if (options_.mesh != nullptr && options_.inbound_plaintext_listen_fd >= 0) {
    acceptors_.push_back(std::make_unique<Acceptor>(
        *loop_, options_.inbound_plaintext_listen_fd, balancer_, index_,
        Listener::kInboundPlaintext, "inbound plaintext", [this](int fd) { plaintext_->Serve(fd); },
        options_.overload));
  }
  deadline_ = std::make_unique<io::Timer>(*loop_);
  pool_wait_ = std::make_unique<io::Timer>(*loop_);
  balancer_.Join(
      index_, loop_.get(), [this](int fd, Listener listener) { Serve(fd, listener); }, ended);
  acceptors_running_ = acceptors_.size();
  for (auto& a : acceptors_) a->Start();
  const uint64_t sub = drain_.Subscribe([this] { loop_->Post([this] { BeginDrain(); }); });
  if (ready != nullptr) ready->store(true);
  loop_->Run();
  drain_.Unsubscribe(sub);
  ZT_DEBUG("proxy", "worker {} stopped", index_);
  return Status::Ok();
}

void Worker::StateChanged() {
  loop_->Post([this] {
    if (view_) view_->Refresh();
    if (inbound_) inbound_->Recheck();
    if (plaintext_) plaintext_->Recheck();
  });
}

void Worker::CertsChanged() {
  loop_->Post([this] {
    if (cert_view_) cert_view_->Refresh();
  });
}

void Worker::AddPod(const std::string& uid, PodListeners listeners) {
  loop_->Post([this, uid, listeners] {
    if (draining_ || options_.mesh == nullptr || pod_acceptors_.count(uid) != 0) return;
    auto& list = pod_acceptors_[uid];
    for (const auto& listener : listeners) {
      // Not a structured binding: clang before 16 cannot capture one in a lambda.
      const int fd = listener.fd;
      const Listener kind = listener.kind;
      list.push_back(std::make_unique<Acceptor>(
          *loop_, fd, balancer_, index_, kind, "pod", [this, kind](int c) { Serve(c, kind); },
          options_.overload));
      list.back()->Start();
    }
  });
}

void Worker::RemovePod(const std::string& uid, uint64_t netns_inode,
                       std::chrono::milliseconds grace, std::function<void()> done) {
  loop_->Post([this, uid, netns_inode, grace, done = std::move(done)]() mutable {
    if (!draining_ && tracker_.size() > 0) {
      // The node drain, if it starts, has its own deadline; this one is the pod's.
      const uint64_t key = next_pod_drain_++;
      auto& timer = pod_drains_[key];
      timer = std::make_unique<io::Timer>(*loop_);
      timer->Start(grace, [this, key, uid, netns_inode](bool fired) {
        if (!fired) return;
        const size_t closed = tracker_.AbortIf([netns_inode](int fd) {
          if (fd < 0) return false;
          auto ns = io::ForeignNetnsOf(fd);
          return ns && ns->valid() && io::InodeOf(ns->get()) == netns_inode;
        });
        if (closed > 0) {
          ZT_INFO("proxy", "pod {} removed: closed {} connection(s) still open after its grace",
                  uid, closed);
        }
        pod_drains_.erase(key);  // destroys this timer: safe from its own callback
      });
    }
    auto it = pod_acceptors_.find(uid);
    if (it == pod_acceptors_.end() || draining_ || removing_.count(uid) != 0) {
      return done();  // nothing (more) to stop
    }
    removing_.insert(uid);
    // Stopped acceptors are destroyed only after the last one reported back.
    auto left = std::make_shared<size_t>(it->second.size());
    auto finish = [this, uid, left, done = std::move(done)]() mutable {
      if (--*left > 0) return;
      loop_->Post([this, uid, done = std::move(done)] {
        pod_acceptors_.erase(uid);
        removing_.erase(uid);
        done();
      });
    };
    if (*left == 0) {
      pod_acceptors_.erase(it);
      removing_.erase(uid);
      return done();
    }
    for (auto& a : it->second) a->Stop(finish);
  });
}

void Worker::Serve(int fd, Listener listener) {
  if (past_deadline_) {
    // Handed over or accepted after the drain deadline closed everything: serving it
    // now would hold the process past its grace.
    ZT_DEBUG("proxy", "worker {}: refusing a connection after the drain deadline", index_);
    (void)io::SetLingerZero(fd);
    ::close(fd);
    balancer_.Release(index_);
    return MaybeFinish();
  }
  if (listener == Listener::kInboundHbone && inbound_ != nullptr) return inbound_->Serve(fd);
  if (listener == Listener::kInboundPlaintext && plaintext_ != nullptr) {
    return plaintext_->Serve(fd);
  }
  outbound_->Serve(fd);
}

void Worker::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  const auto left = drain_.deadline() - DrainClock::now();
  ZT_DEBUG("proxy", "worker {} draining {} connections", index_, tracker_.size());
  deadline_->Start(left, [this](bool fired) {
    if (!fired) return;
    past_deadline_ = true;
    if (cert_view_)
      cert_view_->FailAll("the drain deadline passed while it waited for a certificate");
    if (tracker_.size() > 0) {
      ZT_WARN("proxy", "drain deadline reached: closing {} connections", tracker_.size());
      tracker_.AbortAll();
    }
  });
  // Inbound HTTP/2 peers hear GOAWAY: no new tunnels, live ones finish.
  if (inbound_) inbound_->Drain();
  // Pods being removed already stop on their own and do not hold the drain.
  for (auto& [uid, list] : pod_acceptors_) {
    if (removing_.count(uid) == 0) acceptors_running_ += list.size();
  }
  for (auto& a : acceptors_) a->Stop([this] { AcceptorStopped(); });
  for (auto& [uid, list] : pod_acceptors_) {
    if (removing_.count(uid) != 0) continue;
    for (auto& a : list) a->Stop([this] { AcceptorStopped(); });
  }
}

void Worker::AcceptorStopped() {
  if (--acceptors_running_ > 0) return;
  accept_stopped_ = true;
  balancer_.StoppedAccepting();
  MaybeFinish();
}

void Worker::MaybeFinish() {
  // Finish only when nobody can hand us a connection any more and ours have ended.
  if (!draining_ || !accept_stopped_ || balancer_.accepting() != 0 || balancer_.load(index_) != 0) {
    return;
  }
  if (pool_ && !pool_->quiet()) {
    // Pooled connections carry no connection of ours any more: close them and wait
    // until they are gone, since they report back to the pool.
    pool_->CloseAll();
    if (!pool_wait_->pending()) {
      pool_wait_->Start(std::chrono::milliseconds(5), [this](bool) { MaybeFinish(); });
    }
    return;
  }
  if (finishing_) return;
  finishing_ = true;
  deadline_->Cancel();
  pool_wait_->Cancel();
  loop_->Stop();
}

}  // namespace zt::proxy
