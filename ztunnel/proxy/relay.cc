#include "ztunnel/proxy/relay.h"

#include <sys/socket.h>

#include <cerrno>

#include "ztunnel/io/socket.h"

namespace zt::proxy {

// Half copies one direction: receive from `from_`, send to `to_`.
class Relay::Half final : public io::BufferWaiter {
 public:
  Half(Relay* relay, int from, int to) : relay_(relay), from_(from), to_(to) {}
  ~Half() { relay_->loop_.buffers().CancelWait(this); }

  void ArmRecv() {
    if (recv_inflight_ || eof_ || relay_->closing_ || queued_ >= kMaxQueuedBuffers) return;
    relay_->loop_.buffers().PrepareRecv(&recv_op_, from_);
    recv_inflight_ = true;
  }

  void OnBuffersAvailable() override { ArmRecv(); }

  bool inflight() const { return recv_inflight_ || send_inflight_; }
  bool done() const { return done_; }
  uint64_t bytes() const { return bytes_; }
  void StopWaitingForBuffers() { relay_->loop_.buffers().CancelWait(this); }
  /// DropQueue gives queued buffers back; only once no send can still read them.
  void DropQueue() {
    relay_->loop_.buffers().CancelWait(this);
    for (auto& b : queue_) b.Release();
    queued_ = 0;
  }

 private:
  io::ProvidedBuffer& Front() { return queue_[head_]; }

  void OnRecv(int32_t res, uint32_t flags) {
    recv_inflight_ = false;
    if (res > 0) {
      io::ProvidedBuffer buf = relay_->loop_.buffers().Claim(flags, static_cast<uint32_t>(res));
      if (relay_->closing_) {
        relay_->MaybeDestroy();
        return;  // buf goes back to the ring
      }
      queue_[(head_ + queued_) % kMaxQueuedBuffers] = std::move(buf);
      ++queued_;
      bytes_ += static_cast<uint64_t>(res);
      MaybeSend();
      ArmRecv();
      return;
    }
    if (relay_->closing_) {
      relay_->MaybeDestroy();
      return;
    }
    if (res == 0) {
      eof_ = true;
      MaybeFinish();
    } else if (res == -ENOBUFS) {
      relay_->loop_.buffers().Wait(this);
    } else {
      relay_->Fail(Error::FromErrno(-res));
    }
  }

  void MaybeSend() {
    if (send_inflight_ || queued_ == 0 || relay_->closing_) return;
    const auto data = Front().data();
    io_uring_prep_send(relay_->loop_.Prepare(&send_op_), to_, data.data(), data.size(),
                       MSG_NOSIGNAL);
    send_inflight_ = true;
  }

  void OnSend(int32_t res, uint32_t /*flags*/) {
    send_inflight_ = false;
    if (relay_->closing_) {
      relay_->MaybeDestroy();
      return;
    }
    if (res <= 0) {
      relay_->Fail(Error::FromErrno(res == 0 ? EPIPE : -res));
      return;
    }
    Front().Consume(static_cast<uint32_t>(res));
    if (Front().empty()) {
      Front().Release();
      head_ = (head_ + 1) % kMaxQueuedBuffers;
      --queued_;
    }
    MaybeSend();
    ArmRecv();
    MaybeFinish();
  }

  void MaybeFinish() {
    if (!eof_ || queued_ != 0 || send_inflight_ || done_) return;
    done_ = true;
    // FIN the other way; ENOTCONN (peer already gone) surfaces on the other half.
    ::shutdown(to_, SHUT_WR);
    relay_->HalfDone();
  }

  Relay* relay_;
  int from_;
  int to_;
  io::MemberCompletion<Half, &Half::OnRecv> recv_op_{this};
  io::MemberCompletion<Half, &Half::OnSend> send_op_{this};
  io::ProvidedBuffer queue_[kMaxQueuedBuffers];
  uint64_t bytes_ = 0;
  uint8_t head_ = 0;
  uint8_t queued_ = 0;
  bool recv_inflight_ = false;
  bool send_inflight_ = false;
  bool eof_ = false;
  bool done_ = false;
};

Relay* Relay::Start(io::Loop& loop, io::UniqueFd downstream, io::UniqueFd upstream,
                    ConnectionTracker* tracker, DoneFn done) {
  auto* relay =
      new Relay(loop, std::move(downstream), std::move(upstream), tracker, std::move(done));
  relay->halves_[0]->ArmRecv();
  relay->halves_[1]->ArmRecv();
  return relay;
}

Relay::Relay(io::Loop& loop, io::UniqueFd downstream, io::UniqueFd upstream,
             ConnectionTracker* tracker, DoneFn done)
    : loop_(loop),
      downstream_(std::move(downstream)),
      upstream_(std::move(upstream)),
      tracker_(tracker),
      done_(std::move(done)) {
  halves_[0] = new Half(this, downstream_.get(), upstream_.get());
  halves_[1] = new Half(this, upstream_.get(), downstream_.get());
  if (tracker_ != nullptr) tracker_->Add(this);
}

Relay::~Relay() {
  delete halves_[0];
  delete halves_[1];
}

bool Relay::OpsInFlight() const { return halves_[0]->inflight() || halves_[1]->inflight(); }

void Relay::HalfDone() {
  if (halves_[0]->done() && halves_[1]->done()) {
    closing_ = true;
    MaybeDestroy();
  }
}

void Relay::Fail(Error error) {
  if (closing_) return;
  closing_ = true;
  reset_ = true;
  error_ = error;
  // Queued buffers stay owned until every operation has completed: an in-flight send
  // may still be reading one, and a buffer back in the ring can be refilled at once.
  halves_[0]->StopWaitingForBuffers();
  halves_[1]->StopWaitingForBuffers();
  // Cancel before close: the kernel keeps the file alive while operations use it.
  if (OpsInFlight()) {
    loop_.CancelFd(downstream_.get());
    loop_.CancelFd(upstream_.get());
  }
  MaybeDestroy();
}

void Relay::Abort() { Fail(Error{Errc::kCancelled}); }

void Relay::MaybeDestroy() {
  if (!closing_ || OpsInFlight() || destroy_scheduled_) return;
  destroy_scheduled_ = true;
  // Deferred: we may be inside one of our halves' completion handlers.
  loop_.Defer([this] {
    if (reset_) {
      (void)io::SetLingerZero(downstream_.get());
      (void)io::SetLingerZero(upstream_.get());
    }
    halves_[0]->DropQueue();
    halves_[1]->DropQueue();
    downstream_.reset();
    upstream_.reset();
    RelayResult result;
    result.bytes_downstream_to_upstream = halves_[0]->bytes();
    result.bytes_upstream_to_downstream = halves_[1]->bytes();
    result.ok = !reset_;
    result.error = error_;
    if (tracker_ != nullptr) tracker_->Remove(this);
    DoneFn done = std::move(done_);
    delete this;
    if (done) done(result);
  });
}

}  // namespace zt::proxy
