#include "ztunnel/proxy/hbone_connection.h"

#include <sys/socket.h>

#include <cerrno>

#include "ztunnel/core/log.h"
#include "ztunnel/core/log_limiter.h"
#include "ztunnel/io/socket.h"

namespace zt::proxy {
namespace {

// One send at a time, at most this big; TLS output is pulled from h2 up to it.
constexpr size_t kSendChunk = 256 << 10;
constexpr size_t kIdleBufferKeep = 64 << 10;

}  // namespace

HboneConnection* HboneConnection::StartServer(io::Loop& loop, io::UniqueFd fd,
                                              std::shared_ptr<tls::TlsContext> ctx,
                                              h2::ServerHandler* handler,
                                              ConnectionTracker* tracker, Events events,
                                              HboneTimeouts timeouts) {
  auto* c = new HboneConnection(loop, std::move(fd), tracker, std::move(events), timeouts);
  c->tls_ = tls::TlsSession::Server(std::move(ctx));
  c->h2_ = h2::Session::Server(h2::ServerLimits(), handler);
  c->h2_->SetDataSink([c](std::span<const char> frame) { return c->WriteFrame(frame); });
  c->ArmRecv();
  return c;
}

HboneConnection* HboneConnection::StartClient(io::Loop& loop, io::UniqueFd fd,
                                              std::shared_ptr<tls::TlsContext> ctx,
                                              std::vector<tls::SpiffeId> expected,
                                              ConnectionTracker* tracker, Events events,
                                              HboneTimeouts timeouts) {
  auto* c = new HboneConnection(loop, std::move(fd), tracker, std::move(events), timeouts);
  c->tls_ = tls::TlsSession::Client(std::move(ctx), std::move(expected));
  c->h2_ = h2::Session::Client(h2::ClientLimits());
  c->h2_->SetDataSink([c](std::span<const char> frame) { return c->WriteFrame(frame); });
  c->Process();  // the client speaks first: ClientHello
  c->ArmRecv();
  return c;
}

HboneConnection::HboneConnection(io::Loop& loop, io::UniqueFd fd, ConnectionTracker* tracker,
                                 Events events, HboneTimeouts timeouts)
    : loop_(loop),
      fd_(std::move(fd)),
      tracker_(tracker),
      events_(std::move(events)),
      timeouts_(timeouts),
      timer_(loop),
      drain_timer_(loop) {
  ArmTimer(timeouts_.handshake);
  // Small frames (WINDOW_UPDATE, PING, SETTINGS acks) must not wait for Nagle: with the
  // peer's delayed ACKs that stalls every flow-control round trip by ~40 ms.
  (void)io::SetNoDelay(fd_.get());
  // Remembered now: after a reset the kernel no longer knows whom we talked to.
  auto peer = io::PeerAddress(fd_.get());
  peer_addr_ = peer ? peer->ToString() : "unknown peer";
  if (tracker_ != nullptr) tracker_->Add(this);
}

HboneConnection::~HboneConnection() { loop_.buffers().CancelWait(this); }

void HboneConnection::ArmTimer(std::chrono::milliseconds delay) {
  if (closing_ || timer_.pending()) return;
  timer_.Start(delay, [this](bool fired) {
    if (closing_) return MaybeDestroy();
    if (!fired) return ArmTimer(timeouts_.ping_interval);  // handshake done: keepalive now
    OnTimer();
  });
}

void HboneConnection::OnTimer() {
  const auto now = std::chrono::steady_clock::now();
  if (!ready_) {
    Close(h2::kCancel,
          "TLS handshake timed out after " + std::to_string(timeouts_.handshake.count()) + " ms");
    return;
  }
  if (h2_->PingOutstanding()) {
    if (now - ping_sent_ >= timeouts_.ping_timeout) {
      Close(h2::kCancel, "peer did not answer a PING for " +
                             std::to_string(timeouts_.ping_timeout.count()) + " ms");
      return;
    }
  } else {
    h2_->SendPing();
    ping_sent_ = now;
    Flush();
  }
  // Wake at the next PING or at the deadline of the outstanding one, whichever is first.
  auto next = timeouts_.ping_interval;
  if (h2_->PingOutstanding()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        ping_sent_ + timeouts_.ping_timeout - now);
    next = std::min(next, std::max(left, std::chrono::milliseconds(1)));
  }
  ArmTimer(next);
}

