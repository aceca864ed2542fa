// Relay: copies bytes both ways between two connected sockets until both directions
// have ended, on plain io_uring completion handlers (no fiber, no stack).
//
// - Half-close: each direction runs to EOF on its own; on EOF the relay sends FIN
//   (shutdown SHUT_WR) the other way once everything received is written. The other
//   direction keeps flowing until it ends too.
// - Reset propagation: a reset or error on either side resets the other (SO_LINGER 0).
// - Back-pressure: a direction holds at most kMaxQueuedBuffers received buffers; it
//   stops receiving until its sends catch up, so memory per connection is bounded.
// - Idle costs no buffer: receives select a provided buffer only when data arrives.
//   (Multishot receive is not used here: it keeps filling buffers as fast as the
//   sender writes, which defeats per-connection back-pressure.)
#pragma once

#include <cstdint>
#include <functional>

#include "ztunnel/core/result.h"
#include "ztunnel/io/buffer_ring.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/proxy/connection_tracker.h"

namespace zt::proxy {

/// RelayResult is what a relay reports when it is gone.
struct RelayResult {
  uint64_t bytes_downstream_to_upstream = 0;
  uint64_t bytes_upstream_to_downstream = 0;
  /// ok is false when the relay ended by an error, a reset or an abort.
  bool ok = true;
  Error error{};
};

/// Relay owns both sockets and deletes itself when done.
class Relay final : public TrackedConnection {
 public:
  using DoneFn = std::function<void(const RelayResult&)>;
  /// kMaxQueuedBuffers bounds the buffers one direction holds (one sending, one ahead).
  static constexpr uint8_t kMaxQueuedBuffers = 2;

  /// Start relays between `downstream` and `upstream` on `loop`. `tracker` (may be
  /// null) must outlive the relay; `done` runs once, on the loop thread, after both
  /// sockets are closed. The returned relay is valid until `done` runs.
  static Relay* Start(io::Loop& loop, io::UniqueFd downstream, io::UniqueFd upstream,
                      ConnectionTracker* tracker, DoneFn done);

  /// Abort resets both sides now (drain deadline).
  void Abort() override;
  int SocketFd() const override { return downstream_.get(); }

 private:
  class Half;
  Relay(io::Loop& loop, io::UniqueFd downstream, io::UniqueFd upstream, ConnectionTracker* tracker,
        DoneFn done);
  ~Relay();
  void HalfDone();
  void Fail(Error error);
  void MaybeDestroy();
  bool OpsInFlight() const;

  io::Loop& loop_;
  io::UniqueFd downstream_;
  io::UniqueFd upstream_;
  ConnectionTracker* tracker_;
  DoneFn done_;
  Half* halves_[2];  // [0]: downstream -> upstream, [1]: upstream -> downstream
  bool closing_ = false;
  bool reset_ = false;
  bool destroy_scheduled_ = false;
  Error error_{};
};

}  // namespace zt::proxy
