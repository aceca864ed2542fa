#include "ztunnel/proxy/hbone_stream.h"

#include <sys/socket.h>

#include <cerrno>

#include "ztunnel/io/socket.h"

namespace zt::proxy {

HboneStream* HboneStream::Create(HboneConnection* conn, io::UniqueFd tcp,
                                 ConnectionTracker* tracker, DoneFn done) {
  return new HboneStream(conn, std::move(tcp), tracker, std::move(done));
}

HboneStream::HboneStream(HboneConnection* conn, io::UniqueFd tcp, ConnectionTracker* tracker,
                         DoneFn done)
    : conn_(conn),
      loop_(conn->loop()),
      tcp_(std::move(tcp)),
      tracker_(tracker),
      done_(std::move(done)) {
  if (tracker_ != nullptr) tracker_->Add(this);
}

HboneStream::~HboneStream() { loop_.buffers().CancelWait(this); }

void HboneStream::Attach(int32_t id, bool wait_for_response) {
  id_ = id;
  attached_ = true;
  if (!wait_for_response) {
    relaying_ = true;
    ArmRecv();
  }
}

void HboneStream::Refuse(std::string error) {
  // No stream exists (or it is being reset by the session): nothing more will call us.
  if (!attached_) stream_closed_ = true;
  Fail(std::move(error));
}

void HboneStream::OnResponse(int status) {
  if (on_response) on_response(status);
  if (status == 200) {
    relaying_ = true;
    ArmRecv();
    MaybeSend();
  } else {
    // The session resets the stream; OnStreamClosed follows.
    result_.error = "tunnel refused with HTTP " + std::to_string(status);
    reset_ = true;
    result_.ok = false;
  }
}

void HboneStream::ArmRecv() {
  if (recv_inflight_ || tcp_eof_ || reset_ || !relaying_ || conn_ == nullptr) return;
  if (conn_->h2().Buffered(id_) >= kMaxBuffered) return;  // OnWritable resumes
  loop_.buffers().PrepareRecv(&recv_op_, tcp_.get());
  recv_inflight_ = true;
}

void HboneStream::OnRecv(int32_t res, uint32_t flags) {
  recv_inflight_ = false;
  if (res > 0) {
    io::ProvidedBuffer buf = loop_.buffers().Claim(flags, static_cast<uint32_t>(res));
    if (reset_) return MaybeDestroy();
    if (conn_ == nullptr || stream_closed_) {
      return Fail("tunnel closed while the client was still sending");
    }
    (void)conn_->h2().Write(id_, buf.data());
    result_.bytes_to_stream += static_cast<uint64_t>(res);
    conn_->ScheduleFlush();
    return ArmRecv();
  }
  if (reset_) return MaybeDestroy();
  if (res == 0) {
    tcp_eof_ = true;
    if (conn_ != nullptr && !stream_closed_) {
      (void)conn_->h2().EndStream(id_);
      conn_->ScheduleFlush();
    }
    return MaybeDestroy();
  }
  if (res == -ENOBUFS) return loop_.buffers().Wait(this);
  Fail(Error::FromErrno(-res).Message());
}

void HboneStream::OnData(std::span<const char> data) {
  out_.append(data.data(), data.size());
  MaybeSend();
}

void HboneStream::MaybeSend() {
  if (send_inflight_ || reset_ || !relaying_) return;
  if (inflight_off_ >= inflight_.size()) {
    if (out_.empty()) return MaybeShutdownWrite();
    inflight_.swap(out_);
    out_.clear();
    inflight_off_ = 0;
  }
  io_uring_prep_send(loop_.Prepare(&send_op_), tcp_.get(), inflight_.data() + inflight_off_,
                     inflight_.size() - inflight_off_, MSG_NOSIGNAL);
  send_inflight_ = true;
}

void HboneStream::OnSend(int32_t res, uint32_t /*flags*/) {
  send_inflight_ = false;
  if (reset_) return MaybeDestroy();
  if (res <= 0) {
    Fail("writing to the local socket: " + Error::FromErrno(res == 0 ? EPIPE : -res).Message());
    return;
  }
  inflight_off_ += static_cast<size_t>(res);
  result_.bytes_from_stream += static_cast<uint64_t>(res);
  // Window credit only for bytes the local socket took: end-to-end back-pressure.
  if (conn_ != nullptr && !stream_closed_) {
    conn_->h2().Consume(id_, static_cast<size_t>(res));
    conn_->ScheduleFlush();
  }
  MaybeSend();
}

void HboneStream::OnEndStream() {
  stream_ended_ = true;
  MaybeShutdownWrite();
}

void HboneStream::MaybeShutdownWrite() {
  // A refused or failing tunnel ends with a reset, never with a FIN.
  if (reset_ || !relaying_) return;
  if (!stream_ended_ || wrote_shutdown_ || send_inflight_ || !out_.empty() ||
      inflight_off_ < inflight_.size()) {
    return;
  }
  wrote_shutdown_ = true;
  ::shutdown(tcp_.get(), SHUT_WR);
  MaybeDestroy();
}

void HboneStream::OnWritable() { ArmRecv(); }

void HboneStream::OnStreamClosed(uint32_t code) {
  stream_closed_ = true;
  conn_ = nullptr;  // the connection may go away now: never touch it again
  if (reset_) return MaybeDestroy();
  if (code == h2::kNoError || code == h2::kCancel) {
    // A clean end or a cancel while reading is EOF; nothing more can be sent either.
    stream_ended_ = true;
    if (!tcp_eof_) {
      tcp_eof_ = true;
      if (recv_inflight_) loop_.CancelOp(&recv_op_);
    }
    MaybeShutdownWrite();
    return MaybeDestroy();
  }
  Fail("tunnel reset by peer (HTTP/2 error " + std::to_string(code) + ")");
}

void HboneStream::Abort() { Fail("aborted"); }

void HboneStream::Fail(std::string error) {
  if (reset_) return MaybeDestroy();  // already failing (or refused): keep the first reason
  reset_ = true;
  result_.ok = false;
  result_.error = std::move(error);
  loop_.buffers().CancelWait(this);
  if (conn_ != nullptr && !stream_closed_ && attached_) {
    conn_->h2().Reset(id_, h2::kConnectError);
    conn_->ScheduleFlush();
  }
  if (recv_inflight_ || send_inflight_) loop_.CancelFd(tcp_.get());
  MaybeDestroy();
}

void HboneStream::MaybeDestroy() {
  if (destroy_scheduled_ || recv_inflight_ || send_inflight_ || !stream_closed_) return;
  const bool finished = reset_ || (tcp_eof_ && wrote_shutdown_);
  if (!finished) return;
  destroy_scheduled_ = true;
  loop_.Defer([this] {
    if (reset_) (void)io::SetLingerZero(tcp_.get());
    tcp_.reset();
    if (tracker_ != nullptr) tracker_->Remove(this);
    DoneFn done = std::move(done_);
    const StreamResult result = result_;
    delete this;
    if (done) done(result);
  });
}

}  // namespace zt::proxy