void HboneConnection::ArmRecv() {
  if (recv_inflight_ || closing_ || peer_eof_) return;
  loop_.buffers().PrepareRecv(&recv_op_, fd_.get());
  recv_inflight_ = true;
}

void HboneConnection::OnRecv(int32_t res, uint32_t flags) {
  recv_inflight_ = false;
  if (res > 0) {
    io::ProvidedBuffer buf = loop_.buffers().Claim(flags, static_cast<uint32_t>(res));
    if (closing_) return MaybeDestroy();
    // TLS reads the buffer in place and keeps a copy of only what it has not read
    // (a partial record), so the buffer goes back to the ring right after.
    tls_->LendCiphertext(buf.data());
    Process();
    tls_->ReturnLent();
    buf.Release();
    ArmRecv();
    return;
  }
  if (closing_) return MaybeDestroy();
  if (res == -ENOBUFS) return loop_.buffers().Wait(this);
  if (res == 0) {
    peer_eof_ = true;
    // TCP FIN without close_notify and with streams open is a truncation.
    Close(h2::kConnectError, h2_->active_streams() > 0 ? "peer closed the connection" : "");
    return;
  }
  Close(h2::kConnectError, Error::FromErrno(-res).Message());
}

void HboneConnection::Process() {
  if (closing_ || close_after_flush_) return;
  if (!ready_) {
    const auto p = tls_->Handshake();
    if (p == tls::TlsSession::Progress::kFailed) {
      Flush();  // send our alert, if any
      Close(h2::kConnectError, std::string("TLS handshake failed: ") +
                                   tls::TlsErrorName(tls_->error()) + ": " + tls_->error_detail());
      return;
    }
    if (p != tls::TlsSession::Progress::kDone) return Flush();
    ready_ = true;
    timer_.Cancel();  // the handshake deadline; keepalive starts when it reports back
    if (events_.ready) events_.ready(this);
    if (closing_) return;
    if (drain_when_ready_) StartGoaway();
    if (closing_) return;
  }
  char plain[16384];
  for (;;) {
    size_t n = 0;
    const auto p = tls_->Read(plain, &n);
    if (p == tls::TlsSession::Progress::kDone) {
      if (!h2_->Receive({plain, n})) {
        CloseAfterFlush(h2::kProtocolError, "HTTP/2: " + h2_->failure());  // send the GOAWAY
        return;
      }
      continue;
    }
    if (p == tls::TlsSession::Progress::kWantIo) break;
    if (p == tls::TlsSession::Progress::kClosed) {
      Close(h2::kCancel, h2_->active_streams() > 0 ? "peer closed TLS with streams open" : "");
      return;
    }
    Close(h2::kConnectError,
          std::string("TLS: ") + tls::TlsErrorName(tls_->error()) + ": " + tls_->error_detail());
    return;
  }
  Flush();
  if (!h2_->alive()) {
    CloseAfterFlush(h2::kNoError, h2_->failure().empty() ? "" : "HTTP/2: " + h2_->failure());
  }
}

void HboneConnection::CloseAfterFlush(uint32_t code, std::string error) {
  if (closing_ || close_after_flush_) return;
  close_after_flush_ = true;
  close_code_ = code;
  error_ = std::move(error);
  Flush();
  if (!send_inflight_) Close(close_code_, error_);
}

void HboneConnection::ScheduleFlush() {
  if (flush_scheduled_ || closing_) return;
  flush_scheduled_ = true;
  loop_.Defer([this] {
    flush_scheduled_ = false;
    if (!closing_) Flush();
  });
}

bool HboneConnection::WriteFrame(std::span<const char> frame) {
  // Called inside NextOutput: only record a failure; Flush acts on it.
  if (tls_write_failed_ || tls_->PendingCiphertext() >= kSendChunk) return false;
  if (tls_->Write(frame) != tls::TlsSession::Progress::kDone) {
    tls_write_failed_ = true;
    return false;
  }
  return true;
}

void HboneConnection::Flush() {
  if (send_inflight_) return;  // OnSend flushes again
  if (ready_) {
    while (!tls_write_failed_ && tls_->PendingCiphertext() < kSendChunk) {
      const std::string_view out = h2_->NextOutput();
      if (out.empty()) break;
      if (tls_->Write({out.data(), out.size()}) != tls::TlsSession::Progress::kDone) {
        tls_write_failed_ = true;
      }
    }
    if (tls_write_failed_) {
      Close(h2::kInternalError,
            std::string("TLS: ") + tls::TlsErrorName(tls_->error()) + ": " + tls_->error_detail());
      return;
    }
  }
  if (tls_->PendingCiphertext() == 0 || fd_.get() < 0) return;
  // The buffer just sent goes back to TLS for its capacity; no byte is copied.
  send_buf_ = tls_->TakeCiphertext(std::move(send_buf_));
  send_offset_ = 0;
  io_uring_prep_send(loop_.Prepare(&send_op_), fd_.get(), send_buf_.data(), send_buf_.size(),
                     MSG_NOSIGNAL);
  send_inflight_ = true;
}

void HboneConnection::OnSend(int32_t res, uint32_t /*flags*/) {
  send_inflight_ = false;
  if (closing_) return MaybeDestroy();
  if (res <= 0) {
    Close(h2::kConnectError, Error::FromErrno(res == 0 ? EPIPE : -res).Message());
    return;
  }
  send_offset_ += static_cast<size_t>(res);
  if (send_offset_ < send_buf_.size()) {
    io_uring_prep_send(loop_.Prepare(&send_op_), fd_.get(), send_buf_.data() + send_offset_,
                       send_buf_.size() - send_offset_, MSG_NOSIGNAL);
    send_inflight_ = true;
    return;
  }
  Flush();
  if (!send_inflight_ && send_buf_.capacity() > kIdleBufferKeep) {
    // Idle after a burst: give the large buffer back rather than hold it per
    // connection; small ones stay, so small exchanges do not reallocate each time.
    std::string().swap(send_buf_);
  }
  if (close_after_flush_ && !send_inflight_) Close(close_code_, error_);
  MaybeCloseIdle();
}

void HboneConnection::Drain() {
  if (closing_ || close_after_flush_) return;
  if (!ready_) {
    // Mid-handshake: the peer will send its stream right after; serve that, then drain.
    drain_when_ready_ = true;
    return;
  }
  StartGoaway();
}

void HboneConnection::StartGoaway() {
  h2_->Goaway(h2::kNoError);
  // A peer that never acks the drain PING (stuck, or too busy to read) gets the final
  // GOAWAY after a second anyway, as Go's HTTP/2 server does.
  if (h2_->drain_finishing() && !drain_timer_.pending()) {
    drain_timer_.Start(kDrainAckWait, [this](bool fired) {
      if (closing_) return MaybeDestroy();
      if (!fired || !h2_->drain_finishing()) return;
      h2_->FinishDrain();
      Flush();
      MaybeCloseIdle();
    });
  }
  Flush();
  MaybeCloseIdle();
}

void HboneConnection::MaybeCloseIdle() {
  if (!ready_ || closing_ || close_after_flush_ || send_inflight_ || h2_->alive()) return;
  Close(h2::kNoError, h2_->failure().empty() ? "" : "HTTP/2: " + h2_->failure());
}

void HboneConnection::Close(uint32_t code, std::string error) {
  if (closing_) return;
  closing_ = true;
  error_ = std::move(error);
  if (!error_.empty()) {
    if (ready_) {
      ZT_WARN("proxy", "HBONE connection with {} closed: {}", peer_addr_, error_);
    } else {
      // Failed set-ups come in floods (half-open handshakes, scanners): one line per
      // worker thread every few seconds says how many.
      thread_local log::LogLimiter setup_failures;
      uint64_t held = 0;
      if (setup_failures.Allow(&held)) {
        ZT_WARN("proxy",
                "HBONE connection with {} closed: {} (and {} more failed set-ups since "
                "the last such line)",
                peer_addr_, error_, held);
      }
    }
  }
  loop_.buffers().CancelWait(this);
  h2_->CloseAll(code);  // every stream hears it now
  timer_.Cancel();
  drain_timer_.Cancel();
  if (recv_inflight_ || send_inflight_) loop_.CancelFd(fd_.get());
  MaybeDestroy();
}

void HboneConnection::MaybeDestroy() {
  if (!closing_ || recv_inflight_ || send_inflight_ || timer_.pending() || drain_timer_.pending() ||
      destroy_scheduled_) {
    return;
  }
  destroy_scheduled_ = true;
  loop_.Defer([this] {
    if (!error_.empty()) (void)io::SetLingerZero(fd_.get());
    fd_.reset();
    if (tracker_ != nullptr) tracker_->Remove(this);
    // The owner hears first (to drop its pointer), then the object goes.
    if (events_.closed) events_.closed(this, error_);
    delete this;
  });
}

}  // namespace zt::proxy
